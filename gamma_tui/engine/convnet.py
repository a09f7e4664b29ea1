"""The reference code's CNN as a batched ensemble, in the μP + γ + centering parameterization.

Layout (Pehlevan-Group/Richness_Sweep, vision_tasks/models.py; docs/science.md §1), input C×H×W:

    conv 3×3, C → N channels, no padding, divided by sqrt(C);   ReLU; 2×2 average pool
    conv 3×3, N → 2N channels, no padding, divided by sqrt(N);  ReLU; 2×2 average pool
    linear (2N·h·w → 8N) divided by sqrt(fan_in);               ReLU
    linear (8N → classes) divided by 8N (μP readout)

N(0, 1) weights, zero biases, step size N·η, depth label L = 4.

Forward and backward are written out by hand, like the MLP's (parameterization.py):
- the members share the input batch, so the first convolution of all of them is one GEMM
  (B·H1·W1, 9C) × (9C, E·N) on the im2col patches of x, with the bias and ReLU fused in; its
  output stays channels-last (B, H1, W1, E·N), and so do the pools and the second layer;
- the second convolution differs per member: one grouped convolution (groups = E), forward
  and backward called directly (oneDNN's grouped kernels beat im2col + bmm on CPU by 2–5×;
  on GPU this is cuDNN's);
- the linear layers are batched matmuls over E;
- the backward pass reuses the forward's patches for the first weight gradient, folds the
  pools' 1/4 into the small pooled gradients, and writes each ReLU gate over the stored
  activation, so no activation-sized temporary exists that the forward did not already hold.
Each convolution's forward multiplier is applied to its (small) weights and bias rather than
to its (large) output; the linear layers' multipliers ride in their batched GEMMs' alpha, so
the largest weight (8N × 2N·h·w per member) is never copied to scale it. For SGD the step
size rides in the output gradient, so every parameter then moves by minus its gradient; other
optimizers get the gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gamma_tui.engine.host_memory import retain_freed_memory


@dataclass(frozen=True)
class ConvArchitecture:
    """Shapes of the reference CNN on C×H×W inputs with `outputs` classes."""

    input_shape: tuple[int, int, int]
    width: int  # N, which also sets the step size N·η
    outputs: int
    bias: bool

    depth_label = 4

    @property
    def conv_shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Output sizes of the two convolutions (before their pools)."""
        _, height, width = self.input_shape
        first = (height - 2, width - 2)
        return first, (first[0] // 2 - 2, first[1] // 2 - 2)

    @property
    def feature_shape(self) -> tuple[int, int]:
        """Spatial size after the two conv + pool stages."""
        _, (height, width) = self.conv_shapes
        return height // 2, width // 2

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-member parameter shapes, weights then (if enabled) biases, layer by layer."""
        channels, n = self.input_shape[0], self.width
        h, w = self.feature_shape
        weights = [
            (n, channels, 3, 3),
            (2 * n, n, 3, 3),
            (8 * n, 2 * n * h * w),
            (self.outputs, 8 * n),
        ]
        shapes: list[tuple[int, ...]] = []
        for shape in weights:
            shapes.append(shape)
            if self.bias:
                shapes.append((shape[0],))
        return shapes

    def parameter_count(self) -> int:
        """Parameters of one member."""
        return sum(math.prod(shape) for shape in self.shapes())

    def activation_elements(self, batch_size: int) -> int:
        """Activations of one member per batch (for memory planning): what the forward keeps
        for the backward (ReLU outputs and pooled maps; the input's patches are shared)."""
        n = self.width
        (h1, w1), (h2, w2) = self.conv_shapes
        h, w = self.feature_shape
        pooled = n * (h1 // 2) * (w1 // 2)
        return batch_size * (n * h1 * w1 + pooled + 2 * n * h2 * w2 + 2 * n * h * w + 8 * n)

    def init(self, seed: int) -> list[torch.Tensor]:
        """One member's initial parameters: N(0, 1) weights, zero biases (float64, CPU)."""
        generator = torch.Generator().manual_seed(seed)
        return [
            torch.zeros(shape, dtype=torch.float64)
            if len(shape) == 1 and self.bias
            else torch.randn(shape, generator=generator, dtype=torch.float64)
            for shape in self.shapes()
        ]

    def member_forward(self, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """f_mu (B, classes) of one member written plainly with torch.nn.functional: the
        differentiable reference of the hand-written ensemble, for autograd and vmap users
        (the diagnostics' Hessian-vector products, the tests)."""
        step = 2 if self.bias else 1
        weights = params[::step]
        biases = params[1::2] if self.bias else [None] * 4
        hidden = x
        for weight, bias in zip(weights[:2], biases[:2], strict=True):
            hidden = F.conv2d(hidden, weight, bias) / math.sqrt(weight.shape[1])
            hidden = F.avg_pool2d(torch.relu(hidden), 2, 2)
        hidden = torch.relu(F.linear(hidden.flatten(1), weights[2], biases[2]))
        hidden = hidden / math.sqrt(weights[2].shape[1])
        return F.linear(hidden, weights[3], biases[3]) / weights[3].shape[1]

    def ensemble(self, params: list[torch.Tensor]) -> EnsembleCNN:
        """An ensemble over stacked parameters (E, *shape)."""
        return EnsembleCNN(self, params)


Context = tuple[torch.Tensor, ...]
"""What the backward pass needs from the forward: patches and ReLU outputs (see `forward`)."""


class EnsembleCNN:
    """E CNN members trained in lockstep on a shared batch."""

    def __init__(self, arch: ConvArchitecture, params: list[torch.Tensor]) -> None:
        """`params` are stacked per member (E, *shape), in ConvArchitecture.shapes order."""
        self.arch = arch
        self.params = params
        if params[0].device.type == "cpu":
            retain_freed_memory()

    @property
    def size(self) -> int:
        """Number of members E."""
        return self.params[0].shape[0]

    def _layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        step = 2 if self.arch.bias else 1
        weight = self.params[index * step]
        return weight, self.params[index * step + 1] if self.arch.bias else None

    def _scaled(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """A layer's weight and bias times its forward multiplier, and the multiplier."""
        weight, bias = self._layer(index)
        scale = 1.0 / weight.shape[2] if index == 3 else 1.0 / math.sqrt(weight.shape[2])
        return weight * scale, None if bias is None else bias * scale, scale

    def _linear(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """A linear layer's raw weight, its bias times the multiplier, and the multiplier,
        which the batched matmuls apply as their alpha (no pass over the largest weight)."""
        weight, bias = self._layer(index)
        scale = 1.0 / weight.shape[2] if index == 3 else 1.0 / math.sqrt(weight.shape[2])
        return weight, None if bias is None else bias * scale, scale

    def _conv2(self) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """The second convolution as one grouped convolution: weight (E·2N, N, 3, 3)."""
        weight, bias, scale = self._scaled(1)
        flat_bias = None if bias is None else bias.reshape(-1)
        return weight.reshape(-1, *weight.shape[2:]), flat_bias, scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Context]:
        """f_mu (E, B, classes) for inputs x (B, C, H, W), and the context of the backward:
        the input's patches, the first ReLU's output (B, E·N, H1, W1) and its pool, the second
        ReLU's output (B, E·2N, H2, W2), the pooled features (E, B, 2N·h·w) and the third
        ReLU's output; the image-sized ones are channels-last."""
        members, batch = self.size, x.shape[0]
        n = self.arch.width
        (h1, w1), _ = self.arch.conv_shapes
        patches = _patches(x)
        weight, bias, _ = self._scaled(0)
        flat_bias = None if bias is None else bias.reshape(-1)
        hidden1 = _linear_relu(patches, weight.reshape(members * n, -1), flat_bias)
        hidden1 = hidden1.view(batch, h1, w1, members * n).permute(0, 3, 1, 2)
        pooled1 = F.avg_pool2d(hidden1, 2, 2)
        weight, bias, _ = self._conv2()
        hidden2 = F.conv2d(pooled1, weight, bias, groups=members).relu_()
        # the linear layer reads features in the reference's (channel, row, column) order
        pooled2 = F.avg_pool2d(hidden2, 2, 2).unflatten(1, (members, -1))
        features = pooled2.transpose(0, 1).reshape(members, batch, -1)
        weight, bias, scale = self._linear(2)
        hidden3 = _bmm(features, weight.transpose(1, 2), bias, scale).relu_()
        weight, bias, scale = self._linear(3)
        out = _bmm(hidden3, weight.transpose(1, 2), bias, scale)
        return out, (patches, hidden1, pooled1, hidden2, features, hidden3)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """f_mu (E, B, classes) for inputs x (B, C, H, W)."""
        return self.forward(x)[0]

    def gradients(
        self, x: torch.Tensor, ctx: Context, grad_out: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each parameter's gradient (E, *shape) given dLoss/df_mu (E, B, classes); consumes
        the context (the ReLU outputs are overwritten by their gradients)."""
        patches, hidden1, pooled1, hidden2, features, hidden3 = ctx
        members, batch = self.size, x.shape[0]
        bias = self.arch.bias
        grads: list[tuple[torch.Tensor, torch.Tensor | None]] = []

        weight, _, scale = self._linear(3)
        grads.append(_weight_grad(grad_out, hidden3, scale, bias))
        grad = torch.ops.aten.threshold_backward(_bmm(grad_out, weight, None, scale), hidden3, 0)

        weight, _, scale = self._linear(2)
        grads.append(_weight_grad(grad, features, scale, bias))
        grad = _bmm(grad, weight, None, scale).transpose(0, 1)  # (B, E, 2N·h·w)
        h, w = self.arch.feature_shape
        gate = _unpool_gate(grad.reshape(batch, -1, h, w), hidden2)

        weight, _, scale = self._conv2()
        grad, weight_grad, _ = torch.ops.aten.convolution_backward(
            gate,
            pooled1,
            weight,
            None,
            [1, 1],
            [0, 0],
            [1, 1],
            False,
            [0, 0],
            members,
            [True, True, False],
        )
        bias_grad = gate.sum(dim=(0, 2, 3)).mul_(scale).view(members, -1) if bias else None
        grads.append((weight_grad.mul_(scale), bias_grad))
        gate = _unpool_gate(grad, hidden1).permute(0, 2, 3, 1).reshape(-1, hidden1.shape[1])

        _, _, scale = self._scaled(0)
        weight_grad = (patches.T @ gate).T.mul_(scale)
        bias_grad = gate.sum(dim=0).mul_(scale).view(members, -1) if bias else None
        grads.append((weight_grad, bias_grad))

        shapes = self.arch.shapes()
        out: list[torch.Tensor] = []
        for weight_grad, bias_grad in reversed(grads):
            out.append(weight_grad.reshape(members, *shapes[len(out)]))
            if bias_grad is not None:
                out.append(bias_grad)
        return out

    def sgd_step(self, x: torch.Tensor, ctx: Context, grad_out: torch.Tensor) -> None:
        """Move every parameter by minus its gradient; grad_out carries each member's step
        size, so this is one SGD step at the current parameters."""
        for param, grad in zip(self.params, self.gradients(x, ctx, grad_out), strict=True):
            param.sub_(grad)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members at indices `keep`."""
        self.params = [p.index_select(0, keep) for p in self.params]

    def extend(self, other: EnsembleCNN) -> None:
        """Append another ensemble's members."""
        self.params = [torch.cat([a, b]) for a, b in zip(self.params, other.params, strict=True)]


def _patches(x: torch.Tensor) -> torch.Tensor:
    """The 3×3 patches of x (B, C, H, W) as rows (B·H1·W1, C·9), ordered (channel, kh, kw)
    (one strided copy: F.unfold is an order of magnitude slower on a busy CPU)."""
    batch, channels, height, width = x.shape
    sb, sc, sh, sw = x.stride()
    windows = x.as_strided((batch, height - 2, width - 2, channels, 3, 3), (sb, sh, sw, sc, sh, sw))
    return windows.reshape(-1, channels * 9)


def _unpool_gate(grad: torch.Tensor, relu_out: torch.Tensor) -> torch.Tensor:
    """Adjoint of the 2×2 average pool of a ReLU output, written over that output.

    grad (B, C, h, w) is the pooled gradient (any strides), relu_out (B, C, H, W) contiguous
    or channels-last; pixels an odd size leaves out of the pool get zero gradient.
    """
    pixels, pooled = relu_out, grad
    if not relu_out.permute(0, 2, 3, 1).is_contiguous():  # NCHW: channels-last with C = 1
        pixels, pooled = relu_out.flatten(0, 1)[:, None], grad.flatten(0, 1)[:, None]
    out, pooled = pixels.permute(0, 2, 3, 1), pooled.permute(0, 2, 3, 1)  # out contiguous
    batch, h, w, channels = pooled.shape
    height, width = out.shape[1:3]
    # the (small) pooled gradient in out's channel-last order, so the gate below reads both
    # operands in one order: the second pool's gradient arrives channel-first from the linear
    # layer, and at those strides the gate ran 3× slower under heavy load (equal when quiet)
    quarter = (pooled.contiguous() * 0.25)[:, :, None, :, None, :]
    quarter = quarter.expand(batch, h, 2, w, 2, channels)
    covered = out[:, : 2 * h, : 2 * w].view(batch, h, 2, w, 2, channels)
    torch.ops.aten.threshold_backward.grad_input(quarter, covered, 0, grad_input=covered)
    if height > 2 * h:
        out[:, 2 * h :].zero_()
    if width > 2 * w:
        out[:, :, 2 * w :].zero_()
    return relu_out


def _weight_grad(
    grad: torch.Tensor, inputs: torch.Tensor, scale: float, bias: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batched layer's weight gradient (E, out, in) and, with `bias`, bias gradient (E, out)."""
    weight = _bmm(grad.transpose(1, 2), inputs, None, scale)
    return weight, grad.sum(dim=1).mul_(scale) if bias else None


def _use_onednn(x: torch.Tensor) -> bool:
    """Whether the first convolution's GEMM goes through oneDNN (CPU float32, eager): there
    it fuses bias and ReLU into the product and ran twice as fast as torch's default GEMM
    (see parameterization._use_onednn)."""
    cpu32 = x.device.type == "cpu" and x.dtype == torch.float32
    return cpu32 and _ONEDNN and not torch.compiler.is_compiling()


_ONEDNN = torch.backends.mkldnn.is_available()
"""Read once: dynamo refuses to trace the query, which would break a compiled step's graph."""


def _linear_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """relu(x @ weight.T + bias), bias and ReLU fused into the GEMM where oneDNN runs it."""
    if _use_onednn(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
    out = x @ weight.T if bias is None else torch.addmm(bias, x, weight.T)
    return out.relu_()


def _bmm(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, alpha: float = 1.0
) -> torch.Tensor:
    """alpha · a @ b (+ bias (E, out) on every row) per member, its rounding independent of E.

    With a batch of one, torch.bmm takes another GEMM path with other float rounding, so a
    run trained alone would drift from the same run inside an ensemble; a stride-0 batch of
    two takes the batched path and costs no copy. alpha rides in the GEMM (no extra pass).
    """
    if a.shape[0] == 1:
        a, b = a.expand(2, -1, -1), b.expand(2, -1, -1)
        bias = None if bias is None else bias.expand(2, -1)
        return _bmm(a, b, bias, alpha)[:1]
    if bias is not None:
        return torch.baddbmm(bias[:, None, :], a, b, alpha=alpha)
    if alpha == 1.0:
        return torch.bmm(a, b)
    return torch.baddbmm(a.new_zeros(()).expand(1, 1, 1), a, b, beta=0, alpha=alpha)
