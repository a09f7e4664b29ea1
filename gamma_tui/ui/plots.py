"""Drawing the γ–η heatmap into a CharCanvas (families of curves: ui/curves.py).

Pure functions of frozen models and a size, so widgets redraw only when one of them changes
and benchmarks can time a redraw without a terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis import EtaPoint, RegimeFits
from gamma_tui.states import DIVERGED, DONE, FAILED, MISSING, QUEUED, RUNNING, SKIPPED
from gamma_tui.ui.canvas import (
    GUTTER,
    RGB,
    CharCanvas,
    blend,
    decade_label,
    diverging,
    luminance,
    polyline_dots,
    rgb_of,
    short_number,
    viridis,
)
from gamma_tui.ui.frames import STATE_CODES, HeatLayout

MAX_CELL_LINES = 3
"""A heatmap row is at most this many lines tall."""

# Colors of cell states that have no loss to show, and of the guide lines.
QUEUED_BG: RGB = (58, 58, 64)
RUNNING_BG: RGB = (88, 88, 100)
DIVERGED_BG: RGB = (110, 16, 16)
DIVERGED_FG: RGB = (255, 96, 96)
FAILED_BG: RGB = (150, 30, 150)
SKIPPED_FG: RGB = (120, 120, 120)
GUIDE_COLORS: tuple[RGB, RGB, RGB] = ((80, 220, 255), (255, 120, 255), (255, 210, 90))
FIT_COLORS: tuple[RGB, RGB] = ((255, 255, 255), (130, 255, 110))
"""The fitted η*(γ) lines, lazy and rich: dashed (every other character), unlike the guides."""
NO_LAMBDA_BG: RGB = (44, 44, 52)
"""A finished cell without a λ_max in the sharpness map."""
GLYPHS = {QUEUED: "·", RUNNING: "›", DIVERGED: "x", FAILED: "!", SKIPPED: "-"}
"""The character that marks each non-final or abnormal cell state, drawn in the cell's centre."""
NO_LAMBDA_GLYPH = "?"
"""Marks a done cell that has no λ_max in the sharpness map."""

# Which state a cell shows when two η of one column fall into one row (irregular grids).
_PRECEDENCE = [STATE_CODES[s] for s in (DIVERGED, FAILED, RUNNING, QUEUED, DONE, SKIPPED, MISSING)]


@dataclass(frozen=True, eq=False)
class HeatmapModel:
    """Everything the heatmap draws: layout, values and states at one step, marks and cursor."""

    layout: HeatLayout
    log10_loss: np.ndarray  # (G, H)
    state: np.ndarray  # (G, H) str
    eta_star: tuple[EtaPoint, ...]
    loss_range: tuple[float, float]
    cursor: tuple[int, int]  # (γ index, layout row)
    guides: bool
    depth: int
    foreground: RGB
    background: RGB
    fits: RegimeFits | None = None  # fitted η*(γ) lines drawn with the guides
    lazy_exponent: float = 2.0  # p of the lazy guide η ∝ γ^p (1 for SignSGD and Adam)
    mode: str = "loss"  # "loss": log10 loss, viridis; "sharpness": log10 S·λ_max, diverging


@dataclass(frozen=True)
class HeatGeometry:
    """Where the heatmap's cells land on screen for a given size.

    Rows share the available lines as evenly as whole lines allow (some may be one line
    taller), so the grid fills the panel. When there are more η rows than lines, the grid
    shows a window of rows that follows the cursor, so every cell stays legible.
    """

    rows: int  # layout rows in all
    first: int  # lowest visible row
    visible: int  # rows on screen
    cell_width: int
    top: int  # screen line of the grid's top edge
    height: int  # lines the grid spans

    def shown(self, row: int) -> bool:
        """Whether a layout row is inside the window."""
        return self.first <= row < self.first + self.visible

    def line_span(self, row: int) -> tuple[int, int]:
        """[first, last) screen lines of a visible row (row 0 is at the bottom)."""
        index = self.first + self.visible - 1 - row
        start = self.top + index * self.height // self.visible
        return start, self.top + (index + 1) * self.height // self.visible

    def centre_line(self, row: int) -> int:
        """The line of a row where its glyph goes."""
        start, end = self.line_span(row)
        return start + max(0, end - start - 1) // 2

    def dot_y(self, row: np.ndarray | float) -> np.ndarray:
        """Braille dot rows (from the grid top) of fractional row positions."""
        return np.asarray(
            (self.first + self.visible - 0.5 - np.asarray(row)) * self.height / self.visible * 4
        )


def heat_geometry(layout: HeatLayout, width: int, height: int, cursor_row: int) -> HeatGeometry:
    """Cell sizes that fit the layout into width x height, and the window of visible rows."""
    columns = max(1, layout.gammas.size)
    area_height = max(1, height - 2)
    rows = max(1, layout.rows)
    visible = min(rows, area_height)
    first = min(max(cursor_row - visible // 2, 0), rows - visible)
    cell_width = max(1, min(12, (width - GUTTER) // columns))
    span = min(area_height, visible * MAX_CELL_LINES)
    return HeatGeometry(rows, first, visible, cell_width, area_height - span, span)


def cell_table(model: HeatmapModel) -> tuple[np.ndarray, np.ndarray]:
    """(G, rows) log10 loss and state code per heatmap cell (state code 0: no cell).

    Two η of one column in one row (irregular grids) show the more alarming state, then the
    lower loss.
    """
    layout = model.layout
    columns, rows = layout.gammas.size, max(1, layout.rows)
    value = np.full((columns, rows), np.nan)
    code = np.zeros((columns, rows), dtype=int)
    rank = {c: i for i, c in enumerate(_PRECEDENCE)}
    taken = np.zeros((columns, rows), dtype=bool)
    for g in range(columns):
        for h in np.flatnonzero(layout.present[g]):
            row = int(layout.row_of_eta[h])
            state = STATE_CODES.get(str(model.state[g, h]), 0)
            loss = float(model.log10_loss[g, h])
            better = (
                not taken[g, row]
                or rank[state] < rank[code[g, row]]
                or (
                    state == code[g, row]
                    and np.nan_to_num(loss, nan=np.inf) < np.nan_to_num(value[g, row], nan=np.inf)
                )
            )
            if better:
                taken[g, row], code[g, row], value[g, row] = True, state, loss
    return value, code


def draw_heatmap(model: HeatmapModel | None, width: int, height: int) -> CharCanvas:
    """The phase portrait: log γ across, log η up, cells colored by log10 loss, states marked."""
    canvas = CharCanvas(width, height)
    if model is None:
        return canvas
    if model.layout.gammas.size == 0 or model.layout.rows == 0:
        canvas.text(height // 2, 2, "no runs in this sweep yet", fg=model.foreground)
        return canvas
    geometry = heat_geometry(model.layout, width, height, model.cursor[1])
    value, code = cell_table(model)
    _paint_cells(canvas, model, geometry, value, code)
    _mark_eta_star(canvas, model, geometry)
    if model.guides:
        _draw_guides(canvas, model, geometry)
    _mark_cursor(canvas, model, geometry)
    _heat_axes(canvas, model, geometry)
    return canvas


def _paint_cells(
    canvas: CharCanvas,
    model: HeatmapModel,
    geometry: HeatGeometry,
    value: np.ndarray,
    code: np.ndarray,
) -> None:
    """Background color and state glyph of every visible cell."""
    low, high = model.loss_range
    sharpness = model.mode == "sharpness"
    colors = (diverging if sharpness else viridis)((value - low) / max(high - low, 1e-9))
    reverse = {v: k for k, v in STATE_CODES.items()}
    for g in range(code.shape[0]):
        x = GUTTER + g * geometry.cell_width
        for row in range(geometry.first, geometry.first + geometry.visible):
            state = reverse[int(code[g, row])]
            if state == MISSING:
                continue
            finite = math.isfinite(value[g, row])
            bg = _cell_background(state, finite, rgb_of(colors[g, row]))
            glyph = GLYPHS.get(state)
            if sharpness and state == DONE and not finite:
                bg, glyph = NO_LAMBDA_BG, NO_LAMBDA_GLYPH
            first, last = geometry.line_span(row)
            fill = " " * geometry.cell_width
            for line in range(first, last):
                canvas.text(line, x, fill, bg=bg)
            if state == RUNNING and not finite:
                glyph = "…"
            if glyph:
                fg = DIVERGED_FG if state == DIVERGED else _contrast(bg)
                cx, cy = x + (geometry.cell_width - 1) // 2, geometry.centre_line(row)
                canvas.text(cy, cx, glyph, fg=fg, bg=bg, bold=state in (DIVERGED, FAILED))


def _cell_background(state: str, finite: bool, color: RGB) -> RGB | None:
    """A cell's background: its loss color, or the color of a state without a loss."""
    if state in (DONE, RUNNING) and finite:
        return color
    return {
        QUEUED: QUEUED_BG,
        RUNNING: RUNNING_BG,
        DIVERGED: DIVERGED_BG,
        FAILED: FAILED_BG,
        DONE: RUNNING_BG,
    }.get(state)


def _contrast(background: RGB | None) -> RGB:
    """Black or white, whichever reads better on the background."""
    if background is None:
        return (230, 230, 230)
    return (0, 0, 0) if luminance(background) > 0.55 else (245, 245, 245)


def _mark_eta_star(canvas: CharCanvas, model: HeatmapModel, geometry: HeatGeometry) -> None:
    """A bold '*' in the cell of each γ column that holds η*(γ)."""
    for g, point in enumerate(model.eta_star):
        if not point.ok or g >= model.layout.gammas.size:
            continue
        row = int(round(model.layout.row_at(math.log10(point.eta))))
        if not geometry.shown(row):
            continue
        x = GUTTER + g * geometry.cell_width + (geometry.cell_width - 1) // 2
        y = geometry.centre_line(row)
        if canvas.chars[y, x] in (GLYPHS[DIVERGED], GLYPHS[FAILED]):
            continue  # a diverged or failed cell keeps its mark
        bg = rgb_of(canvas.bg[y, x]) if canvas.has_bg[y, x] else None
        canvas.text(y, x, "*", fg=_contrast(bg), bg=bg, bold=True)


def _mark_cursor(canvas: CharCanvas, model: HeatmapModel, geometry: HeatGeometry) -> None:
    """Brackets around the cursor cell (or a reversed cell when cells are narrow)."""
    g, row = model.cursor
    if not (0 <= g < model.layout.gammas.size) or not geometry.shown(row):
        return
    x = GUTTER + g * geometry.cell_width
    y = geometry.centre_line(row)
    if geometry.cell_width >= 3:
        for column, bracket in ((x, "["), (x + geometry.cell_width - 1, "]")):
            bg = rgb_of(canvas.bg[y, column]) if canvas.has_bg[y, column] else None
            canvas.text(y, column, bracket, fg=_contrast(bg), bg=bg, bold=True)
    else:
        canvas.text(
            y,
            x,
            canvas.chars[y, x] if canvas.chars[y, x] != " " else "□",
            fg=model.background,
            bg=model.foreground,
            bold=True,
        )


def _draw_guides(canvas: CharCanvas, model: HeatmapModel, geometry: HeatGeometry) -> None:
    """Lines η ∝ γ^p, η ∝ γ^(p/L), η ∝ γ through the η* nearest γ = 1 (p = 2 for SGD, 1 for
    SignSGD and Adam), in braille dots, and the
    fitted η*(γ) power laws (lazy over γ < 1, rich over γ > 1) dashed in FIT_COLORS."""
    layout = model.layout
    log10_gammas = np.log10(layout.gammas)
    anchors = [(math.log10(p.gamma), math.log10(p.eta)) for p in model.eta_star if p.ok]
    if anchors:
        gamma0, eta0 = min(anchors, key=lambda a: abs(a[0]))
    else:
        gamma0 = float(np.median(log10_gammas))
        eta0 = layout.row_center((layout.rows - 1) / 2)
    width = layout.gammas.size * geometry.cell_width
    height = geometry.height
    dots = np.zeros((height * 4, width * 2), dtype=bool)
    colors = np.full((height, width), -1, dtype=int)
    dot_x = np.arange(width * 2, dtype=np.float64)
    # Column centres sit at (g + 0.5) cells; γ between columns is interpolated in log10.
    centres = (np.arange(layout.gammas.size) + 0.5) * geometry.cell_width * 2
    if layout.gammas.size > 1:
        slope = (log10_gammas[-1] - log10_gammas[0]) / (centres[-1] - centres[0])
        log10_gamma = np.interp(dot_x, centres, log10_gammas, left=np.nan, right=np.nan)
        log10_gamma = np.where(
            np.isnan(log10_gamma), log10_gammas[0] + (dot_x - centres[0]) * slope, log10_gamma
        )
    else:
        log10_gamma = np.full(dot_x.size, log10_gammas[0])
    lazy = model.lazy_exponent
    for index, exponent in enumerate((lazy, lazy / max(model.depth, 1), 1.0)):
        log10_eta = eta0 + exponent * (log10_gamma - gamma0)
        rows, columns = polyline_dots(dots.shape, dot_x, geometry.dot_y(layout.row_at(log10_eta)))
        dots[rows, columns] = True
        colors[rows // 4, columns // 2] = index
    fits = model.fits
    regimes = (fits.lazy, fits.rich) if fits is not None else (None, None)
    sides = (log10_gamma < 0, log10_gamma > 0)
    for index, (fit, inside) in enumerate(zip(regimes, sides, strict=True)):
        if fit is None:
            continue
        log10_eta = np.where(inside, fit.intercept + fit.slope * log10_gamma, np.nan)
        rows, columns = polyline_dots(dots.shape, dot_x, geometry.dot_y(layout.row_at(log10_eta)))
        dashed = columns // 2 % 2 == 0
        rows, columns = rows[dashed], columns[dashed]
        dots[rows, columns] = True
        colors[rows // 4, columns // 2] = len(GUIDE_COLORS) + index
    palette = np.array(GUIDE_COLORS + FIT_COLORS, dtype=np.uint8)
    canvas.braille(dots, colors, palette, top=geometry.top, left=GUTTER)


def _heat_axes(canvas: CharCanvas, model: HeatmapModel, geometry: HeatGeometry) -> None:
    """η decade labels on the left, γ labels below, cursor markers on both axes."""
    layout, fg = model.layout, model.foreground
    dim = blend(fg, model.background, 0.6)
    used: set[int] = set()
    low = layout.row_center(geometry.first - 0.5)
    high = layout.row_center(geometry.first + geometry.visible - 0.5)
    for decade in range(math.ceil(low), math.floor(high) + 1):
        row = int(round(layout.row_at(decade)))
        if not geometry.shown(row):
            continue
        y = geometry.centre_line(row)
        if y in used or y - 1 in used or y + 1 in used:
            continue
        used.add(y)
        label = decade_label(decade)
        canvas.text(y, GUTTER - 1 - len(label), label, fg=dim)
    cursor_g, cursor_row = model.cursor
    if geometry.shown(cursor_row):
        canvas.text(geometry.centre_line(cursor_row), GUTTER - 1, "▸", fg=fg, bold=True)
    if geometry.first + geometry.visible < geometry.rows:
        canvas.text(geometry.top, 0, "↑more", fg=fg)
    if geometry.first > 0:
        canvas.text(geometry.top + geometry.height - 1, 0, "↓more", fg=fg)
    axis_y = geometry.top + geometry.height
    span = layout.gammas.size * geometry.cell_width
    canvas.text(axis_y, GUTTER - 1, "└" + "─" * span, fg=dim)
    if 0 <= cursor_g < layout.gammas.size:
        centre = GUTTER + cursor_g * geometry.cell_width + (geometry.cell_width - 1) // 2
        canvas.text(axis_y, centre, "▲", fg=fg, bold=True)
    _gamma_labels(canvas, layout, geometry, axis_y + 1, dim)
    if geometry.top > 0 or canvas.chars[0, 0] == " ":
        canvas.text(0, 0, "η", fg=fg, bold=True)
    canvas.text(axis_y + 1, 0, "γ", fg=fg, bold=True)


def _gamma_labels(
    canvas: CharCanvas, layout: HeatLayout, geometry: HeatGeometry, y: int, color: RGB
) -> None:
    """γ under each column when it fits, else under the columns at whole decades."""
    labels = [short_number(float(g)) for g in layout.gammas]
    fits = all(len(label) < geometry.cell_width for label in labels)
    next_free = GUTTER
    for g, label in enumerate(labels):
        if not fits:
            log10_gamma = math.log10(layout.gammas[g])
            if abs(log10_gamma - round(log10_gamma)) > 1e-6:
                continue
            label = decade_label(log10_gamma)
        centre = GUTTER + g * geometry.cell_width + geometry.cell_width // 2
        start = max(centre - len(label) // 2, next_free)
        if start + len(label) > canvas.width:
            break
        canvas.text(y, start, label, fg=color)
        next_free = start + len(label) + 1
