"""Detached sweeps: `run --detach`, `ps` and `stop` with real processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support import SMOKE
from test_cli import cli, runs_of

from gamma_tui.processes import driver_log
from gamma_tui.ui.launch import start_driver


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def processes(cache: Path) -> list[dict]:
    return json.loads(cli("ps", "--json", cache=cache).stdout)


def test_detach_ps_stop_then_resume(tmp_path: Path) -> None:
    # long enough that `stop` lands before the sweep ends even when the workers run fast
    cache = tmp_path / "runs"
    started = cli("run", str(SMOKE), "--set", "train.steps=20000", "--detach", cache=cache)
    assert "runs in the background" in started.stderr
    assert "driver" in {p["role"] for p in processes(cache)}  # at once: --detach waited for it
    wait_for(lambda: {p["role"] for p in processes(cache)} == {"driver", "worker"})
    wait_for(lambda: any(r["steps_done"] > 0 for r in runs_of(cache)))
    stopped = cli("stop", "smoke", cache=cache)
    assert "SIGTERM" in stopped.stderr
    wait_for(lambda: processes(cache) == [])
    runs = runs_of(cache)
    assert {r["state"] for r in runs} <= {"queued", "diverged"}
    paused = {r["run_id"]: r["steps_done"] for r in runs if r["state"] == "queued"}
    assert paused and all(0 < steps < 20000 for steps in paused.values())
    cli("run", str(SMOKE), "--set", "train.steps=20000", cache=cache)  # resumes, no restart
    assert {r["state"] for r in runs_of(cache)} <= {"done", "diverged"}


def test_stop_without_running_sweep_says_so(tmp_path: Path) -> None:
    cache = tmp_path / "runs"
    cli("run", str(SMOKE), "--set", "train.steps=20", cache=cache)
    done = cli("stop", "smoke", cache=cache, check=False)
    assert done.returncode == 1 and "no running process" in done.stderr


def test_the_app_starts_the_same_driver_as_detach(tmp_path: Path) -> None:
    """The launcher's driver logs to CACHE/logs/driver-SWEEP.log like `run --detach`, and its
    failure shows its own output, not that of an earlier driver of the sweep."""
    cache = tmp_path / "runs"
    log = driver_log(cache, "smoke")
    assert log == cache / "logs" / "driver-smoke.log"
    log.parent.mkdir(parents=True)
    log.write_text("an earlier driver's last words\n")
    driver = start_driver(cache, tmp_path / "missing.toml", "smoke")
    assert driver.log == log
    wait_for(lambda: not driver.alive())
    failure = driver.failure()
    assert failure is not None and "status 2" in failure and "missing.toml" in failure
    assert "earlier driver" not in failure
    assert log.read_text().startswith("an earlier driver's last words\n")  # appended
