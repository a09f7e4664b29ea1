"""The training-dynamics figures of `gamma-tui report`: loss curves, their collapse in
rescaled time, the best loss versus γ and the plateau time t_half(γ).

Needs matplotlib (the `report` extra).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gamma_tui.analysis import RunCurve
from gamma_tui.figures_eta import _initial_loss, _regime_range, _slope_label
from gamma_tui.pipeline import RICH_GAMMA, SweepAnalysis

CURVES_PER_PANEL = 8
"""At most this many curves in one loss-curve panel (evenly picked), so the legend stays legible."""


def draw_loss_curves(figure: Figure, result: SweepAnalysis) -> None:
    """Left: at one γ, curves for several η. Right: at η*(γ), curves for several γ."""
    left, right = figure.subplots(1, 2)
    gamma = _fixed_gamma(result)
    if gamma is not None:
        etas = sorted({c.eta for c in result.curves if math.isclose(c.gamma, gamma)})
        chosen = _pick(etas, CURVES_PER_PANEL)
        for color, eta in zip(_colors(len(chosen)), chosen, strict=True):
            curve = _seed_mean(
                [
                    c
                    for c in result.curves
                    if math.isclose(c.gamma, gamma) and math.isclose(c.eta, eta)
                ]
            )
            if curve is not None:
                left.plot(*curve, color=color, lw=1, label=f"η = {eta:.3g}")
        left.set_title(f"γ = {gamma:.3g}, several η")
    _best_curves(right, result)
    top = 3.0 * _initial_loss(result)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        if math.isfinite(top):  # a diverging curve would squash the rest
            ax.set_ylim(top=top)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (mean over seeds)")
        if ax.lines:
            ax.legend(fontsize=7)


def _fixed_gamma(result: SweepAnalysis) -> float | None:
    """The largest γ that has finished runs (the richest: plateaus show best there)."""
    gammas = sorted({c.gamma for c in result.curves if c.steps.size > 1})
    return gammas[-1] if gammas else None


def _best_curves(ax: Axes, result: SweepAnalysis) -> None:
    """Seed-mean curves at the best η of several γ."""
    rows = [r for r in result.best[max(result.best)] if math.isfinite(r.eta_at_best)]
    chosen = _pick(rows, CURVES_PER_PANEL)
    for color, row in zip(_colors(len(chosen)), chosen, strict=True):
        curve = _seed_mean(
            [
                c
                for c in result.curves
                if math.isclose(c.gamma, row.gamma) and math.isclose(c.eta, row.eta_at_best)
            ]
        )
        if curve is not None:
            ax.plot(*curve, color=color, lw=1, label=f"γ = {row.gamma:.3g}")
    ax.set_title("at η*(γ), several γ")


def _seed_mean(members: list[RunCurve]) -> tuple[np.ndarray, np.ndarray] | None:
    """Steps >= 1 and the mean loss over the members' common records; None if empty."""
    members = [m for m in members if m.steps.size > 1]
    if not members:
        return None
    n = min(m.steps.size for m in members)
    steps = members[0].steps[:n]
    with np.errstate(invalid="ignore"):
        loss = np.mean([np.asarray(m.loss[:n], dtype=float) for m in members], axis=0)
    keep = (steps >= 1) & np.isfinite(loss) & (loss > 0)
    return steps[keep], loss[keep]


def _pick(items: Sequence[Any], count: int) -> list[Any]:
    """At most `count` items, evenly spread, first and last included."""
    if len(items) <= count:
        return list(items)
    return [items[int(round(i))] for i in np.linspace(0, len(items) - 1, count)]


def _colors(count: int) -> list[Any]:
    """`count` colors along viridis."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(count, 1))][:count]


# ---------------------------------------------------------------- collapse, best loss, plateau


def draw_collapse(figure: Figure, result: SweepAnalysis) -> None:
    """Rich curves at η*: against raw t, and against x = t·η·γ^(−k) with the fitted k."""
    raw, rescaled = figure.subplots(1, 2, sharey=True)
    fit = result.collapse
    chosen = _pick(result.collapse_curves, CURVES_PER_PANEL)
    for color, curve in zip(_colors(len(chosen)), chosen, strict=True):
        keep = (curve.steps >= 1) & np.isfinite(curve.loss) & (curve.loss > 0)
        steps, loss = curve.steps[keep], curve.loss[keep]
        raw.plot(steps, loss, color=color, lw=1, label=f"γ = {curve.gamma:.3g}")
        if fit.ok:
            x = steps * curve.eta * curve.gamma**-fit.k
            rescaled.plot(x, loss, color=color, lw=1)
    raw.set_xlabel("step t")
    raw.set_ylabel("loss at η*(γ)")
    raw.set_title("raw time")
    if fit.ok:
        rescaled.set_xlabel(f"t·η·γ^(-k), k = {fit.k:.2f}")
        rescaled.set_title(f"k ∈ [{fit.k_lo:.2f}, {fit.k_hi:.2f}], score {fit.score:.2f}")
    else:
        rescaled.set_title(fit.reason, fontsize=8)
    for ax in (raw, rescaled):
        ax.set_xscale("log")
        ax.set_yscale("log")
    if raw.lines:
        raw.legend(fontsize=7)


def draw_best_loss(figure: Figure, result: SweepAnalysis) -> None:
    """Best loss over η versus γ, one line per budget T."""
    ax = figure.add_subplot()
    budgets = sorted(result.best)
    for color, budget in zip(_colors(len(budgets)), budgets, strict=True):
        rows = [r for r in result.best[budget] if math.isfinite(r.best_loss)]
        ax.plot(
            [r.gamma for r in rows],
            [r.best_loss for r in rows],
            "o-",
            color=color,
            ms=3,
            label=f"T = {budget}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("γ")
    ax.set_ylabel("best loss over η")
    ax.set_title(f"{result.info.name}: best loss at tuned η")
    if ax.lines:
        ax.legend(fontsize=7)


def draw_plateau(figure: Figure, result: SweepAnalysis) -> None:
    """Plateau time t_half at the best η versus γ, with the rich power law."""
    ax = figure.add_subplot()
    points = [(p.gamma, p.t_half) for p in result.plateaus if p.t_half is not None]
    ax.plot(
        [g for g, _ in points],
        [t for _, t in points],
        "o",
        color="tab:purple",
        label="t_half at η*(γ)",
    )
    fit = result.plateau_fit
    if fit is not None:
        x = _regime_range(result, "hi")
        theory = 1.0 - 2.0 / max(result.depth, 1)
        ax.plot(
            x,
            fit.predict(x),
            "--",
            color="tab:purple",
            label=f"γ > {RICH_GAMMA:g}: slope {_slope_label(fit)} (theory {theory:.2g})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("γ")
    ax.set_ylabel("t_half (steps)")
    ax.set_title(f"{result.info.name}: plateau length at η*")
    if ax.lines:
        ax.legend(fontsize=7)
