"""Time rescaling and collapse: the time variables curves are compared on, the spread of
rescaled curves and the exponent k that collapses them best.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gamma_tui.analysis.grids import NOT_ENOUGH_DATA, RunCurve, _curve, _positive
from gamma_tui.states import DIVERGED

TIME_VARIABLES = (
    "t",
    "eta_t",
    "eta_t_over_gamma",
    "t_eta_gamma_k",
    "t_over_t_half",
    "t_minus_t_half",
)
"""Names accepted by rescale_time; only t_minus_t_half can be negative (compare it on linear x)."""

_COLLAPSE_GRID_POINTS = 64


def rescale_time(
    steps: Sequence[float] | np.ndarray,
    variable: str,
    gamma: float,
    eta: float,
    k: float | None = None,
    t_half: float | None = None,
) -> np.ndarray:
    """Steps mapped to one of TIME_VARIABLES; all-NaN when k or t_half is needed but missing."""
    t = np.asarray(steps, dtype=np.float64)
    formulas: dict[str, Callable[[], np.ndarray]] = {
        "t": lambda: t.copy(),
        "eta_t": lambda: eta * t,
        "eta_t_over_gamma": lambda: eta * t / gamma,
        "t_eta_gamma_k": lambda: t * eta * gamma ** -_or_nan(k),
        "t_over_t_half": lambda: t / _or_nan(t_half),
        "t_minus_t_half": lambda: t - _or_nan(t_half),
    }
    if variable not in formulas:
        raise ValueError(f"unknown time variable {variable!r}: use one of {TIME_VARIABLES}")
    with np.errstate(all="ignore"):
        return np.asarray(formulas[variable](), dtype=np.float64)


def _or_nan(value: float | None) -> float:
    """value as a float, NaN for None."""
    return math.nan if value is None else float(value)


def collapse_spread(
    curves: Sequence[tuple[np.ndarray, np.ndarray] | None],
    log_x: bool | None = None,
) -> float:
    """Mean over a common x grid of the across-curve variance of log10 loss; inf if < 2 overlap.

    The grid spans the overlap of all usable curves' x ranges, log-spaced when log_x (default:
    unless some x is negative, as for t_minus_t_half), linear otherwise.
    """
    cleaned = [_curve(x, y) for x, y in (c for c in curves if c is not None)]
    if log_x is None:
        log_x = not any(bool(np.any(x < 0)) for x, _ in cleaned)
    axes, values = [], []
    for x, y in cleaned:
        keep = np.isfinite(y) & (y > 0) & ((x > 0) if log_x else True)
        axes.append(np.log10(x[keep]) if log_x else x[keep])
        values.append(np.log10(y[keep]))
    return _spread(axes, values)


def _spread(axes: list[np.ndarray], values: list[np.ndarray]) -> float:
    """Mean across-curve variance of values interpolated on the overlap of sorted axes."""
    usable = [(x, y) for x, y in zip(axes, values, strict=True) if x.size >= 2]
    if len(usable) < 2:
        return math.inf
    lo = max(float(x[0]) for x, _ in usable)
    hi = min(float(x[-1]) for x, _ in usable)
    if not hi > lo:
        return math.inf
    grid = np.linspace(lo, hi, _COLLAPSE_GRID_POINTS)
    stacked = np.stack([np.interp(grid, x, y) for x, y in usable])
    return float(stacked.var(axis=0).mean())


@dataclass(frozen=True)
class CollapseFit:
    """Exponent k of x = t * eta * gamma^(-k) that best collapses the loss curves."""

    k: float  # NaN when not enough data
    k_lo: float  # the interval: every k whose spread is within 10% of the minimum
    k_hi: float
    spread: float  # collapse_spread at k
    raw_spread: float  # collapse_spread against raw t
    score: float  # 1 - spread / raw_spread, clipped to [0, 1]
    n_curves: int
    reason: str  # empty when k was found

    @property
    def ok(self) -> bool:
        """Whether a k was found."""
        return not self.reason


class _LogCurve(NamedTuple):
    """One run's curve in log10 coordinates, ready to be shifted by eta and gamma."""

    log10_t: np.ndarray
    log10_loss: np.ndarray
    log10_eta: float
    log10_gamma: float


def fit_collapse_k(
    runs: Sequence[RunCurve], k_range: tuple[float, float] = (-1.0, 3.0), n_scan: int = 81
) -> CollapseFit:
    """Find k minimising collapse_spread of x = t * eta * gamma^(-k) over diverged-free runs.

    A dense scan over k_range is refined by golden section. The interval [k_lo, k_hi] is the
    contiguous range of k around the best whose spread is within 10% of the minimum (a
    curvature interval, not a bootstrap). score = 1 - spread(k) / spread(raw t), in [0, 1].
    """
    curves = [c for c in (_log_curve(r) for r in runs) if c is not None]
    distinct_gammas = len({round(c.log10_gamma, 9) for c in curves})
    if len(curves) < 2 or distinct_gammas < 2:
        return _no_collapse(len(curves), "needs >= 2 usable curves at >= 2 distinct gamma")

    def spread_at(k: float) -> float:
        shifted = [c.log10_t + c.log10_eta - k * c.log10_gamma for c in curves]
        return _spread(shifted, [c.log10_loss for c in curves])

    ks = np.linspace(min(k_range), max(k_range), max(n_scan, 3))
    spreads = np.array([spread_at(float(k)) for k in ks])
    if not np.isfinite(spreads).any():
        return _no_collapse(len(curves), "the rescaled curves never overlap")
    i = int(np.argmin(spreads))
    k_best, best = _golden_min(
        spread_at, float(ks[max(i - 1, 0)]), float(ks[min(i + 1, ks.size - 1)])
    )
    if not best <= spreads[i]:
        k_best, best = float(ks[i]), float(spreads[i])
    k_lo, k_hi = _interval(spread_at, ks, spreads, k_best, 1.1 * best)
    raw = _spread([c.log10_t for c in curves], [c.log10_loss for c in curves])
    score = min(max(1.0 - best / raw, 0.0), 1.0) if math.isfinite(raw) and raw > 0 else math.nan
    return CollapseFit(k_best, k_lo, k_hi, best, raw, score, len(curves), "")


def _log_curve(run: RunCurve) -> _LogCurve | None:
    """A run's positive-step, positive-loss records in log10; None if diverged or < 2 points."""
    if run.status == DIVERGED or not (_positive(run.gamma) and _positive(run.eta)):
        return None
    steps, loss = _curve(run.steps, run.loss)
    keep = (steps > 0) & np.isfinite(loss) & (loss > 0)
    if keep.sum() < 2:
        return None
    return _LogCurve(
        np.log10(steps[keep]), np.log10(loss[keep]), math.log10(run.eta), math.log10(run.gamma)
    )


def _no_collapse(n_curves: int, why: str) -> CollapseFit:
    """A CollapseFit that only explains why there is no k."""
    nan, inf = math.nan, math.inf
    return CollapseFit(nan, nan, nan, inf, inf, nan, n_curves, f"{NOT_ENOUGH_DATA}: {why}")


def _golden_min(f: Callable[[float], float], a: float, b: float) -> tuple[float, float]:
    """Minimum of f on [a, b] by golden-section search (f assumed unimodal there)."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(40):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (c, fc) if fc <= fd else (d, fd)


def _interval(
    f: Callable[[float], float], ks: np.ndarray, spreads: np.ndarray, k_best: float, level: float
) -> tuple[float, float]:
    """Contiguous range of k around k_best where f(k) <= level, edges bisected between scans."""
    below = spreads <= level
    lo_edge, hi_edge = float(ks[0]), float(ks[-1])
    left = np.flatnonzero((ks < k_best) & ~below)
    if left.size:  # walk out from k_best: the nearest scan point above the level bounds the range
        outside = int(left[-1])
        lo_edge = _bisect_level(f, float(ks[outside]), min(float(ks[outside + 1]), k_best), level)
    right = np.flatnonzero((ks > k_best) & ~below)
    if right.size:
        outside = int(right[0])
        hi_edge = _bisect_level(f, float(ks[outside]), max(float(ks[outside - 1]), k_best), level)
    return lo_edge, hi_edge


def _bisect_level(
    f: Callable[[float], float], outside: float, inside: float, level: float
) -> float:
    """Point between outside (f > level) and inside (f <= level) where f crosses level."""
    for _ in range(30):
        middle = 0.5 * (outside + inside)
        if f(middle) <= level:
            inside = middle
        else:
            outside = middle
    return 0.5 * (outside + inside)
