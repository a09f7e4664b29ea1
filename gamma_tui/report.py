"""Text reports of a sweep for the CLI: the final-loss heatmap (`show`) and the fit summary
as aligned text (`fit`).

The numbers come from the one pipeline (gamma_tui.pipeline.analyze) through the JSON summary
(gamma_tui.summary), so the text, `fit --json` and gamma_tui.figures always agree. The
pipeline's and the summary's names are re-exported here, where the CLI and the app import them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gamma_tui.analysis import LossGrid, eta_star, loss_grid
from gamma_tui.cache import Cache
from gamma_tui.config import predicted_eta_exponent
from gamma_tui.pipeline import RICH_GAMMA, PlateauPoint, SweepAnalysis, analyze
from gamma_tui.results import DEFAULT_WINDOW, load_run_curves, stored_sweep
from gamma_tui.states import DIVERGED, DONE, FAILED, MISSING, QUEUED, RUNNING, SKIPPED
from gamma_tui.summary import INIT_TOLERANCE, fit_summary, summary_of

__all__ = [
    "CELL_MARKS",
    "DEFAULT_WINDOW",
    "INIT_TOLERANCE",
    "RICH_GAMMA",
    "PlateauPoint",
    "SweepAnalysis",
    "analyze",
    "fit_summary",
    "fit_text",
    "heatmap_text",
    "summary_of",
]

CELL_MARKS = {
    DIVERGED: "DIV",
    QUEUED: "q",
    RUNNING: "r",
    FAILED: "FAIL",
    SKIPPED: "-",
    MISSING: " ",
}
"""The heatmap's mark of a cell without a finite loss, by its state."""


# ---------------------------------------------------------------- the heatmap


def heatmap_text(cache: Cache, sweep: str) -> str:
    """log10 final loss per (η row, γ column); η* of each column marked with '*'."""
    stored = stored_sweep(cache, sweep)
    _, curves = load_run_curves(cache, sweep)
    grid = loss_grid(curves)
    if grid.gammas.size == 0:
        return f"{sweep}: no runs"
    relative = stored.relative_eta
    depth, optimizer = stored.depth, stored.optimizer
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
    present = grid.state != MISSING
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
    if state == DIVERGED or state != DONE and not math.isfinite(value):
        return f"{CELL_MARKS.get(state, '?'):>8}"
    text = f"{math.log10(value):.2f}" if value > 0 else "-inf"
    return f"{text + ('*' if best else ' '):>8}"


def _fmt(value: float) -> str:
    """Compact number of at most 7 characters: 1.0e-03, 0.316, 31.6, 3.2e+03."""
    if not math.isfinite(value):
        return "nan"
    return f"{value:.3g}" if 1e-2 <= abs(value) < 1e3 else f"{value:.1e}"


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
