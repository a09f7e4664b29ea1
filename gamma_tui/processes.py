"""Sweeps that outlive the terminal: driver records, listing live workers, stopping sweeps.

A sweep is driven by one `gamma-tui run` process (the driver), which starts engine workers.
The driver writes a small JSON record under CACHE/drivers/ while it lives; workers show up
through their leases in the cache. `ps` joins both; `stop` sends SIGTERM to the driver and
the workers, which checkpoint and exit (their runs go back to the queue and resume on the
next `run`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gamma_tui.cache import Cache, CacheError, pid_alive
from gamma_tui.states import RUNNING


@dataclass(frozen=True)
class SweepProcess:
    """A live process working on a sweep: its driver or one of its workers."""

    sweep: str
    role: str  # "driver" or "worker"
    pid: int
    host: str
    runs: int  # runs it holds leases on (workers), 0 for drivers
    started: float | None


def _record_path(cache_root: Path, sweep: str) -> Path:
    return cache_root / "drivers" / f"{sweep}.json"


def register_driver(cache_root: Path, sweep: str) -> Path:
    """Record this process as the driver of `sweep`; returns the record's path."""
    path = _record_path(cache_root, sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload))
    partial.replace(path)
    return path


def unregister_driver(path: Path) -> None:
    """Remove a driver record written by this process."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int, host: str) -> bool:
    """Whether a process on this host still exists (other hosts: unknown, assume alive)."""
    return host != socket.gethostname() or pid_alive(pid)


def sweep_processes(cache: Cache) -> list[SweepProcess]:
    """Live drivers (from their records) and workers (from fresh leases), by sweep."""
    found = []
    for record in sorted((cache.root / "drivers").glob("*.json")):
        try:
            data = json.loads(record.read_text())
            pid, host = int(data["pid"]), str(data["host"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid, host):
            found.append(SweepProcess(record.stem, "driver", pid, host, 0, data.get("started")))
    for sweep in cache.sweeps():
        owners: dict[str, int] = {}
        for run in cache.runs(sweep.name):
            if run.state == RUNNING and run.lease_owner:
                owners[run.lease_owner] = owners.get(run.lease_owner, 0) + 1
        for owner, count in owners.items():
            host, pid_text, tag = (owner.rsplit(":", 2) + ["", "", ""])[:3]
            if not (tag and pid_text.isdigit()):
                continue  # not a worker's owner string (host:pid:tag)
            if _alive(int(pid_text), host):
                found.append(SweepProcess(sweep.name, "worker", int(pid_text), host, count, None))
    return found


def stop_sweep(cache: Cache, sweep: str) -> list[SweepProcess]:
    """SIGTERM the sweep's driver and workers on this host; returns the processes signalled."""
    signalled = []
    for process in sweep_processes(cache):
        if process.sweep != sweep or process.host != socket.gethostname():
            continue
        try:
            os.kill(process.pid, signal.SIGTERM)
            signalled.append(process)
        except ProcessLookupError:
            continue
    return signalled


DETACH_WAIT_SECONDS = 60.0
"""How long `run --detach` waits for its driver to register (it takes a second or two)."""


def driver_registered(cache_root: Path, sweep: str, pid: int) -> bool:
    """Whether the driver record of `sweep` names the process `pid` (so `ps` lists it)."""
    try:
        return json.loads(_record_path(cache_root, sweep).read_text()).get("pid") == pid
    except (OSError, ValueError, AttributeError):
        return False


def driver_log(cache_root: Path, sweep: str) -> Path:
    """Where a detached driver of `sweep` writes its output: CACHE/logs/driver-SWEEP.log."""
    return cache_root / "logs" / f"driver-{sweep}.log"


def log_tail(log: Path, start: int = 0, lines: int = 3) -> list[str]:
    """The last `lines` lines a process wrote to `log` after byte `start` ([] if none)."""
    try:
        with log.open("rb") as handle:
            handle.seek(start)
            return handle.read().decode(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return []


def spawn_driver(arguments: list[str], cache_root: Path, sweep: str) -> subprocess.Popen[bytes]:
    """Start `gamma-tui run ARGUMENTS --quiet` in its own session (process group), immune to
    the terminal closing, its output appended to driver_log; returns at once."""
    log = driver_log(cache_root, sweep)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "gamma_tui", "run", *arguments, "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def detach_run(
    arguments: list[str], cache_root: Path, sweep: str, wait: float = DETACH_WAIT_SECONDS
) -> int:
    """Start `gamma-tui run ARGUMENTS` detached (spawn_driver) and wait for it to register.

    Returns the driver's pid once its record exists (`ps` shows the sweep from then on), once
    it exited with status 0 (nothing to train, or done already), or after `wait` seconds,
    whichever comes first. A driver that fails before registering raises CacheError with the
    end of its log.
    """
    log = driver_log(cache_root, sweep)
    start = log.stat().st_size if log.exists() else 0
    process = spawn_driver(arguments, cache_root, sweep)
    deadline = time.monotonic() + wait
    while not driver_registered(cache_root, sweep, process.pid):
        code = process.poll()
        if code is not None:
            if code == 0:
                break
            raise CacheError(
                f"the detached driver exited with status {code} before it started: "
                + " / ".join(log_tail(log, start, 5))
                + f" (see {log})"
            )
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return process.pid
