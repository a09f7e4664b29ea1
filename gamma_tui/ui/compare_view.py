"""The compare screen's data and drawings: η*(γ) and η_div(γ) of several sweeps, their fitted
lines and theory guides, the slope table and the difference heatmap of two sweeps.

`load_comparison` reads the cache (off the UI thread) through gamma_tui.compare, the code
path of `gamma-tui compare`, so the screen and the CLI show the same numbers. The drawings
are pure functions of a frozen `Comparison`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.text import Text

from gamma_tui.analysis import EtaPoint, PowerFit
from gamma_tui.cache import Cache, CacheError
from gamma_tui.compare import REGIMES, compare_summary
from gamma_tui.report import analyze
from gamma_tui.ui.canvas import RGB, CharCanvas, blend, decade_label
from gamma_tui.ui.curves import PlotModel, Series, draw_curves

SWEEP_COLORS: tuple[RGB, ...] = (
    (86, 180, 233),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (240, 228, 66),
    (213, 94, 0),
)
"""Colour-blind-safe colours; a marked sweep keeps its colour while it stays marked."""

GUIDE_COLOR: RGB = (150, 150, 150)
# Diverging colours of the difference heatmap: b better (lower loss) blue, worse red.
_BETTER: RGB = (60, 110, 220)
_WORSE: RGB = (220, 70, 60)
_DIFF_LIMIT = 1.0  # decades of loss at which the colour saturates


@dataclass(frozen=True, eq=False)
class SweepLines:
    """One sweep's points and fits, ready to draw."""

    name: str
    color: RGB
    stars: tuple[EtaPoint, ...]
    edges: tuple[EtaPoint, ...]
    lazy: PowerFit | None
    rich: PowerFit | None
    theory: tuple[float, float]  # (lazy, rich) slopes


@dataclass(frozen=True, eq=False)
class Comparison:
    """What the compare screen shows for the marked sweeps at one data version."""

    sweeps: tuple[SweepLines, ...]
    summary: dict[str, Any]  # compare_summary of the same analyses
    version: int
    missing: tuple[str, ...] = ()  # marked sweeps no longer in the cache


def load_comparison(cache: Cache, marked: list[tuple[str, RGB]]) -> Comparison:
    """Analyse every marked sweep that still exists (skipping the ones that do not)."""
    version = cache.data_version()
    results, lines, missing = [], [], []
    for name, color in marked:
        try:
            result = analyze(cache, name)
        except CacheError:
            missing.append(name)
            continue
        results.append(result)
        fits = result.star_fit
        lines.append(
            SweepLines(
                name,
                color,
                tuple(result.stars),
                tuple(result.edges),
                fits.lazy,
                fits.rich,
                (fits.theory_lazy, fits.theory_rich),
            )
        )
    summary = compare_summary(results) if results else {"sweeps": [], "difference": None}
    if len(results) == 1:
        summary["difference"] = None
    return Comparison(tuple(lines), summary, version, tuple(missing))


def color_style(color: RGB) -> str:
    """A rich style string of an RGB colour."""
    return "rgb({},{},{})".format(*color)


# ---------------------------------------------------------------- the η(γ) plot


def eta_plot_model(comparison: Comparison | None, foreground: RGB, background: RGB) -> PlotModel:
    """η*(γ) (solid) and η_div(γ) (dashed) per sweep, fitted lines (dim) and theory guides."""
    if comparison is None or not comparison.sweeps:
        return PlotModel((), (0, 1), (0, 1), True, None, foreground, background,
                         "mark sweeps with space in the run browser (4), then press 5")  # fmt: skip
    series: list[Series] = []
    xs: list[float] = []
    ys: list[float] = []
    for lines in comparison.sweeps:
        for points, dashed in ((lines.edges, True), (lines.stars, False)):
            good = [p for p in points if p.ok and math.isfinite(p.eta) and p.eta > 0]
            x = np.log10([p.gamma for p in good]) if good else np.zeros(0)
            y = np.log10([p.eta for p in good]) if good else np.zeros(0)
            xs += x.tolist()
            ys += y.tolist()
            if x.size:
                series.append(Series(x, y, lines.color, dashed=dashed))
    if not xs:
        return PlotModel((), (0, 1), (0, 1), True, None, foreground, background,
                         "no finished runs yet in the marked sweeps")  # fmt: skip
    x0, x1 = min(xs), max(xs)
    x0, x1 = (x0 - 0.5, x1 + 0.5) if x1 == x0 else (x0, x1)
    y0, y1 = min(ys), max(ys)
    pad = 0.05 * max(y1 - y0, 1.0)
    fitted = []
    for lines in comparison.sweeps:
        fitted += _fit_lines(lines, x0, x1, background)
    return PlotModel(
        tuple(fitted + series), (x0, x1), (y0 - pad, y1 + pad), True, None, foreground, background
    )


def _fit_lines(lines: SweepLines, x0: float, x1: float, background: RGB) -> list[Series]:
    """The lazy fit over γ < 1 and the rich fit over γ > 1 (dim), with theory guides through
    the fits' value at the regime's middle (grey, dashed)."""
    out = []
    for fit, lo, hi, theory in (
        (lines.lazy, x0, min(x1, 0.0), lines.theory[0]),
        (lines.rich, max(x0, 0.0), x1, lines.theory[1]),
    ):
        if fit is None or hi <= lo:
            continue
        x = np.linspace(lo, hi, 32)
        y = fit.intercept + fit.slope * x
        out.append(Series(x, y, blend(lines.color, background, 0.45)))
        if math.isfinite(theory):
            middle = 0.5 * (lo + hi)
            anchor = fit.intercept + fit.slope * middle
            out.append(Series(x, anchor + theory * (x - middle), GUIDE_COLOR, dashed=True))
    return out


def draw_eta_plot(model: PlotModel | None, width: int, height: int) -> CharCanvas:
    """The η(γ) plot: draw_curves on log10 γ across and log10 η up."""
    return draw_curves(model, width, height)


# ---------------------------------------------------------------- the slope table


def slope_table(comparison: Comparison | None, width: int) -> Text:
    """One line per sweep: colour key, η* and η_div slopes ± 95% half-interval, the theory
    slopes and the crossover γ."""
    text = Text()
    if comparison is None or not comparison.sweeps:
        return text
    longest = max(len(s.name) for s in comparison.sweeps)
    name_width = max(6, min(28, width - 60, longest))
    heads = ("η* lazy", "η* rich", "div lazy", "div rich")
    text.append(
        f"  {'sweep':<{name_width}} " + "".join(f"{h:>10}" for h in heads)
        + f" {'theory':>8} {'cross':>6}",
        style="bold",
    )  # fmt: skip
    entries = {s["name"]: s for s in comparison.summary["sweeps"]}
    for lines in comparison.sweeps:
        entry = entries[lines.name]
        crossover = entry["crossover_gamma"]
        fits = [entry[kind][regime] for kind in ("eta_star", "eta_div") for regime in REGIMES]
        lazy, rich = lines.theory
        text.append("\n")
        text.append("● ", style=color_style(lines.color))
        text.append(f"{_cut(lines.name, name_width):<{name_width}} ")
        text.append("".join(f"{compact_slope(fit):>10}" for fit in fits))
        text.append(f" {f'{lazy:.3g}, {rich:.2g}':>8}", style="dim")
        text.append(f" {'-' if crossover is None else f'{crossover:.3g}':>6}")
    difference = comparison.summary.get("difference")
    if difference is not None:
        mean = difference["mean_diff"]
        text.append("\n")
        text.append(
            f"  Δ log10 loss {difference['b']} − {difference['a']}: {difference['shared']} shared "
            f"cells, mean {'-' if mean is None else f'{mean:+.2f}'}; only in "
            f"{difference['a']} (a in the map): {difference['only_a']}, only in "
            f"{difference['b']} (b): {difference['only_b']}",
            style="dim",
        )
    if comparison.missing:
        text.append(f"\n  no longer in the cache: {', '.join(comparison.missing)}", style="dim")
    return text


def compact_slope(fit: dict[str, Any]) -> str:
    """`0.73±0.06`, `0.73` with an unbounded interval, `-` without a fit."""
    if fit["slope"] is None:
        return "-"
    interval = fit["interval"]
    if interval is None:
        return f"{fit['slope']:.2f}"
    return f"{fit['slope']:.2f}±{0.5 * (interval[1] - interval[0]):.2f}"


def _cut(name: str, width: int) -> str:
    """A name cut to width with an ellipsis."""
    return name if len(name) <= width else name[: width - 1] + "…"


# ---------------------------------------------------------------- the difference heatmap


def draw_difference(comparison: Comparison | None, width: int, height: int) -> CharCanvas:
    """Cells of the first two sweeps' Δ log10 loss on (γ across, η up); 'a'/'b' marks cells
    only one sweep has; blue where the second sweep's loss is lower, red where higher."""
    canvas = CharCanvas(width, height)
    difference = None if comparison is None else comparison.summary.get("difference")
    if difference is None or width < 8 or height < 4:
        if comparison is not None and len(comparison.sweeps) >= 2 and width >= 8:
            canvas.text(0, 0, "no shared (γ, η) cells"[:width], fg=GUIDE_COLOR)
        return canvas
    cells = difference["cells"]
    gammas = sorted({c["gamma"] for c in cells})
    log_etas = np.log10([c["eta"] for c in cells])
    rows = height - 2
    low, high = float(log_etas.min()), float(log_etas.max())
    step = max((high - low) / max(rows - 1, 1), 1e-9)
    cell_width = max(1, min(4, (width - 6) // max(len(gammas), 1)))
    canvas.text(0, 0, f"Δ {difference['b'][: width - 2]}"[:width], fg=GUIDE_COLOR)
    for cell, log_eta in zip(cells, log_etas, strict=True):
        column = 6 + gammas.index(cell["gamma"]) * cell_width
        row = 1 + rows - 1 - int(round((log_eta - low) / step))
        if column + cell_width > width:
            continue
        if cell["only"] is not None:
            canvas.text(row, column, cell["only"] * cell_width, fg=GUIDE_COLOR)
        elif cell["diff"] is not None:
            share = min(abs(cell["diff"]) / _DIFF_LIMIT, 1.0)
            color = blend(_BETTER if cell["diff"] < 0 else _WORSE, (240, 240, 240), share)
            canvas.bg[row, column : column + cell_width] = color
            canvas.has_bg[row, column : column + cell_width] = True
    for tick in (high, low):
        row = 1 + rows - 1 - int(round((tick - low) / step))
        canvas.text(row, 0, f"{decade_label(round(tick)):>5}"[:5], fg=GUIDE_COLOR)
    canvas.text(height - 1, 6, "γ →"[: max(width - 6, 0)], fg=GUIDE_COLOR)
    return canvas
