"""Several sweeps side by side: slopes of η* and η_div, crossover, best loss, cell differences.

Each sweep is analysed once by gamma_tui.pipeline.analyze (the numbers `fit` prints); this module
only lines them up. `compare_summary` is the `compare --json` payload, `compare_text` its text
form; the app's compare screen and `report A B C` read the same dictionary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gamma_tui.analysis import LossGrid, PowerFit, RegimeFits
from gamma_tui.cache import Cache, CacheError
from gamma_tui.pipeline import SweepAnalysis, analyze
from gamma_tui.states import DIVERGED, DONE, MISSING

REGIMES = ("lazy", "rich")


def compare_sweeps(
    cache: Cache, sweeps: Sequence[str], step: float | None = None, window: float | None = None
) -> list[SweepAnalysis]:
    """One analysis per sweep name (each at its own steps unless `step` is given)."""
    if len(sweeps) < 2:
        raise CacheError("compare needs at least two sweeps, e.g. `gamma-tui compare A B`")
    return [analyze(cache, name, step, window) for name in sweeps]


def compare_summary(results: Sequence[SweepAnalysis]) -> dict[str, Any]:
    """The JSON form: {"sweeps": [...], "difference": {...} | null}.

    Each sweep carries the lazy and rich fits of η* and η_div (slope, 95% interval, points,
    theory), the crossover γ and the best loss per γ at η*. The difference of log10 loss is
    given for the first two sweeps when they share at least one (γ, η) cell.
    """
    return {
        "sweeps": [_sweep_entry(r) for r in results],
        "difference": cell_difference(results[0], results[1]) if len(results) >= 2 else None,
    }


def _sweep_entry(result: SweepAnalysis) -> dict[str, Any]:
    """One sweep's line of the comparison."""
    counts = result.info.counts
    finished = sum(counts.get(state, 0) for state in (DONE, DIVERGED))
    return {
        "name": result.info.name,
        "depth": result.depth,
        "optimizer": result.optimizer,
        "steps": result.info.steps,
        "runs": len(result.runs),
        "finished": finished,
        "eta_star": _regimes(result.star_fit),
        "eta_div": _regimes(result.div_fit),
        "crossover_gamma": _num(result.star_fit.crossover_gamma),
        "best_loss": _best_at_star(result),
    }


def _regimes(fits: RegimeFits) -> dict[str, Any]:
    """{"lazy": ..., "rich": ...} of one RegimeFits."""
    theory = {"lazy": fits.theory_lazy, "rich": fits.theory_rich}
    return {name: _fit(getattr(fits, name), theory[name], fits.reason) for name in REGIMES}


def _fit(fit: PowerFit | None, theory: float, reason: str) -> dict[str, Any]:
    """A slope with its 95% interval [lo, hi] (None when unbounded) and its number of points."""
    if fit is None:
        parts = [p for p in reason.split("; ") if p]
        return {"slope": None, "interval": None, "points": 0, "theory": _num(theory),
                "reason": "; ".join(parts) or "no fit"}  # fmt: skip
    bounded = math.isfinite(fit.slope_ci95)
    interval = [fit.slope - fit.slope_ci95, fit.slope + fit.slope_ci95] if bounded else None
    return {"slope": fit.slope, "interval": interval, "points": fit.n, "theory": _num(theory)}


def _best_at_star(result: SweepAnalysis) -> list[dict[str, Any]]:
    """Per γ the lowest seed-mean loss over η and the η that reached it."""
    mean = result.grid.mean_loss
    rows = []
    for g, gamma in enumerate(result.grid.gammas.tolist()):
        finite = np.isfinite(mean[g])
        if not finite.any():
            rows.append({"gamma": gamma, "eta": None, "loss": None})
            continue
        h = int(np.argmin(np.where(finite, mean[g], np.inf)))
        rows.append({"gamma": gamma, "eta": float(result.grid.etas[h]), "loss": float(mean[g, h])})
    return rows


def cell_difference(a: SweepAnalysis, b: SweepAnalysis) -> dict[str, Any] | None:
    """Per (γ, η) cell log10 loss of b minus a; None when the sweeps share no cell.

    Cells only one sweep has are listed with `only` set to "a" or "b" (and no difference);
    a cell where a seed diverged has loss None and so no difference either.
    """
    cells_a, cells_b = _cells(a.grid), _cells(b.grid)
    shared = cells_a.keys() & cells_b.keys()
    if not shared:
        return None
    cells = []
    for key in sorted(cells_a.keys() | cells_b.keys()):
        left, right = cells_a.get(key), cells_b.get(key)
        only = None if left is not None and right is not None else ("a" if right is None else "b")
        diff = None
        if left is not None and right is not None and left[2] is not None and right[2] is not None:
            diff = right[2] - left[2]
        source = left or right
        assert source is not None  # the key came from one of them
        cells.append({
            "gamma": source[0], "eta": source[1],
            "a": None if left is None else left[2], "b": None if right is None else right[2],
            "diff": diff, "only": only,
        })  # fmt: skip
    diffs = [c["diff"] for c in cells if c["diff"] is not None]
    return {
        "a": a.info.name,
        "b": b.info.name,
        "shared": len(shared),
        "only_a": len(cells_a.keys() - cells_b.keys()),
        "only_b": len(cells_b.keys() - cells_a.keys()),
        "mean_diff": float(np.mean(diffs)) if diffs else None,
        "max_abs_diff": float(np.max(np.abs(diffs))) if diffs else None,
        "cells": cells,
    }


def _cells(grid: LossGrid) -> dict[tuple[str, str], tuple[float, float, float | None]]:
    """The grid's cells with data or a verdict: (γ, η) keys to (γ, η, log10 mean loss)."""
    mean = grid.mean_loss
    cells: dict[tuple[str, str], tuple[float, float, float | None]] = {}
    for g, gamma in enumerate(grid.gammas.tolist()):
        for h, eta in enumerate(grid.etas.tolist()):
            if grid.state[g, h] == MISSING:
                continue
            value = mean[g, h]
            log10 = math.log10(value) if math.isfinite(value) and value > 0 else None
            cells[(f"{gamma:.9g}", f"{eta:.9g}")] = (gamma, eta, log10)
    return cells


def _num(value: float | None) -> float | None:
    """JSON has no NaN/inf: such values become null."""
    return value if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------- text


def compare_text(summary: dict[str, Any]) -> str:
    """The comparison as aligned text: slopes, crossover, best loss per γ, the difference."""
    sweeps = summary["sweeps"]
    width = max(12, *(len(s["name"]) for s in sweeps))
    lines = []
    for kind, title in (("eta_star", "η*(γ)"), ("eta_div", "η_div(γ)")):
        lines += [
            f"slopes of {title}, 95% intervals (theory)",
            f"{'sweep':<{width}} {'L':>2} {'opt':>7} {'finished':>9} "
            f"{'lazy':>19} {'rich':>19}" + (f" {'crossover γ':>11}" if kind == "eta_star" else ""),
        ]
        for s in sweeps:
            crossover = s["crossover_gamma"]
            lines.append(
                f"{s['name']:<{width}} {s['depth']:>2} {s['optimizer']:>7} "
                f"{s['finished']:>4}/{s['runs']:<4} "
                + " ".join(f"{slope_cell(s[kind][regime]):>19}" for regime in REGIMES)
                + (
                    f" {'-' if crossover is None else f'{crossover:.3g}':>11}"
                    if kind == "eta_star"
                    else ""
                )
            )
        lines.append("")
    lines += _best_lines(sweeps, width)
    lines += _difference_lines(summary["difference"])
    return "\n".join(lines)


def slope_cell(fit: dict[str, Any]) -> str:
    """`0.98 ± 0.05 (1.00)`, or `-` when there is no fit."""
    if fit["slope"] is None:
        return "-"
    interval = fit["interval"]
    half = "" if interval is None else f" ± {0.5 * (interval[1] - interval[0]):.2f}"
    theory = "" if fit["theory"] is None else f" ({fit['theory']:.2f})"
    return f"{fit['slope']:.2f}{half}{theory}"


def _best_lines(sweeps: list[dict[str, Any]], width: int) -> list[str]:
    """Best seed-mean loss per γ, one column per sweep."""
    by_gamma: dict[str, dict[str, float | None]] = {}
    for s in sweeps:
        for row in s["best_loss"]:
            by_gamma.setdefault(f"{row['gamma']:.4g}", {})[s["name"]] = row["loss"]
    names = [s["name"] for s in sweeps]
    lines = [
        "best loss over η per γ (at η*)",
        f"{'γ':>9} " + " ".join(f"{n:>{width}}" for n in names),
    ]
    for gamma in sorted(by_gamma, key=float):
        values = by_gamma[gamma]
        lines.append(
            f"{gamma:>9} "
            + " ".join(f"{_sci(values.get(n)) if n in values else '':>{width}}" for n in names)
        )
    return lines


def _difference_lines(diff: dict[str, Any] | None) -> list[str]:
    """The per-cell difference summarised per γ."""
    if diff is None:
        return ["", "difference: the first two sweeps share no (γ, η) cell"]
    lines = [
        "",
        f"difference log10 loss ({diff['b']} − {diff['a']}) on {diff['shared']} shared cells"
        f" (mean {_signed(diff['mean_diff'])}, largest |Δ| {_plain(diff['max_abs_diff'])});"
        f" only in {diff['a']}: {diff['only_a']}, only in {diff['b']}: {diff['only_b']}",
        f"{'γ':>9} {'cells':>5} {'mean Δ':>8} {'min Δ':>8} {'max Δ':>8}"
        f" {'only a':>6} {'only b':>6}",
    ]
    by_gamma: dict[float, list[dict[str, Any]]] = {}
    for cell in diff["cells"]:
        by_gamma.setdefault(cell["gamma"], []).append(cell)
    for gamma in sorted(by_gamma):
        cells = by_gamma[gamma]
        values = [c["diff"] for c in cells if c["diff"] is not None]
        stats = [np.mean(values), np.min(values), np.max(values)] if values else [None] * 3
        lines.append(
            f"{gamma:>9.4g} {len(values):>5} "
            + " ".join(f"{_signed(v):>8}" for v in stats)
            + f" {_count(cells, 'a'):>6} {_count(cells, 'b'):>6}"
        )
    return lines


def _sci(value: float | None) -> str:
    """A loss in scientific notation, '-' for None."""
    return "-" if value is None else f"{value:.2e}"


def _signed(value: float | None) -> str:
    """A signed difference with two decimals, '-' for None."""
    return "-" if value is None else f"{float(value):+.2f}"


def _plain(value: float | None) -> str:
    """A non-negative number with two decimals, '-' for None."""
    return "-" if value is None else f"{float(value):.2f}"


def _count(cells: list[dict[str, Any]], side: str) -> int:
    """How many cells only one side ("a" or "b") has."""
    return sum(cell["only"] == side for cell in cells)
