"""What `run` would train for a preset, and how its runs group into shards: no writes, no workers.

`make_shards` groups runs by shard key (one ensemble each) and splits the groups for the
workers; `plan` reads the cache to say which runs still need steps and in which shards, for
`run --dry-run` and the app's launcher alike. It imports neither the runner nor a backend.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gamma_tui.cache import Cache, RunInfo
from gamma_tui.config import Preset, RunSpec, expand
from gamma_tui.costs import flops_per_run
from gamma_tui.states import DIVERGED, QUEUED, SKIPPED


def make_shards(runs: Sequence[RunInfo], pieces: int = 1) -> list[list[str]]:
    """Group runs by shard key; split each group into at least `pieces` parts for workers."""
    groups: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        groups[run.shard_key].append(run.run_id)
    shards = []
    for ids in groups.values():
        parts = max(1, min(pieces, len(ids)))
        size = -(-len(ids) // parts)
        shards += [ids[i : i + size] for i in range(0, len(ids), size)]
    return shards


@dataclass(frozen=True)
class ShardPlan:
    """One ensemble of a plan: its dtype, members and the steps they still need."""

    dtype: str
    members: int
    steps_left: int


@dataclass(frozen=True)
class Plan:
    """What `run` would train, read from the cache without writing to it."""

    sweep: str
    total: int
    finished: int
    partial: int
    shards: list[ShardPlan]
    flops: float
    cached: int = 0
    """Runs of the grid the cache already has, in any state."""
    skipped: int = 0
    """Cached runs the η cut-off skipped (counted in `finished`)."""
    ensembles: int = 0
    """Shard keys of the whole grid: the ensembles it trains in, finished ones included."""

    @property
    def to_train(self) -> int:
        """Runs that still need steps."""
        return sum(shard.members for shard in self.shards)

    @property
    def steps_left(self) -> int:
        """Run-steps still to train (an upper bound: the η cut-off may skip some)."""
        return sum(shard.steps_left for shard in self.shards)


def plan(cache: Cache, preset: Preset, workers: int = 1) -> Plan:
    """The shards `run` would start for this preset (before any η cut-off), cache untouched."""
    specs = expand(preset)
    known = {r.run_id: r for r in cache.runs(run_ids=[s.run_id for s in specs])}
    steps = preset.train.steps
    left: dict[str, int] = {}
    for spec in specs:
        run = known.get(spec.run_id)
        if run is not None and (run.status in (DIVERGED, SKIPPED) or run.steps_done >= steps):
            continue
        left[spec.run_id] = steps - (run.steps_done if run is not None else 0)
    pending = [s for s in specs if s.run_id in left]
    infos = [_planned(spec) for spec in pending]
    by_id = {s.run_id: s for s in pending}
    shards = [
        ShardPlan(by_id[ids[0]].dtype, len(ids), sum(left[i] for i in ids))
        for ids in make_shards(infos, pieces=workers)
    ]
    per_step = flops_per_run(preset) / max(steps, 1)
    partial = sum(1 for r in known.values() if 0 < r.steps_done < steps and r.run_id in left)
    finished = len(specs) - len(left)
    skipped = sum(1 for r in known.values() if r.status == SKIPPED)
    return Plan(
        preset.name,
        len(specs),
        finished,
        partial,
        shards,
        per_step * sum(left.values()),
        len(known),
        skipped,
        len({s.shard_key for s in specs}),
    )


def _planned(spec: RunSpec) -> RunInfo:
    """A placeholder RunInfo carrying what make_shards needs."""
    return RunInfo(
        spec.run_id,
        spec.gamma,
        spec.eta,
        spec.seed,
        spec.dtype,
        spec.shard_key,
        QUEUED,
        0,
        0,
        None,
        None,
        None,
        None,
        None,
        None,
        0.0,
        0.0,
    )
