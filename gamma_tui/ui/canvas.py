"""A small numpy rasterizer for terminal plots: braille line art over colored character cells.

Off-the-shelf plot widgets redraw 256 curves in seconds; here a plot is a few numpy arrays
(characters, foreground and background colors) filled by vectorized operations and turned into
rich Segments, one run of equal style at a time, so a full 120x40 redraw takes milliseconds.
Curves are drawn into a boolean dot array of 2x4 dots per character (Unicode braille).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style

RGB = tuple[int, int, int]

GUTTER = 6
"""Columns left of a plot (heatmap or curves) for the y tick labels."""

# Dot bit of each (row, column) inside a braille character (U+2800 + bits).
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int32)
_BRAILLE = np.array([" "] + [chr(0x2800 + code) for code in range(1, 256)], dtype="<U1")

# Viridis at 9 stops: perceptually uniform and monotonic in lightness, so it stays readable
# when NO_COLOR turns it into grey levels; no red in it, so red can mean "diverged".
_VIRIDIS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)
# Diverging map for step size × λ_max about the edge of stability: blue (stable, below 2)
# through light grey (at 2) to orange (above); orange, not red, since red means diverged.
_DIVERGING = np.array(
    [
        (33, 80, 160),
        (67, 133, 204),
        (146, 190, 226),
        (222, 222, 222),
        (246, 186, 120),
        (226, 124, 40),
        (160, 72, 10),
    ],
    dtype=np.float64,
)
# Plasma-like ramp for curve families (ordered knob values): blue to orange.
_RAMP = np.array(
    [
        (88, 101, 242),
        (126, 87, 230),
        (170, 76, 200),
        (210, 80, 160),
        (240, 100, 110),
        (250, 140, 60),
        (240, 190, 40),
    ],
    dtype=np.float64,
)


def _interpolate(table: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Colors (…, 3) uint8 at fractions in [0, 1] along a color table."""
    position = np.clip(np.nan_to_num(fraction, nan=0.0), 0.0, 1.0) * (len(table) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(table) - 1)
    share = (position - low)[..., None]
    return np.round(table[low] * (1 - share) + table[high] * share).astype(np.uint8)


def viridis(fraction: np.ndarray) -> np.ndarray:
    """Heatmap colors for values scaled to [0, 1] (0 = lowest loss: dark)."""
    return _interpolate(_VIRIDIS, np.asarray(fraction, dtype=np.float64))


def diverging(fraction: np.ndarray) -> np.ndarray:
    """Colors of a diverging map for values scaled to [0, 1] (0.5: the centre, light grey)."""
    return _interpolate(_DIVERGING, np.asarray(fraction, dtype=np.float64))


def ramp(count: int) -> list[RGB]:
    """`count` distinct colors ordered from blue to orange, for a family of curves."""
    colors = _interpolate(_RAMP, np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1))
    return [(int(r), int(g), int(b)) for r, g, b in colors]


def blend(color: RGB, background: RGB, share: float) -> RGB:
    """`share` of color over background."""
    r, g, b = (
        int(round(c * share + d * (1 - share))) for c, d in zip(color, background, strict=True)
    )
    return (r, g, b)


def rgb_of(values: np.ndarray) -> RGB:
    """An RGB triple from a numpy color row."""
    return (int(values[0]), int(values[1]), int(values[2]))


def luminance(color: RGB) -> float:
    """Relative lightness in [0, 1], to pick readable text over a colored cell."""
    r, g, b = color
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


class CharCanvas:
    """A character grid with per-cell text, foreground, background and bold, as numpy arrays."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = max(0, width), max(0, height)
        shape = (self.height, self.width)
        self.chars = np.full(shape, " ", dtype="<U1")
        self.fg = np.zeros(shape + (3,), dtype=np.uint8)
        self.bg = np.zeros(shape + (3,), dtype=np.uint8)
        self.has_fg = np.zeros(shape, dtype=bool)
        self.has_bg = np.zeros(shape, dtype=bool)
        self.bold = np.zeros(shape, dtype=bool)

    def text(
        self,
        row: int,
        column: int,
        text: str,
        fg: RGB | None = None,
        bg: RGB | None = None,
        bold: bool = False,
    ) -> None:
        """Write a string at (row, column), clipped to the canvas."""
        if not 0 <= row < self.height:
            return
        for offset, char in enumerate(text):
            x = column + offset
            if 0 <= x < self.width:
                self.chars[row, x] = char
                if fg is not None:
                    self.fg[row, x], self.has_fg[row, x] = fg, True
                if bg is not None:
                    self.bg[row, x], self.has_bg[row, x] = bg, True
                self.bold[row, x] = bold

    def braille(
        self,
        dots: np.ndarray,
        color_index: np.ndarray,
        palette: np.ndarray,
        top: int = 0,
        left: int = 0,
    ) -> None:
        """Overlay braille dots (4h, 2w) whose cells take colors palette[color_index (h, w)].

        Only cells with at least one dot and no text already written are changed.
        """
        height, width = dots.shape[0] // 4, dots.shape[1] // 2
        codes = (
            dots[: height * 4, : width * 2].reshape(height, 4, width, 2)
            * _BRAILLE_BITS[None, :, None, :]
        ).sum(axis=(1, 3))
        region = (slice(top, top + height), slice(left, left + width))
        lit = (codes > 0) & (self.chars[region] == " ")
        glyphs = _BRAILLE[codes]
        self.chars[region] = np.where(lit, glyphs, self.chars[region])
        colors = palette[np.clip(color_index, 0, len(palette) - 1)]
        self.fg[region] = np.where(lit[..., None], colors, self.fg[region])
        self.has_fg[region] |= lit

    def lines(self, default: Style) -> list[list[Segment]]:
        """One list of Segments per row, merging runs of equal style."""
        key = self.fg.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int64)
        key = key * 2 + self.has_fg
        key = (key << 25) + (self.bg.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1]))
        key = ((key * 2 + self.has_bg) * 2) + self.bold
        result = []
        for row in range(self.height):
            text = "".join(self.chars[row].tolist())
            starts = np.flatnonzero(np.diff(key[row]) != 0) + 1
            bounds = [0, *starts.tolist(), self.width]
            segments = []
            for start, end in zip(bounds, bounds[1:], strict=False):
                if end <= start:
                    continue
                style = _style(
                    tuple(self.fg[row, start]) if self.has_fg[row, start] else None,
                    tuple(self.bg[row, start]) if self.has_bg[row, start] else None,
                    bool(self.bold[row, start]),
                )
                segments.append(Segment(text[start:end], default + style if style else default))
            result.append(segments)
        return result


@lru_cache(maxsize=4096)
def _style(fg: tuple[int, ...] | None, bg: tuple[int, ...] | None, bold: bool) -> Style | None:
    """A cached rich Style for one cell style (None: the widget's default)."""
    if fg is None and bg is None and not bold:
        return None
    return Style(
        color=Color.from_rgb(*fg) if fg is not None else None,
        bgcolor=Color.from_rgb(*bg) if bg is not None else None,
        bold=bold or None,
    )


def polyline(dots: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """Draw a curve given in dot coordinates (NaN breaks it) into a boolean dot array."""
    rows, columns = polyline_dots(dots.shape, x, y)
    dots[rows, columns] = True


def polyline_dots(
    shape: tuple[int, ...], x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the dots of a curve in dot coordinates; NaN breaks the curve.

    The curve is sampled at every dot column between its first and last finite point and
    consecutive samples are joined by vertical spans, so steep parts stay connected. The
    work is proportional to the dots drawn, not to the canvas, so hundreds of curves are cheap.
    """
    rows, columns = shape[0], shape[1]
    empty = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return empty
    xs, ys = x[keep], y[keep]
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    first, last = int(np.ceil(max(xs[0], 0))), int(np.floor(min(xs[-1], columns - 1)))
    if last < first:
        column, row = int(round(xs[0])), int(round(ys[0]))
        if 0 <= column < columns and 0 <= row < rows:
            return np.array([row], dtype=np.intp), np.array([column], dtype=np.intp)
        return empty
    cols = np.arange(first, last + 1)
    samples = np.interp(cols, xs, ys)
    samples[_in_gaps(x, y, cols)] = np.nan  # inside a NaN gap of the original curve
    following = np.append(samples[1:], samples[-1])
    following = np.where(np.isfinite(following), following, samples)
    low = np.where(np.isnan(samples), np.nan, np.fmin(samples, following))
    high = np.where(np.isnan(samples), np.nan, np.fmax(samples, following))
    return span_dots(rows, cols, np.round(low), np.round(high))


def span_dots(
    rows: int, cols: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every dot in the vertical spans low[i]..high[i] at cols[i] (NaN skipped)."""
    valid = np.isfinite(low) & np.isfinite(high) & (high >= 0) & (low <= rows - 1)
    cols = cols[valid]
    low = np.clip(low[valid], 0, rows - 1).astype(np.intp)
    high = np.clip(high[valid], 0, rows - 1).astype(np.intp)
    counts = high - low + 1
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(low, counts) + offsets, np.repeat(cols, counts).astype(np.intp)


def _in_gaps(x: np.ndarray, y: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each column falls between two records separated by a NaN record."""
    good = np.isfinite(x) & np.isfinite(y)
    if good.all():
        return np.zeros(cols.size, dtype=bool)
    finite_x = np.isfinite(x)
    xs = x[finite_x]
    flags = good[finite_x].astype(np.float64)
    order = np.argsort(xs, kind="stable")
    return np.interp(cols, xs[order], flags[order]) < 1.0


def nice_log_ticks(low: float, high: float, slots: int) -> list[float]:
    """Integer decades (log10 values) within [low, high], thinned to at most `slots` ticks."""
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return []
    first, last = int(np.ceil(low - 1e-9)), int(np.floor(high + 1e-9))
    decades = list(range(first, last + 1))
    if not decades:
        return []
    step = 1
    while len(decades[::step]) > max(slots, 1):
        step += 1
    return [float(d) for d in decades[::step]]


def nice_linear_ticks(low: float, high: float, slots: int) -> list[float]:
    """Round tick values within [low, high], at most `slots` of them."""
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return []
    span = (high - low) / max(slots, 1)
    magnitude = 10 ** np.floor(np.log10(span))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= span)
    start = np.ceil(low / step) * step
    return [float(v) for v in np.arange(start, high + step * 1e-9, step)]


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(log10_value: float) -> str:
    """10^k written with superscripts: 10⁻³, 10⁰, 10²."""
    return "10" + str(int(round(log10_value))).translate(_SUPERSCRIPTS)


def short_number(value: float) -> str:
    """A compact number for axis labels and tables: 0.01, 3.16, 1e4, 1.5e-9 (two significant
    digits outside [0.01, 1e4), so neighbouring points of a fine η grid stay distinct)."""
    if not np.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def series_range(values: Sequence[np.ndarray], pad: float = 0.05) -> tuple[float, float]:
    """Padded (min, max) over the finite entries of arrays; (0, 1) when there are none."""
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return 0.0, 1.0
    low = float(min(v.min() for v in finite))
    high = float(max(v.max() for v in finite))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    margin = (high - low) * pad
    return low - margin, high + margin
