"""Training dynamics at fixed settings: the plateau time t_half of a curve and the budget edge,
the largest η whose runs leave the plateau within a step budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis.fits import PowerFit, fit_power_law
from gamma_tui.analysis.grids import (
    NOT_ENOUGH_DATA,
    LossGrid,
    RunCurve,
    _curve,
    _diverged_by,
    _first_finite,
    _index_runs,
)
from gamma_tui.analysis.optimum import EtaPoint

# A run whose last record is this close to a budget counts as having reached it (window centres).
_END_TOLERANCE = 0.05


def plateau_time(
    steps: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    init_loss: float | None = None,
    fraction: float = 0.5,
    smooth: float = 0.05,
) -> float | None:
    """First step where the smoothed loss is below fraction x initial loss; None if never.

    The smoothed loss is the mean of the finite records within +-`smooth` decades of
    log10(1 + step) around each record; the crossing is interpolated in that log time.
    """
    steps_array, loss_array = _curve(steps, loss)
    start = _first_finite(loss_array) if init_loss is None else float(init_loss)
    if steps_array.size == 0 or not (math.isfinite(start) and start > 0):
        return None
    log_time = np.log10(1.0 + np.maximum(steps_array, 0.0))
    smoothed = _smooth(log_time, loss_array, smooth)
    level = fraction * start
    below = smoothed < level
    if not below.any():
        return None
    i = int(np.argmax(below))
    if i == 0 or not np.isfinite(smoothed[i - 1]):
        return float(steps_array[i])
    share = (smoothed[i - 1] - level) / (smoothed[i - 1] - smoothed[i])
    crossing = log_time[i - 1] + share * (log_time[i] - log_time[i - 1])
    return float(10.0**crossing - 1.0)


def _smooth(log_time: np.ndarray, loss: np.ndarray, half_width: float) -> np.ndarray:
    """Running mean of the finite losses within +-half_width of each point's log time."""
    finite = np.isfinite(loss)
    total = np.concatenate([[0.0], np.cumsum(np.where(finite, loss, 0.0))])
    count = np.concatenate([[0], np.cumsum(finite)])
    lo = np.searchsorted(log_time, log_time - half_width, side="left")
    hi = np.searchsorted(log_time, log_time + half_width, side="right")
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[hi] - total[lo]) / n, np.nan)


@dataclass(frozen=True)
class BudgetEdge:
    """Per gamma the smallest eta that leaves the plateau within a budget, and its power law."""

    budget_steps: float
    points: tuple[EtaPoint, ...]
    fit: PowerFit | None  # expected slope 1
    reason: str  # empty when the fit exists


def budget_edge(
    source: LossGrid | Sequence[RunCurve], budget_steps: float, fraction: float = 0.5
) -> BudgetEdge:
    """Smallest eta per gamma whose run leaves the plateau by budget_steps, with a fit.

    From runs, a run leaves when plateau_time <= budget_steps. From a LossGrid (built at
    step=budget_steps), when its loss is below fraction x its initial loss. A cell leaves
    when at least half of its seeds with data do; diverged seeds count as not leaving.
    """
    if isinstance(source, LossGrid):
        gammas, etas = source.gammas, source.etas
        left = ~source.diverged & (source.loss < fraction * source.init_loss)
        has_data = source.diverged | np.isfinite(source.loss)
    else:
        gammas, etas, left, has_data = _leave_flags(source, budget_steps, fraction)
    cell_data = has_data.any(axis=0)
    cell_left = cell_data & (2 * (left & has_data).sum(axis=0) >= has_data.sum(axis=0))
    points = tuple(_lowest_leaving(gammas, etas, cell_left, cell_data))
    usable = [p for p in points if p.ok and not p.at_edge]
    fit = fit_power_law([p.gamma for p in usable], [p.eta for p in usable])
    reason = ""
    if fit is None:
        reason = f"{NOT_ENOUGH_DATA}: {len(usable)} gamma(s) with a bracketed edge, a fit needs 2"
    return BudgetEdge(float(budget_steps), points, fit, reason)


def _leave_flags(
    runs: Sequence[RunCurve], budget_steps: float, fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid axes and (S, G, H) flags: run left the plateau by the budget; run has a verdict."""
    index = _index_runs(runs)
    shape = (index.seeds.size, index.gammas.size, index.etas.size)
    left = np.zeros(shape, dtype=bool)
    has_data = np.zeros(shape, dtype=bool)
    for run, cell in zip(index.runs, index.cells, strict=True):
        has_data[cell], left[cell] = _left_by(run, budget_steps, fraction)
    return index.gammas, index.etas, left, has_data


def _left_by(run: RunCurve, budget_steps: float, fraction: float) -> tuple[bool, bool]:
    """(whether the run has a verdict at the budget, whether it left the plateau by then)."""
    steps, loss = _curve(run.steps, run.loss)
    inside = steps <= budget_steps
    if not inside.any():
        return False, False
    if _diverged_by(run, budget_steps):
        return True, False
    t_half = plateau_time(steps[inside], loss[inside], fraction=fraction)
    left = t_half is not None and t_half <= budget_steps
    # A run still short of the budget has no verdict yet unless it already left.
    reached = steps[inside][-1] >= budget_steps * (1.0 - _END_TOLERANCE)
    return left or reached, left


def _lowest_leaving(
    gammas: np.ndarray, etas: np.ndarray, cell_left: np.ndarray, cell_data: np.ndarray
) -> list[EtaPoint]:
    """Per gamma the smallest eta whose cell left, bracketed if the eta below has data."""
    log10_etas = np.log10(etas)
    points = []
    for g, gamma in enumerate(gammas.tolist()):
        leaving = np.flatnonzero(cell_left[g])
        if leaving.size == 0:
            points.append(EtaPoint(gamma, math.nan, math.nan, at_edge=True, ok=False))
            continue
        h = int(leaving[0])
        below = np.flatnonzero(cell_data[g, :h])  # the nearest smaller η THIS γ has data for
        bracketed = below.size > 0
        gap = float(log10_etas[h] - log10_etas[int(below[-1])]) if bracketed else math.nan
        half = 0.5 * gap if bracketed else 0.0
        points.append(EtaPoint(gamma, float(etas[h]), half, not bracketed, True, gap, half))
    return points
