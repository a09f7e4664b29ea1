"""The μP + γ + centering parameterization of Atanasov, Meterez, Simon & Pehlevan (2024).

*The Optimization Landscape of SGD Across the Feature Learning Strength*, arXiv:2410.04642,
with the layout of its reference code (Pehlevan-Group/Richness_Sweep). For an MLP of depth L
(L weight matrices), width N, input dimension D and C outputs:

    h1      = (W0 x + b0) / sqrt(D)
    h(l+1)  = (Wl φ(hl) + bl) / sqrt(N)            l = 1 .. L-2
    f_mu(x) = (W(L-1) φ(h(L-1)) + b(L-1)) / N        readout divided by its fan-in (μP)
    f(x)    = (f_mu(x; θ) - f_mu(x; θ0)) / γ         centered by a frozen copy of the init

Every weight starts i.i.d. N(0, 1) and every bias at 0; the width scaling lives only in the
forward multipliers. Plain SGD uses one learning rate N·η for every parameter (γ does not
enter it). MSE is the mean over batch and outputs of (f - y)²; cross-entropy acts on f.

Everything in this module is an ensemble of E members stacked on a leading axis: weights are
(E, out, in), and members share the input batch, which makes the first layer one GEMM and
the others batched matmuls. Gradients are written out by hand (no autograd): the loop is
short, it avoids graph overhead, and the per-member learning rate folds into the backward
pass. This is the only place where these rules live.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from gamma_tui.config import NetworkConfig


@dataclass(frozen=True)
class Architecture:
    """Shapes and multipliers of one MLP in the parameterization above."""

    widths: tuple[int, ...]  # (D, N, ..., N, C): L + 1 entries
    bias: bool
    activation: str
    width: int  # N, which sets the step size N·η
    init_kind: str = "normal"  # "normal": N(0, 1) weights; "ones": the chain toy, w_l(0) = 1

    @classmethod
    def of(cls, network: NetworkConfig, input_dim: int, outputs: int) -> Architecture:
        """The network of `network` on data of dimension `input_dim` with `outputs` outputs.

        The scalar chain is the width-1 linear MLP with unit inputs and weights starting at
        1: all its multipliers are 1 and its step size N·η is η.
        """
        if network.kind == "chain":
            return cls((1,) * (network.depth + 1), False, "linear", 1, "ones")
        hidden = (network.width,) * (network.depth - 1)
        return cls((input_dim, *hidden, outputs), network.bias, network.activation, network.width)

    @property
    def depth(self) -> int:
        """L, the number of weight matrices."""
        return len(self.widths) - 1

    def multiplier(self, layer: int) -> float:
        """Forward multiplier of a layer: 1/sqrt(fan_in) for hidden layers, 1/fan_in readout."""
        fan_in = self.widths[layer]
        return 1.0 / fan_in if layer == self.depth - 1 else 1.0 / math.sqrt(fan_in)

    @property
    def depth_label(self) -> int:
        """L of the η ∝ γ^(2/L) law: the number of weight matrices."""
        return self.depth

    def activation_elements(self, batch_size: int) -> int:
        """Activations of one member per batch (for memory planning)."""
        return batch_size * sum(self.widths[1:])

    def init(self, seed: int) -> list[torch.Tensor]:
        """One member's initial parameters (see `init_weights`)."""
        return init_weights(self, seed)

    def ensemble(self, params: list[torch.Tensor]) -> EnsembleMLP:
        """An ensemble over stacked parameters."""
        return EnsembleMLP(self, params)

    def parameter_count(self) -> int:
        """Parameters of one member (weights and, if enabled, biases)."""
        pairs = zip(self.widths[:-1], self.widths[1:], strict=True)
        return sum(n_in * n_out + (n_out if self.bias else 0) for n_in, n_out in pairs)


def learning_rate(eta: float, width: int) -> float:
    """The SGD step size of the parameterization: N·η for every parameter."""
    return width * eta


def init_weights(arch: Architecture, seed: int) -> list[torch.Tensor]:
    """One member's initial parameters, float64 on CPU: N(0, 1) weights, zero biases.

    The draw depends only on the seed and the shapes, so members with one seed start
    identically whatever their γ, η or dtype.
    """
    generator = torch.Generator().manual_seed(seed)
    params = []
    for n_in, n_out in zip(arch.widths[:-1], arch.widths[1:], strict=True):
        if arch.init_kind == "ones":
            params.append(torch.ones(n_out, n_in, dtype=torch.float64))
            continue
        params.append(torch.randn(n_out, n_in, generator=generator, dtype=torch.float64))
        if arch.bias:
            params.append(torch.zeros(n_out, dtype=torch.float64))
    return params


class EnsembleMLP:
    """E members of one architecture trained in lockstep on a shared batch."""

    def __init__(self, arch: Architecture, params: list[torch.Tensor]) -> None:
        """`params` are stacked per member: weights (E, out, in), biases (E, out)."""
        self.arch = arch
        self.params = params

    @property
    def size(self) -> int:
        """Number of members E."""
        return self.params[0].shape[0]

    def weight(self, layer: int) -> torch.Tensor:
        """Stacked weight of a layer, (E, out, in)."""
        return self.params[layer * (2 if self.arch.bias else 1)]

    def bias(self, layer: int) -> torch.Tensor | None:
        """Stacked bias of a layer, (E, out), or None without biases."""
        return self.params[2 * layer + 1] if self.arch.bias else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """f_mu for every member on the shared batch x (B, D): output (E, B, C) and context.

        The context holds the scaled input x/sqrt(D) and each hidden layer's activation
        φ(h) (E, B, N), which the backward pass needs for the weight gradients and, through
        φ(h) > 0 ⟺ h > 0, for the ReLU gate. Every multiplier rides inside a GEMM (scaling
        the shared input, or the GEMM's alpha), and the ReLU after the first layer inside
        oneDNN's kernel, so no layer makes an extra pass over its output.
        """
        members, batch = self.size, x.shape[0]
        depth, relu = self.arch.depth, self.arch.activation == "relu"
        scaled = x * self.arch.multiplier(0)
        w0, b0 = self.weight(0), self.bias(0)
        bias = None if b0 is None else b0.reshape(-1) * self.arch.multiplier(0)
        out = _linear(scaled, w0.reshape(members * w0.shape[1], -1), bias, relu and depth > 1)
        out = out.view(batch, members, -1).transpose(0, 1)
        context = [scaled]
        for layer in range(1, depth):
            context.append(out)
            weight = self.weight(layer).transpose(1, 2)
            out = _scaled_bmm(out, weight, self.arch.multiplier(layer), self.bias(layer))
            if relu and layer < depth - 1:
                out = out.relu_()
        return out, context

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """f_mu (E, B, C) for inputs x (B, D)."""
        return self.forward(x)[0]

    def sgd_step(
        self, x: torch.Tensor, context: list[torch.Tensor], grad_out: torch.Tensor
    ) -> None:
        """Apply one SGD update given lr-scaled dLoss/df_mu (E, B, C) and the forward's context.

        grad_out already carries each member's step size N·η, so every parameter moves by
        -grad_out-propagated gradient. Each layer's input-gradient is taken before its weight
        is updated, which makes this exactly SGD on the loss at the current parameters. The
        multipliers ride in the GEMMs' alpha, and the first layer's in its scaled input.
        """
        grad, relu = grad_out, self.arch.activation == "relu"
        for layer in range(self.arch.depth - 1, -1, -1):
            scale = self.arch.multiplier(layer)
            weight = self.weight(layer)
            below = None
            if layer > 0:
                below = _scaled_bmm(grad, weight, scale)
                if relu:  # the gate φ'(h) from φ(h) > 0; one fused kernel
                    below = torch.ops.aten.threshold_backward(below, context[layer], 0)
                weight.baddbmm_(grad.transpose(1, 2), context[layer], alpha=-scale)
            else:
                scaled = context[0]  # x times the first layer's multiplier
                flat = weight.view(-1, weight.shape[2])
                grad_rows = grad.transpose(1, 2).reshape(flat.shape[0], -1)
                if _use_onednn(scaled):
                    flat.sub_(_linear(grad_rows, scaled.T.contiguous()))
                else:
                    flat.addmm_(grad_rows, scaled, alpha=-1.0)
            b = self.bias(layer)
            if b is not None:
                b.sub_(grad.sum(dim=1), alpha=scale)
            if below is not None:
                grad = below

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members at indices `keep` (compaction after divergence or finish)."""
        self.params = [p.index_select(0, keep) for p in self.params]

    def extend(self, other: EnsembleMLP) -> None:
        """Append another ensemble's members (a cohort that caught up)."""
        self.params = [torch.cat([a, b]) for a, b in zip(self.params, other.params, strict=True)]


def centered_output(f_mu: torch.Tensor, f_mu0: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """f = (f_mu - f_mu0)/γ (E, B, C) for per-member γ (E,)."""
    return (f_mu - f_mu0) * (1.0 / gamma)[:, None, None]


def loss_and_grad(
    f_mu: torch.Tensor,
    f_mu0: torch.Tensor,
    gamma: torch.Tensor,
    step_size: torch.Tensor,
    target: torch.Tensor,
    loss: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member loss (E,) of the centered output and step-size-scaled dLoss/df_mu (E, B, C).

    f = (f_mu - f_mu0)/γ. MSE: mean over batch and outputs of (f - y)², `target` the
    (B, C) values. Cross-entropy: mean over batch, `target` the (B,) class indices.
    """
    members, batch, outputs = f_mu.shape
    inv_gamma = (1.0 / gamma)[:, None, None]
    f = (f_mu - f_mu0) * inv_gamma  # centered_output, with 1/γ kept for the gradient
    # dLoss/df times df/df_mu = 1/γ and the step size: one (E, 1, 1) factor, one pass
    if loss == "mse":
        residual = f - target
        value = residual.square().mean(dim=(1, 2))
        factor = inv_gamma * (step_size * (2.0 / (batch * outputs)))[:, None, None]
        return value, residual * factor
    log_probs = torch.log_softmax(f, dim=2)
    picked = log_probs.gather(2, target.view(1, batch, 1).expand(members, batch, 1))
    value = -picked.mean(dim=(1, 2))
    grad = log_probs.exp()
    grad.scatter_add_(
        2, target.view(1, batch, 1).expand(members, batch, 1), torch.full_like(picked, -1.0)
    )
    return value, grad.mul_(inv_gamma * (step_size * (1.0 / batch))[:, None, None])


def held_out_loss_sum(f: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """The loss of `loss_and_grad` summed over samples instead of averaged, for f (E, T, C)
    evaluated in chunks: per-member (E,) sums of the MSE averaged over outputs, or of the
    cross-entropy; divided by T it is the mean the training loss reports."""
    if loss == "mse":
        return (f - target).square().mean(dim=2).sum(dim=1)
    log_probs = torch.log_softmax(f, dim=2)
    classes = target.view(1, -1, 1).expand(f.shape[0], -1, 1)
    return -log_probs.gather(2, classes).sum(dim=(1, 2))


def _use_onednn(x: torch.Tensor) -> bool:
    """Whether the first layer's GEMMs go through oneDNN (CPU, float32).

    On CPU, torch's default float32 GEMM (MKL) ran at about half the speed of oneDNN's on the
    development machine (210 vs 460 GFLOP/s for a 2048² product), and the first layer is
    ~80% of an MLP step's FLOPs. GAMMA_TUI_ONEDNN=0 turns it off; so does torch.compile,
    which cannot trace the oneDNN op and generates its own kernels.
    """
    cpu32 = x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2
    return _ONEDNN and cpu32 and not torch.compiler.is_compiling()


_ONEDNN = torch.backends.mkldnn.is_available() and os.environ.get("GAMMA_TUI_ONEDNN") != "0"


def _linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """x @ weight.T (+ bias, then ReLU if asked), through oneDNN where `_use_onednn` says so."""
    if _use_onednn(x):
        return torch.ops.mkldnn._linear_pointwise(
            x, weight, bias, "relu" if relu else "none", [], ""
        )
    out = torch.nn.functional.linear(x, weight, bias)
    return out.relu_() if relu else out


def _scaled_bmm(
    a: torch.Tensor, b: torch.Tensor, alpha: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """alpha·(a @ b + bias) for stacked a (E, n, k), b (E, k, m) and bias (E, m), in one GEMM,
    whose per-member result does not depend on the ensemble size E.

    With a batch of one, torch's batched GEMM takes another path with other float rounding,
    so a run trained or resumed alone would drift from the same run inside an ensemble; a
    stride-0 batch of two takes the batched path and costs no copy.
    """
    members = a.shape[0]
    shape = (members, a.shape[1], b.shape[2])
    if bias is None:
        start, beta = a.new_zeros(()).expand(shape), 0.0
    else:
        start, beta = bias[:, None, :].expand(shape), alpha
    if members == 1:
        a, b, start = a.expand(2, -1, -1), b.expand(2, -1, -1), start.expand(2, -1, -1)
        return torch.baddbmm(start, a, b, beta=beta, alpha=alpha)[:1]
    return torch.baddbmm(start, a, b, beta=beta, alpha=alpha)
