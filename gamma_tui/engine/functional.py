"""The general ensemble path: any nn.Module trained as E members with torch.func.vmap.

A model is written once as an ordinary module in the μP + γ layout (N(0, 1) weights with
forward multipliers, 1/fan_in readout; docs/science.md §1), from the layers of gamma_tui.nn;
your own network (module_family.py) takes this path too. Its parameters are stacked per member
(E, *shape) and the members run as `vmap(functional_call)` over a shared batch, which turns
the first layer into one wide layer and the rest into grouped or batched kernels. Gradients
come from autograd through the vmapped forward. The module itself lives on the meta device: it
holds the structure, never the weights.

Models here:
- `MLPModule`: the MLP of parameterization.py, for optimizers the hand-written fast path does
  not cover (SignSGD, Adam); same parameter order and initial draws as `EnsembleMLP`.
- `ResNet18`: the reference code's CIFAR ResNet-18 (from microsoft/mup): 3×3 stem, four stages
  of two BasicBlocks, widths (64, 128, 256, 512)·N/64, convolutions divided by sqrt(C_in),
  BatchNorm (weight 1, bias 0) after every convolution, 1×1 projection shortcuts, global average
  pool, μP readout with a bias. Two deliberate differences: the pool is global (the reference's
  4×4 pool is the same on 32×32 inputs, and this one works on any size) and the stem takes the
  dataset's channels. BatchNorm always normalizes by the statistics of the batch it sees, with
  no running averages (vmap cannot update them in place): each member has its own statistics,
  and held-out evaluation normalizes each test chunk by its own statistics, where the reference
  switches to running averages.
- `ViT`: the paper's ViT code is not public, so this is a small pre-norm transformer in the
  same spirit: patches of p×p pixels embedded by a linear map divided by sqrt(C·p²), a learned
  N(0, 1) position embedding, `depth` blocks x + attn(LN(x)), x + mlp(LN(x)) with LayerNorm
  gains 1 and biases 0, q/k/v/o and the 4N-wide MLP divided by sqrt(fan_in), attention logits
  q·k/d_head (the μP attention scale, not 1/sqrt(d_head)), a final LayerNorm, a mean over
  tokens and the μP readout divided by N. Its depth label defaults to 3 (config.DEPTH_LABELS).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from gamma_tui.config import NetworkConfig
from gamma_tui.engine.host_memory import retain_freed_memory
from gamma_tui.nn import Conv2d, Linear, Readout


def _norm2d(channels: int) -> nn.BatchNorm2d:
    """BatchNorm on batch statistics only (see the module docstring)."""
    return nn.BatchNorm2d(channels, track_running_stats=False)


class MLPModule(nn.Module):
    """The MLP of parameterization.py on flattened inputs."""

    def __init__(self, widths: tuple[int, ...], bias: bool, activation: str) -> None:
        super().__init__()
        last = len(widths) - 2
        self.layers = nn.ModuleList(
            (Readout if i == last else Linear)(a, b, bias)
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.relu = activation == "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for index, layer in enumerate(self.layers):
            if index:
                x = torch.relu(x) if self.relu else x
            x = layer(x)
        return x


class BasicBlock(nn.Module):
    """Two 3×3 conv + BatchNorm layers with an identity or 1×1-projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = Conv2d(c_in, c_out, 3, stride), _norm2d(c_out)
        self.conv2, self.bn2 = Conv2d(c_out, c_out, 3), _norm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(Conv2d(c_in, c_out, 1, stride), _norm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """The reference's CIFAR ResNet-18 at width multiplier N/64 (see the module docstring)."""

    def __init__(self, channels: int, width: int, classes: int) -> None:
        super().__init__()
        widths = [max(1, int(w * width / 64)) for w in (64, 128, 256, 512)]
        self.stem, self.bn = Conv2d(channels, widths[0], 3), _norm2d(widths[0])
        blocks, c_in = [], widths[0]
        for stage, c_out in enumerate(widths):
            for index in range(2):
                stride = 2 if stage and not index else 1
                blocks.append(BasicBlock(c_in, c_out, stride))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.readout = Readout(c_in, classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(torch.relu(self.bn(self.stem(x))))
        return self.readout(out.mean(dim=(2, 3)))


class Block(nn.Module):
    """One pre-norm transformer block with μP attention scaling."""

    def __init__(self, width: int, heads: int, bias: bool, relu: bool) -> None:
        super().__init__()
        self.heads, self.relu = heads, relu
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v, self.o = (Linear(width, width, bias) for _ in range(4))
        self.up, self.down = Linear(width, 4 * width, bias), Linear(4 * width, width, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        h = self.norm1(x)
        q, k, v = (
            layer(h).view(batch, tokens, self.heads, -1).transpose(1, 2)
            for layer in (self.q, self.k, self.v)
        )
        weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1)
        x = x + self.o((weights @ v).transpose(1, 2).reshape(batch, tokens, width))
        hidden = self.up(self.norm2(x))
        hidden = torch.relu(hidden) if self.relu else hidden
        return x + self.down(hidden)


class ViT(nn.Module):
    """A small pre-norm vision transformer (see the module docstring)."""

    def __init__(
        self, input_shape: tuple[int, int, int], network: NetworkConfig, classes: int
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        p, n = network.patch, network.width  # config.image_problem checked that p divides H, W
        self.patch = p
        self.embed = Linear(channels * p * p, n, network.bias)
        self.position = nn.Parameter(torch.empty(height // p * (width // p), n))
        relu = network.activation == "relu"
        self.blocks = nn.Sequential(
            *(Block(n, network.heads, network.bias, relu) for _ in range(network.depth))
        )
        self.norm = nn.LayerNorm(n)
        self.readout = Readout(n, classes, network.bias)
        tokens = height // p * (width // p)
        self.hidden_activations = network.depth * network.heads * tokens * tokens * 2
        """Attention logits and weights per sample, which no leaf module outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        p = self.patch
        patches = x.reshape(batch, channels, height // p, p, width // p, p)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, -1, channels * p * p)
        tokens = self.blocks(self.embed(patches) + self.position)
        return self.readout(self.norm(tokens).mean(dim=1))


class FunctionalArchitecture:
    """A model family on the general path: a meta-device module, its init and its ensembles."""

    def __init__(
        self,
        build: Callable[[], nn.Module],
        input_shape: tuple[int, ...],
        width: int,
        depth_label: int,
        ones_init: bool = False,
    ) -> None:
        """`build` makes the module; `width` is N of the SGD step size N·η."""
        self.build = build
        with torch.device("meta"):
            self.module = build()
        self.input_shape, self.width, self.depth_label = input_shape, width, depth_label
        self.names = [name for name, _ in self.module.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in self.module.named_parameters()]
        self.fills = self._fills(ones_init)
        self._elements = self._count_activations()

    def _fills(self, ones_init: bool) -> list[str]:
        """How each parameter starts: 'normal' N(0, 1), 'ones' (norm gains) or 'zeros'."""
        norms = {
            f"{prefix}.{leaf}" if prefix else leaf
            for prefix, module in self.module.named_modules()
            if isinstance(module, nn.BatchNorm2d | nn.LayerNorm)
            for leaf in ("weight", "bias")
        }
        fills = []
        for name in self.names:
            if name.endswith("bias"):
                fills.append("zeros")
            elif name in norms or ones_init:
                fills.append("ones")
            else:
                fills.append("normal")
        return fills

    def _count_activations(self) -> int:
        """Elements every leaf module outputs per sample (a forward on the meta device; two
        samples, since BatchNorm refuses one)."""
        total = 0

        def count(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            nonlocal total
            total += output.numel()

        leaves = [m for m in self.module.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            self.module(torch.empty(2, *self.input_shape, device="meta"))
        finally:
            for hook in hooks:
                hook.remove()
        return total // 2 + int(getattr(self.module, "hidden_activations", 0))

    def activation_elements(self, batch_size: int) -> int:
        """Activations of one member per batch (for memory planning)."""
        return batch_size * self._elements

    def parameter_count(self) -> int:
        """Parameters of one member."""
        return sum(math.prod(shape) for shape in self.shapes)

    def init(self, seed: int) -> list[torch.Tensor]:
        """One member's initial parameters (float64, CPU), drawn in registration order."""
        generator = torch.Generator().manual_seed(seed)
        params = []
        for shape, fill in zip(self.shapes, self.fills, strict=True):
            if fill == "normal":
                params.append(torch.randn(shape, generator=generator, dtype=torch.float64))
            else:
                maker = torch.ones if fill == "ones" else torch.zeros
                params.append(maker(shape, dtype=torch.float64))
        return params

    def ensemble(self, params: list[torch.Tensor]) -> FunctionalEnsemble:
        """An ensemble over stacked parameters (E, *shape)."""
        return FunctionalEnsemble(self, params)

    def call(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One member's output for inputs x."""
        return torch.func.functional_call(self.module, params, (x,))


class AutogradEnsemble:
    """E members whose gradients come from autograd; subclasses define `_forward`."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params

    @property
    def size(self) -> int:
        """Number of members E."""
        return self.params[0].shape[0]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_mu (E, B, C) with a graph to the parameters; the context is f_mu itself."""
        for p in self.params:
            p.requires_grad_(True)
        out = self._forward(x)
        return out, out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """f_mu (E, B, C) without a graph."""
        with torch.no_grad():
            return self._forward(x)

    def gradients(
        self, x: torch.Tensor, ctx: torch.Tensor, grad_out: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each parameter's gradient given dLoss/df_mu; ends the forward's graph."""
        grads = torch.autograd.grad(ctx, self.params, grad_out)
        for p in self.params:
            p.requires_grad_(False)
        return list(grads)

    def sgd_step(self, x: torch.Tensor, ctx: torch.Tensor, grad_out: torch.Tensor) -> None:
        """Backpropagate the step-size-scaled output gradient and move every parameter."""
        with torch.no_grad():
            for param, grad in zip(self.params, self.gradients(x, ctx, grad_out), strict=True):
                param.sub_(grad)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members at indices `keep`."""
        self.params = [p.detach().index_select(0, keep) for p in self.params]

    def extend(self, other: AutogradEnsemble) -> None:
        """Append another ensemble's members."""
        self.params = [
            torch.cat([a.detach(), b]) for a, b in zip(self.params, other.params, strict=True)
        ]


class FunctionalEnsemble(AutogradEnsemble):
    """Members of a FunctionalArchitecture, run with vmap over their stacked parameters."""

    def __init__(self, arch: FunctionalArchitecture, params: list[torch.Tensor]) -> None:
        super().__init__(params)
        self.arch = arch
        if params[0].device.type == "cpu":
            retain_freed_memory()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self.arch.names, self.params, strict=True))
        return torch.func.vmap(self.arch.call, in_dims=(0, None))(params, x)
