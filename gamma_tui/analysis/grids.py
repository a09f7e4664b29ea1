"""Inputs of the analysis and the loss grid: one run's curve, the runs' states per (γ, η) cell
and the seed-mean loss at a step, averaged over a window of steps.

Also the helpers the other analysis modules read curves with (package-private).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gamma_tui.states import DIVERGED, DONE, FAILED, MISSING, QUEUED, RUN_STATUSES, RUNNING, SKIPPED

STATES = (MISSING, *RUN_STATUSES)
"""Every state a run or a (gamma, eta) cell can be in."""

NOT_ENOUGH_DATA = "not enough data"
"""Prefix of every reason string that explains a missing result."""

# When a cell's seeds disagree, the first state of this list that any seed is in wins.
_STATE_PRECEDENCE = (DIVERGED, FAILED, RUNNING, QUEUED, DONE, SKIPPED)
_STATE_DTYPE = "<U8"


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy fields would be ambiguous
class RunCurve:
    """One run's settings, fate and recorded train-loss curve."""

    gamma: float
    eta: float
    seed: int
    status: str  # one of STATES (never "missing")
    diverged_step: int | None
    steps: np.ndarray  # float64 step positions of the records (increasing; may be window centres)
    loss: np.ndarray  # loss at those positions; may hold NaN/inf near divergence


@dataclass(frozen=True, eq=False)
class LossGrid:
    """Loss of every (seed, gamma, eta) run at one step, with divergence flags and cell states."""

    gammas: np.ndarray  # (G,) ascending
    etas: np.ndarray  # (H,) ascending
    seeds: np.ndarray  # (S,) ascending
    loss: np.ndarray  # (S, G, H) float64; NaN where no data or diverged by the step
    diverged: np.ndarray  # (S, G, H) bool: diverged at or before the step
    init_loss: np.ndarray  # (S, G, H) float64: loss at each run's first finite record
    state: np.ndarray  # (G, H) str: aggregate state of the seeds, diverged wins
    step: float | None  # None: each run's final record

    @property
    def mean_loss(self) -> np.ndarray:
        """(G, H) seed-mean loss (_cell_mean: a cell some seeds lack is scaled by those it
        has); NaN where any seed diverged or none has data."""
        return _cell_mean(self.loss, self.diverged, axis=0)


class _RunIndex(NamedTuple):
    """Runs with usable settings and the (seed, gamma, eta) cell each one fills."""

    runs: list[RunCurve]
    gammas: np.ndarray
    etas: np.ndarray
    seeds: np.ndarray
    cells: list[tuple[int, int, int]]


def loss_grid(
    runs: Sequence[RunCurve], step: float | None = None, window: float = 0.05
) -> LossGrid:
    """Loss at `step` (mean over steps in [step*(1-window), step]) of every run, on a grid."""
    index = _index_runs(runs)
    shape = (index.seeds.size, index.gammas.size, index.etas.size)
    loss = np.full(shape, np.nan)
    init_loss = np.full(shape, np.nan)
    diverged = np.zeros(shape, dtype=bool)
    run_states = np.full(shape, MISSING, dtype=_STATE_DTYPE)
    for run, cell in zip(index.runs, index.cells, strict=True):
        steps, values = _curve(run.steps, run.loss)
        at = float(steps[-1]) if step is None and steps.size else step
        value, saw_bad = _window_value(steps, values, at, window)
        # A non-finite record inside the window is divergence even if the status lags behind.
        gone = saw_bad or _diverged_by(run, step)
        loss[cell] = math.nan if gone else value
        init_loss[cell] = _first_finite(values)
        diverged[cell] = gone
        run_states[cell] = _state_at(run, gone)
    state = _aggregate_states(run_states, shape[1:])
    return LossGrid(index.gammas, index.etas, index.seeds, loss, diverged, init_loss, state, step)


def _index_runs(runs: Sequence[RunCurve]) -> _RunIndex:
    """Sorted unique gammas, etas and seeds of the runs whose gamma and eta are positive."""
    usable = [r for r in runs if _positive(r.gamma) and _positive(r.eta)]
    gammas, gamma_index = _unique_index([float(r.gamma) for r in usable])
    etas, eta_index = _unique_index([float(r.eta) for r in usable])
    seed_values = np.array([int(r.seed) for r in usable], dtype=np.int64)
    seeds, seed_index = np.unique(seed_values, return_inverse=True)
    cells = list(zip(seed_index.tolist(), gamma_index.tolist(), eta_index.tolist(), strict=True))
    return _RunIndex(usable, gammas, etas, seeds, cells)


def _unique_index(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted values and each input's position among them, tolerant of float round-off."""
    # logspace and 10**x disagree in the last bits; 12 significant digits identify a grid point.
    keys = np.array([float(f"{v:.12g}") for v in values], dtype=np.float64)
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, inverse.ravel()


def _positive(value: object) -> bool:
    """Whether value is a finite number above zero."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number > 0


def _curve(steps: object, loss: object) -> tuple[np.ndarray, np.ndarray]:
    """Float64 copies of a recorded curve: equal lengths, finite steps only, sorted by step."""
    steps_array = np.asarray(steps, dtype=np.float64).ravel()
    loss_array = np.asarray(loss, dtype=np.float64).ravel()
    n = min(steps_array.size, loss_array.size)
    steps_array, loss_array = steps_array[:n], loss_array[:n]
    keep = np.isfinite(steps_array)
    steps_array, loss_array = steps_array[keep], loss_array[keep]
    if steps_array.size > 1 and np.any(np.diff(steps_array) < 0):
        order = np.argsort(steps_array, kind="stable")
        steps_array, loss_array = steps_array[order], loss_array[order]
    return steps_array, loss_array


def _first_finite(values: np.ndarray) -> float:
    """First finite entry, NaN if there is none."""
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else math.nan


def _window_value(
    steps: np.ndarray, loss: np.ndarray, at: float | None, window: float
) -> tuple[float, bool]:
    """Mean loss over steps in [at*(1-window), at], and whether a non-finite record was seen."""
    if at is None or steps.size == 0:
        return math.nan, False
    inside = (steps >= at * (1.0 - window)) & (steps <= at)
    if inside.any():
        values = loss[inside]
    elif steps[0] <= at <= steps[-1]:
        # Sparse (log-spaced) records can leave the window empty: use the two neighbours.
        right = int(np.searchsorted(steps, at))
        pair = slice(right - 1, right + 1)
        if not np.all(np.isfinite(loss[pair])):
            return math.nan, True
        return float(np.interp(at, steps[pair], loss[pair])), False
    else:
        return math.nan, False
    if not np.all(np.isfinite(values)):
        return math.nan, True
    return float(values.mean()), False


def _diverged_by(run: RunCurve, step: float | None) -> bool:
    """Whether the run's status says it diverged at or before step (None: ever)."""
    if run.status != DIVERGED:
        return False
    return step is None or run.diverged_step is None or run.diverged_step <= step


def _state_at(run: RunCurve, gone: bool) -> str:
    """The run's state as seen at the grid's step."""
    if gone:
        return DIVERGED
    if run.status == DIVERGED:
        return DONE  # it diverges only later: at this step it is a healthy record
    return run.status if run.status in STATES else MISSING


def _aggregate_states(run_states: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(G, H) cell states from (S, G, H) run states by precedence; diverged wins."""
    state = np.full(shape, MISSING, dtype=_STATE_DTYPE)
    present = {name: (run_states == name).any(axis=0) for name in _STATE_PRECEDENCE}
    for name in reversed(_STATE_PRECEDENCE):  # the highest precedence is written last
        state[present[name]] = name
    # Some seeds done and others still queued is a sweep in progress.
    state[(state == QUEUED) & present[DONE]] = RUNNING
    return state


def _seed_mean(loss: np.ndarray, diverged: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the seed axis of finite losses; NaN where any seed diverged or none is finite."""
    finite = np.isfinite(loss)
    count = finite.sum(axis=axis)
    total = np.where(finite, loss, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    mean[diverged.any(axis=axis) | (count == 0)] = np.nan
    return mean


def _cell_mean(loss: np.ndarray, diverged: np.ndarray, axis: int) -> np.ndarray:
    """Seed-mean loss per (γ, η) cell of (..., seed at `axis`, ..., G, H) arrays.

    A cell with every seed finite is their plain mean. A cell that lacks some seeds (a
    refinement explores with one; a sweep in progress) would be compared on whichever seeds it
    has, and seeds differ a lot: on paper/mlp-L3 seed 0's loss at γ = 1e-3 is e^-1.8 of the seed
    mean. So each present seed's loss is multiplied by its ratio to the seed mean, the geometric
    mean of that ratio over the γ's full cells (no full cell: ratio 1), before averaging.
    NaN where any seed diverged or none is finite.
    """
    finite, blocked = np.isfinite(loss), diverged.any(axis=axis)
    plain = _seed_mean(loss, diverged, axis)
    full = finite.all(axis=axis) & ~blocked  # (..., G, H)
    partial = finite.any(axis=axis) & ~full & ~blocked
    if not partial.any() or not full.any():
        return plain
    with np.errstate(invalid="ignore", divide="ignore"):
        # log(seed mean / seed loss) at full cells, averaged over each row's full cells
        log_ratio = np.where(
            np.expand_dims(full, axis), np.log(np.expand_dims(plain, axis) / loss), 0.0
        )
        n_full = full.sum(axis=-1)  # (..., G)
        mean_ratio = log_ratio.sum(axis=-1) / np.expand_dims(np.maximum(n_full, 1), axis)
        scaled = loss * np.exp(mean_ratio)[..., None]
        corrected = _seed_mean(scaled, diverged, axis)
    use = partial & (n_full > 0)[..., None]
    return np.where(use, corrected, plain)


def _log_seed_mean(
    loss: np.ndarray, diverged: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Natural log of the seed-mean loss (_cell_mean), and where any seed diverged."""
    mean = _cell_mean(loss, diverged, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_mean = np.where(mean > 0, np.log(mean), np.nan)
    return log_mean, np.asarray(diverged.any(axis=axis))
