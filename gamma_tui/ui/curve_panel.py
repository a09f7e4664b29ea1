"""The dashboard's curve panel: which cells' curves it draws, as which series, on which axes.

Pure functions of a snapshot, its frame and the cursor; the dashboard screen shows the
result in its CurvePlot and legend.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from gamma_tui.ui.canvas import RGB, ramp, short_number
from gamma_tui.ui.curves import EDGE_COLOR, HELD_OUT_COLOR, PlotModel, Series
from gamma_tui.ui.data import SweepSnapshot
from gamma_tui.ui.edge import LOG10_EDGE, cell_trace
from gamma_tui.ui.frames import Frame


@dataclass(frozen=True, eq=False)
class CurvePanel:
    """What the curve panel shows: the plot, its title and the legend's entries."""

    model: PlotModel
    title: str
    labels: list[str]  # one per drawn family member (η values or γ values)
    colors: list[RGB]
    knob: str  # "η" or "γ": what the colours stand for
    highlight: str | None  # the cursor cell's label


def curve_panel(
    snapshot: SweepSnapshot,
    frame: Frame,
    cursor: tuple[int, int],
    by_row: bool,
    sharpness: bool,
    smooth: bool,
    foreground: RGB,
    background: RGB,
) -> CurvePanel:
    """The curves of the cursor's γ column (colored by η) or η row (colored by γ): seed-mean
    losses (smoothed or raw) with the held-out loss of the cursor cell, or S·λ_max(t) against
    the edge of stability at 2 when `sharpness`. The grid must have a γ column."""
    layout = snapshot.layout
    g, row = cursor
    if by_row:
        cells = [(gg, layout.cell_at(gg, row)) for gg in range(layout.gammas.size)]
        cells = [(gg, h) for gg, h in cells if h >= 0]
        labels = [short_number(float(layout.gammas[gg])) for gg, _ in cells]
        knob, fixed = "γ", f"η ≈ {short_number(10 ** layout.row_center(row))}"
        chosen = g
        keys = [gg for gg, _ in cells]
    else:
        hs = [h for h in np.flatnonzero(layout.present[g])]
        cells = [(g, int(h)) for h in hs]
        labels = [short_number(float(layout.etas[h])) for _, h in cells]
        knob, fixed = "η", f"γ = {short_number(float(layout.gammas[g]))}"
        chosen = layout.cell_at(g, row)
        keys = [h for _, h in cells]
    colors = ramp(len(cells))

    def cell(gg: int, h: int, color: tuple[int, int, int]) -> Series | None:
        if sharpness:
            return _edge_series(snapshot, gg, h, color)
        return _cell_series(snapshot, gg, h, color, smooth)

    series, highlight, held = [], None, None
    for (gg, h), color, key, label in zip(cells, colors, keys, labels, strict=True):
        item = cell(gg, h, color)
        if item is None:
            continue
        if key == chosen:
            highlight = (cell(gg, h, foreground), label)
        else:
            series.append(item)
    if highlight is not None and highlight[0] is not None:
        if not sharpness:
            held = _held_out_series(snapshot, g, layout.cell_at(g, row))
            series += [held] if held is not None else []
        series.append(highlight[0])
    top = (
        float(snapshot.log10_t[-1] + (snapshot.log10_t[1] - snapshot.log10_t[0]) / 2)
        if snapshot.log10_t.size > 1
        else 1.0
    )
    if sharpness:
        y_range = _edge_y_range(series)
        edge = Series(np.array([0.0, top]), np.full(2, LOG10_EDGE), EDGE_COLOR, dashed=True)
        series.insert(0, edge)  # under the curves
    else:
        y_range = _y_range(series)
    step = frame.step
    # short enough for the panel at 80 columns; the map's legend says how to measure it
    empty = "no λ_max in this sweep" if sharpness else "no data yet"
    model = PlotModel(
        tuple(series) if len(series) > int(sharpness) else (),
        (0.0, top),
        y_range,
        True,
        math.log10(step) if step else None,
        foreground,
        background,
        empty,
        ((LOG10_EDGE, "2"),) if sharpness else (),
    )
    if sharpness:
        title = f"S·λ(t) · {fixed} · by {knob} · ┄ 2"
    else:
        title = f"loss curves · {fixed} · by {knob}" + (" · ┄ test" if held else "")
    return CurvePanel(model, title, labels, colors, knob, highlight[1] if highlight else None)


def _cell_series(
    snapshot: SweepSnapshot, g: int, h: int, color: tuple[int, int, int], smooth: bool
) -> Series | None:
    """Seed-mean curve of one cell with a min..max band over seeds (None without data)."""
    indices = snapshot.runs_in_cell(g, h)
    if not indices:
        return None
    rows = snapshot.smooth_log10_loss if smooth else snapshot.log10_loss
    values = 10.0 ** rows[indices]
    if not np.isfinite(values).any():
        return None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.log10(np.nanmean(values, axis=0))
        low = np.log10(np.nanmin(values, axis=0)) if len(indices) > 1 else None
        high = np.log10(np.nanmax(values, axis=0)) if len(indices) > 1 else None
    return Series(snapshot.log10_t, mean, color, low, high)


def _edge_series(
    snapshot: SweepSnapshot, g: int, h: int, color: tuple[int, int, int]
) -> Series | None:
    """One cell's S·λ_max(t), the seeds' geometric mean, in log10 (None without two points)."""
    x, y = cell_trace(snapshot, snapshot.runs_in_cell(g, h))
    return Series(x, y, color) if x.size > 1 else None


def _edge_y_range(series: list[Series]) -> tuple[float, float]:
    """log10 S·λ_max range of the curves, always holding the edge line."""
    values = [item.y[np.isfinite(item.y)] for item in series]
    finite = np.concatenate([v for v in values if v.size] or [np.zeros(0)])
    low = min(float(finite.min()) if finite.size else LOG10_EDGE - 1, LOG10_EDGE - 0.2)
    high = max(float(finite.max()) if finite.size else LOG10_EDGE + 1, LOG10_EDGE + 0.2)
    pad = (high - low) * 0.05
    return (low - pad, high + pad)


def _held_out_series(snapshot: SweepSnapshot, g: int, h: int) -> Series | None:
    """The cursor cell's seed-mean held-out loss, dashed (None without evaluations)."""
    held = snapshot.held_out(snapshot.runs_in_cell(g, h)) if h >= 0 else None
    if held is None:
        return None
    steps, loss, _ = held
    keep = (steps > 0) & (loss > 0)
    if keep.sum() < 2:
        return None
    return Series(np.log10(steps[keep]), np.log10(loss[keep]), HELD_OUT_COLOR, dashed=True)


def _y_range(series: list[Series]) -> tuple[float, float]:
    """log10 loss range: from the lowest value to the highest starting value (blow-ups cut)."""
    lows, tops = [], []
    for item in series:
        finite = item.y[np.isfinite(item.y)]
        if finite.size:
            lows.append(float(finite.min()))
            tops.append(float(finite[0]))  # the starting loss: blow-ups run off the top
    if not lows:
        return (-1.0, 0.0)
    low, high = min(lows), max(tops)
    if high - low < 0.2:
        low, high = low - 0.1, high + 0.1
    pad = (high - low) * 0.05
    return (low - pad, high + pad)
