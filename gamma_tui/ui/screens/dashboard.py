"""The live dashboard of one sweep: phase portrait, loss curves, cell details and progress."""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from gamma_tui.config import lazy_exponent
from gamma_tui.ui.curve_panel import curve_panel
from gamma_tui.ui.curves import PlotModel
from gamma_tui.ui.data import SweepSnapshot
from gamma_tui.ui.edge import edge_grid, edge_range, has_sharpness
from gamma_tui.ui.frames import Frame, compute_frame
from gamma_tui.ui.messages import ExportSweep, FocusStep, FrameReady, StopSweep
from gamma_tui.ui.plots import HeatmapModel
from gamma_tui.ui.state import UiState
from gamma_tui.ui.text import (
    details_text,
    edge_legend,
    family_legend,
    heat_legend,
    progress_text,
    slider_text,
    step_label,
)
from gamma_tui.ui.widgets import CurvePlot, HeatmapView, show_text

PREFETCH_DELAY_SECONDS = 0.04
"""Prefetching neighbouring frames starts after this pause in the keys."""

FRAME_CACHE = 64
"""Analysis frames kept (newest per step), so stepping back and forth repaints at once."""

MAP_MODES = ("loss", "sharpness")
"""What the heatmap colors, cycled by `m`: log10 loss, or log10 step size × λ_max (the curve
panel then shows λ(t) instead of the losses)."""


class DashboardScreen(Screen[None]):
    """Heatmap of log10 loss over (γ, η) at step t, curves of the cursor's column or row."""

    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "γ−", show=False),
        Binding("right,l", "move(1, 0)", "γ+", show=False),
        Binding("up,k", "move(0, 1)", "η+", show=False),
        Binding("down,j", "move(0, -1)", "η−", show=False),
        Binding("left_square_bracket,less_than_sign", "step(-1)", "t−"),
        Binding("right_square_bracket,greater_than_sign", "step(1)", "t+"),
        Binding("home", "step_to(0)", "first t", show=False),
        Binding("end", "step_to(-1)", "latest t", show=False),
        Binding("v", "toggle_family", "γ col/η row"),
        Binding("m", "cycle_map", "map loss/λ"),
        Binding("g", "toggle_guides", "guides"),
        Binding("s", "toggle_smooth", "smooth"),
        Binding("e", "export", "export CSV"),
        Binding("x", "stop", "stop sweep"),
    ]

    def __init__(self, state: UiState) -> None:
        super().__init__(id="dashboard")
        self.state = state
        """What the app knows (read only: actions go to the app as messages)."""
        self.snapshot: SweepSnapshot | None = None
        """The sweep on display."""
        self.frame: Frame | None = None
        """The analysis at the slider's step (may lag the slider by one computation)."""
        self.step_index = -1
        """Slider position in snapshot.slider; -1 is 'latest'."""
        self.cursor = (0, 0)
        """(γ index, layout row) of the cell cursor."""
        self.by_row = False
        """Curves of the cursor's η row (colored by γ) instead of its γ column (by η)."""
        self.guides = False
        """Draw the guide lines η ∝ γ², γ^(2/L), γ."""
        self.smooth = True
        """Draw curves smoothed over ±0.03 decades of t (display only)."""
        self.map_mode = MAP_MODES[0]
        """What the heatmap colors (MAP_MODES)."""
        self._edges: tuple[int, float | None, np.ndarray] | None = None
        self._frames: dict[float | None, Frame] = {}
        self._direction = -1
        self._cursor_moved = False
        self._prefetch_timer: Timer | None = None
        self._composed = False

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        with Horizontal(id="dash-top"):
            with Vertical(id="heat-panel", classes="panel"):
                yield HeatmapView(id="heatmap")
                yield Static(id="heat-legend")
                yield Static(id="slider")
            with Vertical(id="curve-panel", classes="panel"):
                yield CurvePlot(id="curves")
                yield Static(id="curve-legend")
        with Horizontal(id="dash-bottom"):
            yield Static(id="details", classes="panel")
            yield Static(id="progress", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        """Set up once the widgets exist."""
        self._composed = True
        self.query_one("#heat-panel").border_title = "phase portrait"
        self.query_one("#curve-panel").border_title = "loss curves"
        self.query_one("#details").border_title = "cell"
        self.query_one("#progress").border_title = "progress"
        self._empty()

    def on_screen_resume(self) -> None:
        """Catch up with data that arrived while another screen was shown."""
        snapshot = self.state.snapshot
        if snapshot is not None and snapshot is not self.snapshot:
            self.apply_snapshot(snapshot)
        elif snapshot is None:
            self._empty()

    def clear(self) -> None:
        """Forget the sweep on display (it left the cache)."""
        self.snapshot = self.frame = None
        self._frames.clear()
        if not self._composed:
            return
        self.query_one(HeatmapView).show(None)
        self.query_one(CurvePlot).show(None)
        for name in ("#heat-legend", "#slider", "#curve-legend", "#progress"):
            show_text(self.query_one(name, Static), Text(""))
        self._empty()

    def _empty(self) -> None:
        """What the dashboard says before any sweep exists."""
        if self.snapshot is not None:
            return
        self.query_one("#heat-panel").border_title = "phase portrait"
        message = "no sweep yet: start one from the launcher (1) or open one in the run browser (4)"
        if self.state.current_sweep:
            message = f"loading {self.state.current_sweep}…"
        show_text(self.query_one("#details", Static), Text(message))

    # ---- data in -------------------------------------------------------------------------

    def apply_snapshot(self, snapshot: SweepSnapshot) -> None:
        """Show a new snapshot; cursor and slider stay put while the sweep is the same."""
        if not self._composed:
            return  # not shown yet: on_screen_resume takes the app's latest snapshot
        same = self.snapshot is not None and self.snapshot.name == snapshot.name
        self.snapshot = snapshot
        if not same:
            self._frames.clear()
            self.step_index = len(snapshot.slider) - 1
            self.cursor = self._initial_cursor(snapshot)
            self._cursor_moved = False
        elif not self._cursor_moved:
            self.cursor = self._initial_cursor(snapshot)  # follow η* until the user moves
            self.step_index = min(self.step_index, len(snapshot.slider) - 1)
        else:
            self.step_index = min(self.step_index, len(snapshot.slider) - 1)
        self._frames[snapshot.frame.step] = snapshot.frame
        self._clamp_cursor()
        self._use_frame_for_slider()
        self.redraw_title()

    def redraw_title(self) -> None:
        """The heatmap panel's title: the sweep and what the map shows."""
        assert self.snapshot is not None
        shown = "step size × λ_max" if self.map_mode == "sharpness" else "phase portrait"
        _set_border(self.query_one("#heat-panel"), title=f"{self.snapshot.name} · {shown}")

    def _edge_values(self, snapshot: SweepSnapshot, step: float | None) -> np.ndarray:
        """log10 S·λ_max per cell at `step`, kept while the snapshot and step stay the same."""
        if self._edges is None or self._edges[:2] != (snapshot.version, step):
            self._edges = (snapshot.version, step, edge_grid(snapshot, step))
        return self._edges[2]

    def _initial_cursor(self, snapshot: SweepSnapshot) -> tuple[int, int]:
        """Start on η* of the middle γ column (or its middle cell)."""
        layout = snapshot.layout
        if layout.gammas.size == 0:
            return (0, 0)
        g = layout.gammas.size // 2
        rows = layout.rows_of(g)
        point = snapshot.frame.eta_star[g] if g < len(snapshot.frame.eta_star) else None
        if point is not None and point.ok and rows:
            target = layout.row_at(math.log10(point.eta))
            return (g, min(rows, key=lambda r: abs(r - target)))
        return (g, rows[len(rows) // 2] if rows else 0)

    def _clamp_cursor(self) -> None:
        """Keep the cursor on an existing cell after the layout changed."""
        assert self.snapshot is not None
        layout = self.snapshot.layout
        g = min(max(self.cursor[0], 0), max(layout.gammas.size - 1, 0))
        rows = layout.rows_of(g) if layout.gammas.size else []
        row = min(rows, key=lambda r: abs(r - self.cursor[1])) if rows else 0
        self.cursor = (g, row)

    def _wanted_step(self) -> float | None:
        """The step the slider points at."""
        assert self.snapshot is not None
        return self.snapshot.slider[self.step_index]

    def _cached(self, step: float | None) -> Frame | None:
        """The newest frame at `step` that fits the current layout (maybe one snapshot old)."""
        assert self.snapshot is not None
        frame = self._frames.get(step)
        layout = self.snapshot.layout
        if (
            frame is None
            or frame.grid.gammas.shape != layout.gammas.shape
            or frame.grid.etas.shape != layout.etas.shape
            or not np.allclose(frame.grid.etas, layout.etas)
        ):
            return None
        return frame

    def _use_frame_for_slider(self) -> None:
        """Show the frame for the slider's step at once if one is cached (refreshing it off
        the UI thread when it is a snapshot old), else compute it off the UI thread."""
        assert self.snapshot is not None
        step = self._wanted_step()
        cached = self._cached(step)
        if cached is not None:
            self.frame = cached
            self.redraw()
            if cached.version == self.snapshot.version:
                self._prefetch_neighbours()
            else:
                self._compute_frame(self.snapshot, step)
        else:
            self.redraw(slider_only=True)
            self._compute_frame(self.snapshot, step)
        self.post_message(FocusStep(self.snapshot.name, step))

    @work(thread=True, exclusive=True, group="frame")
    def _compute_frame(self, snapshot: SweepSnapshot, step: float | None) -> None:
        """Analysis at another step, posted back as a FrameReady message."""
        frame = compute_frame(
            snapshot.name, snapshot.version, snapshot.curves, step, snapshot.fit_settings
        )
        self.post_message(FrameReady(frame))

    def on_frame_ready(self, message: FrameReady) -> None:
        """Cache a computed frame; show it if the slider still points at its step."""
        frame = message.frame
        if self.snapshot is None or frame.sweep != self.snapshot.name:
            return
        known = self._frames.get(frame.step)
        if known is not None and known.version > frame.version:
            return
        if len(self._frames) > FRAME_CACHE:
            self._frames.clear()
        self._frames[frame.step] = frame
        if frame.step == self._wanted_step() and self._cached(frame.step) is frame:
            self.frame = frame
            self.redraw()
            self._prefetch_neighbours()

    def _prefetch_neighbours(self) -> None:
        """Soon, compute the frames next along the slider (the way it last moved first), so
        the next step key repaints at once; waits for a pause in the keys so the work does
        not compete with the repaint of the key just pressed."""
        if self._prefetch_timer is not None:
            self._prefetch_timer.stop()
        self._prefetch_timer = self.set_timer(PREFETCH_DELAY_SECONDS, self._start_prefetch)

    def _start_prefetch(self) -> None:
        """Start the prefetch worker for the frames around the slider."""
        self._prefetch_timer = None
        if self.snapshot is None:
            return
        ahead = self._direction
        order = (self.step_index + ahead, self.step_index + 2 * ahead, self.step_index - ahead)
        steps = [self.snapshot.slider[i] for i in order if 0 <= i < len(self.snapshot.slider)]
        version = self.snapshot.version
        missing = [s for s in steps if s not in self._frames or self._frames[s].version != version]
        if missing:
            self._prefetch(self.snapshot, missing)

    @work(thread=True, exclusive=True, group="prefetch")
    def _prefetch(self, snapshot: SweepSnapshot, steps: list[float | None]) -> None:
        """Frames for nearby steps, posted like any other (cached on arrival)."""
        for step in steps:
            if get_current_worker().is_cancelled:
                return
            self.post_message(
                FrameReady(
                    compute_frame(
                        snapshot.name,
                        snapshot.version,
                        snapshot.curves,
                        step,
                        snapshot.fit_settings,
                    )
                )
            )

    # ---- drawing -------------------------------------------------------------------------

    def redraw(self, slider_only: bool = False) -> None:
        """Push the current state into the widgets (each redraws only if its model changed)."""
        snapshot = self.snapshot
        if snapshot is None:
            return
        slider = self.query_one("#slider", Static)
        show_text(slider, slider_text(snapshot.slider, self.step_index, slider.size.width or 40))
        if slider_only or self.frame is None:
            return
        frame = self.frame
        heatmap = self.query_one(HeatmapView)
        foreground, background = heatmap.rgb_colors()
        sharpness = self.map_mode == "sharpness"
        values, color_range = frame.log10_loss, snapshot.loss_range
        if sharpness:
            values = self._edge_values(snapshot, frame.step)
            color_range = edge_range(values)
        heatmap.show(
            HeatmapModel(
                snapshot.layout,
                values,
                frame.grid.state,
                frame.eta_star,
                color_range,
                self.cursor,
                self.guides,
                snapshot.depth,
                foreground,
                background,
                frame.fits,
                lazy_exponent(snapshot.fit_settings.optimizer),
                self.map_mode,
            )
        )
        subtitle = "smoothed ±0.03 dec (s)" if self.smooth else "raw (s)"
        subtitle = "m: loss map" if sharpness else subtitle
        _set_border(self.query_one("#curve-panel"), subtitle=subtitle)
        legend = heat_legend(
            snapshot.loss_range,
            self.guides,
            snapshot.depth,
            snapshot.relative_eta,
            lazy_exponent(snapshot.fit_settings.optimizer),
        )
        if sharpness:
            sgd = snapshot.fit_settings.optimizer == "sgd"
            legend = edge_legend(color_range, has_sharpness(snapshot), "N·η" if sgd else "η")
        show_text(self.query_one("#heat-legend", Static), legend)
        self.redraw_title()
        _set_border(self.query_one("#heat-panel"), subtitle=step_label(frame.step))
        self._draw_curves(snapshot, frame)
        g, row = self.cursor
        h = snapshot.layout.cell_at(g, row) if snapshot.layout.gammas.size else -1
        details, cell = self.query_one("#details", Static), details_text(snapshot, frame, g, h)
        details.set_class(bool(cell.no_wrap), "unwrapped")  # its lines must not wrap
        show_text(details, cell)
        progress = self.query_one("#progress", Static)
        show_text(
            progress,
            progress_text(
                snapshot.progress,
                progress.content_size.width or max(20, min(56, self.size.width // 2 - 4)),
                frame.fits,
            ),
        )

    def _draw_curves(self, snapshot: SweepSnapshot, frame: Frame) -> None:
        """The cursor's γ column (curves colored by η) or η row (colored by γ)."""
        plot = self.query_one(CurvePlot)
        foreground, background = plot.rgb_colors()
        if snapshot.layout.gammas.size == 0:
            plot.show(PlotModel((), (0, 1), (0, 1), True, None, foreground, background))
            return
        sharpness = self.map_mode == "sharpness"
        panel = curve_panel(
            snapshot,
            frame,
            self.cursor,
            self.by_row,
            sharpness,
            self.smooth,
            foreground,
            background,
        )
        plot.show(panel.model)
        _set_border(self.query_one("#curve-panel"), title=panel.title)
        legend = self.query_one("#curve-legend", Static)
        show_text(
            legend,
            family_legend(
                panel.labels, panel.colors, panel.knob, legend.size.width or 40, panel.highlight
            ),
        )

    # ---- actions -------------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        """Move the cell cursor: across γ columns, or to the next cell up/down in the column."""
        if self.snapshot is None or self.snapshot.layout.gammas.size == 0:
            return
        layout = self.snapshot.layout
        self._cursor_moved = True
        g, row = self.cursor
        if dx:
            g = min(max(g + dx, 0), layout.gammas.size - 1)
            rows = layout.rows_of(g)
            row = min(rows, key=lambda r: abs(r - row)) if rows else row
        else:
            rows = layout.rows_of(g)
            moves = [r for r in rows if (r - row) * dy > 0]
            if moves:
                row = min(moves, key=lambda r: abs(r - row))
        self.cursor = (g, row)
        self.redraw()

    def action_step(self, delta: int) -> None:
        """Move the step slider."""
        if self.snapshot is None:
            return
        count = len(self.snapshot.slider)
        self._direction = 1 if delta > 0 else -1
        self.step_index = min(max(self.step_index + delta, 0), count - 1)
        self._use_frame_for_slider()

    def action_step_to(self, index: int) -> None:
        """Jump the slider to the first (0) or the latest (-1) position."""
        if self.snapshot is None:
            return
        self.step_index = index % len(self.snapshot.slider)
        self._use_frame_for_slider()

    def action_toggle_family(self) -> None:
        """Switch the curves between the cursor's γ column and its η row."""
        self.by_row = not self.by_row
        self.redraw()

    def action_cycle_map(self) -> None:
        """Color the heatmap by the next of MAP_MODES (the curves follow)."""
        self.map_mode = MAP_MODES[(MAP_MODES.index(self.map_mode) + 1) % len(MAP_MODES)]
        if self.snapshot is not None:
            self.redraw_title()
        self.redraw()

    def action_toggle_guides(self) -> None:
        """Show or hide the guide lines."""
        self.guides = not self.guides
        self.redraw()

    def action_toggle_smooth(self) -> None:
        """Draw the curves smoothed or raw."""
        self.smooth = not self.smooth
        self.redraw()

    def action_export(self) -> None:
        """Export the sweep to CSV (same code path as `gamma-tui export`)."""
        if self.snapshot is not None:
            self.post_message(ExportSweep(self.snapshot.name))

    def action_stop(self) -> None:
        """Stop the workers this app started for the sweep."""
        if self.snapshot is not None:
            self.post_message(StopSweep(self.snapshot.name))


def _set_border(widget: Widget, title: str | None = None, subtitle: str | None = None) -> None:
    """Set a border title/subtitle only when it changes (each set repaints the panel)."""
    if title is not None and widget.border_title != title:
        widget.border_title = title
    if subtitle is not None and widget.border_subtitle != subtitle:
        widget.border_subtitle = subtitle
