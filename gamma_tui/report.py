"""Text reports of a sweep for the CLI: the final-loss heatmap and the η*(γ) fit summary.

Numbers come from gamma_tui.analysis only; this module formats them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gamma_tui.analysis import (
    LossGrid,
    eta_div,
    eta_star,
    fit_regimes,
    loss_grid,
)
from gamma_tui.cache import Cache
from gamma_tui.results import load_run_curves

CELL_MARKS = {
    "diverged": "DIV",
    "queued": "q",
    "running": "r",
    "failed": "FAIL",
    "skipped": "-",
    "missing": " ",
}


def heatmap_text(cache: Cache, sweep: str) -> str:
    """log10 final loss per (η row, γ column); η* of each column marked with '*'."""
    info = cache.sweep(sweep)
    _, curves = load_run_curves(cache, sweep)
    grid = loss_grid(curves)
    if grid.gammas.size == 0:
        return f"{sweep}: no runs"
    relative = info.config.get("eta", {}).get("scale") == "relative"
    depth = int(info.config.get("network", {}).get("depth", 2))
    mean = grid.mean_loss
    rows = _row_etas(grid)
    label = "c = η/γ^p" if relative else "η"
    header = f"{label:>11} │" + "".join(f"{_fmt(g):>8}" for g in grid.gammas)
    lines = [
        f"{sweep}: log10 loss at the last step (mean over seeds), γ across, η down",
        header,
        "─" * len(header),
    ]
    best = _best_index(mean)
    for row in range(len(rows[0])):
        cells = []
        for g, column in enumerate(rows):
            h = column[row] if row < len(column) else None
            cells.append(_cell(grid, mean, g, h, best[g] == h))
        first = next(c[row] for c in rows if row < len(c))
        name = grid.etas[first] / _scale(grid.gammas[0], depth) if relative else grid.etas[first]
        lines.append(f"{_fmt(name):>11} │" + "".join(cells))
    stars = eta_star(grid)
    lines.append("─" * len(header))
    lines.append(f"{'η*':>11} │" + "".join(f"{_fmt(p.eta) if p.ok else '?':>8}" for p in stars))
    lines.append("'*' marks the lowest-loss η of each γ; DIV diverged, q queued, r running")
    return "\n".join(lines)


def _row_etas(grid: LossGrid) -> list[list[int]]:
    """Per γ column, the indices of the η values that have runs, largest η first."""
    present = grid.state != "missing"
    return [[int(h) for h in np.flatnonzero(present[g])[::-1]] for g in range(grid.gammas.size)]


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


def _scale(gamma: float, depth: int) -> float:
    """γ^p with p = 2 (γ < 1) or 2/L."""
    return gamma ** (2.0 if gamma < 1 else 2.0 / depth)


def _fmt(value: float) -> str:
    """Compact number: 1e-03, 0.316, 31.6."""
    if not math.isfinite(value):
        return "nan"
    return f"{value:.3g}" if 1e-2 <= abs(value) < 1e4 else f"{value:.1e}"


def fit_summary(cache: Cache, sweep: str) -> dict[str, Any]:
    """η*(γ), η_div(γ), their lazy/rich slopes with theory, and the step-0 loss check."""
    info = cache.sweep(sweep)
    runs, curves = load_run_curves(cache, sweep)
    grid = loss_grid(curves)
    depth = int(info.config.get("network", {}).get("depth", 2))
    optimizer = str(info.config.get("train", {}).get("optimizer", "sgd"))
    stars, edges = eta_star(grid), eta_div(grid)
    star_fit = fit_regimes(stars, depth=depth, optimizer=optimizer)
    div_fit = fit_regimes(edges, depth=depth, optimizer=optimizer)
    init = np.array([r.init_loss for r in runs if r.init_loss is not None], dtype=np.float64)
    return {
        "sweep": sweep,
        "depth": depth,
        "steps": info.steps,
        "runs": len(runs),
        "counts": info.counts,
        "eta_star": [_point(p) for p in stars],
        "eta_div": [_point(p) for p in edges],
        "lazy": _regime(star_fit.lazy, star_fit.theory_lazy, star_fit.reason),
        "rich": _regime(star_fit.rich, star_fit.theory_rich, star_fit.reason),
        "crossover_gamma": star_fit.crossover_gamma,
        "eta_div_fit": {
            "lazy": _regime(div_fit.lazy, div_fit.theory_lazy, div_fit.reason),
            "rich": _regime(div_fit.rich, div_fit.theory_rich, div_fit.reason),
        },
        "init_loss": {
            "runs": int(init.size),
            "value": float(init.mean()) if init.size else None,
            "max_relative_spread": float(np.ptp(init) / init.mean()) if init.size else None,
        },
    }


def _point(p: Any) -> dict[str, Any]:
    return {
        "gamma": p.gamma,
        "eta": p.eta if math.isfinite(p.eta) else None,
        "log10_eta_err": p.log10_eta_err if p.ok and math.isfinite(p.log10_eta_err) else None,
        "at_edge": p.at_edge,
        "ok": p.ok,
    }


def _regime(fit: Any, theory: float, reason: str) -> dict[str, Any]:
    if fit is None:
        return {"slope": None, "theory": theory, "reason": reason}
    ci = fit.slope_ci95 if math.isfinite(fit.slope_ci95) else None
    return {
        "slope": fit.slope,
        "ci95": ci,
        "n": fit.n,
        "r2": fit.r2,
        "intercept": fit.intercept,
        "theory": theory,
    }


def fit_text(summary: dict[str, Any]) -> str:
    """The fit summary as an aligned text report."""
    lines = [
        f"{summary['sweep']}: L = {summary['depth']}, {summary['runs']} runs, "
        f"{summary['steps']} steps"
    ]
    lines.append(f"{'γ':>10} {'η*':>10} {'±dec':>6} {'η_div':>10}")
    for star, div in zip(summary["eta_star"], summary["eta_div"], strict=True):
        err = star["log10_eta_err"]
        lines.append(
            f"{_fmt(star['gamma']):>10} {_edge(star)}{_opt(star['eta']):>9} "
            f"{'' if err is None else f'{err:.2f}':>5} {_edge(div)}{_opt(div['eta']):>9}"
        )
    lines.append("('~' marks a value at the edge of the grid: only a bound, not used in fits)")
    for regime in ("lazy", "rich"):
        fit = summary[regime]
        if fit["slope"] is None:
            lines.append(f"{regime:>5} slope of η*: not enough data ({fit['reason']})")
        else:
            ci = "" if fit["ci95"] is None else f" ± {fit['ci95']:.2f}"
            lines.append(
                f"{regime:>5} slope of η*: {fit['slope']:.2f}{ci} (theory "
                f"{fit['theory']:.2f}, {fit['n']} points)"
            )
    if summary["crossover_gamma"]:
        lines.append(f"crossover γ ≈ {summary['crossover_gamma']:.3g}")
    init = summary["init_loss"]
    if init["runs"]:
        lines.append(
            f"loss at step 0: {init['value']:.6g} in all {init['runs']} runs "
            f"(relative spread {init['max_relative_spread']:.1e}: centering check)"
        )
    return "\n".join(lines)


def _edge(point: dict[str, Any]) -> str:
    return "~" if point["at_edge"] else " "


def _opt(value: float | None) -> str:
    return "-" if value is None else _fmt(value)
