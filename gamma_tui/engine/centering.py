"""Where γ enters: the centered output of an ensemble and every per-member vector around it.

The members of a family compute f_mu(x; θ) (parameterization.py and the families behind
family.Family). The network the paper trains is

    f(x) = (f_mu(x; θ) - f_mu(x; θ0)) / γ

with θ0 a frozen copy of the member's initial draw (its seed's), so f = 0 at step 0 for every
γ. `CenteredEnsemble` owns everything that makes one member differ from another beyond its
parameters: γ, the step size, the frozen init (one member per distinct seed, shared by all
members with that seed) and each member's row in it, the optimizer's state, and the frozen
outputs on the held-out set. `select` and `extend` change all of it at once, so the rows can
never fall out of step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch

from gamma_tui.engine.data import TestSet
from gamma_tui.engine.family import Ensemble, Family, GradientEnsemble
from gamma_tui.engine.optimizers import EnsembleOptimizer, step_sizes
from gamma_tui.engine.parameterization import (
    centered_output,
    held_out_loss_sum,
    loss_and_grad,
)

EVAL_CHUNK = 1000
"""Held-out samples per forward at most (the reference's test batch), and at most 4 training
batches, which the memory plan already allows for. The test set is cut into equal chunks (sizes
differ by at most one), so BatchNorm models, which normalize each chunk by its statistics, never
see a tiny remainder."""


@dataclass(frozen=True)
class HeldOut:
    """The held-out set and the (first, last) sample ranges it is evaluated in."""

    data: TestSet
    chunks: list[tuple[int, int]]

    @classmethod
    def of(cls, data: TestSet, batch_size: int) -> HeldOut:
        """`data` cut into equal chunks of at most EVAL_CHUNK and 4 training batches."""
        size = data.x.shape[0]
        count = -(-size // min(EVAL_CHUNK, 4 * batch_size))
        chunks = [(int(c[0]), int(c[-1]) + 1) for c in torch.arange(size).tensor_split(count)]
        return cls(data, chunks)


@dataclass(frozen=True)
class Newcomers:
    """Members about to join: their parameters, optimizer checkpoints and γ, η, seed."""

    params: list[list[torch.Tensor]]  # per member, as Family.init returns them
    saved: list[dict[str, torch.Tensor] | None]  # optimizer state from a checkpoint, or None
    gammas: list[float]
    etas: list[float]
    seeds: list[int]


class CenteredEnsemble:
    """E members of one family with their γ, step sizes, frozen inits and optimizer state."""

    def __init__(
        self,
        family: Family,
        optimizer: str,
        loss: str,
        dtype: torch.dtype,
        device: torch.device,
        held_out: HeldOut | None,
        compile_mode: str | None = None,
    ) -> None:
        """An empty ensemble; members join through `extend`. `optimizer` is 'sgd',
        'signsgd' or 'adam'; `loss` 'mse' or 'xent'; `compile_mode` a torch.compile mode for
        the gradient step, or None for eager code."""
        self.family, self.optimizer_kind, self.loss = family, optimizer, loss
        self.dtype, self.device, self.held_out = dtype, device, held_out
        self.model: Ensemble[Any] | None = None
        self.optimizer: EnsembleOptimizer | None = None
        empty = torch.empty(0, dtype=dtype, device=device)
        self.gamma, self.step_size, self.unit_rate = empty, empty, empty
        self.member_seeds: list[int] = []
        self.seed_index = torch.empty(0, dtype=torch.long, device=device)
        self.frozen: Ensemble[Any] | None = None
        self.held_out_f0: torch.Tensor | None = None
        self._gradient_step: Callable[
            [torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]
        ] = self.gradient_step
        if compile_mode is not None:
            self._gradient_step = torch.compile(self.gradient_step, dynamic=None, mode=compile_mode)

    @property
    def size(self) -> int:
        """Number of members E."""
        return 0 if self.model is None else self.model.size

    @property
    def params(self) -> list[torch.Tensor]:
        """The members' stacked parameters."""
        assert self.model is not None
        return self.model.params

    # ---- membership ----------------------------------------------------------------------

    def extend(self, newcomers: Newcomers) -> None:
        """Append members: parameters, optimizer state, γ, step size and seed rows."""
        model = self.family.ensemble(self._stack(newcomers.params))
        state = None
        if self.optimizer_kind != "sgd":
            if not isinstance(model, GradientEnsemble):
                raise TypeError(
                    f"{type(model).__name__} gives no gradients for {self.optimizer_kind}"
                )
            state = EnsembleOptimizer.restore(self.optimizer_kind, model.params, newcomers.saved)
        if self.model is None:
            self.model, self.optimizer = model, state
        else:
            self.model.extend(model)
            if self.optimizer is not None and state is not None:
                self.optimizer.extend(state)
        gamma = torch.tensor(newcomers.gammas, dtype=self.dtype, device=self.device)
        rates = step_sizes(self.optimizer_kind, newcomers.etas, self.family.width)
        step_size = torch.tensor(rates, dtype=self.dtype, device=self.device)
        self.gamma = torch.cat([self.gamma, gamma])
        self.step_size = torch.cat([self.step_size, step_size])
        self.unit_rate = torch.ones_like(self.step_size)
        self.member_seeds = self.member_seeds + newcomers.seeds
        self._freeze()

    def _freeze(self) -> None:
        """The frozen inits of the members' distinct seeds, each member's row among them, and
        their outputs on the held-out set, chunk by chunk."""
        seeds = sorted(set(self.member_seeds))
        self.frozen = self.family.ensemble(self._stack([self.family.init(s) for s in seeds]))
        rows = [seeds.index(seed) for seed in self.member_seeds]
        self.seed_index = torch.tensor(rows, device=self.device)
        if self.held_out is not None:
            x = self.held_out.data.x
            with torch.no_grad():
                self.held_out_f0 = torch.cat(
                    [self.frozen.predict(x[a:b]) for a, b in self.held_out.chunks], dim=1
                )

    def select(self, keep: list[int]) -> None:
        """Keep only the members at indices `keep`: parameters, optimizer state and vectors.

        The frozen inits stay as they are (a departed member's seed costs one frozen forward
        per step until the next `extend` rebuilds them).
        """
        assert self.model is not None
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.model.select(index)
        if self.optimizer is not None:
            self.optimizer.select(index)
        self.gamma = self.gamma.index_select(0, index)
        self.step_size = self.step_size.index_select(0, index)
        self.unit_rate = self.unit_rate.index_select(0, index)
        self.seed_index = self.seed_index.index_select(0, index)
        self.member_seeds = [self.member_seeds[i] for i in keep]

    def _stack(self, tensors: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Stack per-member parameter lists into ensemble tensors on the device."""
        return [
            torch.stack(group).to(device=self.device, dtype=self.dtype).contiguous()
            for group in zip(*tensors, strict=True)
        ]

    # ---- training and evaluation ---------------------------------------------------------

    def step(self, x: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        """One training step on the batch (x, target); returns every member's loss (E,).
        `step` is the update's index (Adam's bias correction)."""
        value, grads = self._gradient_step(x, target)
        if self.optimizer is not None:
            with torch.no_grad():
                self.optimizer.step(self.params, grads, self.step_size, step)
        return value

    def gradient_step(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Losses (E,) of the centered output; SGD moves the parameters here, other optimizers
        get the gradients back (their update needs the step count, kept out of compiled code)."""
        model, frozen = self.model, self.frozen
        assert model is not None and frozen is not None
        f_mu, context = model.forward(x)
        with torch.no_grad():  # autograd models: only the members' forward is a graph
            f_mu0 = frozen.predict(x).index_select(0, self.seed_index)
            # SGD: the step size rides in the output gradient; other optimizers take it later
            rate = self.step_size if self.optimizer is None else self.unit_rate
            value, grad = loss_and_grad(f_mu, f_mu0, self.gamma, rate, target, self.loss)
        if self.optimizer is None:
            model.sgd_step(x, context, grad)
            return value, []
        return value, cast("GradientEnsemble[Any]", model).gradients(x, context, grad)

    def evaluate(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every member's held-out loss (E,) and accuracy (E,) (None without classes)."""
        held_out, model, f0_all = self.held_out, self.model, self.held_out_f0
        assert held_out is not None and model is not None and f0_all is not None
        test = held_out.data
        size = test.x.shape[0]
        # sums in the run's dtype: float64 would not exist on Apple MPS
        total = torch.zeros(model.size, dtype=self.dtype, device=self.device)
        correct = torch.zeros_like(total)
        gamma = self.gamma
        with torch.no_grad():
            for first, last in held_out.chunks:
                f0 = f0_all[:, first:last].index_select(0, self.seed_index)
                f = centered_output(model.predict(test.x[first:last]), f0, gamma)
                total += held_out_loss_sum(f, test.target[first:last], self.loss)
                if test.classes is not None:
                    hits = f.argmax(dim=2) == test.classes[first:last]
                    correct += hits.sum(dim=1)
        return total / size, None if test.classes is None else correct / size
