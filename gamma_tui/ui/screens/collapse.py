"""The collapse view: large-γ curves at η*(γ) against a rescaled time, with the fitted k."""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from gamma_tui.analysis import TIME_VARIABLES, CollapseFit
from gamma_tui.ui.canvas import ramp, series_range, short_number
from gamma_tui.ui.collapse_data import CollapseResult, collapse
from gamma_tui.ui.curves import PlotModel, Series
from gamma_tui.ui.data import SweepSnapshot
from gamma_tui.ui.frames import compute_frame
from gamma_tui.ui.messages import CollapseReady
from gamma_tui.ui.state import UiState
from gamma_tui.ui.text import TIME_LABELS, family_legend
from gamma_tui.ui.widgets import CurvePlot, show_text

K_STEP = 0.05
"""How much one key press changes k."""


class CollapseScreen(Screen[None]):
    """Curves of the chosen γ at η*(γ)·ratio on a rescaled time axis; k by keys or fitted."""

    BINDINGS = [
        Binding("v", "variable(1)", "time axis"),
        Binding("V", "variable(-1)", "prev axis", show=False),
        Binding("plus,equals_sign", "k(1)", "k+"),
        Binding("minus,underscore", "k(-1)", "k−"),
        Binding("f", "fit", "fit k"),
        Binding("right_square_bracket", "eta(1)", "η/η*+"),
        Binding("left_square_bracket", "eta(-1)", "η/η*−"),
        Binding("a", "all_gammas", "all γ"),
        Binding("s", "toggle_smooth", "smooth"),
    ]

    def __init__(self, state: UiState) -> None:
        super().__init__(id="collapse")
        self.state = state
        """What the app knows (read only: actions go to the app as messages)."""
        self.variable = "t_eta_gamma_k"
        """The time axis (one of analysis.TIME_VARIABLES)."""
        self.k: float | None = None
        """The exponent in t·η·γ^-k; None follows the fit."""
        self.eta_offset = 0
        """Grid steps from the η nearest η*(γ)."""
        self.large_gamma_only = True
        """Only γ > 1 (the rich regime) or every γ."""
        self.smooth = True
        """Draw curves smoothed over ±0.03 decades of t (display only; spreads use raw data)."""
        self.result: CollapseResult | None = None
        """What is on screen."""
        self._fits: dict[tuple[int, int, bool], CollapseFit] = {}

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        with Vertical(id="collapse-panel", classes="panel"):
            yield CurvePlot(id="collapse-plot")
            yield Static(id="collapse-legend")
        yield Static(id="collapse-info", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        """Set up once the widgets exist."""
        self.query_one("#collapse-panel").border_title = "collapse"
        self.query_one("#collapse-info").border_title = "fit"
        self.query_one("#collapse-info", Static).update("no sweep yet")

    def on_screen_resume(self) -> None:
        """Catch up with data that arrived while another screen was shown."""
        self.recompute()

    def apply_snapshot(self, snapshot: SweepSnapshot) -> None:
        """A new snapshot arrived: recompute if this screen is showing."""
        if self.is_current:
            self.recompute()

    def recompute(self) -> None:
        """Ask for the collapse of the current snapshot with the current settings."""
        snapshot = self.state.snapshot
        if snapshot is None:
            return
        fit = self._fits.get((snapshot.version, self.eta_offset, self.large_gamma_only))
        self._collapse(
            snapshot,
            self.variable,
            self.k,
            self.eta_offset,
            self.large_gamma_only,
            fit,
            self.smooth,
        )

    @work(thread=True, exclusive=True, group="collapse")
    def _collapse(
        self,
        snapshot: SweepSnapshot,
        variable: str,
        k: float | None,
        offset: int,
        large: bool,
        fit: CollapseFit | None,
        smooth: bool,
    ) -> None:
        """Rescale and (if needed) fit off the UI thread; η* is taken at each run's last step."""
        frame = snapshot.frame
        if frame.step is not None:
            frame = compute_frame(
                snapshot.name, snapshot.version, snapshot.curves, None, snapshot.fit_settings
            )
        result = collapse(snapshot, variable, k, offset, large, fit, frame, smooth)
        self.post_message(CollapseReady(result))

    def on_collapse_ready(self, message: CollapseReady) -> None:
        """Draw the new collapse (keeping its fit for later key presses)."""
        result = message.result
        self._fits[(result.version, result.eta_offset, self.large_gamma_only)] = result.fit
        self.result = result
        self._draw(result)

    def _draw(self, result: CollapseResult) -> None:
        """Plot the curves, the legend and the fit panel."""
        plot = self.query_one(CurvePlot)
        foreground, background = plot.rgb_colors()
        colors = ramp(len(result.curves))
        xs = []
        series = []
        for curve, color in zip(result.curves, colors, strict=True):
            with np.errstate(all="ignore"):
                x = np.log10(curve.x) if result.log_x else curve.x
            x = np.where(np.isfinite(x), x, np.nan)
            xs.append(x[np.isfinite(curve.log10_loss)])
            series.append(Series(x, curve.log10_loss, color))
        x_range = series_range(xs, pad=0.02)
        y_range = series_range([s.y for s in series], pad=0.05)
        empty = result.reason or "no curves"
        if self.variable in ("t_over_t_half", "t_minus_t_half") and not any(
            c.t_half for c in result.curves
        ):
            empty = "no curve has left its plateau yet: t½ is unknown"
        if not any(np.isfinite(x).any() for x in xs):
            series = []
        plot.show(
            PlotModel(
                tuple(series),
                x_range,
                y_range,
                result.log_x,
                None,
                foreground,
                background,
                empty_text=empty,
            )
        )
        legend = self.query_one("#collapse-legend", Static)
        labels = [short_number(c.gamma) for c in result.curves]
        show_text(legend, family_legend(labels, colors, "γ", legend.size.width or 60, None))
        panel = self.query_one("#collapse-panel")
        panel.border_title = f"{result.sweep} · collapse against {TIME_LABELS[result.variable]}"
        panel.border_subtitle = (
            "γ > 1" if self.large_gamma_only else "all γ"
        ) + f" · η = η*(γ) {self._ratio_text()}"
        show_text(self.query_one("#collapse-info", Static), self._info(result))

    def _ratio_text(self) -> str:
        """How far the chosen η is from η*, in grid steps."""
        if self.eta_offset == 0:
            return ""
        return f"{self.eta_offset:+d} grid step(s)"

    def _info(self, result: CollapseResult) -> Text:
        """Fitted k with its interval and score; the spread at the shown k."""
        fit = result.fit
        text = Text()
        text.append("fit of t·η·γ^-k: ")
        if fit.ok:
            text.append(f"k = {fit.k:.3f}", style="bold")
            text.append(f" [{fit.k_lo:.2f}, {fit.k_hi:.2f}] · collapse score ")
            text.append(f"{fit.score:.3f}", style="bold")
            text.append(f" · {fit.n_curves} curves")
        else:
            text.append(fit.reason or result.reason, style="yellow")
        text.append("\nshown: ")
        text.append(TIME_LABELS[result.variable], style="bold")
        if result.variable == "t_eta_gamma_k":
            mode = "manual" if self.k is not None else "fitted" if fit.ok else "default: no fit"
            k_text = f"{result.k:.3f}" if math.isfinite(result.k) else "–"
            text.append(f" with k = {k_text} ({mode})")
        spread = "∞" if not math.isfinite(result.spread) else f"{result.spread:.3g}"
        raw = "∞" if not math.isfinite(result.raw_spread) else f"{result.raw_spread:.3g}"
        text.append(f" · spread of log₁₀ loss {spread} (raw t: {raw})")
        text.append("\nv axis · +/− k · f fit k · [ ] η/η* · a all γ · s smooth", style="dim")
        return text

    def action_variable(self, delta: int) -> None:
        """Cycle the time axis."""
        index = TIME_VARIABLES.index(self.variable)
        self.variable = TIME_VARIABLES[(index + delta) % len(TIME_VARIABLES)]
        self.recompute()

    def action_k(self, direction: int) -> None:
        """Change k by K_STEP (switches the axis to t·η·γ^-k)."""
        current = (
            self.k
            if self.k is not None
            else (self.result.k if self.result and math.isfinite(self.result.k) else 1.0)
        )
        self.k = current + direction * K_STEP
        self.variable = "t_eta_gamma_k"
        self.recompute()

    def action_fit(self) -> None:
        """Use the fitted k."""
        self.k = None
        self.variable = "t_eta_gamma_k"
        self.recompute()

    def action_eta(self, delta: int) -> None:
        """Move the chosen η a grid step away from η*(γ)."""
        self.eta_offset += delta
        self.recompute()

    def action_toggle_smooth(self) -> None:
        """Draw the curves smoothed or raw."""
        self.smooth = not self.smooth
        self.recompute()

    def action_all_gammas(self) -> None:
        """Toggle between γ > 1 and every γ."""
        self.large_gamma_only = not self.large_gamma_only
        self.recompute()
