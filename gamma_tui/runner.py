"""Turns a preset into shards, skips finished runs and drives worker processes.

The runner never imports torch: it registers the sweep in the cache, groups unfinished runs
by shard key, starts `python -m gamma_tui.engine` workers and watches progress through the
cache, which is the only channel from training back to the CLI and the TUI. With the
adaptive cut-off, η is trained top-down in bands of `cutoff.decades` per γ, and runs more
than that many decades below the first stable η are marked skipped instead of trained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gamma_tui.cache import FINAL_STATES, Cache, RunInfo
from gamma_tui.config import Preset, RunSpec, expand
from gamma_tui.processes import register_driver, unregister_driver
from gamma_tui.progress import SweepProgress, progress

if TYPE_CHECKING:
    from gamma_tui.backends import Executor


@dataclass
class WorkerPool:
    """Worker processes of one round, with their log files."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def alive(self) -> bool:
        """Whether any worker is still running."""
        return any(p.poll() is None for p in self.processes)

    def failures(self) -> list[str]:
        """One message per worker that exited with an error, with the end of its log."""
        messages = []
        for process, log in zip(self.processes, self.logs, strict=True):
            code = process.poll()
            if code not in (None, 0, 130, -signal.SIGTERM):
                tail = (
                    log.read_text(errors="replace").strip().splitlines()[-3:]
                    if log.exists()
                    else []
                )
                message = f"worker {process.pid} exited with {code}: " + " | ".join(tail)
                if shutil.disk_usage(log.parent).free < 2**20:  # its log may be empty then
                    message += (
                        f" (the disk holding {log.parent.parent} is full: free some space and "
                        "run again; runs resume from their last checkpoints)"
                    )
                messages.append(message)
        return messages

    def costs(self, cache_dir: Path) -> tuple[float, float]:
        """(training, diagnostics) seconds the exited workers measured (engine COST_FILE),
        summed; their files are removed once read."""
        training = diagnostics = 0.0
        for process in self.processes:
            path = cache_dir / "logs" / f"cost-{process.pid}.json"
            if process.poll() is None or not path.exists():
                continue
            try:
                seconds = json.loads(path.read_text(encoding="utf-8"))
                training += seconds["total"] - seconds["diagnostics"]
                diagnostics += seconds["diagnostics"]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a cost file is a report, never a reason to fail the run
            path.unlink(missing_ok=True)
        return training, diagnostics

    def stop(self, timeout: float = 30.0) -> None:
        """Ask workers to checkpoint and exit (SIGTERM); kill those that do not."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


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
        if states == {"done"}:
            return eta
        if "diverged" not in states:
            return None  # the largest undecided η is not known to be stable yet
    return None


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

    @property
    def to_train(self) -> int:
        """Runs that still need steps."""
        return sum(shard.members for shard in self.shards)


def plan(cache: Cache, preset: Preset, workers: int = 1) -> Plan:
    """The shards `run` would start for this preset (before any η cut-off), cache untouched."""
    specs = expand(preset)
    known = {r.run_id: r for r in cache.runs(run_ids=[s.run_id for s in specs])}
    steps = preset.train.steps
    left: dict[str, int] = {}
    for spec in specs:
        run = known.get(spec.run_id)
        if run is not None and (run.status in ("diverged", "skipped") or run.steps_done >= steps):
            continue
        left[spec.run_id] = steps - (run.steps_done if run is not None else 0)
    pending = [s for s in specs if s.run_id in left]
    infos = [_planned(spec) for spec in pending]
    by_id = {s.run_id: s for s in pending}
    shards = [
        ShardPlan(by_id[ids[0]].dtype, len(ids), sum(left[i] for i in ids))
        for ids in make_shards(infos, pieces=workers)
    ]
    per_step = preset.flops_per_run() / max(steps, 1)
    partial = sum(1 for r in known.values() if 0 < r.steps_done < steps and r.run_id in left)
    finished = len(specs) - len(left)
    return Plan(preset.name, len(specs), finished, partial, shards, per_step * sum(left.values()))


def _planned(spec: RunSpec) -> RunInfo:
    """A placeholder RunInfo carrying what make_shards needs."""
    return RunInfo(
        spec.run_id,
        spec.gamma,
        spec.eta,
        spec.seed,
        spec.dtype,
        spec.shard_key,
        "queued",
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


def start_workers(
    cache_dir: Path,
    shards: list[list[str]],
    workers: int,
    device: str,
    checkpoint_every: int,
    detach: bool = False,
    compile_step: bool = False,
) -> WorkerPool:
    """Start up to `workers` engine processes, dealing the shards out round-robin."""
    workers = max(1, min(workers, len(shards)))
    threads = worker_threads(workers)
    log_dir = cache_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for index in range(workers):
        command = worker_command(
            cache_dir, shards[index::workers], device, threads, checkpoint_every, compile_step
        )
        log = log_dir / f"worker-{stamp}-{os.getpid()}-{index}.log"
        with log.open("wb") as handle:
            pool.processes.append(
                subprocess.Popen(
                    command,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=detach,
                    env=worker_environment(device, index, workers),
                )
            )
        pool.logs.append(log)
    return pool


THREADS_ENV = "GAMMA_TUI_THREADS"
"""Torch threads per local worker: 'auto' (the default: the CPUs other processes leave free,
shared out), 'all' (every CPU this process may use, shared out) or a number."""


def worker_threads(workers: int) -> int:
    """Torch CPU threads for each of `workers` local workers, by GAMMA_TUI_THREADS.

    OpenMP threads that outnumber the free cores wait at every parallel region for a thread
    the scheduler has parked behind another process: with one busy process on the other
    core of two, two threads took the quickstart from 19 s to 42 s (issue 12); one thread
    per free core avoids that wait (measured in bench/contention.py).
    """
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = allowed or os.cpu_count() or 1
    choice = os.environ.get(THREADS_ENV, "auto").strip().lower()
    if choice.isdigit() and int(choice) > 0:
        return int(choice)
    if choice == "auto":
        cpus -= busy_cpus()
    return max(1, cpus // workers)


def busy_cpus(seconds: float = 0.25) -> int:
    """CPUs (of those this process may use) that other processes keep busy, rounded: the
    non-idle share of each CPU's time over `seconds`, from /proc/stat; 0 where that file
    does not exist. This process sleeps meanwhile, so it is not counted."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    first = _cpu_jiffies()
    if not first:
        return 0
    time.sleep(seconds)
    second = _cpu_jiffies()
    busy = 0.0
    for cpu, (idle, total) in second.items():
        if cpu in first and (allowed is None or cpu in allowed):
            elapsed = total - first[cpu][1]
            busy += 1.0 - (idle - first[cpu][0]) / elapsed if elapsed > 0 else 0.0
    return round(busy)


def _cpu_jiffies() -> dict[int, tuple[int, int]]:
    """(idle + iowait, total) jiffies of each CPU, from /proc/stat ({} where it is missing)."""
    try:
        with open("/proc/stat") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu") and line[3] != " "]
    except OSError:
        return {}
    jiffies = {}
    for fields in lines:
        values = [int(v) for v in fields[1:9]]
        jiffies[int(fields[0][3:])] = (values[3] + values[4], sum(values))
    return jiffies


def worker_command(
    cache_dir: Path | str,
    shards: Sequence[Sequence[str]],
    device: str,
    threads: int,
    checkpoint_every: int,
    compile_step: bool,
) -> list[str]:
    """The engine worker's command line (`python -m gamma_tui.engine`) for `shards`."""
    command = [sys.executable, "-m", "gamma_tui.engine", "--cache", str(cache_dir)]
    command += ["--device", device, "--threads", str(threads)]
    command += ["--checkpoint-every", str(checkpoint_every)]
    command += ["--compile"] if compile_step else []
    for shard in shards:
        command += ["--shard", ",".join(shard)]
    return command


def worker_environment(device: str, index: int, workers: int) -> dict[str, str]:
    """Environment of worker `index`: one GPU each when several workers share CUDA devices.

    With `--device cuda` (or auto) and N workers, worker i sees only GPU i of
    CUDA_VISIBLE_DEVICES (or of 0..N-1), so each process owns one device.
    """
    env = dict(os.environ)
    if workers > 1 and device in ("auto", "cuda"):
        visible = env.get("CUDA_VISIBLE_DEVICES")
        choices = visible.split(",") if visible else [str(i) for i in range(workers)]
        env["CUDA_VISIBLE_DEVICES"] = choices[index % len(choices)]
    return env


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

    With `backend` (see gamma_tui.backends), each round's shards go to it instead of local
    worker processes; `workers` is then ignored for the backend's own `pieces`.
    """
    # this process's runs, by id: another `run` of a preset with the same name (another
    # grid) may re-register the name meanwhile
    ids = [spec.run_id for spec in register(cache, preset, preset_text, preset_path)]
    record = register_driver(cache.root, preset.name)
    started = time.monotonic()
    baseline = progress(cache, preset.name, started, 0, ids).steps_done
    errors: list[str] = []
    pool = WorkerPool()
    spent = (0.0, 0.0)  # (training, diagnostics) seconds of the local workers
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
            free = [r for r in todo if r.lease_owner is None or r.state == "interrupted"]
            if not free:  # another live process trains these: watch until it is done
                shards = []
                tick()
                time.sleep(poll_seconds)
                continue
            rounds += 1
            if backend is not None:
                shards = make_shards(free, pieces=backend.pieces)
                errors += _backend_round(cache, preset, shards, device, backend, tick)
                if errors or not (_made_progress(cache, free) or _held_elsewhere(cache, free)):
                    break
                continue
            shards = make_shards(free, pieces=workers)
            pool = start_workers(
                cache.root,
                shards,
                workers,
                device,
                preset.train.checkpoint_every,
                compile_step=preset.train.compile,
            )
            while pool.alive():
                tick()
                time.sleep(poll_seconds)
            errors += pool.failures()
            cost = pool.costs(cache.root)
            spent = (spent[0] + cost[0], spent[1] + cost[1])
            if errors:
                break
            if not _made_progress(cache, free) and not _held_elsewhere(cache, free):
                break  # a stuck run; runs that another live process claimed first are awaited
    except KeyboardInterrupt:
        pool.stop()
        if backend is not None:
            backend.stop()
        raise
    finally:
        unregister_driver(record)
    final = progress(cache, preset.name, started, baseline, ids, shards, rounds)
    final = dataclasses.replace(final, cost_seconds=spent)
    if on_progress:
        on_progress(final)
    return final, errors


def _backend_round(
    cache: Cache,
    preset: Preset,
    shards: list[list[str]],
    device: str,
    backend: Executor,
    tick: Callable[[], None],
) -> list[str]:
    """Hand one round's shards to a distributed backend; returns its failures."""
    from gamma_tui.backends import ShardJob

    job = ShardJob(
        preset.name, device, preset.train.checkpoint_every, compile_step=preset.train.compile
    )
    return backend.run(cache, shards, job, tick)


def _made_progress(cache: Cache, todo: Sequence[RunInfo]) -> bool:
    """Whether a round finished any of its runs (guards against spinning on a stuck run)."""
    now = {r.run_id: r for r in cache.runs(run_ids=[r.run_id for r in todo])}
    return any(now[r.run_id].status in FINAL_STATES for r in todo if r.run_id in now)


def _held_elsewhere(cache: Cache, runs: Sequence[RunInfo]) -> bool:
    """Whether any of the runs is leased by a live worker (ours have all exited by now)."""
    return any(r.state == "running" for r in cache.runs(run_ids=[r.run_id for r in runs]))
