"""Curvature and kernel diagnostics of the centered training loss, batched over the ensemble.

Every quantity is measured on a fixed probe batch (the same samples for every member and every
step, drawn from a generator no training batch uses) for all E members at once: each member's
loss is a pure function of its parameters, and `vmap` runs it over the stacked parameters
(E, *shape); autograd differentiates through that twice. Nothing here touches the training
batch, the training RNG or the parameters in place, so a run's loss curve is the same with and
without diagnostics.

The loss is the one training minimizes, on the centered output

    f(x) = (f_mu(x; θ) - f_mu(x; θ0)) / γ

(docs/science.md §1), so the Hessian at initialization scales as γ^-2. Measured per member:

- `sharpness`: the top eigenvalue λ_max of the Hessian, by Lanczos on Hessian-vector products
  (double backward through the vmapped forward). The largest Ritz value never exceeds λ_max
  and converges to it from below; `iterations` Lanczos steps.
- `trace`, `trace_error`: Hutchinson's estimate of tr H with `iterations` Rademacher probes, and
  its standard error.
- `ggn`, `ntk`, `alignment`: from the probe batch's empirical NTK K = J Jᵀ (J = ∂f/∂θ, built
  explicitly, (B·C)² per member): the top eigenvalue of the Gauss-Newton matrix Jᵀ (∂²ℓ/∂f²) J
  (comparable to λ_max; equal to it where the residual vanishes), the top eigenvalue of K, and
  the kernel-target alignment yᵀKy / (‖K‖_F ‖y‖²).
- `directional`: the sharpness along the probe gradient, gᵀHg / ‖g‖².

`seed_averaged` scores the prediction averaged over the seeds of a (γ, η) cell on the held-out
set, the reference's ens_test_loss.

The hand-written MLP and chain of parameterization.py have no autograd graph; for the
diagnostic they run as the functional MLPModule, whose parameters come in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.func import jacrev, vmap

from gamma_tui.engine.functional import FunctionalArchitecture, MLPModule
from gamma_tui.engine.parameterization import Architecture, centered_output, held_out_loss_sum

if TYPE_CHECKING:
    from gamma_tui.config import DiagnosticsConfig
    from gamma_tui.engine.centering import CenteredEnsemble
    from gamma_tui.engine.data import Stream

Params = tuple[torch.Tensor, ...]
MemberCall = Callable[[Params, torch.Tensor], torch.Tensor]
"""One member's f_mu(params, x) -> (B, C), a pure function torch.func can transform."""

NTK_BYTES = 2**30
"""The explicit probe-batch Jacobians of one vmap chunk stay below this many bytes."""

DIAGNOSTIC_SEED = 0x5EED_D1A6
"""Seed of the Lanczos start vector and the Hutchinson probes: the same for every member and
every step, and a generator of its own, so training never shares its draws."""


@dataclass(frozen=True)
class Settings:
    """Which diagnostics to measure and with how many Lanczos steps or Hutchinson probes."""

    sharpness: bool = True
    trace: bool = False
    ntk: bool = False
    directional: bool = False
    iterations: int = 20

    def names(self) -> list[str]:
        """The names of the values `measure` returns with these settings."""
        names = ["sharpness"] if self.sharpness else []
        names += ["trace", "trace_error"] if self.trace else []
        names += ["ggn", "ntk", "alignment"] if self.ntk else []
        return names + (["directional"] if self.directional else [])


def member_call(family: object) -> MemberCall:
    """One member's forward for a model family, as a function of a parameter tuple.

    MLPs and the chain run as the functional MLPModule (same parameters, same order); the
    general path's modules through functional_call; the CNN, whose ensemble is hand-written,
    through its plain member forward (ConvArchitecture.member_forward), which vmap batches.
    """
    if isinstance(family, Architecture):
        family = FunctionalArchitecture(
            lambda: MLPModule(family.widths, family.bias, family.activation),
            (family.widths[0],),
            family.width,
            family.depth_label,
        )
    if isinstance(family, FunctionalArchitecture):
        names = family.names

        def functional(params: Params, x: torch.Tensor) -> torch.Tensor:
            return family.call(dict(zip(names, params, strict=True)), x)

        return functional
    plain = getattr(family, "member_forward", None)
    if plain is None:
        raise TypeError(f"{type(family).__name__} has no member forward to run diagnostics on")

    def single(params: Params, x: torch.Tensor) -> torch.Tensor:
        return plain(list(params), x)

    return single


def measure(
    call: MemberCall,
    params: Sequence[torch.Tensor],
    frozen_outputs: torch.Tensor,
    gamma: torch.Tensor,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str,
    settings: Settings,
) -> dict[str, torch.Tensor]:
    """Every member's diagnostics (each a tensor (E,)) on the probe batch (x, target).

    `params` are the stacked parameters (E, *shape), `frozen_outputs` each member's f_mu(θ0)
    on x (E, B, C), `gamma` (E,); `target` as training's: (B, C) values for MSE, (B,) class
    indices for cross-entropy. Keys: `settings.names()`.
    """
    point = tuple(p.detach() for p in params)
    member_loss = _member_loss(call, loss)
    # reverse over reverse: one forward and gradient graph, then each Hessian-vector product
    # is one more backward through it (3x faster here than jvp of grad, which redoes both).
    # The members' losses are summed; they share no parameters, so the Hessian of the sum is
    # block diagonal and every product is each member's own.
    leaves = tuple(p.clone().requires_grad_(True) for p in point)
    with torch.enable_grad():
        losses = vmap(member_loss, in_dims=(0, 0, 0, None, None))(
            leaves, frozen_outputs, gamma, x, target
        )
        gradient = torch.autograd.grad(losses.sum(), leaves, create_graph=True)

    def operator(v: Params) -> Params:
        with torch.enable_grad():
            products = torch.autograd.grad(gradient, leaves, grad_outputs=v, retain_graph=True)
        return tuple(t.detach() for t in products)

    generator = torch.Generator().manual_seed(DIAGNOSTIC_SEED)
    out: dict[str, torch.Tensor] = {}
    if settings.sharpness:
        start = _random_like(point, "normal", generator)
        out["sharpness"] = lanczos_top(operator, start, settings.iterations)
    if settings.trace:
        out["trace"], out["trace_error"] = hutchinson_trace(
            operator, lambda: _random_like(point, "rademacher", generator), settings.iterations
        )
    if settings.ntk:
        out["ggn"], out["ntk"], out["alignment"] = _kernel(
            call, point, frozen_outputs, gamma, x, target, loss
        )
    if settings.directional:
        g = tuple(t.detach() for t in gradient)
        out["directional"] = _dot(g, operator(g)) / _dot(g, g)
    return out


def lanczos_top(
    operator: Callable[[Params], Params], start: Params, iterations: int
) -> torch.Tensor:
    """The largest eigenvalue (E,) of each member's symmetric operator by Lanczos.

    `operator` maps stacked vectors (E, *shape) to stacked vectors; `start` is the first
    Krylov vector. Each new vector is orthogonalized again against the previous two (one
    extra Gram-Schmidt pass), which keeps short runs accurate without storing the basis. A
    member whose Krylov space closes early (β = 0: the chain has 3 parameters) keeps its
    tridiagonal block; its unused entries repeat its first Rayleigh quotient, which by
    interlacing never raises the largest eigenvalue.
    """
    q = _scale(start, 1.0 / _dot(start, start).sqrt())
    previous = tuple(torch.zeros_like(t) for t in q)
    beta = torch.zeros_like(_dot(q, q))
    alphas, betas = [], []
    alive = torch.ones_like(beta, dtype=torch.bool)
    tiny = torch.finfo(beta.dtype).eps
    for _ in range(iterations):
        w = operator(q)
        alpha = _dot(w, q)
        w = _axpy(w, -alpha, q, -beta, previous)
        w = _axpy(w, -_dot(w, q), q, -_dot(w, previous), previous)
        alphas.append(torch.where(alive, alpha, alphas[0] if alphas else alpha))
        beta = _dot(w, w).sqrt()
        scale = torch.stack(alphas).abs().amax(dim=0)
        alive = alive & (beta > 32 * tiny * scale)
        beta = torch.where(alive, beta, torch.zeros_like(beta))
        betas.append(beta)
        previous, q = q, _scale(w, torch.where(alive, 1.0 / beta, torch.zeros_like(beta)))
    diagonal = torch.stack(alphas, dim=1)
    off = torch.stack(betas[:-1], dim=1) if len(betas) > 1 else diagonal[:, :0]
    tridiagonal = torch.diag_embed(diagonal) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    return _top_eigenvalue(tridiagonal).to(diagonal.dtype)


def hutchinson_trace(
    operator: Callable[[Params], Params], probe: Callable[[], Params], samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hutchinson's trace estimate (E,) mean of zᵀAz over Rademacher z, and its standard error."""
    values = torch.stack([_dot(z, operator(z)) for z in (probe() for _ in range(samples))])
    error = (
        values.std(dim=0) / samples**0.5 if samples > 1 else torch.full_like(values[0], torch.nan)
    )
    return values.mean(dim=0), error


def _member_loss(
    call: MemberCall, loss: str
) -> Callable[[Params, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """One member's training loss on the centered output: MSE over batch and outputs, or
    cross-entropy (the same definitions as parameterization.loss_and_grad)."""

    def member_loss(
        params: Params, f0: torch.Tensor, gamma: torch.Tensor, x: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        f = (call(params, x) - f0) / gamma
        if loss == "mse":
            return (f - target).square().mean()
        return torch.nn.functional.cross_entropy(f, target)

    return member_loss


def _kernel(
    call: MemberCall,
    point: Params,
    frozen_outputs: torch.Tensor,
    gamma: torch.Tensor,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top Gauss-Newton eigenvalue, top NTK eigenvalue and kernel-target alignment (each (E,))
    from the explicit probe-batch NTK of the centered output."""

    def centered(p: Params, f0: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return ((call(p, x) - f0) / g).reshape(-1)

    members, batch, outputs = frozen_outputs.shape
    per_member = batch * outputs * sum(t[0].numel() for t in point) * point[0].element_size()
    chunk = max(1, min(members, NTK_BYTES // max(per_member, 1)))
    jacobians = vmap(jacrev(centered), chunk_size=chunk)(point, frozen_outputs, gamma)
    kernel = sum(j.flatten(2) @ j.flatten(2).transpose(1, 2) for j in jacobians)
    assert isinstance(kernel, torch.Tensor)
    kernel = kernel.to(torch.float64)
    if loss == "mse":
        y = target.reshape(-1).to(torch.float64).expand(members, -1)
        ggn = 2.0 / (batch * outputs) * _top_eigenvalue(kernel)
    else:
        y = torch.nn.functional.one_hot(target, outputs).reshape(-1).to(torch.float64)
        y = y.expand(members, -1)
        logits = vmap(lambda p, f0, g: (call(p, x) - f0) / g)(point, frozen_outputs, gamma)
        probs = torch.softmax(logits.to(torch.float64), dim=2)
        hessian = (torch.diag_embed(probs) - probs[..., :, None] * probs[..., None, :]) / batch
        values, vectors = torch.linalg.eigh(torch.nan_to_num(hessian))
        root = vectors @ torch.diag_embed(values.clamp(min=0).sqrt()) @ vectors.transpose(-1, -2)
        blocks = kernel.view(members, batch, outputs, batch, outputs)
        scaled = torch.einsum("eacd,eadbf,ebfg->eacbg", root, blocks, root)
        ggn = _top_eigenvalue(scaled.reshape(members, batch * outputs, -1))
    top = _top_eigenvalue(kernel)
    along = torch.einsum("ei,eij,ej->e", y, kernel, y)
    alignment = along / (kernel.flatten(1).norm(dim=1) * (y * y).sum(dim=1))
    dtype = frozen_outputs.dtype
    return ggn.to(dtype), top.to(dtype), alignment.to(dtype)


def _top_eigenvalue(matrices: torch.Tensor) -> torch.Tensor:
    """The largest eigenvalue (E,) of each symmetric matrix (E, n, n), in float64; NaN for a
    matrix with non-finite entries (a diverging member), which eigvalsh would fail on."""
    finite = matrices.isfinite().flatten(1).all(dim=1)
    clean = torch.where(finite[:, None, None], matrices, torch.zeros_like(matrices))
    top = torch.linalg.eigvalsh(clean.to(torch.float64))[:, -1]
    return torch.where(finite, top, torch.full_like(top, torch.nan))


def _random_like(point: Params, kind: str, generator: torch.Generator) -> Params:
    """A random vector shaped like a member's parameters, the same for every member: N(0, 1)
    ("normal") or ±1 ("rademacher") entries, drawn in float64 on CPU (device-independent)."""
    vectors = []
    for tensor in point:
        shape = tuple(tensor.shape[1:])
        if kind == "normal":
            draw = torch.randn(shape, generator=generator, dtype=torch.float64)
        else:
            draw = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
        vectors.append(draw.to(tensor).expand_as(tensor).contiguous())
    return tuple(vectors)


def _dot(a: Params, b: Params) -> torch.Tensor:
    """Per-member inner products (E,) of stacked vectors."""
    return sum((x * y).flatten(1).sum(dim=1) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _scale(a: Params, factor: torch.Tensor) -> Params:
    """Each member's vector times its own factor (E,)."""
    return tuple(t * factor.view(-1, *([1] * (t.dim() - 1))) for t in a)


def _axpy(w: Params, c1: torch.Tensor, v1: Params, c2: torch.Tensor, v2: Params) -> Params:
    """w + c1·v1 + c2·v2 with per-member coefficients (E,)."""
    return tuple(
        a + _scale((b,), c1)[0] + _scale((c,), c2)[0] for a, b, c in zip(w, v1, v2, strict=True)
    )


@dataclass(frozen=True)
class Probe:
    """A shard's diagnostics: what to measure, the member forward and the probe batch."""

    settings: Settings
    call: MemberCall
    x: torch.Tensor
    target: torch.Tensor

    @classmethod
    def of(cls, config: DiagnosticsConfig, family: object, stream: Stream) -> Probe | None:
        """The probe of a [diagnostics] table on a shard's family and stream (None if off)."""
        if not config.enabled:
            return None
        settings = Settings(
            config.sharpness, config.trace, config.ntk, config.directional, config.iterations
        )
        batch = stream.probe_batch(config.probe_batch)
        return cls(settings, member_call(family), batch.x, batch.target)

    def measure(self, ensemble: CenteredEnsemble) -> dict[str, torch.Tensor]:
        """Every member's diagnostics (E,) at the ensemble's current parameters."""
        assert ensemble.frozen is not None
        with torch.no_grad():
            frozen = ensemble.frozen.predict(self.x).index_select(0, ensemble.seed_index)
        return measure(
            self.call,
            ensemble.params,
            frozen,
            ensemble.gamma,
            self.x,
            self.target,
            ensemble.loss,
            self.settings,
        )


def seed_averaged(ensemble: CenteredEnsemble, cells: torch.Tensor) -> dict[str, torch.Tensor]:
    """The held-out loss and accuracy of the prediction averaged over the seeds of each cell
    (the reference's ens_test_loss), given to every member of the cell (E,).

    `cells` (E,) numbers the members' (γ, η) cells 0..K-1. The centered outputs f (logits
    under cross-entropy) are averaged over a cell's members, then scored like a single run;
    `ens_seeds` is how many members each average holds.
    """
    held_out, model, f0_all = ensemble.held_out, ensemble.model, ensemble.held_out_f0
    assert held_out is not None and model is not None and f0_all is not None
    test = held_out.data
    count = int(cells.max()) + 1
    sizes = torch.zeros(count, dtype=ensemble.dtype, device=cells.device)
    sizes.index_add_(0, cells, torch.ones_like(ensemble.gamma))
    total = torch.zeros(count, dtype=ensemble.dtype, device=cells.device)
    correct = torch.zeros_like(total)
    with torch.no_grad():
        for first, last in held_out.chunks:
            f0 = f0_all[:, first:last].index_select(0, ensemble.seed_index)
            f = centered_output(model.predict(test.x[first:last]), f0, ensemble.gamma)
            mean = torch.zeros(count, *f.shape[1:], dtype=f.dtype, device=f.device)
            mean = mean.index_add_(0, cells, f) / sizes[:, None, None]
            total += held_out_loss_sum(mean, test.target[first:last], ensemble.loss)
            if test.classes is not None:
                correct += (mean.argmax(dim=2) == test.classes[first:last]).sum(dim=1)
    size = test.x.shape[0]
    out = {"ens_test_loss": (total / size)[cells], "ens_seeds": sizes[cells]}
    if test.classes is not None:
        out["ens_test_accuracy"] = (correct / size)[cells]
    return out
