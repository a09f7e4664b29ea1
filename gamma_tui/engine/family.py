"""What the trainer asks of a model family and of its ensembles, written down as Protocols.

A family (parameterization.Architecture for the hand-written MLP, convnet.ConvArchitecture,
functional.FunctionalArchitecture for the vmap + autograd models) knows one network kind's
shapes and initial draws and builds ensembles: E members stacked on a leading axis, trained
in lockstep on a shared batch. Everything about γ (the centering, the loss, the per-member
rates) lives outside the families, in centering.CenteredEnsemble; a family only computes
f_mu and moves parameters along a given output gradient.
"""

from __future__ import annotations

from typing import Any, Protocol, Self, TypeVar, runtime_checkable

import torch

Context = TypeVar("Context")
"""What an ensemble's forward keeps for its backward (activations, or an autograd graph)."""


class Ensemble(Protocol[Context]):
    """E members of one family with stacked parameters (E, *shape)."""

    params: list[torch.Tensor]

    @property
    def size(self) -> int:
        """Number of members E."""
        ...

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Context]:
        """f_mu (E, B, C) of every member on the shared batch x, and the backward's context."""
        ...

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """f_mu (E, B, C) without a backward context."""
        ...

    def sgd_step(self, x: torch.Tensor, context: Context, grad_out: torch.Tensor) -> None:
        """Move every parameter by minus its gradient given dLoss/df_mu (E, B, C), which
        already carries each member's step size."""
        ...

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members at indices `keep`, in that order."""
        ...

    def extend(self, other: Self) -> None:
        """Append another ensemble's members."""
        ...


@runtime_checkable
class GradientEnsemble(Ensemble[Context], Protocol[Context]):
    """An ensemble that also hands out raw gradients, for optimizers other than SGD."""

    def gradients(
        self, x: torch.Tensor, context: Context, grad_out: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each parameter's stacked gradient given dLoss/df_mu; ends the forward's context."""
        ...


class Family(Protocol):
    """One network kind: shapes, initial draws and ensembles."""

    @property
    def width(self) -> int:
        """N, which sets the SGD step size N·η."""
        ...

    @property
    def depth_label(self) -> int:
        """L of the η ∝ γ^(2/L) law."""
        ...

    def init(self, seed: int) -> list[torch.Tensor]:
        """One member's initial parameters (float64, CPU); depends only on the seed."""
        ...

    def ensemble(self, params: list[torch.Tensor]) -> Ensemble[Any]:
        """An ensemble over stacked parameters (E, *shape); the context type is the family's."""
        ...

    def parameter_count(self) -> int:
        """Parameters of one member."""
        ...

    def activation_elements(self, batch_size: int) -> int:
        """Activations of one member per batch (for memory planning)."""
        ...
