"""Adaptive refinement of a sweep's grid ([refine] in a preset): where to add runs next.

After the grid (and each later round) has trained, `propose` reads the sweep's curves and
returns the (γ, η) cells to add: η values halfway between existing neighbours around each
γ's η* while its interval exceeds `eta_precision` (and the seed spread does not already
exceed it), halfway inside the bracket of η_div while its half-width exceeds it, and, with
`gamma = true`, a γ column halfway between the columns around the crossover of the lazy and
rich fits. Every new η is made the way the grid makes its own (c rounded, times γ^p for a
relative grid), so a denser sweep that has the same point shares the run. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis import RunCurve, eta_div, eta_star, fit_regimes, loss_grid
from gamma_tui.config import (
    Preset,
    RunSpec,
    depth_label,
    eta_scale,
    eta_values,
    round_grid_value,
    run_spec,
)

# The interval of η* counts the spacing s as s/sqrt(12) (gamma_tui.analysis): refining stops
# once a gap is below sqrt(12) times the precision sought.
_SPACING_TO_STD = 1.0 / math.sqrt(12.0)
# A γ column is added at the crossover only if no column is within this many decades of it.
_MIN_GAMMA_GAP = 0.1
_GAMMA_SNAP = 0.05
# Positions in decades are snapped to this grid so that midpoints of grid points are exact.
_DECIMALS = 6


@dataclass(frozen=True)
class Proposal:
    """The cells one refinement round adds, by what asked for them."""

    eta_star: list[tuple[float, float]]  # (γ, η) around η*
    eta_div: list[tuple[float, float]]  # inside the bracket of η_div
    gamma: list[tuple[float, float]]  # the cells of new γ columns

    @property
    def cells(self) -> list[tuple[float, float]]:
        """All cells, η* first (they come first when max_runs cuts a round short)."""
        return [*self.eta_star, *self.eta_div, *self.gamma]


def propose(preset: Preset, curves: Sequence[RunCurve]) -> Proposal:
    """The cells the next round adds (none: every γ is known to the precision)."""
    settings = preset.refine
    if settings is None:
        return Proposal([], [], [])
    grid = loss_grid(curves, step=float(preset.train.steps), window=preset.analysis.window)
    have = {(_key(r.gamma), _key(r.eta)) for r in curves}
    precision = settings.eta_precision
    star_cells: list[tuple[float, float]] = []
    div_cells: list[tuple[float, float]] = []
    stars, edges = eta_star(grid), eta_div(grid)
    for g, gamma in enumerate(grid.gammas.tolist()):
        present = np.flatnonzero(
            np.isfinite(grid.loss[:, g]).any(axis=0) | grid.diverged[:, g].any(axis=0)
        )
        xs = np.log10(grid.etas[present])
        if xs.size == 0:
            continue
        offset = math.log10(eta_scale(preset, gamma))
        star, edge = stars[g], edges[g]
        if star.ok:
            wanted = _around_star(xs, math.log10(star.eta), star.log10_eta_err, precision)
            star_cells += [(gamma, _eta(x, offset)) for x in wanted]
        if edge.ok and 0.5 * edge.log10_spacing > precision:
            top = math.log10(edge.eta)
            div_cells.append((gamma, _eta(top + 0.5 * edge.log10_spacing, offset)))
    gamma_cells = _gamma_columns(preset, stars, grid.gammas) if settings.gamma else []
    return Proposal(*(_new(cells, have) for cells in (star_cells, div_cells, gamma_cells)))


def _around_star(xs: np.ndarray, x_star: float, seed_err: float, precision: float) -> list[float]:
    """Midpoints of the gaps next to the η* cell that are too wide for the precision.

    The η* cell is the present η nearest the (parabola-refined) η*; a gap is too wide when its
    share of the interval, gap/sqrt(12), exceeds both the precision and the seed spread (once
    the seeds disagree by more, finer η cannot locate the optimum better). An η* at the edge of
    what this γ has is extended by one gap outward.
    """
    err = seed_err if math.isfinite(seed_err) else 0.0
    limit = max(precision, err) / _SPACING_TO_STD
    i = int(np.argmin(np.abs(xs - x_star)))
    wanted = []
    for j in (i - 1, i + 1):
        if 0 <= j < xs.size:
            if abs(xs[j] - xs[i]) > limit:
                wanted.append(0.5 * (xs[i] + xs[j]))
        elif xs.size >= 2:  # unbracketed: step outward by the neighbouring gap
            gap = abs(xs[i] - xs[2 * i - j])
            wanted.append(xs[i] + (gap if j > i else -gap))
    return wanted


def _gamma_columns(preset: Preset, stars: list, gammas: np.ndarray) -> list[tuple[float, float]]:
    """The cells of a γ column at the crossover of the lazy and rich fits of η*.

    The crossing is snapped to a multiple of _GAMMA_SNAP decades (so later rounds propose the
    same column) and added only if no column lies within _MIN_GAMMA_GAP decades of it.
    """
    fits = fit_regimes(stars, depth=depth_label(preset.network), optimizer=preset.train.optimizer)
    crossing = fits.crossover_gamma
    logs = np.log10(gammas)
    if crossing is None or logs.size < 2:
        return []
    x = round(math.log10(crossing) / _GAMMA_SNAP) * _GAMMA_SNAP
    if not logs.min() < x < logs.max() or np.min(np.abs(logs - x)) <= _MIN_GAMMA_GAP:
        return []  # outside the swept γ range, or a column is already there
    gamma = round_grid_value(10.0 ** round(x, _DECIMALS))
    return [(gamma, eta) for eta in eta_values(preset, gamma)]


def _eta(x_c: float, offset: float) -> float:
    """The η at log10 position `x_c`, made as the grid makes it: c rounded, times γ^p.

    `offset` is log10 γ^p of the column (0 for an absolute grid).
    """
    c = round_grid_value(10.0 ** round(x_c - offset, _DECIMALS))
    return round_grid_value(c * 10.0**offset)


def _key(value: float) -> str:
    """A grid value as a comparable key (12 significant digits, as the analysis groups them)."""
    return f"{float(value):.12g}"


def _new(cells: list[tuple[float, float]], have: set[tuple[str, str]]) -> list[tuple[float, float]]:
    """The cells not yet in the sweep, each once, in order."""
    fresh = []
    for gamma, eta in cells:
        key = (_key(gamma), _key(eta))
        if key not in have and eta > 0:
            have.add(key)
            fresh.append((gamma, eta))
    return fresh


def round_specs(preset: Preset, proposal: Proposal, room: int) -> list[RunSpec]:
    """RunSpecs of the proposal's cells (every seed), cut to at most `room` runs."""
    seeds = len(preset.seeds)
    cells = proposal.cells[: max(room, 0) // seeds]
    return [run_spec(preset, gamma, eta, seed) for gamma, eta in cells for seed in preset.seeds]


def rounds_needed(gap: float, limit: float) -> int:
    """Halvings that bring a gap of `gap` decades to at most `limit`."""
    return max(0, math.ceil(math.log2(gap / limit))) if gap > limit > 0 else 0


def estimate(preset: Preset) -> tuple[int, int]:
    """(at most how many runs refinement adds, the max_runs cap) for `run --dry-run`.

    Per γ, the η* cell's two gaps and the η_div bracket start at the grid's spacing and halve
    each round until within the precision; the cap bounds the total.
    """
    settings = preset.refine
    if settings is None:
        return 0, 0
    gap = 1.0 / preset.eta.per_decade
    star = 2 * rounds_needed(gap, settings.eta_precision / _SPACING_TO_STD)
    div = rounds_needed(gap, 2.0 * settings.eta_precision)
    columns = len(preset.gamma.values()) + (1 if settings.gamma else 0)
    per_column = (star + div) * len(preset.seeds)
    extra_column = len(preset.eta.values()) * len(preset.seeds) if settings.gamma else 0
    most = columns * per_column + extra_column
    room = max(settings.max_runs - preset.run_count(), 0)
    return min(most, room), settings.max_runs
