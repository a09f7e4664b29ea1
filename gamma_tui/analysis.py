"""Pure analysis of sweep results: loss grids, eta*(gamma), eta_div(gamma), power-law fits,
plateau times, time rescaling and collapse fits (Atanasov et al., arXiv:2410.04642).

Arrays in, small frozen dataclasses out; numpy, the standard library and the predicted
exponents of gamma_tui.config (one definition of the laws), no torch. Nothing here
raises on thin data: results carry ok=False, None, NaN or a reason starting "not enough data".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gamma_tui.config import lazy_exponent

STATES = ("missing", "queued", "running", "done", "diverged", "failed", "skipped")
"""Every state a run or a (gamma, eta) cell can be in."""

TIME_VARIABLES = (
    "t",
    "eta_t",
    "eta_t_over_gamma",
    "t_eta_gamma_k",
    "t_over_t_half",
    "t_minus_t_half",
)
"""Names accepted by rescale_time; only t_minus_t_half can be negative (compare it on linear x)."""

NOT_ENOUGH_DATA = "not enough data"
"""Prefix of every reason string that explains a missing result."""

# When a cell's seeds disagree, the first state of this list that any seed is in wins.
_STATE_PRECEDENCE = ("diverged", "failed", "running", "queued", "done", "skipped")
_STATE_DTYPE = "<U8"
# Two-sided 95% Student-t quantiles for df = 1..30; beyond that the normal 1.96 is close enough.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
# A run whose last record is this close to a budget counts as having reached it (window centres).
_END_TOLERANCE = 0.05
# The minimum lies somewhere between the best cell's neighbours: a uniform spread over a gap
# of width s has standard deviation s/sqrt(12) (conservative once the parabola refines it).
_SPACING_STD = 1.0 / math.sqrt(12.0)
_COLLAPSE_GRID_POINTS = 64


# ---------------------------------------------------------------- inputs and loss grids


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy fields would be ambiguous
class RunCurve:
    """One run's settings, fate and recorded train-loss curve."""

    gamma: float
    eta: float
    seed: int
    status: str  # one of STATES (never "missing")
    diverged_step: int | None
    steps: np.ndarray  # float64 step positions of the records (increasing; may be window centres)
    loss: np.ndarray  # loss at those positions; may hold NaN/inf near divergence


@dataclass(frozen=True, eq=False)
class LossGrid:
    """Loss of every (seed, gamma, eta) run at one step, with divergence flags and cell states."""

    gammas: np.ndarray  # (G,) ascending
    etas: np.ndarray  # (H,) ascending
    seeds: np.ndarray  # (S,) ascending
    loss: np.ndarray  # (S, G, H) float64; NaN where no data or diverged by the step
    diverged: np.ndarray  # (S, G, H) bool: diverged at or before the step
    init_loss: np.ndarray  # (S, G, H) float64: loss at each run's first finite record
    state: np.ndarray  # (G, H) str: aggregate state of the seeds, diverged wins
    step: float | None  # None: each run's final record

    @property
    def mean_loss(self) -> np.ndarray:
        """(G, H) mean over seeds of finite losses; NaN where any seed diverged or none has data."""
        return _seed_mean(self.loss, self.diverged, axis=0)


class _RunIndex(NamedTuple):
    """Runs with usable settings and the (seed, gamma, eta) cell each one fills."""

    runs: list[RunCurve]
    gammas: np.ndarray
    etas: np.ndarray
    seeds: np.ndarray
    cells: list[tuple[int, int, int]]


def loss_grid(
    runs: Sequence[RunCurve], step: float | None = None, window: float = 0.05
) -> LossGrid:
    """Loss at `step` (mean over steps in [step*(1-window), step]) of every run, on a grid."""
    index = _index_runs(runs)
    shape = (index.seeds.size, index.gammas.size, index.etas.size)
    loss = np.full(shape, np.nan)
    init_loss = np.full(shape, np.nan)
    diverged = np.zeros(shape, dtype=bool)
    run_states = np.full(shape, "missing", dtype=_STATE_DTYPE)
    for run, cell in zip(index.runs, index.cells, strict=True):
        steps, values = _curve(run.steps, run.loss)
        at = float(steps[-1]) if step is None and steps.size else step
        value, saw_bad = _window_value(steps, values, at, window)
        # A non-finite record inside the window is divergence even if the status lags behind.
        gone = saw_bad or _diverged_by(run, step)
        loss[cell] = math.nan if gone else value
        init_loss[cell] = _first_finite(values)
        diverged[cell] = gone
        run_states[cell] = _state_at(run, gone)
    state = _aggregate_states(run_states, shape[1:])
    return LossGrid(index.gammas, index.etas, index.seeds, loss, diverged, init_loss, state, step)


def _index_runs(runs: Sequence[RunCurve]) -> _RunIndex:
    """Sorted unique gammas, etas and seeds of the runs whose gamma and eta are positive."""
    usable = [r for r in runs if _positive(r.gamma) and _positive(r.eta)]
    gammas, gamma_index = _unique_index([float(r.gamma) for r in usable])
    etas, eta_index = _unique_index([float(r.eta) for r in usable])
    seed_values = np.array([int(r.seed) for r in usable], dtype=np.int64)
    seeds, seed_index = np.unique(seed_values, return_inverse=True)
    cells = list(zip(seed_index.tolist(), gamma_index.tolist(), eta_index.tolist(), strict=True))
    return _RunIndex(usable, gammas, etas, seeds, cells)


def _unique_index(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted values and each input's position among them, tolerant of float round-off."""
    # logspace and 10**x disagree in the last bits; 12 significant digits identify a grid point.
    keys = np.array([float(f"{v:.12g}") for v in values], dtype=np.float64)
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, inverse.ravel()


def _positive(value: object) -> bool:
    """Whether value is a finite number above zero."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number > 0


def _curve(steps: object, loss: object) -> tuple[np.ndarray, np.ndarray]:
    """Float64 copies of a recorded curve: equal lengths, finite steps only, sorted by step."""
    steps_array = np.asarray(steps, dtype=np.float64).ravel()
    loss_array = np.asarray(loss, dtype=np.float64).ravel()
    n = min(steps_array.size, loss_array.size)
    steps_array, loss_array = steps_array[:n], loss_array[:n]
    keep = np.isfinite(steps_array)
    steps_array, loss_array = steps_array[keep], loss_array[keep]
    if steps_array.size > 1 and np.any(np.diff(steps_array) < 0):
        order = np.argsort(steps_array, kind="stable")
        steps_array, loss_array = steps_array[order], loss_array[order]
    return steps_array, loss_array


def _first_finite(values: np.ndarray) -> float:
    """First finite entry, NaN if there is none."""
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else math.nan


def _window_value(
    steps: np.ndarray, loss: np.ndarray, at: float | None, window: float
) -> tuple[float, bool]:
    """Mean loss over steps in [at*(1-window), at], and whether a non-finite record was seen."""
    if at is None or steps.size == 0:
        return math.nan, False
    inside = (steps >= at * (1.0 - window)) & (steps <= at)
    if inside.any():
        values = loss[inside]
    elif steps[0] <= at <= steps[-1]:
        # Sparse (log-spaced) records can leave the window empty: use the two neighbours.
        right = int(np.searchsorted(steps, at))
        pair = slice(right - 1, right + 1)
        if not np.all(np.isfinite(loss[pair])):
            return math.nan, True
        return float(np.interp(at, steps[pair], loss[pair])), False
    else:
        return math.nan, False
    if not np.all(np.isfinite(values)):
        return math.nan, True
    return float(values.mean()), False


def _diverged_by(run: RunCurve, step: float | None) -> bool:
    """Whether the run's status says it diverged at or before step (None: ever)."""
    if run.status != "diverged":
        return False
    return step is None or run.diverged_step is None or run.diverged_step <= step


def _state_at(run: RunCurve, gone: bool) -> str:
    """The run's state as seen at the grid's step."""
    if gone:
        return "diverged"
    if run.status == "diverged":
        return "done"  # it diverges only later: at this step it is a healthy record
    return run.status if run.status in STATES else "missing"


def _aggregate_states(run_states: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(G, H) cell states from (S, G, H) run states by precedence; diverged wins."""
    state = np.full(shape, "missing", dtype=_STATE_DTYPE)
    present = {name: (run_states == name).any(axis=0) for name in _STATE_PRECEDENCE}
    for name in reversed(_STATE_PRECEDENCE):  # the highest precedence is written last
        state[present[name]] = name
    # Some seeds done and others still queued is a sweep in progress.
    state[(state == "queued") & present["done"]] = "running"
    return state


def _seed_mean(loss: np.ndarray, diverged: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the seed axis of finite losses; NaN where any seed diverged or none is finite."""
    finite = np.isfinite(loss)
    count = finite.sum(axis=axis)
    total = np.where(finite, loss, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    mean[diverged.any(axis=axis) | (count == 0)] = np.nan
    return mean


def _log_seed_mean(
    loss: np.ndarray, diverged: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Natural log of the seed-mean loss, and where any seed diverged."""
    mean = _seed_mean(loss, diverged, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_mean = np.where(mean > 0, np.log(mean), np.nan)
    return log_mean, np.asarray(diverged.any(axis=axis))


# ---------------------------------------------------------------- eta*(gamma), eta_div(gamma)


@dataclass(frozen=True)
class EtaPoint:
    """A characteristic learning rate at one gamma (eta*, eta_div or the budget edge)."""

    gamma: float
    eta: float  # NaN when not ok
    log10_eta_err: float  # standard error (eta*) or half bracket (eta_div, budget) in decades
    at_edge: bool  # the grid does not bracket the value: only a bound
    ok: bool  # there was data to locate it
    # Decades to the farther of the η values this γ has on either side (NaN: no neighbours).
    log10_spacing: float = math.nan
    # Half-width in decades the value is known to: for η* the seed spread combined with the
    # local spacing, for η_div and the budget edge the half bracket. Fits weight by it.
    log10_interval: float = math.nan


def eta_star(grid: LossGrid, n_boot: int = 200, rng_seed: int = 0) -> list[EtaPoint]:
    """Per gamma the eta minimising log seed-mean loss, parabola-refined, bootstrap error."""
    log10_etas = np.log10(grid.etas)
    log_loss, blocked = _log_seed_mean(grid.loss, grid.diverged, axis=0)
    x_star, at_edge, ok = _refined_argmin(log_loss, log10_etas, blocked)
    errors = _bootstrap_errors(grid, log10_etas, n_boot, rng_seed)
    spacing = _argmin_spacing(log_loss, log10_etas, blocked)
    return [
        EtaPoint(
            gamma=float(grid.gammas[g]),
            eta=float(10.0 ** x_star[g]) if ok[g] else math.nan,
            log10_eta_err=float(errors[g]) if ok[g] else math.nan,
            at_edge=bool(at_edge[g]),
            ok=bool(ok[g]),
            log10_spacing=float(spacing[g]),
            log10_interval=float(math.hypot(errors[g], spacing[g] * _SPACING_STD))
            if ok[g] and math.isfinite(spacing[g])
            else math.nan,
        )
        for g in range(grid.gammas.size)
    ]


def _argmin_spacing(log_loss: np.ndarray, x: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """Per row, decades from the lowest-loss column to the farther of its present neighbours.

    Present columns are the ones the row has data for, so refined rows (irregular η) report
    their own local spacing. NaN where the row has no finite value or no neighbour at all.
    """
    spacing = np.full(log_loss.shape[0], np.nan)
    for r in range(log_loss.shape[0]):
        present = np.flatnonzero(np.isfinite(log_loss[r]) | blocked[r])
        values = log_loss[r, present]
        finite = np.isfinite(values)
        if not finite.any() or present.size < 2:
            continue
        i = int(np.argmin(np.where(finite, values, np.inf)))
        gaps = [x[present[j]] - x[present[j - 1]] for j in (i, i + 1) if 0 < j < present.size]
        spacing[r] = float(max(gaps))
    return spacing


def _refined_argmin(
    log_loss: np.ndarray, x: np.ndarray, blocked: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of (R, H) values: refined x of the minimum, whether unbracketed, whether any data.

    Neighbours are the nearest columns the row has data for (finite or diverged), not the
    adjacent grid columns: with a relative η grid each γ fills only a band of the union of η.
    A diverged neighbour closes the bracket (its loss is effectively infinite).
    """
    rows = log_loss.shape[0]
    x_star = np.full(rows, np.nan)
    unbracketed = np.ones(rows, dtype=bool)
    ok = np.zeros(rows, dtype=bool)
    for r in range(rows):
        present = np.flatnonzero(np.isfinite(log_loss[r]) | blocked[r])
        values = log_loss[r, present]
        finite = np.isfinite(values)
        if not finite.any():
            continue
        ok[r] = True
        i = int(np.argmin(np.where(finite, values, np.inf)))
        x_star[r] = x[present[i]]
        inside = 0 < i < present.size - 1
        unbracketed[r] = not inside
        if inside and finite[i - 1] and finite[i + 1]:
            pick = present[i - 1 : i + 2]
            x_star[r] = _parabola_vertex(tuple(x[pick]), tuple(values[i - 1 : i + 2]), True)
    return x_star, unbracketed, ok


def _parabola_vertex(
    xs: tuple[np.ndarray, np.ndarray, np.ndarray],
    ys: tuple[np.ndarray, np.ndarray, np.ndarray],
    use: np.ndarray | bool,
) -> np.ndarray:
    """Vertex of the parabola through three points where it is convex, else the middle x."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    with np.errstate(all="ignore"):
        slope_left = (y1 - y0) / (x1 - x0)
        slope_right = (y2 - y1) / (x2 - x1)
        curvature = (slope_right - slope_left) / (x2 - x0)
        vertex = 0.5 * (x0 + x1) - slope_left / (2.0 * curvature)
        good = use & (curvature > 0) & np.isfinite(vertex)
        # Never extrapolate beyond the neighbours.
        return np.where(good, np.clip(vertex, np.minimum(x0, x2), np.maximum(x0, x2)), x1)


def _bootstrap_errors(
    grid: LossGrid, log10_etas: np.ndarray, n_boot: int, rng_seed: int
) -> np.ndarray:
    """Per gamma, standard deviation of log10 eta* over seed resamples (0 with one seed)."""
    n_seeds, n_gammas, n_etas = grid.loss.shape
    if n_seeds < 2 or n_boot < 2 or n_etas == 0:
        return np.zeros(n_gammas)
    picks = np.random.default_rng(rng_seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    log_loss, blocked = _log_seed_mean(grid.loss[picks], grid.diverged[picks], axis=1)
    x_star, _, ok = _refined_argmin(
        log_loss.reshape(-1, n_etas), log10_etas, blocked.reshape(-1, n_etas)
    )
    samples = np.where(ok, x_star, np.nan).reshape(n_boot, n_gammas)
    count = np.isfinite(samples).sum(axis=0)
    errors = np.zeros(n_gammas)
    enough = count >= 2
    errors[enough] = np.nanstd(samples[:, enough], axis=0, ddof=1)
    return errors


def eta_div(grid: LossGrid) -> list[EtaPoint]:
    """Per gamma the largest eta at which no seed diverged (ok=False if all or none diverged)."""
    blocked = np.asarray(grid.diverged.any(axis=0))
    stable = np.isfinite(grid.loss).any(axis=0) & ~blocked
    log10_etas = np.log10(grid.etas)
    points = []
    for g, gamma in enumerate(grid.gammas.tolist()):
        stable_at = np.flatnonzero(stable[g])
        if stable_at.size == 0:
            points.append(EtaPoint(gamma, math.nan, math.nan, at_edge=True, ok=False))
            continue
        top = int(stable_at[-1])
        above = np.flatnonzero(blocked[g, top + 1 :])
        if above.size == 0:  # nothing diverged above: the edge lies beyond, eta is a lower bound
            points.append(EtaPoint(gamma, float(grid.etas[top]), 0.0, at_edge=True, ok=False))
            continue
        # the nearest diverged η THIS γ has above its top stable one (η may be irregular)
        gap = float(log10_etas[top + 1 + int(above[0])] - log10_etas[top])
        points.append(
            EtaPoint(gamma, float(grid.etas[top]), 0.5 * gap, False, True, gap, 0.5 * gap)
        )
    return points


class BestLoss(NamedTuple):
    """Lowest seed-mean loss over eta at one gamma, and the eta that reached it."""

    gamma: float
    best_loss: float
    eta_at_best: float


def best_loss_vs_gamma(grid: LossGrid) -> list[BestLoss]:
    """Per gamma the best seed-mean loss over the eta grid (NaN where no cell has data)."""
    mean = grid.mean_loss
    rows = []
    for g, gamma in enumerate(grid.gammas.tolist()):
        finite = np.isfinite(mean[g])
        if not finite.any():
            rows.append(BestLoss(gamma, math.nan, math.nan))
            continue
        best = int(np.argmin(np.where(finite, mean[g], np.inf)))
        rows.append(BestLoss(gamma, float(mean[g, best]), float(grid.etas[best])))
    return rows


# ---------------------------------------------------------------- power laws


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


# ---------------------------------------------------------------- plateaus and the budget line


def plateau_time(
    steps: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    init_loss: float | None = None,
    fraction: float = 0.5,
    smooth: float = 0.05,
) -> float | None:
    """First step where the smoothed loss is below fraction x initial loss; None if never.

    The smoothed loss is the mean of the finite records within +-`smooth` decades of
    log10(1 + step) around each record; the crossing is interpolated in that log time.
    """
    steps_array, loss_array = _curve(steps, loss)
    start = _first_finite(loss_array) if init_loss is None else float(init_loss)
    if steps_array.size == 0 or not (math.isfinite(start) and start > 0):
        return None
    log_time = np.log10(1.0 + np.maximum(steps_array, 0.0))
    smoothed = _smooth(log_time, loss_array, smooth)
    level = fraction * start
    below = smoothed < level
    if not below.any():
        return None
    i = int(np.argmax(below))
    if i == 0 or not np.isfinite(smoothed[i - 1]):
        return float(steps_array[i])
    share = (smoothed[i - 1] - level) / (smoothed[i - 1] - smoothed[i])
    crossing = log_time[i - 1] + share * (log_time[i] - log_time[i - 1])
    return float(10.0**crossing - 1.0)


def _smooth(log_time: np.ndarray, loss: np.ndarray, half_width: float) -> np.ndarray:
    """Running mean of the finite losses within +-half_width of each point's log time."""
    finite = np.isfinite(loss)
    total = np.concatenate([[0.0], np.cumsum(np.where(finite, loss, 0.0))])
    count = np.concatenate([[0], np.cumsum(finite)])
    lo = np.searchsorted(log_time, log_time - half_width, side="left")
    hi = np.searchsorted(log_time, log_time + half_width, side="right")
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[hi] - total[lo]) / n, np.nan)


@dataclass(frozen=True)
class BudgetEdge:
    """Per gamma the smallest eta that leaves the plateau within a budget, and its power law."""

    budget_steps: float
    points: tuple[EtaPoint, ...]
    fit: PowerFit | None  # expected slope 1
    reason: str  # empty when the fit exists


def budget_edge(
    source: LossGrid | Sequence[RunCurve], budget_steps: float, fraction: float = 0.5
) -> BudgetEdge:
    """Smallest eta per gamma whose run leaves the plateau by budget_steps, with a fit.

    From runs, a run leaves when plateau_time <= budget_steps. From a LossGrid (built at
    step=budget_steps), when its loss is below fraction x its initial loss. A cell leaves
    when at least half of its seeds with data do; diverged seeds count as not leaving.
    """
    if isinstance(source, LossGrid):
        gammas, etas = source.gammas, source.etas
        left = ~source.diverged & (source.loss < fraction * source.init_loss)
        has_data = source.diverged | np.isfinite(source.loss)
    else:
        gammas, etas, left, has_data = _leave_flags(source, budget_steps, fraction)
    cell_data = has_data.any(axis=0)
    cell_left = cell_data & (2 * (left & has_data).sum(axis=0) >= has_data.sum(axis=0))
    points = tuple(_lowest_leaving(gammas, etas, cell_left, cell_data))
    usable = [p for p in points if p.ok and not p.at_edge]
    fit = fit_power_law([p.gamma for p in usable], [p.eta for p in usable])
    reason = ""
    if fit is None:
        reason = f"{NOT_ENOUGH_DATA}: {len(usable)} gamma(s) with a bracketed edge, a fit needs 2"
    return BudgetEdge(float(budget_steps), points, fit, reason)


def _leave_flags(
    runs: Sequence[RunCurve], budget_steps: float, fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid axes and (S, G, H) flags: run left the plateau by the budget; run has a verdict."""
    index = _index_runs(runs)
    shape = (index.seeds.size, index.gammas.size, index.etas.size)
    left = np.zeros(shape, dtype=bool)
    has_data = np.zeros(shape, dtype=bool)
    for run, cell in zip(index.runs, index.cells, strict=True):
        has_data[cell], left[cell] = _left_by(run, budget_steps, fraction)
    return index.gammas, index.etas, left, has_data


def _left_by(run: RunCurve, budget_steps: float, fraction: float) -> tuple[bool, bool]:
    """(whether the run has a verdict at the budget, whether it left the plateau by then)."""
    steps, loss = _curve(run.steps, run.loss)
    inside = steps <= budget_steps
    if not inside.any():
        return False, False
    if _diverged_by(run, budget_steps):
        return True, False
    t_half = plateau_time(steps[inside], loss[inside], fraction=fraction)
    left = t_half is not None and t_half <= budget_steps
    # A run still short of the budget has no verdict yet unless it already left.
    reached = steps[inside][-1] >= budget_steps * (1.0 - _END_TOLERANCE)
    return left or reached, left


def _lowest_leaving(
    gammas: np.ndarray, etas: np.ndarray, cell_left: np.ndarray, cell_data: np.ndarray
) -> list[EtaPoint]:
    """Per gamma the smallest eta whose cell left, bracketed if the eta below has data."""
    log10_etas = np.log10(etas)
    points = []
    for g, gamma in enumerate(gammas.tolist()):
        leaving = np.flatnonzero(cell_left[g])
        if leaving.size == 0:
            points.append(EtaPoint(gamma, math.nan, math.nan, at_edge=True, ok=False))
            continue
        h = int(leaving[0])
        below = np.flatnonzero(cell_data[g, :h])  # the nearest smaller η THIS γ has data for
        bracketed = below.size > 0
        gap = float(log10_etas[h] - log10_etas[int(below[-1])]) if bracketed else math.nan
        half = 0.5 * gap if bracketed else 0.0
        points.append(EtaPoint(gamma, float(etas[h]), half, not bracketed, True, gap, half))
    return points


# ---------------------------------------------------------------- time rescaling and collapse


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
    if run.status == "diverged" or not (_positive(run.gamma) and _positive(run.eta)):
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
