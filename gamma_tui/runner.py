"""Turns a preset into rounds of shards, skips finished runs and hands each round to an Executor.

The runner never imports torch: it registers the sweep in the cache, groups unfinished runs
by shard key and gives each round's shards to the executor (local engine worker processes by
default, or a SLURM array or Ray tasks, see gamma_tui.backends), watching progress through
the cache, which is the only channel from training back to the CLI and the TUI. With the
adaptive cut-off, η is trained top-down in bands of `cutoff.decades` per γ, and runs more
than that many decades below the first stable η are marked skipped instead of trained.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from gamma_tui.backends.base import Executor, ShardJob
from gamma_tui.backends.local import LocalExecutor
from gamma_tui.cache import FINAL_STATES, Cache, RunInfo
from gamma_tui.config import Preset, RunSpec, expand
from gamma_tui.planning import make_shards
from gamma_tui.processes import register_driver, unregister_driver
from gamma_tui.progress import SweepProgress, progress
from gamma_tui.states import DIVERGED, DONE, INTERRUPTED, RUNNING


def register(
    cache: Cache, preset: Preset, preset_text: str, preset_path: str | None = None
) -> list[RunSpec]:
    """Record the sweep and its runs in the cache; returns the expanded specs."""
    specs = expand(preset)
    cache.register_sweep(
        preset.name,
        preset_text,
        preset.model_dump(mode="json"),
        specs,
        preset.train.steps,
        preset_path,
    )
    return specs


def refine_round(
    cache: Cache,
    preset: Preset,
    preset_text: str,
    preset_path: str | None,
    run_ids: Sequence[str],
) -> list[str]:
    """Add the next [refine] round's runs to the sweep; returns their ids (none: done).

    Only the added runs are registered (the sweep's other runs and their states are left as
    they are), which makes them ordinary cached runs of the sweep; runs the cache already has
    are reused, not retrained.
    """
    if preset.refine is None:
        return []
    from gamma_tui.refine import propose, round_specs
    from gamma_tui.results import run_curves

    runs = cache.runs(run_ids=run_ids)
    proposal = propose(preset, run_curves(cache, runs, preset.train.steps))
    added = round_specs(preset, proposal, preset.refine.max_runs - len(run_ids))
    if not added:
        return []
    cache.register_sweep(
        preset.name,
        preset_text,
        preset.model_dump(mode="json"),
        added,
        preset.train.steps,
        preset_path,
        replace=False,
    )
    return [spec.run_id for spec in added]


def cutoff_round(
    cache: Cache, preset: Preset, run_ids: Sequence[str] | None = None
) -> list[RunInfo]:
    """The runs to train next under the adaptive η cut-off; marks the cut ones skipped.

    Per γ: once the first stable η (largest η with no diverged seed, all seeds done) is
    known, every η at least `decades` below it is skipped and the rest are trained; until
    then the next band of `decades` below the largest untrained η is trained.
    """
    decades = preset.cutoff.decades
    runs = cache.runs(preset.name) if run_ids is None else cache.runs(run_ids=run_ids)
    if decades is None:
        return [r for r in runs if r.status not in FINAL_STATES]
    factor = 10.0**-decades
    by_gamma: dict[float, list[RunInfo]] = defaultdict(list)
    for run in runs:
        by_gamma[run.gamma].append(run)
    wanted, skipped = [], []
    for column in by_gamma.values():
        stable = _first_stable_eta(column)
        open_runs = [r for r in column if r.status not in FINAL_STATES]
        if not open_runs:
            continue
        floor = stable * factor if stable else max(r.eta for r in open_runs) * factor
        for run in open_runs:
            if run.eta >= floor * (1 - 1e-9):
                wanted.append(run)
            elif stable is not None:
                skipped.append(run.run_id)
    cache.mark_skipped(skipped)
    return wanted


def _first_stable_eta(column: Sequence[RunInfo]) -> float | None:
    """The largest η at one γ whose seeds all finished without diverging."""
    by_eta: dict[float, list[RunInfo]] = defaultdict(list)
    for run in column:
        by_eta[run.eta].append(run)
    for eta in sorted(by_eta, reverse=True):
        states = {r.status for r in by_eta[eta]}
        if states == {DONE}:
            return eta
        if DIVERGED not in states:
            return None  # the largest undecided η is not known to be stable yet
    return None


def run_sweep(
    cache: Cache,
    preset: Preset,
    preset_text: str,
    preset_path: str | None,
    workers: int = 1,
    device: str = "auto",
    on_progress: Callable[[SweepProgress], None] | None = None,
    poll_seconds: float = 0.5,
    backend: Executor | None = None,
) -> tuple[SweepProgress, list[str]]:
    """Train every unfinished run of the preset; returns final progress and worker errors.

    Each round's shards go to `backend` (see gamma_tui.backends), by default a LocalExecutor
    of `workers` engine processes polled every `poll_seconds`; a given backend splits the
    shards into its own `pieces` instead.
    """
    # this process's runs, by id: another `run` of a preset with the same name (another
    # grid) may re-register the name meanwhile
    ids = [spec.run_id for spec in register(cache, preset, preset_text, preset_path)]
    record = register_driver(cache.root, preset.name)
    started = time.monotonic()
    baseline = progress(cache, preset.name, started, 0, ids).steps_done
    errors: list[str] = []
    executor = backend if backend is not None else LocalExecutor(workers, poll_seconds)
    job = ShardJob(
        preset.name, device, preset.train.checkpoint_every, compile_step=preset.train.compile
    )
    spent = (0.0, 0.0)  # (training, diagnostics) seconds the workers measured
    shards: list[list[str]] = []  # the current round's, read by tick()
    rounds = 0

    def tick() -> None:
        if on_progress:
            on_progress(progress(cache, preset.name, started, baseline, ids, shards, rounds))

    try:
        while True:
            cache.expire_dead_leases()  # a killed worker's runs are free at once, not after TTL
            todo = cutoff_round(cache, preset, ids)
            if not todo:
                added = refine_round(cache, preset, preset_text, preset_path, ids)
                if not added:
                    break
                ids += added
                continue
            free = [r for r in todo if r.lease_owner is None or r.state == INTERRUPTED]
            if not free:  # another live process trains these: watch until it is done
                shards = []
                tick()
                time.sleep(poll_seconds)
                continue
            rounds += 1
            shards = make_shards(free, pieces=executor.pieces)
            errors += executor.run(cache, shards, job, tick)
            cost = executor.cost_seconds()
            spent = (spent[0] + cost[0], spent[1] + cost[1])
            if errors:
                break
            if not _made_progress(cache, free) and not _held_elsewhere(cache, free):
                break  # a stuck run; runs that another live process claimed first are awaited
    except KeyboardInterrupt:
        executor.stop()
        raise
    finally:
        unregister_driver(record)
    final = progress(cache, preset.name, started, baseline, ids, shards, rounds)
    final = dataclasses.replace(final, cost_seconds=spent)
    if on_progress:
        on_progress(final)
    return final, errors


def _made_progress(cache: Cache, todo: Sequence[RunInfo]) -> bool:
    """Whether a round finished any of its runs (guards against spinning on a stuck run)."""
    now = {r.run_id: r for r in cache.runs(run_ids=[r.run_id for r in todo])}
    return any(now[r.run_id].status in FINAL_STATES for r in todo if r.run_id in now)


def _held_elsewhere(cache: Cache, runs: Sequence[RunInfo]) -> bool:
    """Whether any of the runs is leased by a live worker (ours have all exited by now)."""
    return any(r.state == RUNNING for r in cache.runs(run_ids=[r.run_id for r in runs]))
