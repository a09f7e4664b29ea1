"""Where a sweep stands, read from the cache: run counts, steps, rate and per-shard progress.

Both front ends show this snapshot: `gamma-tui run` while it drives workers, and the app for
any sweep in the cache. It only reads the cache (one query per snapshot) and never imports
torch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gamma_tui.cache import Cache, RunInfo, SweepInfo
from gamma_tui.states import DIVERGED, FINAL_STATES, RUNNING, SKIPPED


@dataclass(frozen=True)
class ShardProgress:
    """One shard of the current round (one ensemble): its runs' states and steps."""

    index: int
    """1-based position in the round's list of shards."""
    dtype: str
    runs: int
    counts: dict[str, int]
    steps_done: int
    steps_total: int

    @property
    def finished(self) -> bool:
        """Whether every run of the shard is in a final state."""
        return sum(self.counts.get(state, 0) for state in FINAL_STATES) >= self.runs

    @property
    def training(self) -> bool:
        """Whether a live worker holds any of its runs."""
        return self.counts.get(RUNNING, 0) > 0

    @property
    def fraction(self) -> float:
        """Share of the shard's steps done (diverged and skipped runs count as complete)."""
        return self.steps_done / self.steps_total if self.steps_total else 1.0


@dataclass(frozen=True)
class SweepProgress:
    """A snapshot of a sweep's progress, read from the cache."""

    total: int
    counts: dict[str, int]
    steps_done: int
    steps_total: int
    elapsed_seconds: float
    steps_per_second: float
    shards: tuple[ShardProgress, ...] = ()
    """The shards of the current training round (empty while none is running)."""
    round_index: int = 0
    """1 for the first round of shards (the η cut-off trains in several), 0 before any."""
    cost_seconds: tuple[float, float] = (0.0, 0.0)
    """(training, diagnostics) seconds local workers measured in this `run` (set at its end)."""

    @property
    def finished(self) -> int:
        """Runs in a final state (done, diverged, failed, skipped)."""
        return sum(self.counts.get(state, 0) for state in FINAL_STATES)

    @property
    def eta_seconds(self) -> float | None:
        """Estimated seconds left at the current rate, None before a rate is known."""
        if self.steps_per_second <= 0:
            return None
        return max(0.0, (self.steps_total - self.steps_done) / self.steps_per_second)


def progress(
    cache: Cache,
    sweep: SweepInfo | str,
    started: float,
    steps_at_start: int,
    run_ids: Sequence[str] | None = None,
    shards: Sequence[Sequence[str]] = (),
    round_index: int = 0,
) -> SweepProgress:
    """The sweep's progress now (of `run_ids` if given); rates are measured since `started`.

    `shards` (lists of run ids, as make_shards returns) get one ShardProgress each, computed
    from the same single read of the cache.
    """
    name = sweep if isinstance(sweep, str) else sweep.name
    runs = cache.runs(name) if run_ids is None else cache.runs(run_ids=run_ids)
    counts = _state_counts(runs)
    done, total = _steps(runs)
    elapsed = time.monotonic() - started
    rate = (done - steps_at_start) / elapsed if elapsed > 0.5 else 0.0
    by_id = {run.run_id: run for run in runs}
    parts = []
    for index, shard in enumerate(shards, start=1):
        members = [by_id[run_id] for run_id in shard if run_id in by_id]
        if members:
            shard_done, shard_total = _steps(members)
            parts.append(
                ShardProgress(
                    index,
                    members[0].dtype,
                    len(members),
                    _state_counts(members),
                    shard_done,
                    shard_total,
                )
            )
    return SweepProgress(len(runs), counts, done, total, elapsed, rate, tuple(parts), round_index)


def _state_counts(runs: Sequence[RunInfo]) -> dict[str, int]:
    """How many runs are in each state (with 'interrupted' for lapsed leases)."""
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.state] += 1
    return dict(counts)


def _steps(runs: Sequence[RunInfo]) -> tuple[int, int]:
    """(steps done, steps to do) of runs; a diverged or skipped run needs no more steps."""
    done = sum(min(r.steps_done, r.steps_target) for r in runs)
    total = sum(r.steps_done if r.status in (DIVERGED, SKIPPED) else r.steps_target for r in runs)
    return done, total
