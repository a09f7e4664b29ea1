"""Adaptive refinement of a sweep's grid ([refine] in a preset): where to add runs next.

After the grid (and each later round) has trained, `propose` reads the sweep's curves and
returns the (γ, η) cells to add. New η lie on a lattice finer than the grid: `n` points per
decade from the grid's first η, the grid's own density times the smallest integer that makes
the step 1/n at most √12 · `eta_precision` (the spacing whose share of the η* interval,
spacing/√12, is the precision). Per γ and round, around η*: one lattice point towards the
optimum (the vertex of the parabola through the η* cell and its neighbours, or the middle of
a gap that ends in divergence), or, when the vertex is at the η* cell, its two lattice
neighbours, until both gaps next to the η* cell are within the precision (or the seed spread,
whichever is wider); the η_div bracket is bisected on the lattice until its half-width is
within the precision or the bracket is one lattice step. With `gamma = true`, a γ column is
added halfway between the columns around the crossover of the lazy and rich fits. Every new
η is made the way the grid makes its own (c = 10^(lo + k/n) rounded, times γ^p for a relative
grid), so a sweep with n points per decade has the same point and shares the run.

Seeds: the grid and the search train the first `explore_seeds` seeds (preset.grid_seeds).
Once a γ's search has settled, its η* cell and both neighbours, and its highest stable η,
get every seed (`confirm`); the η* and η_div that come out are then the full seed mean and
spread where it matters, and a confirmation that moves the optimum or diverges reopens the
search. Why: the cells away from the optimum only steer the search, and one seed steers it as
well as all once the analysis scales a cell by its seeds' offsets (analysis.grids._cell_mean);
the answer needs every seed (README, Refinement). No torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis import RunCurve, eta_star, fit_regimes, loss_grid
from gamma_tui.config import (
    Preset,
    RunSpec,
    depth_label,
    eta_scale,
    eta_values,
    round_grid_value,
    run_spec,
)

# The interval of η* counts the spacing s as s/sqrt(12) (gamma_tui.analysis): a gap next to
# the η* cell is fine once below sqrt(12) times the precision sought.
_SPACING_TO_STD = 1.0 / math.sqrt(12.0)
# A γ column is added at the crossover only if no column is within this many decades of it.
_MIN_GAMMA_GAP = 0.1
_GAMMA_SNAP = 0.05
# Positions in decades are snapped to this grid so that snapped γ are exact.
_DECIMALS = 6
# Lattice positions of present cells within this many steps of an integer are on the lattice.
_ON_LATTICE = 1e-6


Run = tuple[float, float, int]
"""(γ, η, seed) of one run a round adds."""


@dataclass(frozen=True)
class Proposal:
    """The runs one refinement round adds, by what asked for them."""

    eta_star: list[Run]  # explored around η*
    eta_div: list[Run]  # explored inside the bracket of η_div
    gamma: list[Run]  # the cells of new γ columns
    confirm: list[Run]  # the other seeds of the cells that decide η* and η_div

    @property
    def runs(self) -> list[Run]:
        """Every run, confirmations and η* first (they come first when max_runs cuts a round)."""
        return [*self.confirm, *self.eta_star, *self.eta_div, *self.gamma]


@dataclass(frozen=True)
class Lattice:
    """The η positions refinement may add: c = 10^(lo + k/n) for integer k (times γ^p)."""

    lo: float  # log10 of the grid's first η (or c)
    n: int  # points per decade

    @classmethod
    def of(cls, preset: Preset) -> Lattice:
        """The lattice of a preset: the grid's density times the smallest integer fine enough."""
        assert preset.refine is not None
        per_decade = preset.eta.per_decade
        step = preset.refine.eta_precision / _SPACING_TO_STD  # the widest gap that is fine
        factor = max(1, math.ceil(1.0 / (per_decade * step) - 1e-9))
        n = per_decade * factor
        if abs(n - round(n)) > 1e-9:  # a fractional grid density: a lattice of its own
            n = math.ceil(1.0 / step - 1e-9)
        return cls(math.log10(preset.eta.min), int(round(n)))

    def position(self, eta: float, scale: float) -> float:
        """Lattice units of an η in a column of scale γ^p (integers on the lattice)."""
        return (math.log10(eta / scale) - self.lo) * self.n

    def eta(self, k: int, scale: float) -> float:
        """The η at lattice index k, computed exactly as LogRange.values and eta_values do."""
        c = round_grid_value(10 ** (self.lo + k / self.n))
        return c if scale == 1.0 else round_grid_value(c * scale)


def propose(preset: Preset, curves: Sequence[RunCurve]) -> Proposal:
    """The runs the next round adds (none: every γ is known to the precision)."""
    settings = preset.refine
    if settings is None:
        return Proposal([], [], [], [])
    grid = loss_grid(curves, step=float(preset.train.steps), window=preset.analysis.window)
    have = {(_key(r.gamma), _key(r.eta), int(r.seed)) for r in curves}
    cells = {(g, e) for g, e, _ in have}
    lattice = Lattice.of(preset)
    precision = settings.eta_precision
    with np.errstate(invalid="ignore", divide="ignore"):
        log_loss = np.log(grid.mean_loss)  # NaN where a seed diverged or no data
    blocked = grid.diverged.any(axis=0)
    # diverged only for seeds the search does not train: bisecting below it takes every seed
    explore_rows = np.isin(grid.seeds, preset.grid_seeds)
    by_others = blocked & ~grid.diverged[explore_rows].any(axis=0)
    star_cells: list[tuple[float, float]] = []
    div_cells: list[tuple[float, float]] = []
    confirm: list[tuple[float, float]] = []  # η* and its neighbours: every seed
    edge_cells: list[tuple[float, float]] = []  # η_div: the other seeds
    stars = eta_star(grid)
    for g, gamma in enumerate(grid.gammas.tolist()):
        present = np.flatnonzero(np.isfinite(log_loss[g]) | blocked[g])
        if present.size == 0:
            continue
        scale = eta_scale(preset, gamma)
        column = _Column(
            u=np.array([lattice.position(e, scale) for e in grid.etas[present]]),
            log_loss=log_loss[g, present],
            diverged=blocked[g, present],
            by_others=by_others[g, present],
        )
        err = stars[g].log10_eta_err if stars[g].ok else 0.0
        limit = max(precision, err if math.isfinite(err) else 0.0) / _SPACING_TO_STD
        star = _star_steps(column, limit * lattice.n)
        star_cells += [(gamma, lattice.eta(k, scale)) for k in star]
        edge, settled = _div_steps(column, 2 * precision * lattice.n)
        (edge_cells if settled else div_cells).extend((gamma, lattice.eta(k, scale)) for k in edge)
        at = grid.etas[present]
        if not star:
            confirm += [(gamma, float(at[i])) for i in _star_cells(column)]
        if not edge:  # the explore seeds' η_div is settled: is it every seed's?
            edge_cells += [(gamma, float(at[i])) for i in _top_stable(column)]
    gamma_cells = _gamma_columns(preset, stars, grid.gammas) if settings.gamma else []
    explore = preset.grid_seeds
    others = [seed for seed in preset.seeds if seed not in explore]
    return Proposal(
        eta_star=_new(star_cells, explore, have, cells),
        eta_div=_new(div_cells, explore, have, cells),
        gamma=_new(gamma_cells, explore, have, cells),
        confirm=[
            *_new(confirm, preset.seeds, have, cells, fill=True),
            # the explore seeds are stable below their own η_div: only the others are news
            *_new(edge_cells, others, have, cells, fill=True),
            *_new(edge_cells, others, have, cells),
        ],
    )


@dataclass(frozen=True)
class _Column:
    """One γ's present cells in lattice units, ascending: seed-mean log loss, divergence."""

    u: np.ndarray
    log_loss: np.ndarray  # NaN where diverged
    diverged: np.ndarray
    by_others: np.ndarray  # diverged, but not for the explore seeds


def _star_steps(col: _Column, limit: float) -> list[int]:
    """Lattice indices to add around the η* cell (gaps and `limit` in lattice units).

    Nothing once both gaps next to the η* cell (the lowest seed-mean loss) are within `limit`.
    An η* cell at the edge of what the γ has is extended outward by its neighbouring gap. Else
    the target is the vertex of the parabola through the cell and its neighbours (or, when a
    neighbour in a wide gap diverged, the middle of that gap: the optimum may sit just below
    η_div and the point also bisects the η_div bracket): one lattice point towards it inside
    the gap, at least one step from either end; a target at the cell itself closes every wide
    gap with the farthest point still within `limit` of the cell.
    """
    i = _best(col)
    if i is None or col.u.size < 2:
        return []
    finite = np.isfinite(col.log_loss)
    if i in (0, col.u.size - 1):  # unbracketed: step outward by the neighbouring gap
        j = 1 if i == 0 else col.u.size - 2
        return [_snap(col.u[i] + (col.u[i] - col.u[j]))]
    gaps = {-1: col.u[i] - col.u[i - 1], 1: col.u[i + 1] - col.u[i]}
    wide = [side for side, gap in gaps.items() if gap > limit + _ON_LATTICE]
    if not wide:
        return []
    towards_divergence = [side for side in wide if col.diverged[i + side]]
    if towards_divergence:
        side = towards_divergence[0]
        target = col.u[i] + 0.5 * side * gaps[side]
    elif finite[i - 1] and finite[i + 1]:
        target = _vertex(col.u[i - 1 : i + 2], col.log_loss[i - 1 : i + 2])
    else:
        side = max(wide, key=gaps.get)
        target = col.u[i] + 0.5 * side * gaps[side]
    side = int(np.sign(round(target - col.u[i])))
    if side == 0 or side not in wide:  # the optimum is at the cell: close the wide gaps
        reach = max(1, math.floor(limit + _ON_LATTICE))
        return [_snap(col.u[i]) + s * reach for s in wide]
    lo, hi = sorted((col.u[i], col.u[i + side]))
    return [
        int(
            np.clip(
                round(target), math.floor(lo + _ON_LATTICE) + 1, math.ceil(hi - _ON_LATTICE) - 1
            )
        )
    ]


def _div_steps(col: _Column, limit: float) -> tuple[list[int], bool]:
    """The lattice point halfway inside the η_div bracket while it is wider than `limit`, and
    whether it takes every seed.

    The bracket is the highest η with no seed diverged and the nearest diverged η above it;
    a bracket of one lattice step is as fine as the lattice goes. The explore seeds are
    stable anywhere below an η where only the other seeds diverged, so such a bracket is
    bisected with every seed.
    """
    if not (stable := _top_stable(col)):
        return [], False
    top = stable[0]
    above = np.flatnonzero(col.diverged[top + 1 :])
    if above.size == 0:
        return [], False
    upper = top + 1 + int(above[0])
    lo, hi = col.u[top], col.u[upper]
    if hi - lo <= max(limit, 1.0) + _ON_LATTICE:
        return [], False
    inner = (math.floor(lo + _ON_LATTICE) + 1, math.ceil(hi - _ON_LATTICE) - 1)
    return [int(np.clip(round(0.5 * (lo + hi)), *inner))], bool(col.by_others[upper])


def _best(col: _Column) -> int | None:
    """The index of the η* cell (lowest seed-mean loss), None when nothing is finite."""
    finite = np.isfinite(col.log_loss)
    return int(np.argmin(np.where(finite, col.log_loss, np.inf))) if finite.any() else None


def _star_cells(col: _Column) -> list[int]:
    """Indices of the η* cell and its neighbours that did not diverge."""
    if (i := _best(col)) is None:
        return []
    finite = np.isfinite(col.log_loss)
    return [j for j in (i - 1, i, i + 1) if 0 <= j < col.u.size and finite[j]]


def _top_stable(col: _Column) -> list[int]:
    """The index of the highest η no seed diverged at (η_div), if any."""
    stable = np.flatnonzero(np.isfinite(col.log_loss))
    return [int(stable[-1])] if stable.size else []


def _vertex(u: np.ndarray, y: np.ndarray) -> float:
    """Vertex of the parabola through three points; the middle point where it is not convex."""
    (x0, x1, x2), (y0, y1, y2) = u, y
    left, right = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curvature = (right - left) / (x2 - x0)
    if not curvature > 0:
        return float(x1)
    return float(np.clip(0.5 * (x0 + x1) - left / (2.0 * curvature), x0, x2))


def _snap(u: float) -> int:
    """The lattice index nearest a position."""
    return int(round(u))


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


def _key(value: float) -> str:
    """A grid value as a comparable key (12 significant digits, as the analysis groups them)."""
    return f"{float(value):.12g}"


def _new(
    cells: list[tuple[float, float]],
    seeds: Sequence[int],
    have: set[tuple[str, str, int]],
    have_cells: set[tuple[str, str]],
    fill: bool = False,
) -> list[Run]:
    """The runs of `cells` with `seeds` the sweep lacks, each once, in order: of new cells
    only, or (`fill`) of cells it already has."""
    fresh = []
    for gamma, eta in cells:
        cell = (_key(gamma), _key(eta))
        if eta <= 0 or (cell in have_cells) != fill:
            continue
        for seed in seeds:
            if (*cell, seed) not in have:
                have.add((*cell, seed))
                fresh.append((gamma, eta, seed))
        have_cells.add(cell)
    return fresh


def round_specs(preset: Preset, proposal: Proposal, room: int) -> list[RunSpec]:
    """RunSpecs of the proposal's runs, cut to at most `room`."""
    runs = proposal.runs[: max(room, 0)]
    return [run_spec(preset, gamma, eta, seed) for gamma, eta, seed in runs]


def estimate(preset: Preset) -> tuple[int, int]:
    """(about how many runs refinement adds at most, the max_runs cap) for `run --dry-run`.

    Per γ, every lattice point inside the two grid gaps next to the η* cell (the walk towards
    the optimum stays there unless the seeds move η* to another grid cell), one outward step,
    and the bisections of one grid gap down to the lattice step for η_div, each with the
    explore seeds; then the other seeds of the η* cell, its neighbours and the highest stable
    η. The cap bounds it.
    """
    settings = preset.refine
    if settings is None:
        return 0, 0
    lattice = Lattice.of(preset)
    inside = max(round(lattice.n / preset.eta.per_decade) - 1, 0)
    star = 2 * inside + 1
    div = math.ceil(math.log2(inside + 1)) if inside else 0
    explore = len(preset.grid_seeds)
    columns = len(preset.gamma.values()) + (1 if settings.gamma else 0)
    per_column = (star + div) * explore + 4 * (len(preset.seeds) - explore)
    extra_column = len(preset.eta.values()) * explore if settings.gamma else 0
    most = columns * per_column + extra_column
    room = max(settings.max_runs - preset.run_count(), 0)
    return min(most, room), settings.max_runs
