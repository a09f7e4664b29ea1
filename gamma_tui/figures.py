"""The paper's figures of a sweep (docs/science.md §5) as PNG and SVG, plus summary.md.

Needs the optional extra `report` (matplotlib); the CLI imports this module only for
`gamma-tui report`, and the ImportError below is what tells it the extra is missing. Figures
are drawn on Agg canvases without pyplot, so nothing global (the backend, open figures) is
touched. Every number drawn comes from gamma_tui.pipeline.analyze, the same object `fit` prints.
Files are written to a temporary name in the output directory and renamed into place. The
figures themselves are drawn in figures_eta (η landscape) and figures_dynamics (curves).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gamma_tui.cache import Cache
from gamma_tui.figures_dynamics import draw_best_loss, draw_collapse, draw_loss_curves, draw_plateau
from gamma_tui.figures_eta import draw_eta_laws, draw_phase_portrait
from gamma_tui.pipeline import SweepAnalysis, analyze
from gamma_tui.report import fit_text
from gamma_tui.sharpness import eta_stars, summarize, summary_text, sweep_runs
from gamma_tui.sharpness_figures import draw_sharpness
from gamma_tui.summary import summary_of

FORMATS = ("png", "svg")
"""Every figure is written in each of these formats."""

_DPI = 120


def write_report(
    cache: Cache,
    sweep: str,
    output_dir: str | Path,
    step: float | None = None,
    window: float | None = None,
) -> list[Path]:
    """Write the figures of docs/science.md §5 and summary.md; returns the paths written.
    A sweep with λ_max diagnostics also gets sharpness.png/.svg and its fit in summary.md."""
    result = analyze(cache, sweep, step, window)
    summary = summary_of(result)
    _, sharp_runs = sweep_runs(cache, sweep)
    optimizer = result.sweep.optimizer
    if sharp_runs:
        summary["sharpness"] = summarize(
            sharp_runs, eta_stars(summary), result.sweep.depth, optimizer
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
