"""Widgets that draw numpy canvases: the heatmap and the curve plot, redrawn only on change."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from gamma_tui.ui.canvas import RGB, CharCanvas
from gamma_tui.ui.curves import draw_curves
from gamma_tui.ui.plots import draw_heatmap


class CanvasView(Widget):
    """Shows what a draw function puts on a CharCanvas for the widget's size.

    The canvas is drawn once per (model, size, style) and kept as Strips; render_line only
    indexes them, so scrolling the screen or a key press elsewhere costs nothing here.
    """

    DEFAULT_CSS = "CanvasView { width: 1fr; height: 1fr; }"

    draw: Callable[[Any, int, int], CharCanvas] = staticmethod(lambda model, w, h: CharCanvas(w, h))
    """Draws a model at a size."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model: Any = None
        """What to draw (a frozen model), None before data arrives."""
        self.redraw_seconds = 0.0
        """Wall time of the last full redraw (for the benchmark)."""
        self._lines: list[Strip] | None = None
        self._key: tuple[object, ...] | None = None

    def show(self, model: Any) -> None:
        """Draw this model from now on."""
        self.model = model
        self._lines = None
        self.refresh()

    def rgb_colors(self) -> tuple[RGB, RGB]:
        """The widget's (foreground, background) as RGB, for blending and contrast."""
        style = self.rich_style
        fg = style.color.get_truecolor() if style.color else None
        bg = style.bgcolor.get_truecolor() if style.bgcolor else None
        return (
            (fg.red, fg.green, fg.blue) if fg else (220, 220, 220),
            (bg.red, bg.green, bg.blue) if bg else (0, 0, 0),
        )

    def notify_style_update(self) -> None:
        """Theme or CSS changed: draw again with the new colors."""
        super().notify_style_update()
        self._lines = None

    def render_line(self, y: int) -> Strip:
        """One line of the cached drawing, redrawn first if the model or size changed."""
        width, height = self.size
        key = (id(self.model), width, height)
        if self._lines is None or key != self._key:
            self._redraw(width, height)
            self._key = key
        assert self._lines is not None
        return self._lines[y] if y < len(self._lines) else Strip.blank(width, self.rich_style)

    def _redraw(self, width: int, height: int) -> None:
        """Draw the model into Strips."""
        started = time.perf_counter()
        canvas = type(self).draw(self.model, width, height)
        style = self.rich_style
        self._lines = [
            Strip(segments or [Segment(" " * width, style)], width)
            for segments in canvas.lines(style)
        ]
        self.redraw_seconds = time.perf_counter() - started


def show_text(widget: Static, content: Text, layout: bool = False) -> None:
    """Update a Static only if its text changed; `layout` only for widgets of auto height.

    Static.update re-lays out the whole screen by default, which turns a cursor move into a
    full repaint; panels of fixed size repaint alone.
    """
    if getattr(widget, "_gamma_text", None) == content:
        return
    widget._gamma_text = content  # type: ignore[attr-defined]
    widget.update(content, layout=layout)


class HeatmapView(CanvasView):
    """The γ–η phase portrait (see plots.draw_heatmap)."""

    draw = staticmethod(draw_heatmap)


class CurvePlot(CanvasView):
    """Loss curves on log-log axes with seed bands (see curves.draw_curves)."""

    draw = staticmethod(draw_curves)
