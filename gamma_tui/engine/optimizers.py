"""Per-member optimizers of an ensemble: plain SGD, SignSGD and Adam.

Every member has its own learning rate (E,). SGD needs no state and is applied by the models
themselves, with the step size folded into the output gradient (the fast path). SignSGD and
Adam act on raw gradients, so the trainer asks the model for them and calls `step` here.

Learning rates (docs/science.md §1): SGD uses N·η for every parameter, which offsets the 1/N readout
multiplier. SignSGD and Adam steps are O(η) per entry whatever the gradient's size, so they
use the raw η for every parameter. That is not width-consistent (μP Adam would scale the
hidden layers' rates with 1/sqrt(N)); within one sweep the width is fixed, so it shifts η*
by a constant factor and leaves its γ exponents (1 lazy, 1/L rich) alone.

Adam uses β1 = 0.9, β2 = 0.999, ε = 1e-8 (torch's defaults) with bias correction from the
run's step count; its moments are part of a run's checkpoint, so a resumed run continues
exactly.
"""

from __future__ import annotations

import torch

from gamma_tui.engine.parameterization import learning_rate

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

STATE_NAMES = {"sgd": (), "signsgd": (), "adam": ("m", "v")}
"""The per-parameter state arrays each optimizer keeps (stored in checkpoints as m0, v0, ...)."""


def step_sizes(optimizer: str, etas: list[float], width: int) -> list[float]:
    """Each member's step size: N·η for SGD, η for SignSGD and Adam (see the module doc)."""
    if optimizer == "sgd":
        return [learning_rate(eta, width) for eta in etas]
    return list(etas)


class EnsembleOptimizer:
    """The state of a stateful or scale-free optimizer for E members with their own rates."""

    def __init__(self, kind: str, state: dict[str, list[torch.Tensor]]) -> None:
        """`state` maps each of STATE_NAMES[kind] to per-parameter stacked (E, ...) tensors."""
        self.kind, self.state = kind, state

    @classmethod
    def restore(
        cls, kind: str, params: list[torch.Tensor], saved: list[dict[str, torch.Tensor] | None]
    ) -> EnsembleOptimizer:
        """State for stacked `params`: member i's from saved[i] (a checkpoint), else zeros."""
        state = {}
        for name in STATE_NAMES[kind]:
            state[name] = [
                torch.stack(
                    [
                        torch.zeros_like(param[i]) if s is None else s[f"{name}{index}"].to(param)
                        for i, s in enumerate(saved)
                    ]
                )
                for index, param in enumerate(params)
            ]
        return cls(kind, state)

    def step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor, step: int
    ) -> None:
        """Move every parameter in place with rates `lr` (E,); `step` is the update's index."""
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            lr_view = lr.view(-1, *([1] * (param.dim() - 1)))
            if self.kind == "signsgd":
                param.sub_(lr_view * torch.sign(grad))
                continue
            beta1, beta2 = ADAM_BETAS
            m, v = self.state["m"][index], self.state["v"][index]
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            correction1 = 1 - beta1 ** (step + 1)
            correction2 = 1 - beta2 ** (step + 1)
            denominator = (v / correction2).sqrt_().add_(ADAM_EPS)
            param.sub_(lr_view * (m / correction1) / denominator)

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """One member's state as named tensors (m0, m1, ..., v0, ...)."""
        return {
            f"{name}{i}": tensor[index]
            for name, tensors in self.state.items()
            for i, tensor in enumerate(tensors)
        }

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members at indices `keep`."""
        self.state = {n: [t.index_select(0, keep) for t in ts] for n, ts in self.state.items()}

    def extend(self, other: EnsembleOptimizer) -> None:
        """Append another ensemble's members."""
        self.state = {
            name: [torch.cat([a, b]) for a, b in zip(tensors, other.state[name], strict=True)]
            for name, tensors in self.state.items()
        }
