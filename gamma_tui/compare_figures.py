"""`gamma-tui report A B C -o DIR`: the comparison figure (PNG and SVG) and a markdown table.

The figure puts η*(γ) (filled markers, solid fits) and η_div(γ) (open markers, dashed fits) of
every sweep on one log-log plot with the theory guides, like the paper's central figure. The
numbers are gamma_tui.compare's, the ones `gamma-tui compare` prints. Needs matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gamma_tui.analysis import EtaPoint, RegimeFits
from gamma_tui.cache import Cache
from gamma_tui.compare import REGIMES, compare_summary, compare_sweeps, slope_cell
from gamma_tui.figures import FORMATS, _save_figure, _write_text
from gamma_tui.pipeline import SweepAnalysis

COLORS = ("#56b4e9", "#e69f00", "#009e73", "#cc79a7", "#f0e442", "#d55e00", "#0072b2")
"""The compare screen's colours, in the order the sweeps are given."""


def write_compare_report(
    cache: Cache,
    sweeps: Sequence[str],
    output_dir: str | Path,
    step: float | None = None,
    window: float | None = None,
) -> list[Path]:
    """Write compare.png, compare.svg and compare.md for the sweeps; returns the paths."""
    results = compare_sweeps(cache, sweeps, step, window)
    summary = compare_summary(results)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(7.2, 5.4))
    FigureCanvasAgg(figure)
    draw_comparison(figure, results)
    figure.tight_layout()
    written = [_save_figure(figure, out / f"compare.{ext}", ext) for ext in FORMATS]
    table = out / "compare.md"
    _write_text(table, compare_markdown(summary, [p.name for p in written]))
    return [*written, table]


def draw_comparison(figure: Figure, results: Sequence[SweepAnalysis]) -> None:
    """η*(γ) and η_div(γ) of every sweep with their fits and the theory guides."""
    ax = figure.add_subplot(1, 1, 1)
    guides: set[tuple[float, float]] = set()
    for index, result in enumerate(results):
        color = COLORS[index % len(COLORS)]
        _points(ax, result.stars, color, filled=True, label=f"{result.info.name} η*")
        _points(ax, result.edges, color, filled=False, label=f"{result.info.name} η_div")
        _fits(ax, result.star_fit, result.stars, color, "-")
        _fits(ax, result.div_fit, result.edges, color, "--")
        guides.add((result.star_fit.theory_lazy, result.star_fit.theory_rich))
    _guides(ax, results, guides)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("γ")
    ax.set_ylabel("η")
    ax.set_title("η*(γ) (filled, solid fits) and η_div(γ) (open, dashed)")
    ax.legend(fontsize=7, loc="upper left")


def _usable(points: Sequence[EtaPoint]) -> list[EtaPoint]:
    """Points that were located (bounds at the grid's edge included, drawn fainter)."""
    return [p for p in points if p.ok and np.isfinite(p.eta) and p.eta > 0]


def _points(ax: Axes, points: Sequence[EtaPoint], color: str, filled: bool, label: str) -> None:
    """Markers with error bars of the points' intervals in decades."""
    chosen = _usable(points)
    if not chosen:
        return
    gammas = np.array([p.gamma for p in chosen])
    etas = np.array([p.eta for p in chosen])
    err = np.array([p.log10_interval if np.isfinite(p.log10_interval) else 0.0 for p in chosen])
    low, high = etas - etas * 10.0**-err, etas * 10.0**err - etas
    ax.errorbar(
        gammas, etas, yerr=[low, high], fmt="o" if filled else "s", color=color,
        markerfacecolor=color if filled else "none", markersize=4, lw=0.8, label=label,
    )  # fmt: skip


def _fits(ax: Axes, fits: RegimeFits, points: Sequence[EtaPoint], color: str, style: str) -> None:
    """The lazy fit over γ < 1 and the rich one over γ > 1 of the located points."""
    gammas = np.array([p.gamma for p in _usable(points)])
    for name in REGIMES:
        fit = getattr(fits, name)
        side = gammas[gammas < 1.0] if name == "lazy" else gammas[gammas > 1.0]
        if fit is None or side.size < 2:
            continue
        x = np.geomspace(side.min(), side.max(), 16)
        ax.plot(x, fit.predict(x), style, color=color, lw=1.2, alpha=0.8)


def _guides(ax: Axes, results: Sequence[SweepAnalysis], slopes: set[tuple[float, float]]) -> None:
    """Grey theory lines η ∝ γ^p through the first sweep's fits, one pair per distinct law."""
    first = results[0]
    anchors = {name: getattr(first.star_fit, name) for name in REGIMES}
    for lazy, rich in sorted(slopes):
        for name, slope, x in (
            ("lazy", lazy, np.geomspace(1e-3, 1.0, 8)),
            ("rich", rich, np.geomspace(1.0, 1e3, 8)),
        ):
            fit = anchors[name]
            if fit is None or not np.isfinite(slope):
                continue
            middle = float(np.sqrt(x[0] * x[-1]))
            y = fit.predict(middle) * (x / middle) ** slope
            ax.plot(x, y, ":", color="0.55", lw=1.0)
            ax.annotate(f"γ^{slope:.2g}", (x[-1], y[-1]), fontsize=7, color="0.4")


def compare_markdown(summary: dict[str, Any], figures: list[str]) -> str:
    """The slope table, best loss per γ and the difference as markdown."""
    sweeps = summary["sweeps"]
    lines = ["# Comparison of " + ", ".join(s["name"] for s in sweeps), ""]
    lines += [f"![{name}]({name})" for name in figures if name.endswith(".svg")]
    lines += [
        "",
        "| sweep | L | optimizer | finished | η* lazy | η* rich | η_div lazy | η_div rich "
        "| crossover γ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sweeps:
        cells = [
            slope_cell(s[kind][regime]) for kind in ("eta_star", "eta_div") for regime in REGIMES
        ]
        crossover = "-" if s["crossover_gamma"] is None else f"{s['crossover_gamma']:.3g}"
        lines.append(
            f"| {s['name']} | {s['depth']} | {s['optimizer']} | {s['finished']}/{s['runs']} | "
            + " | ".join(cells)
            + f" | {crossover} |"
        )
    lines += ["", "Slopes ± the 95% half-interval, theory in brackets.", ""]
    lines += [
        "## Best loss over η per γ",
        "",
        "| γ | " + " | ".join(s["name"] for s in sweeps) + " |",
    ]
    lines.append("|---" * (len(sweeps) + 1) + "|")
    gammas = sorted({row["gamma"] for s in sweeps for row in s["best_loss"]})
    for gamma in gammas:
        values = []
        for s in sweeps:
            row = next((r for r in s["best_loss"] if r["gamma"] == gamma), None)
            values.append("" if row is None or row["loss"] is None else f"{row['loss']:.3g}")
        lines.append(f"| {gamma:.3g} | " + " | ".join(values) + " |")
    diff = summary["difference"]
    lines.append("")
    if diff is None:
        lines.append("The first two sweeps share no (γ, η) cell: no difference.")
    else:
        mean = "-" if diff["mean_diff"] is None else f"{diff['mean_diff']:+.3f}"
        lines.append(
            f"Δ log10 loss ({diff['b']} − {diff['a']}) over {diff['shared']} shared cells: "
            f"mean {mean}; cells only in {diff['a']}: {diff['only_a']}, only in {diff['b']}: "
            f"{diff['only_b']}."
        )
    return "\n".join(lines) + "\n"
