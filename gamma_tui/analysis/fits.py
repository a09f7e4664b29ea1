"""Power laws: weighted log-log line fits with a 95% slope interval, and the lazy/rich fits of
η*(γ) against the slopes theory predicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis.grids import NOT_ENOUGH_DATA, _positive
from gamma_tui.analysis.optimum import EtaPoint
from gamma_tui.config import lazy_exponent

# Two-sided 95% Student-t quantiles for df = 1..30; beyond that the normal 1.96 is close enough.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class PowerFit:
    """Least-squares line log10 y = slope * log10 x + intercept, with a 95% slope interval."""

    slope: float
    intercept: float
    slope_ci95: float  # half-width; inf with only two points
    n: int
    r2: float

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """y on the fitted power law at x."""
        return np.asarray(10.0 ** (self.intercept + self.slope * np.log10(x)))


def t_quantile_95(df: int) -> float:
    """Two-sided 95% Student-t quantile for df degrees of freedom (1.96 beyond 30, inf below 1)."""
    if df < 1:
        return math.inf
    return _T95[df - 1] if df <= len(_T95) else 1.96


def fit_power_law(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    y_log10_err: Sequence[float] | np.ndarray | None = None,
) -> PowerFit | None:
    """Fit y = 10^intercept * x^slope in log-log space; None with < 2 usable points."""
    log_x, log_y, weights = _log_points(x, y, y_log10_err)
    if log_x.size < 2 or np.ptp(log_x) == 0:
        return None
    w = weights / weights.sum()
    mean_x, mean_y = float(w @ log_x), float(w @ log_y)
    sxx = float(w @ (log_x - mean_x) ** 2)
    slope = float(w @ ((log_x - mean_x) * (log_y - mean_y))) / sxx
    intercept = mean_y - slope * mean_x
    ss_res = float(w @ (log_y - slope * log_x - intercept) ** 2)
    ss_tot = float(w @ (log_y - mean_y) ** 2)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    df = log_x.size - 2
    # Weights are relative: the residual scatter sets the error scale (scale-invariant in w).
    ci95 = t_quantile_95(df) * math.sqrt(ss_res / df / sxx) if df > 0 else math.inf
    return PowerFit(slope, intercept, ci95, int(log_x.size), r2)


def _log_points(
    x: object, y: object, y_log10_err: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log10 x, log10 y of the finite positive pairs, and least-squares weights 1/err^2."""
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    n = min(xs.size, ys.size)
    errs = np.full(n, np.nan)
    if y_log10_err is not None:
        given = np.asarray(y_log10_err, dtype=np.float64).ravel()[:n]
        errs[: given.size] = given
    xs, ys = xs[:n], ys[:n]
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    return np.log10(xs[keep]), np.log10(ys[keep]), _weights(errs[keep])


def _weights(errs: np.ndarray) -> np.ndarray:
    """1/err^2 with missing errors set to the median and tiny ones floored (equal if none known)."""
    known = np.isfinite(errs) & (errs > 0)
    if not known.any():
        return np.ones(errs.size)
    median = float(np.median(errs[known]))
    # A few lucky bootstrap errors near zero must not dominate the fit.
    filled = np.maximum(np.where(known, errs, median), 0.3 * median)
    return 1.0 / filled**2


@dataclass(frozen=True)
class RegimeFits:
    """Power-law fits of eta(gamma) in the lazy and rich regimes next to the predicted slopes."""

    lazy: PowerFit | None
    rich: PowerFit | None
    theory_lazy: float
    theory_rich: float
    crossover_gamma: float | None  # where the two fitted lines meet
    reason: str  # empty when both fits exist


def theory_slopes(depth: int, optimizer: str = "sgd") -> tuple[float, float]:
    """Predicted (lazy, rich) slopes of eta*(gamma): (2, 2/L) for SGD, (1, 1/L) for SignSGD/Adam."""
    name = optimizer.lower()
    lazy = lazy_exponent(name) if name in ("sgd", "signsgd", "adam") else math.nan
    rich = lazy / depth if depth > 0 else math.nan
    return lazy, rich


def fit_regimes(
    points: Sequence[EtaPoint],
    *,
    depth: int,
    optimizer: str = "sgd",
    gamma_lo: float = 1.0,
    gamma_hi: float = 1.0,
) -> RegimeFits:
    """Fit eta(gamma) separately for gamma < gamma_lo (lazy) and gamma > gamma_hi (rich)."""
    usable = [p for p in points if p.ok and not p.at_edge and _positive(p.eta)]
    regimes = {
        "lazy": [p for p in usable if p.gamma < gamma_lo],
        "rich": [p for p in usable if p.gamma > gamma_hi],
    }
    fits = {name: _fit_eta_points(chosen) for name, chosen in regimes.items()}
    reasons = [
        f"{NOT_ENOUGH_DATA}: {len(regimes[name])} usable {name} point(s), a fit needs 2 "
        "at distinct gamma"
        for name, fit in fits.items()
        if fit is None
    ]
    theory_lazy, theory_rich = theory_slopes(depth, optimizer)
    if math.isnan(theory_lazy):
        reasons.append(f"unknown optimizer {optimizer!r}: use sgd, signsgd or adam")
    crossover = _crossover(fits["lazy"], fits["rich"])
    return RegimeFits(
        fits["lazy"], fits["rich"], theory_lazy, theory_rich, crossover, "; ".join(reasons)
    )


def _fit_eta_points(points: list[EtaPoint]) -> PowerFit | None:
    """Power-law fit of eta against gamma, weighted by the points' intervals.

    The interval (seed spread and local spacing) rather than the seed spread alone: on an
    irregular η grid a coarse γ must not outweigh a refined one because its seeds agree.
    """
    gammas = [p.gamma for p in points]
    errors = [
        p.log10_interval if math.isfinite(p.log10_interval) else p.log10_eta_err for p in points
    ]
    return fit_power_law(gammas, [p.eta for p in points], errors)


def _crossover(lazy: PowerFit | None, rich: PowerFit | None) -> float | None:
    """Gamma where two fitted lines intersect, None if either is missing or they are parallel."""
    if lazy is None or rich is None or lazy.slope == rich.slope:
        return None
    log10_gamma = (rich.intercept - lazy.intercept) / (lazy.slope - rich.slope)
    if not math.isfinite(log10_gamma) or abs(log10_gamma) > 300:
        return None
    return 10.0**log10_gamma
