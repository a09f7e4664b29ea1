"""The heatmap layout and the analysis frame of a sweep at one step.

`heat_layout` bins a loss grid's η values into heatmap rows; `compute_frame` runs the
analysis (loss grid, η*(γ), η_div(γ), the regime fits) on a sweep's curves at one step of
the slider, as `gamma-tui fit` does. Both run off the UI thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from gamma_tui.analysis import (
    EtaPoint,
    LossGrid,
    RegimeFits,
    RunCurve,
    eta_landscape,
)
from gamma_tui.report import DEFAULT_WINDOW
from gamma_tui.results import StoredSweep
from gamma_tui.states import DIVERGED, DONE, FAILED, MISSING, QUEUED, RUNNING, SKIPPED

SLIDER_PER_DECADE = 4
"""Step-slider positions per decade of steps."""

MAX_HEAT_ROWS = 200
"""The η axis is binned into at most this many rows."""

STATE_CODES = {
    state: code
    for code, state in enumerate((MISSING, QUEUED, RUNNING, DONE, DIVERGED, FAILED, SKIPPED))
}
"""Small integers for cell states, used by the heatmap renderer."""


FloatOrArray = TypeVar("FloatOrArray", float, np.ndarray)


@dataclass(frozen=True, eq=False)
class HeatLayout:
    """How the grid's η values map onto heatmap rows: η binned by log10, rows bottom-up.

    A relative η grid (η = c·γ^p) gives every γ its own η values; binning by absolute log10 η
    turns them into a band of cells across the (γ, η) plane.
    """

    gammas: np.ndarray  # (G,)
    etas: np.ndarray  # (H,)
    log10_eta_bottom: float  # log10 η at the centre of row 0
    row_step: float  # decades per row
    rows: int
    row_of_eta: np.ndarray  # (H,) int
    present: np.ndarray  # (G, H) bool: the cell has runs

    def row_center(self, row: float) -> float:
        """log10 η at (fractional) row position."""
        return self.log10_eta_bottom + row * self.row_step

    def row_at(self, log10_eta: FloatOrArray) -> FloatOrArray:
        """Fractional row position of a log10 η (a number or an array of them)."""
        return (log10_eta - self.log10_eta_bottom) / self.row_step

    def cell_at(self, g: int, row: int) -> int:
        """η index of the cell of column g at a row, or -1."""
        hits = np.flatnonzero((self.row_of_eta == row) & self.present[g])
        return int(hits[0]) if hits.size else -1

    def rows_of(self, g: int) -> list[int]:
        """Rows that hold a cell in column g, ascending."""
        return sorted({int(self.row_of_eta[h]) for h in np.flatnonzero(self.present[g])})


@dataclass(frozen=True)
class FitSettings:
    """How η*(γ) is chosen and fitted, read from the sweep's config like `gamma-tui fit` reads it
    (report.analyze): the L of the γ^(2/L) law, the optimizer, the [analysis] window."""

    depth: int = 2
    optimizer: str = "sgd"
    window: float = DEFAULT_WINDOW

    @classmethod
    def of(cls, stored: StoredSweep) -> FitSettings:
        """The settings of a stored sweep (defaults where its config says nothing)."""
        return cls(stored.depth, stored.optimizer, stored.window)


@dataclass(frozen=True, eq=False)
class Frame:
    """The analysis of a sweep at one step t: loss grid, η*(γ) and η_div(γ)."""

    sweep: str
    version: int
    step: float | None  # None: each run's latest record
    grid: LossGrid
    eta_star: tuple[EtaPoint, ...]
    eta_div: tuple[EtaPoint, ...]
    log10_loss: np.ndarray  # (G, H) log10 seed-mean loss, NaN where none or diverged
    fits: RegimeFits | None = None  # η*(γ) power laws, lazy and rich (analysis.fit_regimes)
    settings: FitSettings = field(default_factory=FitSettings)


def compute_frame(
    sweep: str,
    version: int,
    curves: Sequence[RunCurve],
    step: float | None,
    settings: FitSettings | None = None,
) -> Frame:
    """The analysis frame of a sweep's curves at `step`.

    η* minimises the loss averaged over [t·(1−window), t] (the sweep's [analysis] window, as
    `gamma-tui fit` does) and its lazy/rich power laws are fitted like report.analyze fits them,
    so at t = the sweep's steps, or at 'latest' once every run reached them, the numbers agree.

    Records after `step` cannot change loss_grid's answer at `step` except the first one (it
    may bracket `step` when the window holds no record), so curves are cut there first: a
    frame early in a long run costs little.
    """
    if step is not None:
        curves = [_cut(curve, step) for curve in curves]
    settings = settings or FitSettings()
    land = eta_landscape(
        curves, step, window=settings.window, depth=settings.depth, optimizer=settings.optimizer
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = land.grid.mean_loss
        log10_loss = np.where(mean > 0, np.log10(mean), np.nan)
    return Frame(
        sweep,
        version,
        step,
        land.grid,
        tuple(land.stars),
        tuple(land.edges),
        log10_loss,
        land.star_fit,
        settings,
    )


def _cut(curve: RunCurve, step: float) -> RunCurve:
    """The curve up to `step` and one record beyond (steps are sorted)."""
    end = int(np.searchsorted(curve.steps, step, side="right")) + 1
    if end >= curve.steps.size:
        return curve
    return replace(curve, steps=curve.steps[:end], loss=curve.loss[:end])


def heat_layout(grid: LossGrid) -> HeatLayout:
    """Bin the grid's η values into rows of equal log10 width (the finest per-γ spacing)."""
    present = grid.state != MISSING
    log10_etas = np.log10(grid.etas) if grid.etas.size else np.zeros(0)
    diffs = [np.diff(log10_etas[np.flatnonzero(row)]) for row in present]
    positive = np.concatenate([d[d > 1e-6] for d in diffs]) if diffs else np.zeros(0)
    step = float(np.min(positive)) if positive.size else 1.0
    if log10_etas.size:
        bottom, span = float(log10_etas.min()), float(np.ptp(log10_etas))
    else:
        bottom, span = 0.0, 0.0
    step = max(step, span / (MAX_HEAT_ROWS - 1), 1e-6)
    row_of_eta = np.round((log10_etas - bottom) / step).astype(int)
    rows = int(row_of_eta.max()) + 1 if row_of_eta.size else 0
    return HeatLayout(grid.gammas, grid.etas, bottom, step, rows, row_of_eta, present)


def slider_steps(total_steps: int) -> tuple[float | None, ...]:
    """Log-spaced step-slider positions from 1 to the sweep's steps, then None (latest)."""
    top = max(1, int(total_steps))
    count = int(math.floor(math.log10(top) * SLIDER_PER_DECADE + 1e-9))
    values = sorted({int(round(10 ** (i / SLIDER_PER_DECADE))) for i in range(count + 1)} | {top})
    return (*(float(v) for v in values), None)
