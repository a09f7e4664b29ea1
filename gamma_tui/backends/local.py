"""Local training: engine worker processes on this machine, the default Executor.

LocalExecutor deals a round's shards out to up to `workers` processes of
`python -m gamma_tui.engine`, which write the local cache directly (leases keep two processes
off one run), and polls them until they exit. Each worker gets a share of the CPUs other
processes leave free (GAMMA_TUI_THREADS) and, with several workers on CUDA, a GPU of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gamma_tui.backends.base import ShardJob, Tick, engine_command
from gamma_tui.cache import Cache


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


def start_workers(
    cache_dir: Path, shards: list[list[str]], workers: int, job: ShardJob
) -> WorkerPool:
    """Start up to `workers` engine processes, dealing the shards out round-robin.

    Each gets `job.threads` torch threads, or (0) its share of the free CPUs (worker_threads).
    """
    workers = max(1, min(workers, len(shards)))
    job = dataclasses.replace(job, threads=job.threads or worker_threads(workers))
    log_dir = cache_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for index in range(workers):
        log = log_dir / f"worker-{stamp}-{os.getpid()}-{index}.log"
        with log.open("wb") as handle:
            pool.processes.append(
                subprocess.Popen(
                    engine_command(cache_dir, shards[index::workers], job),
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=worker_environment(job.device, index, workers),
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


@dataclass
class LocalExecutor:
    """Engine worker processes on this machine, writing the local cache directly."""

    workers: int = 1
    poll_seconds: float = 0.5
    pool: WorkerPool = field(default_factory=WorkerPool)
    cache_dir: Path | None = field(default=None, init=False)
    """The cache the last round's workers wrote (where they leave their cost files)."""

    @property
    def pieces(self) -> int:
        """One shard part per worker process."""
        return self.workers

    def run(self, cache: Cache, shards: list[list[str]], job: ShardJob, tick: Tick) -> list[str]:
        """Start the workers (start_workers) and wait for them; their failures."""
        self.cache_dir = cache.root
        self.pool = start_workers(cache.root, shards, self.workers, job)
        while self.pool.alive():
            tick()
            time.sleep(self.poll_seconds)
        return self.pool.failures()

    def cost_seconds(self) -> tuple[float, float]:
        """What the last round's workers measured (their cost files are removed once read)."""
        return self.pool.costs(self.cache_dir) if self.cache_dir else (0.0, 0.0)

    def stop(self) -> None:
        """SIGTERM the workers: they checkpoint and exit."""
        self.pool.stop()
