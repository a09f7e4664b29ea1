"""The paper's figures of a sweep (PAPER.md section 4) as PNG and SVG, plus summary.md.

Needs the optional extra `report` (matplotlib); the CLI imports this module only for
`gamma-tui report`, and the ImportError below is what tells it the extra is missing. Figures
are drawn on Agg canvases without pyplot, so nothing global (the backend, open figures) is
touched. Every number drawn comes from gamma_tui.report.analyze, the same object `fit` prints.
Files are written to a temporary name in the output directory and renamed into place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from gamma_tui.analysis import EtaPoint, PowerFit, RunCurve
from gamma_tui.cache import Cache
from gamma_tui.config import sweep_depth_label, sweep_optimizer
from gamma_tui.report import (
    RICH_GAMMA,
    SweepAnalysis,
    analyze,
    fit_text,
    summary_of,
)
from gamma_tui.sharpness import eta_stars, summarize, summary_text, sweep_runs
from gamma_tui.sharpness_figures import draw_sharpness

FORMATS = ("png", "svg")
"""Every figure is written in each of these formats."""

CURVES_PER_PANEL = 8
"""At most this many curves in one loss-curve panel (evenly picked), so the legend stays legible."""

_DPI = 120


def write_report(
    cache: Cache,
    sweep: str,
    output_dir: str | Path,
    step: float | None = None,
    window: float | None = None,
) -> list[Path]:
    """Write the figures of PAPER.md section 4 and summary.md; returns the paths written.
    A sweep with λ_max diagnostics also gets sharpness.png/.svg and its fit in summary.md."""
    result = analyze(cache, sweep, step, window)
    summary = summary_of(result)
    config, sharp_runs = sweep_runs(cache, sweep)
    if sharp_runs:
        optimizer = sweep_optimizer(config)
        summary["sharpness"] = summarize(
            sharp_runs, eta_stars(summary), sweep_depth_label(config), optimizer
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawers: dict[str, Callable[[Figure, SweepAnalysis], None]] = {
        "phase_portrait": draw_phase_portrait,
        "eta_star": draw_eta_laws,
        "loss_curves": draw_loss_curves,
        "collapse": draw_collapse,
        "best_loss": draw_best_loss,
        "plateau": draw_plateau,
    }
    written: list[Path] = []
    for name, draw in drawers.items():
        wide = name in ("loss_curves", "collapse")
        figure = Figure(figsize=(11.0, 4.4) if wide else (6.4, 4.8))
        FigureCanvasAgg(figure)
        draw(figure, result)
        figure.tight_layout()
        for extension in FORMATS:
            written.append(_save_figure(figure, out / f"{name}.{extension}", extension))
    if "sharpness" in summary:
        figure = Figure(figsize=(11.0, 4.6))
        FigureCanvasAgg(figure)
        step_size = "N·η" if optimizer == "sgd" else "η"
        draw_sharpness(figure, summary["sharpness"], sharp_runs, result.info.name, step_size)
        figure.tight_layout()
        for extension in FORMATS:
            written.append(_save_figure(figure, out / f"sharpness.{extension}", extension))
    summary_path = out / "summary.md"
    _write_text(summary_path, summary_markdown(summary, [p.name for p in written]))
    written.append(summary_path)
    return written


# ---------------------------------------------------------------- atomic files


def _save_figure(figure: Figure, path: Path, extension: str) -> Path:
    """Save through a temporary file in the same directory, then rename into place."""
    temporary = _temporary(path)
    try:
        figure.savefig(temporary, format=extension, dpi=_DPI)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _write_text(path: Path, text: str) -> None:
    """Write text through a temporary file in the same directory, then rename into place."""
    temporary = _temporary(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    """A hidden sibling of path, unique to this process (a crash leaves the old file intact)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


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
        present = np.flatnonzero(np.isin(grid.state[g], ("done", "diverged", "running")))
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
            if grid.state[g, h] == "diverged":
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


def _initial_loss(result: SweepAnalysis) -> float:
    """The largest loss at step 0 over the runs (NaN if none recorded one)."""
    values = [r.init_loss for r in result.runs if r.init_loss is not None]
    return max(values) if values else math.nan


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


def _criterion_label(result: SweepAnalysis) -> str:
    """The η* criterion in a few words, for titles."""
    if result.window >= 1.0:
        return f"mean over steps 0-{result.step:g}"
    if result.window > 0:
        return f"mean over steps {result.step * (1 - result.window):g}-{result.step:g}"
    return f"step {result.step:g}"


# ---------------------------------------------------------------- summary.md


def summary_markdown(summary: dict[str, Any], figures: Sequence[str]) -> str:
    """The fit summary as markdown: a slope table, the per-γ table, the full text, figures."""
    lines = [
        f"# {summary['sweep']}",
        "",
        f"Depth L = {summary['depth']}, {summary['runs']} runs, {summary['steps']} steps. "
        f"η* criterion: {summary['criterion']['text']}.",
        "",
        "| quantity | measured | ± 95% | theory | points |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("η* lazy slope", summary["lazy"]),
        ("η* rich slope", summary["rich"]),
        ("η_div lazy slope", summary["eta_div_fit"]["lazy"]),
        ("η_div rich slope", summary["eta_div_fit"]["rich"]),
        ("plateau t_half slope (γ > 1)", summary["plateau"]["fit"]),
        ("budget edge rich slope", summary["budget_edge"]["rich"]),
    ]
    lines += [_markdown_row(name, fit) for name, fit in rows]
    collapse = summary["collapse"]
    if collapse["k"] is not None:
        lines.append(
            f"| collapse k (t·η·γ^-k) | {collapse['k']:.3f} | "
            f"[{collapse['k_lo']:.3f}, {collapse['k_hi']:.3f}] | 1 | {collapse['n_curves']} |"
        )
    crossover = summary["crossover_gamma"]
    lines += ["", f"Crossover γ ≈ {crossover:.3g}." if crossover else "No crossover γ.", ""]
    lines += ["```", fit_text(summary), "```", ""]
    if "sharpness" in summary:
        lines += ["```", *summary_text(summary["sharpness"]), "```", ""]
    lines += ["## Figures", ""]
    lines += [f"- [{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def _markdown_row(name: str, fit: dict[str, Any]) -> str:
    """One row of the slope table."""
    if fit["slope"] is None:
        return f"| {name} | not enough data | | {_g(fit.get('theory'))} | |"
    ci = "" if fit.get("ci95") is None else f"{fit['ci95']:.3f}"
    return f"| {name} | {fit['slope']:.3f} | {ci} | {_g(fit.get('theory'))} | {fit['n']} |"


def _g(value: float | None) -> str:
    """Three significant digits, empty for None."""
    return "" if value is None else f"{value:.3g}"
