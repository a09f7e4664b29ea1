"""The fit summary of a sweep as JSON-ready data: the `fit --json` payload, which `fit_text`,
the report's summary.md and `compare` read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gamma_tui.analysis import EtaPoint, PowerFit
from gamma_tui.cache import Cache
from gamma_tui.pipeline import SweepAnalysis, analyze

INIT_TOLERANCE = 1e-5
"""Largest relative spread of the step-0 losses that passes the centering check."""


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
    target = result.sweep.scalar_target
    expected = target**2 if target is not None else None
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
