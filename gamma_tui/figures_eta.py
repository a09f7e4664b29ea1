"""The η landscape figures of `gamma-tui report`: the phase portrait (log10 loss over γ and η
with the guide lines) and the η*(γ), η_div(γ) laws with their lazy/rich fits.

Needs matplotlib (the `report` extra). Also the small labels the other figures share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from gamma_tui.analysis import EtaPoint, PowerFit
from gamma_tui.pipeline import RICH_GAMMA, SweepAnalysis
from gamma_tui.states import DIVERGED, DONE, RUNNING

# ---------------------------------------------------------------- phase portrait


def draw_phase_portrait(figure: Figure, result: SweepAnalysis) -> None:
    """Heatmap of log10 loss over (log10 γ, log10 η), diverged cells hatched, guide lines."""
    ax = figure.add_subplot()
    boxes, values, diverged = _cell_boxes(result)
    finite = np.isfinite(values)
    if finite.any():
        top = float(values[finite].max())
        initial = _initial_loss(result)
        if math.isfinite(initial) and initial > 0:  # near-divergent blow-ups saturate
            top = min(top, math.log10(3.0 * initial))
        norm = Normalize(min(float(values[finite].min()), top - 1e-9), top)
        cells = PolyCollection(
            [b for b, f in zip(boxes, finite, strict=True) if f],
            array=values[finite],
            cmap="viridis",
            norm=norm,
        )
        ax.add_collection(cells)
        figure.colorbar(cells, ax=ax, label="log10 loss")
    if diverged:
        ax.add_collection(
            PolyCollection(
                diverged,
                facecolor="0.85",
                edgecolor="0.5",
                hatch="xx",
                linewidth=0.3,
                label="diverged",
            )
        )
    _set_limits(ax, boxes + diverged)
    _guide_lines(ax, result)
    _eta_points(ax, result.stars, "k", "o", "η*(γ)")
    ax.set_xlabel("log10 γ")
    ax.set_ylabel("log10 η")
    ax.set_title(f"{result.info.name}: log10 loss, {_criterion_label(result)}")
    ax.legend(loc="upper left", fontsize=7)


def _set_limits(ax: Axes, boxes: list[np.ndarray]) -> None:
    """Axis limits that hold every cell (guide lines may leave them)."""
    if not boxes:
        return
    corners = np.concatenate(boxes)
    ax.set_xlim(corners[:, 0].min(), corners[:, 0].max())
    ax.set_ylim(corners[:, 1].min(), corners[:, 1].max())


def _cell_boxes(result: SweepAnalysis) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Per cell with data, a rectangle in (log10 γ, log10 η); values; diverged rectangles."""
    grid = result.grid
    log_gamma, log_eta = np.log10(grid.gammas), np.log10(grid.etas)
    half_gamma = 0.5 * _step(log_gamma)
    mean = grid.mean_loss
    boxes, values, diverged = [], [], []
    for g in range(grid.gammas.size):
        present = np.flatnonzero(np.isin(grid.state[g], (DONE, DIVERGED, RUNNING)))
        half_eta = 0.5 * _step(log_eta[present])
        for h in present:
            x, y = log_gamma[g], log_eta[h]
            box = np.array(
                [
                    [x - half_gamma, y - half_eta],
                    [x + half_gamma, y - half_eta],
                    [x + half_gamma, y + half_eta],
                    [x - half_gamma, y + half_eta],
                ]
            )
            if grid.state[g, h] == DIVERGED:
                diverged.append(box)
            elif mean[g, h] > 0:
                boxes.append(box)
                values.append(math.log10(mean[g, h]))
    return boxes, np.array(values, dtype=float), diverged


def _step(values: np.ndarray) -> float:
    """Typical spacing of sorted grid values (the median gap; 0.5 for a single value)."""
    gaps = np.diff(np.unique(values))
    return float(np.median(gaps)) if gaps.size else 0.5


def _guide_lines(ax: Axes, result: SweepAnalysis) -> None:
    """η ∝ γ², η ∝ γ^(2/L), η ∝ γ (budget) through the fitted lines' anchors."""
    log_gamma = np.log10(result.grid.gammas)
    if log_gamma.size == 0:
        return
    x = np.linspace(log_gamma.min(), log_gamma.max(), 50)
    fits = result.star_fit
    regimes = (
        (fits.lazy, fits.theory_lazy, "tab:orange"),
        (fits.rich, fits.theory_rich, "tab:pink"),
    )
    for fit, theory, color in regimes:  # the theory slope through each fitted intercept
        if fit is not None:
            label = f"η ∝ γ^{theory:.3g}"
            ax.plot(x, fit.intercept + theory * x, color=color, ls="--", lw=1.2, label=label)
    budget = result.budget_fit.rich
    if budget is not None:  # the slope-1 line through the fitted edge at the rich γ's centre
        centre = float(np.mean(np.log10(_regime_range(result, "hi"))))
        anchor = budget.intercept + (budget.slope - 1.0) * centre
    else:  # no measured edge: draw η = γ/T
        anchor = -math.log10(result.step)
    ax.plot(x, anchor + x, color="tab:red", ls="-.", lw=1, label="η ∝ γ (budget line)")


def _eta_points(
    ax: Axes, points: Sequence[EtaPoint], color: str, marker: str, label: str, log: bool = True
) -> None:
    """Bracketed points filled, at-edge ones hollow, with ±error bars in decades."""
    good = [p for p in points if p.ok and math.isfinite(p.eta)]
    for edge in (False, True):
        chosen = [p for p in good if p.at_edge == edge]
        if not chosen:
            continue
        x = np.array([p.gamma for p in chosen])
        y = np.array([p.eta for p in chosen])
        err = np.array([p.log10_eta_err if math.isfinite(p.log10_eta_err) else 0.0 for p in chosen])
        if log:
            x, y = np.log10(x), np.log10(y)
            errors: Any = err
        else:
            errors = [y - y * 10**-err, y * 10**err - y]
        ax.errorbar(
            x,
            y,
            yerr=errors,
            fmt=marker,
            color=color,
            ms=4,
            capsize=2,
            mfc="none" if edge else color,
            label=label if not edge else f"{label} (grid edge: bound)",
        )


# ---------------------------------------------------------------- η*(γ) and η_div(γ)


def draw_eta_laws(figure: Figure, result: SweepAnalysis) -> None:
    """η*(γ) and η_div(γ) log-log with their fitted lazy and rich lines; slopes in the legend."""
    ax = figure.add_subplot()
    _eta_points(ax, result.stars, "tab:blue", "o", "η*", log=False)
    _eta_points(ax, result.edges, "tab:red", "s", "η_div", log=False)
    for fits, color, name in (
        (result.star_fit, "tab:blue", "η*"),
        (result.div_fit, "tab:red", "η_div"),
    ):
        for fit, theory, regime, side in (
            (fits.lazy, fits.theory_lazy, "lazy", "lo"),
            (fits.rich, fits.theory_rich, "rich", "hi"),
        ):
            if fit is None:
                continue
            x = _regime_range(result, side)
            ax.plot(
                x,
                fit.predict(x),
                color=color,
                ls="-" if regime == "lazy" else "--",
                lw=1,
                label=f"{name} {regime}: slope {_slope_label(fit)} (theory {theory:.2g})",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("γ")
    ax.set_ylabel("η")
    crossover = result.star_fit.crossover_gamma
    if crossover:
        ax.axvline(crossover, color="0.6", lw=0.8, ls=":", label=f"crossover γ ≈ {crossover:.3g}")
    ax.set_title(f"{result.info.name}: L = {result.depth}, {_criterion_label(result)}")
    ax.legend(fontsize=7)


def _regime_range(result: SweepAnalysis, side: str) -> np.ndarray:
    """γ values spanning the lazy (γ < 1) or rich (γ > 1) part of the grid."""
    gammas = result.grid.gammas
    chosen = gammas[gammas < 1.0] if side == "lo" else gammas[gammas > RICH_GAMMA]
    if chosen.size == 0:
        chosen = gammas
    return np.geomspace(chosen.min(), chosen.max(), 20)


def _slope_label(fit: PowerFit) -> str:
    """Slope ± its 95% half-width."""
    ci = f" ± {fit.slope_ci95:.2f}" if math.isfinite(fit.slope_ci95) else ""
    return f"{fit.slope:.2f}{ci}"


# ---------------------------------------------------------------- loss curves


def _initial_loss(result: SweepAnalysis) -> float:
    """The largest loss at step 0 over the runs (NaN if none recorded one)."""
    values = [r.init_loss for r in result.runs if r.init_loss is not None]
    return max(values) if values else math.nan


def _criterion_label(result: SweepAnalysis) -> str:
    """The η* criterion in a few words, for titles."""
    if result.window >= 1.0:
        return f"mean over steps 0-{result.step:g}"
    if result.window > 0:
        return f"mean over steps {result.step * (1 - result.window):g}-{result.step:g}"
    return f"step {result.step:g}"
