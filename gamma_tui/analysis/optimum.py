"""η*(γ), the step size of lowest loss, with its bootstrap interval; η_div(γ), the edge of
divergence; and the best loss versus γ tuned over η.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gamma_tui.analysis.grids import LossGrid, _log_seed_mean

# The minimum lies somewhere between the best cell's neighbours: a uniform spread over a gap
# of width s has standard deviation s/sqrt(12) (conservative once the parabola refines it).
_SPACING_STD = 1.0 / math.sqrt(12.0)


@dataclass(frozen=True)
class EtaPoint:
    """A characteristic learning rate at one gamma (eta*, eta_div or the budget edge)."""

    gamma: float
    eta: float  # NaN when not ok
    log10_eta_err: float  # standard error (eta*) or half bracket (eta_div, budget) in decades
    at_edge: bool  # the grid does not bracket the value: only a bound
    ok: bool  # there was data to locate it
    # Decades to the farther of the η values this γ has on either side (NaN: no neighbours).
    log10_spacing: float = math.nan
    # Half-width in decades the value is known to: for η* the seed spread combined with the
    # local spacing, for η_div and the budget edge the half bracket. Fits weight by it.
    log10_interval: float = math.nan


def eta_star(grid: LossGrid, n_boot: int = 200, rng_seed: int = 0) -> list[EtaPoint]:
    """Per gamma the eta minimising log seed-mean loss, parabola-refined, bootstrap error."""
    log10_etas = np.log10(grid.etas)
    log_loss, blocked = _log_seed_mean(grid.loss, grid.diverged, axis=0)
    x_star, at_edge, ok = _refined_argmin(log_loss, log10_etas, blocked)
    errors = _bootstrap_errors(grid, log10_etas, n_boot, rng_seed)
    spacing = _argmin_spacing(log_loss, log10_etas, blocked)
    return [
        EtaPoint(
            gamma=float(grid.gammas[g]),
            eta=float(10.0 ** x_star[g]) if ok[g] else math.nan,
            log10_eta_err=float(errors[g]) if ok[g] else math.nan,
            at_edge=bool(at_edge[g]),
            ok=bool(ok[g]),
            log10_spacing=float(spacing[g]),
            log10_interval=float(math.hypot(errors[g], spacing[g] * _SPACING_STD))
            if ok[g] and math.isfinite(spacing[g])
            else math.nan,
        )
        for g in range(grid.gammas.size)
    ]


def _argmin_spacing(log_loss: np.ndarray, x: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """Per row, decades from the lowest-loss column to the farther of its present neighbours.

    Present columns are the ones the row has data for, so refined rows (irregular η) report
    their own local spacing. NaN where the row has no finite value or no neighbour at all.
    """
    spacing = np.full(log_loss.shape[0], np.nan)
    for r in range(log_loss.shape[0]):
        present = np.flatnonzero(np.isfinite(log_loss[r]) | blocked[r])
        values = log_loss[r, present]
        finite = np.isfinite(values)
        if not finite.any() or present.size < 2:
            continue
        i = int(np.argmin(np.where(finite, values, np.inf)))
        gaps = [x[present[j]] - x[present[j - 1]] for j in (i, i + 1) if 0 < j < present.size]
        spacing[r] = float(max(gaps))
    return spacing


def _refined_argmin(
    log_loss: np.ndarray, x: np.ndarray, blocked: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of (R, H) values: refined x of the minimum, whether unbracketed, whether any data.

    Neighbours are the nearest columns the row has data for (finite or diverged), not the
    adjacent grid columns: with a relative η grid each γ fills only a band of the union of η.
    A diverged neighbour closes the bracket (its loss is effectively infinite).
    """
    rows = log_loss.shape[0]
    x_star = np.full(rows, np.nan)
    unbracketed = np.ones(rows, dtype=bool)
    ok = np.zeros(rows, dtype=bool)
    for r in range(rows):
        present = np.flatnonzero(np.isfinite(log_loss[r]) | blocked[r])
        values = log_loss[r, present]
        finite = np.isfinite(values)
        if not finite.any():
            continue
        ok[r] = True
        i = int(np.argmin(np.where(finite, values, np.inf)))
        x_star[r] = x[present[i]]
        inside = 0 < i < present.size - 1
        unbracketed[r] = not inside
        if inside and finite[i - 1] and finite[i + 1]:
            pick = present[i - 1 : i + 2]
            x_star[r] = _parabola_vertex(tuple(x[pick]), tuple(values[i - 1 : i + 2]), True)
    return x_star, unbracketed, ok


def _parabola_vertex(
    xs: tuple[np.ndarray, np.ndarray, np.ndarray],
    ys: tuple[np.ndarray, np.ndarray, np.ndarray],
    use: np.ndarray | bool,
) -> np.ndarray:
    """Vertex of the parabola through three points where it is convex, else the middle x."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    with np.errstate(all="ignore"):
        slope_left = (y1 - y0) / (x1 - x0)
        slope_right = (y2 - y1) / (x2 - x1)
        curvature = (slope_right - slope_left) / (x2 - x0)
        vertex = 0.5 * (x0 + x1) - slope_left / (2.0 * curvature)
        good = use & (curvature > 0) & np.isfinite(vertex)
        # Never extrapolate beyond the neighbours.
        return np.where(good, np.clip(vertex, np.minimum(x0, x2), np.maximum(x0, x2)), x1)


def _bootstrap_errors(
    grid: LossGrid, log10_etas: np.ndarray, n_boot: int, rng_seed: int
) -> np.ndarray:
    """Per gamma, standard deviation of log10 eta* over seed resamples (0 with one seed)."""
    n_seeds, n_gammas, n_etas = grid.loss.shape
    if n_seeds < 2 or n_boot < 2 or n_etas == 0:
        return np.zeros(n_gammas)
    picks = np.random.default_rng(rng_seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    log_loss, blocked = _log_seed_mean(grid.loss[picks], grid.diverged[picks], axis=1)
    x_star, _, ok = _refined_argmin(
        log_loss.reshape(-1, n_etas), log10_etas, blocked.reshape(-1, n_etas)
    )
    samples = np.where(ok, x_star, np.nan).reshape(n_boot, n_gammas)
    count = np.isfinite(samples).sum(axis=0)
    errors = np.zeros(n_gammas)
    enough = count >= 2
    errors[enough] = np.nanstd(samples[:, enough], axis=0, ddof=1)
    return errors


def eta_div(grid: LossGrid) -> list[EtaPoint]:
    """Per gamma the largest eta at which no seed diverged (ok=False if all or none diverged)."""
    blocked = np.asarray(grid.diverged.any(axis=0))
    stable = np.isfinite(grid.loss).any(axis=0) & ~blocked
    log10_etas = np.log10(grid.etas)
    points = []
    for g, gamma in enumerate(grid.gammas.tolist()):
        stable_at = np.flatnonzero(stable[g])
        if stable_at.size == 0:
            points.append(EtaPoint(gamma, math.nan, math.nan, at_edge=True, ok=False))
            continue
        top = int(stable_at[-1])
        above = np.flatnonzero(blocked[g, top + 1 :])
        if above.size == 0:  # nothing diverged above: the edge lies beyond, eta is a lower bound
            points.append(EtaPoint(gamma, float(grid.etas[top]), 0.0, at_edge=True, ok=False))
            continue
        # the nearest diverged η THIS γ has above its top stable one (η may be irregular)
        gap = float(log10_etas[top + 1 + int(above[0])] - log10_etas[top])
        points.append(
            EtaPoint(gamma, float(grid.etas[top]), 0.5 * gap, False, True, gap, 0.5 * gap)
        )
    return points


class BestLoss(NamedTuple):
    """Lowest seed-mean loss over eta at one gamma, and the eta that reached it."""

    gamma: float
    best_loss: float
    eta_at_best: float


def best_loss_vs_gamma(grid: LossGrid) -> list[BestLoss]:
    """Per gamma the best seed-mean loss over the eta grid (NaN where no cell has data)."""
    mean = grid.mean_loss
    rows = []
    for g, gamma in enumerate(grid.gammas.tolist()):
        finite = np.isfinite(mean[g])
        if not finite.any():
            rows.append(BestLoss(gamma, math.nan, math.nan))
            continue
        best = int(np.argmin(np.where(finite, mean[g], np.inf)))
        rows.append(BestLoss(gamma, float(mean[g, best]), float(grid.etas[best])))
    return rows
