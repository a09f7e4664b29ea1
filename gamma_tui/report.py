"""Text reports of a sweep for the CLI: the final-loss heatmap and the η*(γ) fit summary.

Numbers come from gamma_tui.analysis only; this module picks the runs, calls it and formats
the results. `analyze` computes everything once; `fit_summary` (the `fit --json` payload),
`fit_text` and gamma_tui.figures all read that one object, so they always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
    eta_div,
    eta_star,
    fit_collapse_k,
    fit_power_law,
    fit_regimes,
    loss_grid,
    plateau_time,
)
from gamma_tui.cache import Cache, RunInfo, SweepInfo
from gamma_tui.config import predicted_eta_exponent, sweep_depth_label, sweep_optimizer
from gamma_tui.results import load_run_curves

CELL_MARKS = {
    "diverged": "DIV",
    "queued": "q",
    "running": "r",
    "failed": "FAIL",
    "skipped": "-",
    "missing": " ",
}

DEFAULT_WINDOW = 0.05
"""η* criterion by default: the loss averaged over the last 5% of the steps up to the budget."""

BUDGET_FRACTIONS = (0.1, 0.3, 1.0)
"""Budgets (fractions of the evaluation step) of the best-loss-versus-γ table."""

INIT_TOLERANCE = 1e-5
"""Largest relative spread of the step-0 losses that passes the centering check."""

RICH_GAMMA = 1.0
"""Plateaus, the budget edge's slope-1 law and the collapse are fitted on γ above this."""


# ---------------------------------------------------------------- the heatmap


def heatmap_text(cache: Cache, sweep: str) -> str:
    """log10 final loss per (η row, γ column); η* of each column marked with '*'."""
    info = cache.sweep(sweep)
    _, curves = load_run_curves(cache, sweep)
    grid = loss_grid(curves)
    if grid.gammas.size == 0:
        return f"{sweep}: no runs"
    relative = info.config.get("eta", {}).get("scale") == "relative"
    depth, optimizer = sweep_depth_label(info.config), sweep_optimizer(info.config)
    mean = grid.mean_loss
    label = "c = η/γ^p" if relative else "η"
    header = f"{label:>11} │" + "".join(f"{_fmt(g):>8}" for g in grid.gammas)
    lines = [
        f"{sweep}: log10 loss at the last step (mean over seeds), γ across, η down",
        header,
        "─" * len(header),
    ]
    best = _best_index(mean)
    scales = [
        g ** predicted_eta_exponent(g, depth, optimizer) if relative else 1.0
        for g in grid.gammas.tolist()
    ]
    for name, column in _rows(grid, scales):
        cells = [_cell(grid, mean, g, h, h is not None and best[g] == h) for g, h in column]
        lines.append(f"{_fmt(name):>11} │" + "".join(cells))
    stars = eta_star(grid)
    lines.append("─" * len(header))
    lines.append(f"{'η*':>11} │" + "".join(f"{_fmt(p.eta) if p.ok else '?':>8}" for p in stars))
    lines.append("'*' marks the lowest-loss η of each γ; DIV diverged, q queued, r running")
    return "\n".join(lines)


def _rows(grid: LossGrid, scales: list[float]) -> list[tuple[float, list[tuple[int, int | None]]]]:
    """Heatmap rows, largest first: (η, or c = η/γ^p, and per γ (g, its η index there or None)).

    A row is every η (or c) some column has runs at, so a refined column's extra cells sit
    between the grid's rows at their true value instead of shifting the column up.
    """
    present = grid.state != "missing"
    rows: dict[float, dict[int, int]] = {}
    for g, scale in enumerate(scales):
        for h in np.flatnonzero(present[g]).tolist():
            key = round(math.log10(grid.etas[h] / scale), 6)  # c of a relative grid, else η
            rows.setdefault(key, {})[g] = h
    return [
        (10.0**key, [(g, rows[key].get(g)) for g in range(len(scales))])
        for key in sorted(rows, reverse=True)
    ]


def _best_index(mean: np.ndarray) -> list[int | None]:
    """Per γ the η index of the lowest finite mean loss."""
    best: list[int | None] = []
    for row in mean:
        finite = np.isfinite(row)
        best.append(int(np.nanargmin(np.where(finite, row, np.inf))) if finite.any() else None)
    return best


def _cell(grid: LossGrid, mean: np.ndarray, g: int, h: int | None, best: bool) -> str:
    """One 8-character heatmap cell."""
    if h is None:
        return " " * 8
    state = str(grid.state[g, h])
    value = mean[g, h]
    if state == "diverged" or state != "done" and not math.isfinite(value):
        return f"{CELL_MARKS.get(state, '?'):>8}"
    text = f"{math.log10(value):.2f}" if value > 0 else "-inf"
    return f"{text + ('*' if best else ' '):>8}"


def _fmt(value: float) -> str:
    """Compact number of at most 7 characters: 1.0e-03, 0.316, 31.6, 3.2e+03."""
    if not math.isfinite(value):
        return "nan"
    return f"{value:.3g}" if 1e-2 <= abs(value) < 1e3 else f"{value:.1e}"


# ---------------------------------------------------------------- one analysis of a sweep


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
    """Run every analysis of the sweep at one evaluation step (default: the sweep's steps)."""
    info = cache.sweep(sweep)
    runs, curves = load_run_curves(cache, sweep)
    depth = sweep_depth_label(info.config)
    optimizer = sweep_optimizer(info.config)
    if window is None:
        window = float(info.config.get("analysis", {}).get("window", DEFAULT_WINDOW))
    at = float(step) if step is not None else float(info.steps)
    # At the target step, not each run's last record: a run still training has no say yet.
    grid = loss_grid(curves, step=at, window=window)
    stars, edges = eta_star(grid), eta_div(grid)
    best_cells = best_loss_vs_gamma(grid)
    plateaus = _plateaus(curves, best_cells, at)
    rich_plateaus = [(p.gamma, p.t_half) for p in plateaus if p.gamma > RICH_GAMMA and p.t_half]
    budget = budget_edge(curves, at)
    collapse_curves = _mean_curves(curves, best_cells, at)
    return SweepAnalysis(
        info=info,
        runs=runs,
        curves=curves,
        depth=depth,
        optimizer=optimizer,
        step=at,
        window=window,
        grid=grid,
        stars=stars,
        edges=edges,
        star_fit=fit_regimes(stars, depth=depth, optimizer=optimizer),
        div_fit=fit_regimes(edges, depth=depth, optimizer=optimizer),
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
            if c.status != "diverged" and c.steps.size
        ]
        if not members:
            continue
        n = min(c.steps.size for c in members)
        steps = members[0].steps[:n]
        loss = np.mean([np.asarray(c.loss[:n], dtype=np.float64) for c in members], axis=0)
        keep = steps <= at
        means.append(
            RunCurve(cell.gamma, cell.eta_at_best, 0, "done", None, steps[keep], loss[keep])
        )
    return means


def _best_by_budget(curves: list[RunCurve], at: float, window: float) -> dict[int, list[BestLoss]]:
    """Best seed-mean loss per γ (tuned over η) at each budget of BUDGET_FRACTIONS."""
    budgets = sorted({max(1, int(round(at * f))) for f in BUDGET_FRACTIONS})
    return {b: best_loss_vs_gamma(loss_grid(curves, step=b, window=window)) for b in budgets}


# ---------------------------------------------------------------- the fit summary


def fit_summary(
    cache: Cache, sweep: str, step: float | None = None, window: float | None = None
) -> dict[str, Any]:
    """η*(γ), η_div(γ) and their lazy/rich slopes, plateaus, budget edge, collapse, best loss
    versus γ and the step-0 loss check, as plain JSON-ready data.

    η* minimises the loss averaged over steps [step·(1−window), step] (step: the sweep's
    steps when None); window = 1 averages the whole run (the mean online loss).
    """
    return summary_of(analyze(cache, sweep, step, window))


def summary_of(result: SweepAnalysis) -> dict[str, Any]:
    """The JSON-ready summary of an analysis (see fit_summary)."""
    star_fit, div_fit = result.star_fit, result.div_fit
    return {
        "sweep": result.info.name,
        "depth": result.depth,
        "steps": result.info.steps,
        "runs": len(result.runs),
        "counts": result.info.counts,
        "criterion": _criterion(result),
        "eta_star": [_point(p) for p in result.stars],
        "eta_div": [_point(p) for p in result.edges],
        "lazy": _regime(star_fit.lazy, star_fit.theory_lazy, _reason_for(star_fit.reason, "lazy")),
        "rich": _regime(star_fit.rich, star_fit.theory_rich, _reason_for(star_fit.reason, "rich")),
        "crossover_gamma": _num(star_fit.crossover_gamma),
        "eta_div_fit": {
            "lazy": _regime(div_fit.lazy, div_fit.theory_lazy, _reason_for(div_fit.reason, "lazy")),
            "rich": _regime(div_fit.rich, div_fit.theory_rich, _reason_for(div_fit.reason, "rich")),
        },
        "plateau": _plateau_summary(result),
        "budget_edge": _budget_summary(result),
        "collapse": _collapse_summary(result),
        "best_loss": _best_summary(result),
        "init_loss": _init_summary(result),
    }


def _criterion(result: SweepAnalysis) -> dict[str, Any]:
    """How η* was chosen, as numbers and one sentence."""
    if result.window >= 1.0:
        text = f"mean loss over steps 0..{result.step:g} (the whole run)"
    else:
        text = f"mean loss over steps {result.step * (1 - result.window):g}..{result.step:g}"
    return {"step": result.step, "window": result.window, "text": text}


def _reason_for(reason: str, regime: str) -> str:
    """The parts of a RegimeFits reason that concern one regime (or all of it if none does)."""
    parts = [part for part in reason.split("; ") if f" {regime} " in part]
    return "; ".join(parts) if parts else reason


def _num(value: float | None) -> float | None:
    """JSON has no NaN/inf: such values become null."""
    return value if value is not None and math.isfinite(value) else None


def _point(p: EtaPoint) -> dict[str, Any]:
    """One EtaPoint as JSON."""
    return {
        "gamma": p.gamma,
        "eta": _num(p.eta),
        "log10_eta_err": _num(p.log10_eta_err) if p.ok else None,
        "at_edge": p.at_edge,
        "ok": p.ok,
    }


def _regime(fit: PowerFit | None, theory: float, reason: str) -> dict[str, Any]:
    """A power-law fit as JSON next to its theory slope, or why it is missing."""
    if fit is None:
        return {"slope": None, "theory": _num(theory), "reason": reason}
    return {
        "slope": fit.slope,
        "ci95": _num(fit.slope_ci95),
        "n": fit.n,
        "r2": _num(fit.r2),
        "intercept": fit.intercept,
        "theory": _num(theory),
    }


def _plateau_summary(result: SweepAnalysis) -> dict[str, Any]:
    """t_half per γ at the best η and its power law for γ > RICH_GAMMA (theory 1 − 2/L)."""
    fit = _regime(result.plateau_fit, 1.0 - 2.0 / max(result.depth, 1), "")
    if result.plateau_fit is None:
        fit["reason"] = "not enough data: needs t_half at >= 2 rich γ"
    return {
        "points": [
            {
                "gamma": p.gamma,
                "eta": p.eta,
                "t_half": p.t_half,
                "seeds_left": p.seeds_left,
                "seeds": p.seeds,
            }
            for p in result.plateaus
        ],
        "fit": fit,
        "note": "theory t_half ~ γ^(1-2/L) at η ~ γ^(2/L) (L >= 3); ~ ln γ for L = 2",
    }


def _budget_summary(result: SweepAnalysis) -> dict[str, Any]:
    """Smallest η that leaves the plateau by the budget, per γ, with lazy and rich slopes."""
    fits = result.budget_fit
    return {
        "budget_steps": result.budget.budget_steps,
        "points": [_point(p) for p in result.budget.points],
        "lazy": _regime(fits.lazy, 2.0, _reason_for(fits.reason, "lazy")),
        "rich": _regime(fits.rich, 1.0, _reason_for(fits.reason, "rich")),
    }


def _collapse_summary(result: SweepAnalysis) -> dict[str, Any]:
    """k of x = t·η·γ^(−k) collapsing the rich curves at the best η (theory 1), and its score."""
    fit = result.collapse
    return {
        "gammas": [c.gamma for c in result.collapse_curves],
        "k": _num(fit.k),
        "k_lo": _num(fit.k_lo),
        "k_hi": _num(fit.k_hi),
        "score": _num(fit.score),
        "spread": _num(fit.spread),
        "raw_spread": _num(fit.raw_spread),
        "n_curves": fit.n_curves,
        "theory": 1.0,
        "reason": fit.reason,
    }


def _best_summary(result: SweepAnalysis) -> dict[str, Any]:
    """Best seed-mean loss over η per γ, one table per budget."""
    return {
        str(budget): [
            {"gamma": row.gamma, "loss": _num(row.best_loss), "eta": _num(row.eta_at_best)}
            for row in rows
        ]
        for budget, rows in result.best.items()
    }


def _init_summary(result: SweepAnalysis) -> dict[str, Any]:
    """The centering check: every run's loss at step 0 is the mean of y² over the first batch."""
    init = np.array([r.init_loss for r in result.runs if r.init_loss is not None], dtype=float)
    data = result.info.config.get("data", {})
    expected = float(data.get("target", 1.0)) ** 2 if data.get("kind") == "scalar" else None
    if not init.size:
        return {
            "runs": 0,
            "value": None,
            "min": None,
            "max": None,
            "max_relative_spread": None,
            "expected": expected,
            "ok": None,
        }
    mean = float(init.mean())
    spread = float(np.ptp(init) / abs(mean)) if mean else math.inf
    ok = spread <= INIT_TOLERANCE
    if expected is not None:
        ok = ok and abs(mean - expected) <= INIT_TOLERANCE * abs(expected)
    return {
        "runs": int(init.size),
        "value": mean,
        "min": float(init.min()),
        "max": float(init.max()),
        "max_relative_spread": _num(spread),
        "expected": expected,
        "ok": bool(ok),
    }


# ---------------------------------------------------------------- the summary as text


def fit_text(summary: dict[str, Any]) -> str:
    """The fit summary as an aligned text report."""
    sections = (
        _header_text,
        _eta_table_text,
        _slopes_text,
        _plateau_text,
        _budget_text,
        _collapse_text,
        _best_text,
        _init_text,
    )
    return "\n".join(line for section in sections for line in section(summary))


def _header_text(summary: dict[str, Any]) -> list[str]:
    """Sweep, depth, size and the η* criterion."""
    return [
        f"{summary['sweep']}: L = {summary['depth']}, {summary['runs']} runs, "
        f"{summary['steps']} steps",
        f"η* criterion: {summary['criterion']['text']}, mean over seeds",
    ]


def _eta_table_text(summary: dict[str, Any]) -> list[str]:
    """The per-γ table of η* and η_div."""
    lines = [f"{'γ':>10} {'η*':>10} {'±dec':>6} {'η_div':>10}"]
    for star, div in zip(summary["eta_star"], summary["eta_div"], strict=True):
        err = star["log10_eta_err"]
        lines.append(
            f"{_fmt(star['gamma']):>10} {_edge(star)}{_opt(star['eta']):>9} "
            f"{'' if err is None else f'{err:.2f}':>5} {_edge(div)}{_opt(div['eta']):>9}"
        )
    lines.append("('~' marks a value at the edge of the grid: only a bound, not used in fits)")
    return lines


def _slopes_text(summary: dict[str, Any]) -> list[str]:
    """Fitted slopes of η* and η_div next to theory, and the crossover."""
    lines = []
    for regime in ("lazy", "rich"):
        lines.append(_slope_line(f"{regime} slope of η*", summary[regime]))
    for regime in ("lazy", "rich"):
        lines.append(_slope_line(f"{regime} slope of η_div", summary["eta_div_fit"][regime]))
    crossover = summary["crossover_gamma"]
    lines.append(f"crossover γ ≈ {crossover:.3g}" if crossover else "crossover γ: none")
    return lines


def _slope_line(name: str, fit: dict[str, Any]) -> str:
    """One fitted slope with its 95% interval next to theory, or why it is missing."""
    if fit["slope"] is None:
        return f"{name}: not enough data ({fit.get('reason') or 'no points'})"
    ci = "" if fit["ci95"] is None else f" ± {fit['ci95']:.2f}"
    theory = "" if fit["theory"] is None else f"theory {fit['theory']:.2f}, "
    return f"{name}: {fit['slope']:.2f}{ci} ({theory}{fit['n']} points)"


def _plateau_text(summary: dict[str, Any]) -> list[str]:
    """Plateau times at the best η and their scaling with γ."""
    plateau = summary["plateau"]
    times = " ".join(f"{_fmt(p['gamma'])}:{_opt(p['t_half'])}" for p in plateau["points"])
    return [
        f"plateau t_half at the best η (γ:steps): {times}",
        _slope_line(f"plateau t_half vs γ (γ > {RICH_GAMMA:g})", plateau["fit"])
        + (" [L = 2: t_half ~ ln γ, no power law]" if summary["depth"] == 2 else ""),
    ]


def _budget_text(summary: dict[str, Any]) -> list[str]:
    """Slopes of the budget edge."""
    budget = summary["budget_edge"]
    name = f"budget edge (smallest η leaving the plateau by step {budget['budget_steps']:g})"
    return [
        _slope_line(f"{name}, rich slope", budget["rich"]),
        _slope_line(f"{name}, lazy slope", budget["lazy"]),
    ]


def _collapse_text(summary: dict[str, Any]) -> list[str]:
    """The collapse exponent k, its interval and its quality score."""
    collapse = summary["collapse"]
    if collapse["k"] is None:
        return [f"collapse of the rich curves at η*: {collapse['reason']}"]
    score = "nan" if collapse["score"] is None else f"{collapse['score']:.2f}"
    return [
        f"collapse of {collapse['n_curves']} rich curves at η* in x = t·η·γ^(-k): "
        f"k = {collapse['k']:.2f} [{collapse['k_lo']:.2f}, {collapse['k_hi']:.2f}] "
        f"(theory 1), quality score {score} (1 - spread/raw spread)"
    ]


def _best_text(summary: dict[str, Any]) -> list[str]:
    """Best loss over η per γ, one column per budget."""
    tables = summary["best_loss"]
    budgets = list(tables)
    lines = ["best loss over η per γ at budget T: " + "  ".join(f"T={b}" for b in budgets)]
    rows = zip(*(tables[b] for b in budgets), strict=True)
    for cells in rows:
        values = "  ".join(f"{_opt_sci(c['loss']):>9}" for c in cells)
        lines.append(f"{_fmt(cells[0]['gamma']):>10} {values}")
    return lines


def _init_text(summary: dict[str, Any]) -> list[str]:
    """The step-0 (centering) check, stated as PASS or FAIL."""
    init = summary["init_loss"]
    if not init["runs"]:
        return ["loss at step 0: no run has recorded it yet"]
    verdict = "PASS" if init["ok"] else "FAIL"
    expected = (
        f" = y² = {init['expected']:g}"
        if init["expected"] is not None
        else " = the mean of y² over the first batch (f = 0 at init, same data for every run)"
    )
    return [
        f"centering check {verdict}: loss at step 0 is {init['value']:.6g}{expected}, in all "
        f"{init['runs']} runs (relative spread {init['max_relative_spread']:.1e}, "
        f"tolerance {INIT_TOLERANCE:.0e})"
    ]


def _edge(point: dict[str, Any]) -> str:
    """'~' for a point at the edge of the grid."""
    return "~" if point["at_edge"] else " "


def _opt(value: float | None) -> str:
    """A compact number, '-' for None."""
    return "-" if value is None else _fmt(value)


def _opt_sci(value: float | None) -> str:
    """A number in scientific notation, '-' for None."""
    return "-" if value is None else f"{value:.2e}"
