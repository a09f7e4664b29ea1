"""Drawing families of loss curves into a CharCanvas: seed bands, braille lines, log axes.

Pure functions of a frozen PlotModel and a size, so widgets redraw only when the model
changes and benchmarks can time a redraw without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gamma_tui.ui.canvas import (
    GUTTER,
    RGB,
    CharCanvas,
    blend,
    decade_label,
    nice_linear_ticks,
    nice_log_ticks,
    polyline_dots,
    short_number,
)

EDGE_COLOR: RGB = (255, 90, 90)
"""The line at step size × λ_max = 2 in the λ(t) curves."""
HELD_OUT_COLOR: RGB = (255, 150, 60)
"""The dashed held-out loss of the cursor's cell in the curves panel."""


@dataclass(frozen=True, eq=False)
class Series:
    """One curve: x in plot units, y as log10 loss, an optional (low, high) band."""

    x: np.ndarray
    y: np.ndarray
    color: RGB
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    dashed: bool = False  # drawn in every other character column (the held-out loss)


@dataclass(frozen=True, eq=False)
class PlotModel:
    """A family of curves on shared axes; the last series is drawn on top."""

    series: tuple[Series, ...]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_x: bool  # x values are log10 (ticks read 10^k) or linear
    marker_x: float | None
    foreground: RGB
    background: RGB
    empty_text: str = "no data yet"
    y_labels: tuple[tuple[float, str], ...] = ()  # extra (log10 y, label) ticks: the edge 2


def draw_curves(model: PlotModel | None, width: int, height: int) -> CharCanvas:
    """Curves with seed bands (cell backgrounds) and braille lines, log10 loss up."""
    canvas = CharCanvas(width, height)
    plot_width, plot_height = width - GUTTER, height - 2
    if model is None or plot_width < 4 or plot_height < 2:
        return canvas
    dim = blend(model.foreground, model.background, 0.6)
    if not model.series:
        canvas.text(plot_height // 2, GUTTER + 2, model.empty_text, fg=dim)
        _curve_axes(canvas, model, plot_width, plot_height, dim)
        return canvas
    (x0, x1), (y0, y1) = model.x_range, model.y_range

    def to_dots(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Plot coordinates to braille dot coordinates (far-off points become NaN)."""
        with np.errstate(invalid="ignore"):
            dx = (x - x0) / (x1 - x0) * (plot_width * 2 - 1)
            dy = (y1 - y) / (y1 - y0) * (plot_height * 4 - 1)
            dy = np.where((dy < -4) | (dy > plot_height * 4 + 3), np.nan, dy)
        return dx, dy

    for series in model.series:
        if series.low is not None and series.high is not None:
            _band(canvas, series, to_dots, plot_width, plot_height, model.background)
    dots = np.zeros((plot_height * 4, plot_width * 2), dtype=bool)
    colors = np.zeros((plot_height, plot_width), dtype=int)
    for index, series in enumerate(model.series):
        rows, columns = polyline_dots(dots.shape, *to_dots(series.x, series.y))
        if series.dashed:
            keep = columns // 2 % 2 == 0
            rows, columns = rows[keep], columns[keep]
        dots[rows, columns] = True
        colors[rows // 4, columns // 2] = index
    palette = np.array([s.color for s in model.series], dtype=np.uint8)
    canvas.braille(dots, colors, palette, top=0, left=GUTTER)
    if model.marker_x is not None and x0 <= model.marker_x <= x1:
        column = GUTTER + int(round((model.marker_x - x0) / (x1 - x0) * (plot_width - 1)))
        for y in range(plot_height):
            if canvas.chars[y, column] == " ":
                canvas.text(y, column, "┊", fg=dim)
    _curve_axes(canvas, model, plot_width, plot_height, dim)
    return canvas


def _band(
    canvas: CharCanvas,
    series: Series,
    to_dots: object,
    plot_width: int,
    plot_height: int,
    background: RGB,
) -> None:
    """Shade the cells between a series' low and high curves (the seed band)."""
    assert series.low is not None and series.high is not None
    _, top = to_dots(series.x, series.high)  # type: ignore[operator]
    columns, bottom = to_dots(series.x, series.low)  # type: ignore[operator]
    keep = np.isfinite(columns) & np.isfinite(top) & np.isfinite(bottom)
    if not keep.any():
        return
    cells = (columns[keep] // 2).astype(int)
    lows, highs = (top[keep] // 4).astype(int), (bottom[keep] // 4).astype(int)
    shade = blend(series.color, background, 0.28)
    for column in np.unique(cells):
        pick = cells == column
        first = max(0, int(lows[pick].min()))
        last = min(plot_height - 1, int(highs[pick].max()))
        if last - first < 1 or not 0 <= column < plot_width:
            continue  # a band thinner than a cell would only blur the line
        canvas.bg[first : last + 1, GUTTER + column] = shade
        canvas.has_bg[first : last + 1, GUTTER + column] = True


def _curve_axes(
    canvas: CharCanvas, model: PlotModel, plot_width: int, plot_height: int, dim: RGB
) -> None:
    """y ticks (decades of loss) at the left, x ticks below, an L-shaped axis."""
    (x0, x1), (y0, y1) = model.x_range, model.y_range
    for tick in nice_log_ticks(y0, y1, max(2, plot_height // 3)):
        y = int(round((y1 - tick) / (y1 - y0) * (plot_height - 1)))
        label = decade_label(tick)
        canvas.text(y, GUTTER - 1 - len(label), label, fg=dim)
        canvas.text(y, GUTTER - 1, "┤", fg=dim)
    for value, label in model.y_labels:
        if y0 <= value <= y1:
            y = int(round((y1 - value) / (y1 - y0) * (plot_height - 1)))
            canvas.text(y, max(0, GUTTER - 1 - len(label)), label, fg=dim, bold=True)
            canvas.text(y, GUTTER - 1, "┤", fg=dim)
    for y in range(plot_height):
        if canvas.chars[y, GUTTER - 1] == " ":
            canvas.text(y, GUTTER - 1, "│", fg=dim)
    canvas.text(plot_height, GUTTER - 1, "└" + "─" * plot_width, fg=dim)
    slots = max(2, plot_width // 8)
    ticks = nice_log_ticks(x0, x1, slots) if model.log_x else nice_linear_ticks(x0, x1, slots)
    next_free = GUTTER
    for tick in ticks:
        column = GUTTER + int(round((tick - x0) / (x1 - x0) * (plot_width - 1)))
        label = decade_label(tick) if model.log_x else short_number(tick)
        start = min(max(column - len(label) // 2, next_free), canvas.width - len(label))
        if start < next_free:
            break
        canvas.text(plot_height, column, "┬", fg=dim)
        canvas.text(plot_height + 1, start, label, fg=dim)
        next_free = start + len(label) + 1
