"""The one analysis pipeline of a stored sweep: every number `fit`, `report`, `compare` and the
app show about a sweep, computed once from the cache at one evaluation step.

Numbers come from gamma_tui.analysis only; this module picks the runs and calls it. The η*
part (the loss grid, η*, η_div and their fits) is analysis.eta_landscape, which the app calls
on its live snapshots too, so both front ends show the same η*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis import (
    BestLoss,
    BudgetEdge,
    CollapseFit,
    EtaPoint,
    LossGrid,
    PowerFit,
    RegimeFits,
    RunCurve,
    best_loss_vs_gamma,
    budget_edge,
    eta_landscape,
    fit_collapse_k,
    fit_power_law,
    fit_regimes,
    loss_grid,
    plateau_time,
)
from gamma_tui.cache import Cache, RunInfo, SweepInfo
from gamma_tui.results import StoredSweep, load_run_curves, stored_sweep
from gamma_tui.states import DIVERGED, DONE

BUDGET_FRACTIONS = (0.1, 0.3, 1.0)
"""Budgets (fractions of the evaluation step) of the best-loss-versus-γ table."""

RICH_GAMMA = 1.0
"""Plateaus, the budget edge's slope-1 law and the collapse are fitted on γ above this."""


@dataclass(frozen=True)
class PlateauPoint:
    """Plateau time t_half at one γ, from the seeds of its best-loss η cell."""

    gamma: float
    eta: float  # the grid η of the cell (the argmin of the seed-mean loss)
    t_half: float | None  # median over seeds that left the plateau; None if none did
    seeds_left: int
    seeds: int


@dataclass(frozen=True, eq=False)
class SweepAnalysis:
    """Everything `fit` and `report` show about one sweep, computed once from the cache."""

    info: SweepInfo
    sweep: StoredSweep  # the sweep's settings, typed
    runs: list[RunInfo]
    curves: list[RunCurve]
    depth: int
    optimizer: str
    step: float  # the evaluation step (the budget T of the η* criterion)
    window: float  # fraction of the step the loss is averaged over (1: the whole run)
    grid: LossGrid
    stars: list[EtaPoint]
    edges: list[EtaPoint]
    star_fit: RegimeFits
    div_fit: RegimeFits
    plateaus: list[PlateauPoint]
    plateau_fit: PowerFit | None
    budget: BudgetEdge
    budget_fit: RegimeFits
    collapse: CollapseFit
    collapse_curves: list[RunCurve]  # seed-mean curves at the best η of each rich γ
    best: dict[int, list[BestLoss]]  # budget steps -> best loss per γ


def analyze(
    cache: Cache, sweep: str, step: float | None = None, window: float | None = None
) -> SweepAnalysis:
    """Run every analysis of the sweep at one evaluation step (default: the sweep's steps) and
    η* window (default: the sweep's [analysis] window)."""
    stored = stored_sweep(cache, sweep)
    runs, curves = load_run_curves(cache, sweep)
    depth, optimizer = stored.depth, stored.optimizer
    if window is None:
        window = stored.window
    at = float(step) if step is not None else float(stored.steps)
    # At the target step, not each run's last record: a run still training has no say yet.
    landscape = eta_landscape(curves, step=at, window=window, depth=depth, optimizer=optimizer)
    best_cells = best_loss_vs_gamma(landscape.grid)
    plateaus = _plateaus(curves, best_cells, at)
    rich_plateaus = [(p.gamma, p.t_half) for p in plateaus if p.gamma > RICH_GAMMA and p.t_half]
    budget = budget_edge(curves, at)
    collapse_curves = _mean_curves(curves, best_cells, at)
    return SweepAnalysis(
        info=stored.info,
        sweep=stored,
        runs=runs,
        curves=curves,
        depth=depth,
        optimizer=optimizer,
        step=at,
        window=window,
        grid=landscape.grid,
        stars=landscape.stars,
        edges=landscape.edges,
        star_fit=landscape.star_fit,
        div_fit=landscape.div_fit,
        plateaus=plateaus,
        plateau_fit=fit_power_law([g for g, _ in rich_plateaus], [t for _, t in rich_plateaus]),
        budget=budget,
        budget_fit=fit_regimes(budget.points, depth=depth, optimizer=optimizer),
        collapse=fit_collapse_k(collapse_curves),
        collapse_curves=collapse_curves,
        best=_best_by_budget(curves, at, window),
    )


def _cell_runs(curves: list[RunCurve], gamma: float, eta: float) -> list[RunCurve]:
    """The runs (all seeds) of one (γ, η) cell."""
    return [c for c in curves if math.isclose(c.gamma, gamma) and math.isclose(c.eta, eta)]


def _plateaus(curves: list[RunCurve], best: list[BestLoss], at: float) -> list[PlateauPoint]:
    """t_half per γ at its best-loss η: the median over the seeds that left the plateau."""
    points = []
    for cell in best:
        if not math.isfinite(cell.eta_at_best):
            continue
        members = _cell_runs(curves, cell.gamma, cell.eta_at_best)
        times = []
        for member in members:
            keep = member.steps <= at
            t_half = plateau_time(member.steps[keep], member.loss[keep])
            if t_half is not None:
                times.append(t_half)
        median = float(np.median(times)) if times else None
        points.append(PlateauPoint(cell.gamma, cell.eta_at_best, median, len(times), len(members)))
    return points


def _mean_curves(curves: list[RunCurve], best: list[BestLoss], at: float) -> list[RunCurve]:
    """Per rich γ, the seed-mean loss curve of its best-loss η cell, up to step `at`."""
    means = []
    for cell in best:
        if cell.gamma <= RICH_GAMMA or not math.isfinite(cell.eta_at_best):
            continue
        members = [
            c
            for c in _cell_runs(curves, cell.gamma, cell.eta_at_best)
            if c.status != DIVERGED and c.steps.size
        ]
        if not members:
            continue
        n = min(c.steps.size for c in members)
        steps = members[0].steps[:n]
        loss = np.mean([np.asarray(c.loss[:n], dtype=np.float64) for c in members], axis=0)
        keep = steps <= at
        means.append(RunCurve(cell.gamma, cell.eta_at_best, 0, DONE, None, steps[keep], loss[keep]))
    return means


def _best_by_budget(curves: list[RunCurve], at: float, window: float) -> dict[int, list[BestLoss]]:
    """Best seed-mean loss per γ (tuned over η) at each budget of BUDGET_FRACTIONS."""
    budgets = sorted({max(1, int(round(at * f))) for f in BUDGET_FRACTIONS})
    return {b: best_loss_vs_gamma(loss_grid(curves, step=b, window=window)) for b in budgets}


# ---------------------------------------------------------------- the fit summary
