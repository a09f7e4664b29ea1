"""Frozen snapshots of the cache for the app, built off the UI thread.

A `SweepSnapshot` holds everything the dashboard and the collapse view draw for one sweep at
one data version: its runs, their curves (the analysis inputs), the curves reduced to a
common log-time grid for plotting, the heatmap layout and the analysis `Frame` at the chosen
step. Screens never query the cache or run analysis themselves; they receive snapshots and
frames in messages (docs/architecture.md, invariants 2, 6, 7).
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from gamma_tui.analysis import RunCurve, plateau_time
from gamma_tui.cache import FINAL_STATES, Cache, Diagnostics, Evals, RunInfo, SweepInfo
from gamma_tui.config import predicted_eta_exponent
from gamma_tui.progress import SweepProgress, progress
from gamma_tui.results import StoredSweep, load_run_curves
from gamma_tui.sharpness import step_size
from gamma_tui.states import DIVERGED, RUNNING
from gamma_tui.ui.frames import (
    FitSettings,
    Frame,
    HeatLayout,
    compute_frame,
    heat_layout,
    slider_steps,
)

PLOT_POINTS = 240
"""Bins of the common log10-time grid that plotted curves are reduced to (2 dots x 120 cells)."""

RATE_WINDOW_SECONDS = 30.0
"""Steps/s is measured over this trailing window of snapshots."""

PLATEAU_REFRESH_SECONDS = 5.0
"""A running run's plateau time is recomputed at most this often (it is a slow quantity)."""

SMOOTH_DECADES = 0.03
"""Plotted curves can be smoothed by a running mean over ±this many decades of t (display only:
online SGD losses jump by factors between steps)."""


@dataclass(frozen=True)
class Catalog:
    """Every sweep in the cache, newest first."""

    sweeps: tuple[SweepInfo, ...]
    cache_root: str

    def find(self, name: str | None) -> SweepInfo | None:
        """The sweep with this name, if present."""
        return next((s for s in self.sweeps if s.name == name), None)

    def default_sweep(self) -> str | None:
        """The sweep to show when none was chosen: the newest running one, else the newest."""
        running = [s for s in self.sweeps if s.counts.get(RUNNING)]
        chosen = (running or list(self.sweeps))[:1]
        return chosen[0].name if chosen else None


@dataclass(frozen=True, eq=False)
class SweepSnapshot:
    """One sweep at one data version: runs, curves, plot-ready reductions and progress."""

    name: str
    version: int
    info: SweepInfo
    runs: tuple[RunInfo, ...]
    curves: tuple[RunCurve, ...]  # analysis inputs, aligned with runs
    log10_t: np.ndarray  # (M,) centres of the common plot grid
    log10_loss: np.ndarray  # (N, M) reduced curves, NaN where no record
    smooth_log10_loss: np.ndarray  # (N, M) the same smoothed over ±SMOOTH_DECADES, for display
    plateau: np.ndarray  # (N,) plateau_time per run, NaN if none yet
    cell_of_run: np.ndarray  # (N, 2) (γ index, η index) of each run in the layout
    layout: HeatLayout
    frame: Frame
    progress: SweepProgress
    slider: tuple[float | None, ...]
    loss_range: tuple[float, float]  # log10 loss range for the color scale
    depth: int
    relative_eta: bool
    built_seconds: float = 0.0
    fit_settings: FitSettings = field(default_factory=FitSettings)
    evals: tuple[Evals | None, ...] = ()  # held-out evaluations, aligned with runs
    diagnostics: tuple[Diagnostics | None, ...] = ()  # [diagnostics] and ens_*, aligned
    step_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) S of λ·S < 2

    def held_out(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Seed-mean held-out (steps, loss, accuracy) of some runs, at the steps all of them
        reached (accuracy NaN for regression), or None without evaluations."""
        found = [self.evals[i] for i in indices if i < len(self.evals)]
        present = [e for e in found if e is not None and e.steps.size]
        if not present:
            return None
        steps = present[0].steps
        for other in present[1:]:
            steps = np.intersect1d(steps, other.steps)
        if not steps.size:
            return None
        rows = [np.searchsorted(e.steps, steps) for e in present]
        loss = np.mean([e.loss[r] for e, r in zip(present, rows, strict=True)], axis=0)
        with quiet_nanmean():
            accuracy = np.nanmean(
                [e.accuracy[r] for e, r in zip(present, rows, strict=True)], axis=0
            )
        return steps, loss, accuracy

    @property
    def unfinished(self) -> int:
        """Runs not in a final state."""
        return sum(1 for r in self.runs if r.status not in FINAL_STATES)

    def runs_in_cell(self, g: int, h: int) -> list[int]:
        """Indices of the runs (all seeds) of one (γ, η) cell."""
        hits = np.flatnonzero((self.cell_of_run[:, 0] == g) & (self.cell_of_run[:, 1] == h))
        return [int(i) for i in hits]

    def eta_multiplier(self, gamma: float, eta: float) -> float | None:
        """c = η/γ^p for a relative η grid, None for an absolute one."""
        if not self.relative_eta:
            return None
        optimizer = self.fit_settings.optimizer
        return eta / gamma ** predicted_eta_exponent(gamma, self.depth, optimizer)


def smooth_rows(log10_loss: np.ndarray, log10_top: float) -> np.ndarray:
    """Running mean of each row over ±SMOOTH_DECADES of log t, skipping NaN bins (kept NaN)."""
    if log10_loss.size == 0 or log10_top <= 0:
        return log10_loss.copy()
    half = max(1, round(SMOOTH_DECADES * PLOT_POINTS / log10_top))
    finite = np.isfinite(log10_loss)
    values = np.where(finite, log10_loss, 0.0)
    pad = ((0, 0), (half + 1, half))
    total = np.cumsum(np.pad(values, pad), axis=1)
    count = np.cumsum(np.pad(finite.astype(float), pad), axis=1)
    width = 2 * half + 1
    sums = total[:, width:] - total[:, :-width]
    counts = count[:, width:] - count[:, :-width]
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = sums / counts
    return np.where(finite, smoothed, np.nan)


def reduce_curve(steps: np.ndarray, loss: np.ndarray, log10_top: float) -> np.ndarray:
    """Mean loss per bin of the common log-time grid, in log10; NaN from the first bad record."""
    return _BinnedCurve(log10_top).add(steps, loss).reduced()


class _BinnedCurve:
    """Running sums of a curve's losses per log-time bin; records can be added as they come."""

    def __init__(self, log10_top: float) -> None:
        self.log10_top = log10_top
        self.sums = np.zeros(PLOT_POINTS)
        self.counts = np.zeros(PLOT_POINTS)
        self.bad_bin: int | None = None  # the bin of the first non-finite record

    def add(self, steps: np.ndarray, loss: np.ndarray) -> _BinnedCurve:
        """Add records (steps >= 1 only; step 0 has no place on a log axis)."""
        keep = steps >= 1
        steps, loss = steps[keep], np.asarray(loss[keep], dtype=np.float64)
        if steps.size == 0 or self.log10_top <= 0:
            return self
        index = np.clip(
            (np.log10(steps) / self.log10_top * PLOT_POINTS).astype(int), 0, PLOT_POINTS - 1
        )
        finite = np.isfinite(loss) & (loss > 0)
        self.sums += np.bincount(index[finite], loss[finite], PLOT_POINTS)
        self.counts += np.bincount(index[finite], None, PLOT_POINTS)
        bad = np.flatnonzero(~np.isfinite(loss))
        if bad.size and self.bad_bin is None:
            self.bad_bin = int(index[bad[0]])
        return self

    def reduced(self) -> np.ndarray:
        """log10 of the bin means; empty bins between records interpolated; NaN after a blow-up."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(
                self.counts > 0, np.log10(self.sums / np.maximum(self.counts, 1)), np.nan
            )
        # Early bins are finer than one step: fill the empty ones between records.
        filled = np.flatnonzero(self.counts > 0)
        if filled.size > 1:
            inside = np.arange(filled[0], filled[-1] + 1)
            out[inside] = np.interp(inside, filled, out[filled])
        if self.bad_bin is not None:
            out[self.bad_bin + 1 :] = np.nan
        return out


@dataclass
class _RunMemo:
    """Per-run reductions kept between snapshots and extended as the run grows."""

    key: tuple[object, ...]
    binned: _BinnedCurve
    records: int  # curve records already binned
    last_step: float  # the step of the last binned record (to check the curve only grew)
    reduced: np.ndarray
    plateau: float
    plateau_at: float
    plateau_last: float  # the last step of the curve t½ was computed from


@dataclass
class SnapshotBuilder:
    """Builds catalogs and sweep snapshots from a Cache; keeps per-run memos between builds.

    Used from one thread only (the watcher's); holds no connection of its own.
    """

    memos: dict[str, _RunMemo] = field(default_factory=dict)
    measured: dict[str, tuple[object, Diagnostics | None]] = field(default_factory=dict)
    samples: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    builds: int = 0
    plateaus_pending: bool = False  # the last snapshot was quick: some t½ are still NaN

    def catalog(self, cache: Cache) -> Catalog:
        """Every sweep with its run counts."""
        return Catalog(tuple(cache.sweeps()), str(cache.root))

    def snapshot(
        self, cache: Cache, name: str, step: float | None, quick: bool = False
    ) -> SweepSnapshot:
        """The sweep `name` now, with its analysis frame at `step`.

        quick=True leaves out plateau times not known yet (NaN) to paint a sweep sooner;
        `plateaus_pending` then says a full build should follow.
        """
        started = time.perf_counter()
        self.builds += 1
        info = cache.sweep(name)
        runs, curves = load_run_curves(cache, name)
        top = max([info.steps, 1, *(r.steps_target for r in runs)])
        log10_top = math.log10(max(top, 2))
        reduced, plateau = self._reductions(runs, curves, log10_top, quick)
        stored = StoredSweep.of(info)
        settings = FitSettings.of(stored)
        held = cache.evals([r.run_id for r in runs])
        measured = self._diagnostics(cache, runs)
        frame = compute_frame(name, self.builds, curves, step, settings)
        layout = heat_layout(frame.grid)
        loss_range = _color_range(reduced, [r.status for r in runs])
        return SweepSnapshot(
            name=name,
            version=self.builds,
            info=info,
            runs=tuple(runs),
            curves=tuple(curves),
            log10_t=(np.arange(PLOT_POINTS) + 0.5) / PLOT_POINTS * log10_top,
            log10_loss=reduced,
            smooth_log10_loss=smooth_rows(reduced, log10_top),
            plateau=plateau,
            cell_of_run=_cells(runs, layout),
            layout=layout,
            frame=frame,
            progress=self._progress(cache, name, runs),
            slider=slider_steps(info.steps),
            loss_range=loss_range,
            depth=settings.depth,
            relative_eta=stored.relative_eta,
            built_seconds=time.perf_counter() - started,
            fit_settings=settings,
            evals=tuple(held.get(r.run_id) for r in runs),
            diagnostics=measured,
            step_sizes=np.array(
                [step_size(r.eta, stored.width, stored.optimizer) for r in runs], dtype=np.float64
            ),
        )

    def _diagnostics(self, cache: Cache, runs: Sequence[RunInfo]) -> tuple[Diagnostics | None, ...]:
        """Each run's diagnostics, read again only for runs that changed since the last build
        (they are committed with the curve, so an unchanged run has the same ones)."""
        keys = {r.run_id: (r.steps_done, r.status, r.updated) for r in runs}
        stale = [i for i, key in keys.items() if self.measured.get(i, (None,))[0] != key]
        found = cache.diagnostics(stale) if stale else {}
        for run_id in stale:
            self.measured[run_id] = (keys[run_id], found.get(run_id))
        return tuple(self.measured[r.run_id][1] for r in runs)

    def _reductions(
        self, runs: Sequence[RunInfo], curves: Sequence[RunCurve], log10_top: float, quick: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reduced curves and plateau times; a run that only grew bins its new records only."""
        now = time.monotonic()
        reduced = np.full((len(runs), PLOT_POINTS), np.nan)
        plateau = np.full(len(runs), np.nan)
        self.plateaus_pending = False
        for i, (run, curve) in enumerate(zip(runs, curves, strict=True)):
            key = (run.steps_done, run.status, curve.steps.size, run.updated, log10_top)
            memo = self.memos.get(run.run_id)
            if memo is None or memo.key != key:
                memo = self._update(memo, key, run, curve, log10_top, now, quick)
                self.memos[run.run_id] = memo
            elif memo.plateau_at == -math.inf and not quick:
                memo.plateau, memo.plateau_at, memo.plateau_last = _plateau_now(curve, now)
            self.plateaus_pending |= memo.plateau_at == -math.inf
            reduced[i], plateau[i] = memo.reduced, memo.plateau
        return reduced, plateau

    def _update(
        self,
        memo: _RunMemo | None,
        key: tuple[object, ...],
        run: RunInfo,
        curve: RunCurve,
        log10_top: float,
        now: float,
        quick: bool,
    ) -> _RunMemo:
        """A run's memo after its curve changed."""
        grew = (
            memo is not None
            and memo.binned.log10_top == log10_top
            and 0 < memo.records <= curve.steps.size
            and curve.steps[memo.records - 1] == memo.last_step
        )
        if grew:
            assert memo is not None
            binned = memo.binned.add(curve.steps[memo.records :], curve.loss[memo.records :])
        else:
            binned = _BinnedCurve(log10_top).add(curve.steps, curve.loss)
        last = float(curve.steps[-1]) if curve.steps.size else math.nan
        if quick and (memo is None or memo.plateau_at == -math.inf):
            value, stamp, reach = math.nan, -math.inf, 0.0  # computed by the next full build
        else:
            value, stamp, reach = _plateau_memo(memo, curve, run, now, grew)
        return _RunMemo(key, binned, curve.steps.size, last, binned.reduced(), value, stamp, reach)

    def _progress(self, cache: Cache, name: str, runs: Sequence[RunInfo]) -> SweepProgress:
        """Counts and totals from runner.progress, its rate over the trailing window."""
        now = time.monotonic()
        done = sum(min(r.steps_done, r.steps_target) for r in runs)
        ring = self.samples.setdefault(name, deque(maxlen=256))
        while ring and now - ring[0][0] > RATE_WINDOW_SECONDS:
            ring.popleft()
        started, at_start = ring[0] if ring else (now, done)
        ring.append((now, done))
        if not any(r.status == RUNNING for r in runs):
            started, at_start = now, done  # nothing is training: no rate
        return progress(cache, name, started, at_start)


def _plateau_memo(
    memo: _RunMemo | None, curve: RunCurve, run: RunInfo, now: float, grew: bool
) -> tuple[float, float, float]:
    """(plateau time, when computed, last step then) of a run, reused when it cannot change.

    t½ depends on records within ±0.05 decades (analysis's smoothing) of the crossing, so once
    a t½ was computed from records reaching 0.06 decades past it, records added later cannot
    move it. A run still on its plateau is recomputed at most every PLATEAU_REFRESH_SECONDS.
    """
    if memo is not None and grew:
        settled = (
            math.isfinite(memo.plateau)
            and math.log10(1 + memo.plateau_last) > math.log10(1 + memo.plateau) + 0.06
        )
        fresh = now - memo.plateau_at < PLATEAU_REFRESH_SECONDS and run.status not in FINAL_STATES
        if settled or fresh:
            return memo.plateau, memo.plateau_at, memo.plateau_last
    return _plateau_now(curve, now)


def _plateau_now(curve: RunCurve, now: float) -> tuple[float, float, float]:
    """(plateau time, now, the curve's last step) computed from the curve."""
    last = float(curve.steps[-1]) if curve.steps.size else 0.0
    return _plateau(curve), now, last


def _color_range(reduced: np.ndarray, states: Sequence[str]) -> tuple[float, float]:
    """log10 loss range of the heatmap colors: healthy runs, from the 1st percentile to the
    largest starting loss (diverged runs would stretch it by orders of magnitude)."""
    healthy = reduced[[s != DIVERGED for s in states]] if len(states) else reduced
    finite = healthy[np.isfinite(healthy)]
    if finite.size == 0:
        return (-1.0, 0.0)
    starts = [row[np.isfinite(row)][0] for row in healthy if np.isfinite(row).any()]
    low = float(np.percentile(finite, 1))
    high = min(float(np.percentile(finite, 99.5)), float(max(starts)))
    return (low, high) if high > low + 1e-6 else (low - 0.5, low + 0.5)


def _plateau(curve: RunCurve) -> float:
    """plateau_time of a healthy run's curve; NaN if it diverged or never left the plateau."""
    if curve.status == DIVERGED:
        return math.nan
    value = plateau_time(curve.steps, curve.loss)
    return math.nan if value is None else float(value)


def _cells(runs: Sequence[RunInfo], layout: HeatLayout) -> np.ndarray:
    """(γ index, η index) of each run, matched like analysis does (12 significant digits)."""

    def index(values: np.ndarray) -> dict[float, int]:
        """Grid values keyed like analysis keys them."""
        return {float(f"{v:.12g}"): i for i, v in enumerate(values.tolist())}

    gammas, etas = index(layout.gammas), index(layout.etas)
    cells = np.full((len(runs), 2), -1, dtype=int)
    for i, run in enumerate(runs):
        cells[i] = (
            gammas.get(float(f"{run.gamma:.12g}"), -1),
            etas.get(float(f"{run.eta:.12g}"), -1),
        )
    return cells


@contextmanager
def quiet_nanmean() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' for bins no seed reached."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield
