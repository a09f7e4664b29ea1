"""Rich Text for the small panels: cell details, sweep progress, legends and the step slider.

Formatting only: every number comes from a snapshot or an analysis frame.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from rich.text import Text

from gamma_tui.analysis import PowerFit, RegimeFits
from gamma_tui.cache import FINAL_STATES
from gamma_tui.progress import SweepProgress
from gamma_tui.states import DIVERGED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, SKIPPED
from gamma_tui.ui.canvas import RGB, diverging, short_number, viridis
from gamma_tui.ui.data import SweepSnapshot
from gamma_tui.ui.edge import CellMeasures, cell_measures
from gamma_tui.ui.frames import Frame
from gamma_tui.ui.plots import (
    DIVERGED_BG,
    DIVERGED_FG,
    FAILED_BG,
    FIT_COLORS,
    GLYPHS,
    GUIDE_COLORS,
    NO_LAMBDA_BG,
    NO_LAMBDA_GLYPH,
    QUEUED_BG,
)

TIME_LABELS = {
    "t": "t",
    "eta_t": "η·t",
    "eta_t_over_gamma": "η·t/γ",
    "t_eta_gamma_k": "t·η·γ^-k",
    "t_over_t_half": "t/t½",
    "t_minus_t_half": "t − t½",
}
"""How each analysis.TIME_VARIABLES name reads on screen."""


def rgb(color: RGB) -> str:
    """A rich color string."""
    return f"rgb({color[0]},{color[1]},{color[2]})"


def step_label(step: float | None) -> str:
    """'t = 1,000' or 't = latest'."""
    return "t = latest" if step is None else f"t = {int(step):,}"


def duration(seconds: float | None) -> str:
    """1h02m, 3m05s, 12s; '–' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def compact(value: float) -> str:
    """1234 -> 1.2k, 2500000 -> 2.5M."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def loss_text(value: float) -> str:
    """A loss with 3 significant digits, '–' for NaN."""
    return f"{value:.3g}" if math.isfinite(value) else "–"


def progress_text(progress: SweepProgress, width: int, fits: RegimeFits | None = None) -> Text:
    """Runs done/total, diverged, failed, running and queued, a steps bar, steps/s and ETA,
    and (given fits) the fitted η*(γ) slopes on the last line."""
    counts = progress.counts
    text = Text()
    text.append("runs ")
    text.append(f"{progress.finished}/{progress.total}", style="bold")
    text.append(" · ")
    text.append(f"{counts.get(DIVERGED, 0)} diverged", style=rgb(DIVERGED_FG))
    failed = counts.get(FAILED, 0)
    if failed:
        text.append(" · ")
        text.append(f"{failed} failed", style=f"bold {rgb(DIVERGED_FG)}")
    text.append(f"\n{counts.get(RUNNING, 0)} running · {counts.get(QUEUED, 0)} queued")
    if counts.get(INTERRUPTED):
        text.append(f" · {counts[INTERRUPTED]} interrupted", style="yellow")
    if counts.get(SKIPPED):
        text.append(f" · {counts[SKIPPED]} skipped")
    share = progress.steps_done / progress.steps_total if progress.steps_total else 0.0
    bar = max(4, min(30, width - 26))
    filled = int(round(share * bar))
    text.append(f"\nsteps {compact(progress.steps_done)}/{compact(progress.steps_total)} ")
    text.append("━" * filled, style="green")
    text.append("━" * (bar - filled), style="grey35")
    text.append(f" {share:4.0%}")
    unfinished = progress.total - progress.finished
    if unfinished == 0 and progress.total:
        text.append("\nfinished", style="bold green")
    elif progress.steps_per_second > 0:
        text.append(
            f"\n{compact(progress.steps_per_second)} steps/s · ETA {duration(progress.eta_seconds)}"
        )
    else:
        text.append("\nsteps/s – · ETA –", style="dim")
    if fits is not None:
        text.append("\n")
        text.append_text(fit_text(fits, width))
    return text


def fit_text(fits: RegimeFits, width: int) -> Text:
    """The fitted η*(γ) slopes, lazy and rich, next to theory, and the crossover γ, in one line
    of at most `width` columns: the longest of three wordings that fits (then cut).

    'η* slope lazy 2.00±0.40 (theory 2) · rich 0.66±0.01 (0.67) · γ× 0.6' when wide, down to
    'lazy 2.00±.40 (2) rich .66±.01 (.67)'; a regime without a fit reads 'not enough data'.
    """
    lazy, rich = fits.lazy, fits.rich
    cross = f" · γ× {short_number(fits.crossover_gamma)}" if fits.crossover_gamma else ""
    wide = (
        f"η* slope lazy {_slope(lazy, fits.theory_lazy, 'theory ')}"
        f" · rich {_slope(rich, fits.theory_rich, '')}{cross}"
    )
    wide = wide.replace(" : ", ": ")
    if lazy is None or rich is None:
        missing = "lazy" if lazy is None else "rich"
        fitted, fit = ("rich", rich) if lazy is None else ("lazy", lazy)
        theory = fits.theory_rich if lazy is None else fits.theory_lazy
        middle = f"η* {fitted} {_slope(fit, theory, '')} · {missing}: not enough data"
        narrow = f"η* {fitted} {_slope(fit, theory, '', True)} · {missing} –"
        if fit is None:
            middle = narrow = "η* slopes: not enough data"
    else:
        middle = (
            f"η* lazy {_slope(lazy, fits.theory_lazy, '')} · rich "
            f"{_slope(rich, fits.theory_rich, '')}{cross}"
        )
        narrow = (
            f"lazy {_slope(lazy, fits.theory_lazy, '', True)} "
            f"rich {_slope(rich, fits.theory_rich, '', True)}"
        )
    for line in (wide, middle, narrow):
        if len(line) <= width:
            return Text(line)
    return Text(narrow[: max(1, width - 1)] + "…")


def _slope(fit: PowerFit | None, theory: float, word: str, short: bool = False) -> str:
    """'2.00±0.40 (theory 2)'; '±∞' with two points; short drops the leading zeros."""
    if fit is None:
        return ": not enough data" if not short else "–"
    ci = "±∞" if not math.isfinite(fit.slope_ci95) else f"±{fit.slope_ci95:.2f}"
    value = f"{fit.slope:.2f}{ci}"
    expected = f"{theory:.2f}".rstrip("0").rstrip(".") if math.isfinite(theory) else "?"
    if short:
        value, expected = (re.sub(r"(?<![0-9])0\.", ".", v) for v in (value, expected))
    return f"{value} ({word}{expected})"


def details_text(snapshot: SweepSnapshot, frame: Frame, g: int, h: int) -> Text:
    """The selected cell: γ, η (and c), state, loss at t per seed, t½, held-out loss and
    accuracy, η*(γ), η_div(γ), runs."""
    text = Text()
    if h < 0 or g >= frame.grid.gammas.size:
        return Text("no cell here: move the cursor onto a colored cell", style="dim")
    gamma, eta = float(frame.grid.gammas[g]), float(frame.grid.etas[h])
    indices = snapshot.runs_in_cell(g, h)
    runs = [snapshot.runs[i] for i in indices]
    state = str(frame.grid.state[g, h])
    text.append(f"γ {short_number(gamma)}  η {short_number(eta)}", style="bold")
    c = snapshot.eta_multiplier(gamma, eta)
    if c is not None:
        text.append(f" (c {short_number(c)})")
    text.append(f"  {state}", style=_state_style(state))
    text.append(f" ×{len(runs)}\n" if len(runs) != 1 else "\n")
    mean = frame.log10_loss[g, h]
    text.append(f"L({'latest' if frame.step is None else f'{int(frame.step):,}'}) ")
    text.append(loss_text(float(10**mean) if np.isfinite(mean) else math.nan), style="bold")
    losses = frame.grid.loss[:, g, h]
    finite = losses[np.isfinite(losses)]
    if finite.size > 1:
        text.append(f" [{loss_text(float(finite.min()))}…{loss_text(float(finite.max()))}]")
    init = frame.grid.init_loss[:, g, h]
    init = init[np.isfinite(init)]
    text.append(f"  L(0) {loss_text(float(init.mean())) if init.size else '–'}\n")
    halves = snapshot.plateau[indices] if indices else np.zeros(0)
    halves = halves[np.isfinite(halves)]
    text.append(f"t½ {short_number(float(halves.mean())) if halves.size else '–'}")
    steps = sorted({r.steps_done for r in runs})
    target = runs[0].steps_target if runs else 0
    held_out = _held_out_text(snapshot, indices, frame.step)
    done = "/".join(str(s) for s in steps)
    # with a held-out value the line drops its words, to fit half of an 80-column terminal
    text.append(f"  {done}/{target}" if held_out else f"  steps {done} of {target}")
    text.append_text(held_out)
    diverged = [r.diverged_step for r in runs if r.diverged_step is not None]
    if diverged:
        text.append(
            f"  diverged at {', '.join(str(d) for d in diverged)}", style=_state_style(DIVERGED)
        )
    text.append("\n")
    star, edge = frame.eta_star[g], frame.eta_div[g]
    text.append("η*(γ) ")
    if star.ok:
        text.append(short_number(star.eta), style="bold")
        if math.isfinite(star.log10_eta_err) and star.log10_eta_err > 0:
            text.append(f" ±{star.log10_eta_err:.2f}dec")
        if star.at_edge:
            text.append(" (edge)", style="yellow")
    else:
        text.append("–")
    text.append("  η_div ")
    text.append(
        ("≥" if edge.at_edge and math.isfinite(edge.eta) else "")
        + (short_number(edge.eta) if math.isfinite(edge.eta) else "–")
    )
    errors = [r.error for r in runs if r.error]
    measures = cell_measures(snapshot, indices, frame.step)
    if errors:
        text.append(f"\nerror: {errors[0]}", style=f"bold {rgb(DIVERGED_FG)}")
    elif measures is not None:  # in place of the run ids, which the run browser lists
        text.append("\n")
        text.append_text(measures_text(measures))
        # one line per row, cut at the panel's edge: a wrapped line would push this one out
        text.no_wrap, text.overflow = True, "ellipsis"
    else:
        text.append(f"\nrun {' '.join(r.run_id for r in runs)}", style="dim")
    return text


def measures_text(measures: CellMeasures) -> Text:
    """`ens 0.0114 89% ×2 · S·λ 1.84 λ 12.3 · catapult`: the held-out loss and accuracy of the
    seed-averaged prediction (next to the single-run `test` above), step size × λ_max and
    λ_max at the step shown, and the cell's flags; parts without a value are left out."""
    parts: list[tuple[str, str]] = []
    if math.isfinite(measures.ens_loss):
        accuracy = measures.ens_accuracy
        percent = f" {100 * accuracy:.0f}%" if math.isfinite(accuracy) else ""
        seeds = f" ×{measures.ens_seeds}" if measures.ens_seeds else ""
        parts.append((f"ens {loss_text(measures.ens_loss)}{percent}{seeds}", ""))
    if math.isfinite(measures.edge):
        style = "bold yellow" if measures.edge > 2 else ""
        parts.append((f"S·λ {measures.edge:.3g} λ {short_number(measures.lam)}", style))
    elif not math.isfinite(measures.ens_loss):
        parts.append(("no λ_max", "dim"))
    if measures.catapult:
        parts.append(("catapult", "bold magenta"))
    if measures.progressive:
        parts.append(("sharpening", "bold cyan"))
    text = Text()
    for index, (part, style) in enumerate(parts):
        text.append(" · " if index else "", style="dim")
        text.append(part, style=style)
    return text


def _held_out_text(snapshot: SweepSnapshot, indices: list[int], step: float | None) -> Text:
    """`  test 0.0123 87%`: the seed-mean held-out loss (and accuracy) at the last evaluation
    at or before the step shown (its step in dim when earlier); empty without evaluations."""
    held = snapshot.held_out(indices)
    if held is None:
        return Text()
    steps, loss, accuracy = held
    at = len(steps) - 1 if step is None else int(np.searchsorted(steps, step, side="right")) - 1
    if at < 0:
        return Text()
    text = Text("  test ")
    text.append(loss_text(float(loss[at])), style="bold")
    if np.isfinite(accuracy[at]):
        text.append(f" {100 * accuracy[at]:.0f}%")
    if step is not None and steps[at] != step:
        text.append(f"@{short_number(float(steps[at]))}", style="dim")
    return text


def _state_style(state: str) -> str:
    """Text style of a state name."""
    return {
        DIVERGED: f"bold {rgb(DIVERGED_FG)}",
        FAILED: f"bold {rgb(FAILED_BG)}",
        RUNNING: "bold cyan",
        QUEUED: "dim",
        DONE: "green",
    }.get(state, "")


def heat_legend(
    loss_range: tuple[float, float], guides: bool, depth: int, relative: bool, lazy: float = 2.0
) -> Text:
    """Color bar of log10 loss, the state glyphs and (if on) the guide lines."""
    low, high = loss_range
    text = Text()
    text.append(f"log₁₀L {low:+.1f} ")
    for color in viridis(np.linspace(0, 1, 8)):
        text.append("█", style=rgb(tuple(int(c) for c in color)))  # type: ignore[arg-type]
    text.append(f" {high:+.1f}  ")
    if not guides:
        diverged = f"bold {rgb(DIVERGED_FG)} on {rgb(DIVERGED_BG)}"
        text.append(f" {GLYPHS[DIVERGED]} ", style=diverged)
        text.append(" div ")
        text.append(f" {GLYPHS[QUEUED]} ", style=f"on {rgb(QUEUED_BG)}")
        text.append(" queued ")
        text.append(f" {GLYPHS[RUNNING]} ", style="on grey35")
        text.append(" running ")
        text.append(f" {GLYPHS[FAILED]} ", style=f"bold on {rgb(FAILED_BG)}")
        text.append(" failed ")
    text.append(" * ", style="bold")
    text.append("η*")
    if guides:
        # On a line of its own: the state key gives way so the line keys fit in two lines.
        text.append("\nη∝")
        labels = ("γ²", f"γ^(2/{depth})") if lazy == 2 else ("γ", f"γ^(1/{depth})")
        for color, label in zip(GUIDE_COLORS, (*labels, "γ"), strict=True):
            text.append(" ⠒", style=rgb(color))
            text.append(label)
        text.append(" · fit")
        for color, label in zip(FIT_COLORS, ("lazy", "rich"), strict=True):
            text.append(" ⠂⠂", style=f"bold {rgb(color)}")
            text.append(label)
    if relative:
        text.append("  (η grid relative: c·γ^p)", style="dim")
    return text


def edge_legend(edge_range: tuple[float, float], measured: bool, step: str = "N·η") -> Text:
    """Color bar of log10 step size × λ_max centred at the edge (2), the state glyphs and the
    mark of cells without λ_max; a hint to turn diagnostics on when the sweep has none."""
    low, high = edge_range
    text = Text()
    if not measured:
        text.append("no λ_max in this sweep: [diagnostics] sharpness = true ", style="yellow")
        text.append(" m ", style="reverse")
        text.append(" loss map")
        return text
    text.append(f"log₁₀S·λ {low:+.1f} ")
    for color in diverging(np.linspace(0, 1, 9)):
        text.append("█", style=rgb(tuple(int(c) for c in color)))  # type: ignore[arg-type]
    text.append(f" {high:+.1f} mid 2\n")
    text.append(f" {NO_LAMBDA_GLYPH} ", style=f"on {rgb(NO_LAMBDA_BG)}")
    text.append(" no λ ")
    diverged = f"bold {rgb(DIVERGED_FG)} on {rgb(DIVERGED_BG)}"
    text.append(f" {GLYPHS[DIVERGED]} ", style=diverged)
    text.append(" div ")
    text.append(" * ", style="bold")
    text.append(f"η*  S = {step}")
    return text


def slider_text(steps: Sequence[float | None], index: int, width: int) -> Text:
    """The step slider: label, a track with a knob at the chosen position, key hints."""
    text = Text()
    label = step_label(steps[index])
    text.append(f"{label:<14}", style="bold")
    track = max(6, width - 26)
    position = round(index / max(1, len(steps) - 1) * (track - 1))
    text.append("◂ ", style="dim")
    text.append("━" * position, style="cyan")
    text.append("●", style="bold cyan")
    text.append("─" * (track - 1 - position), style="grey42")
    text.append(" ▸", style="dim")
    text.append("  [ ] step", style="dim")
    return text


def family_legend(
    labels: Sequence[str], colors: Sequence[RGB], knob: str, width: int, highlight: str | None
) -> Text:
    """Legend of a curve family: each label in its color (the cursor's reversed), or a ramp."""
    text = Text()
    text.append(f"{knob} ", style="bold")
    entries = sum(len(label) + 2 for label in labels)
    if entries + len(knob) + 1 <= width:
        for label, color in zip(labels, colors, strict=True):
            text.append("━", style=rgb(color))
            style = "bold reverse" if label == highlight else ""
            text.append(label, style=style)
            text.append(" ")
    elif labels:
        text.append(f"{labels[0]} ")
        for color in colors:
            text.append("━", style=rgb(color))
        text.append(f" {labels[-1]}")
        if highlight is not None:
            text.append(f"  cursor {highlight}", style="bold reverse")
    return text


def sweep_state(counts: dict[str, int]) -> str:
    """One word for a sweep: running, finished, failed, queued or partial."""
    total = sum(counts.values())
    if counts.get(RUNNING):
        return RUNNING
    unfinished = total - sum(counts.get(s, 0) for s in FINAL_STATES)
    if counts.get(FAILED):
        return FAILED
    if unfinished == 0:
        return "finished"
    return QUEUED if unfinished == total else "partial"
