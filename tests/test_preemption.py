"""Preemption on SLURM, through submitit's local executor: a job sent submitit's checkpoint
signal mid-run checkpoints, is requeued and resumes; a failed array element loses no other
element's runs, and `run` then resubmits only the missing ones.

submitit's local jobs handle SIGUSR2 like SLURM ones (submitit/core/job_environment.py binds it
to checkpoint_and_try_requeue; the local controller restarts a task that exits with its requeue
code), so the signal is sent to the job's task process and, as SLURM does for a job step, to the
engine it started.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from support import tiny_preset_text
from test_backends import assert_same_results

from gamma_tui.backends import (
    SlurmExecutor,
    describe_backend,
    executor_for,
    preempt_signal,
    shard_name,
)
from gamma_tui.cache import Cache
from gamma_tui.config import Preset, PresetError, parse_preset
from gamma_tui.runner import run_sweep

pytest.importorskip("submitit")

STEPS = 30000  # several ~2 s commits even on a fast CPU (6000 trained in 1.5 s on an AVX-512 EPYC)
TEXT = tiny_preset_text(
    train={"steps": STEPS, "checkpoint_every": 1000},
    gamma={"min": 0.1, "max": 10, "per_decade": 1},
)


def preset() -> Preset:
    """The tiny preset (3 γ x 3 η x 2 seeds), long enough to be signalled mid-run."""
    return parse_preset(TEXT)


class Recording(SlurmExecutor):
    """A SlurmExecutor that remembers the shards each round submitted."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.submitted: list[list[str]] = []

    def run(self, cache, shards, job, tick):  # type: ignore[no-untyped-def]
        self.submitted += shards
        return super().run(cache, shards, job, tick)


class Sweep(threading.Thread):
    """run_sweep in a thread, so the test can signal its jobs while it waits for them."""

    def __init__(self, root: Path, backend: SlurmExecutor) -> None:
        super().__init__(daemon=True)
        self.root, self.backend, self.errors = root, backend, None

    def run(self) -> None:
        with Cache(self.root) as store:
            _final, self.errors = run_sweep(
                store, preset(), TEXT, None, device="cpu", backend=self.backend
            )


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition, seconds: float = 240.0) -> None:  # type: ignore[no-untyped-def]
    """Poll until condition() is true; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def mid_run(folder: Path) -> bool:
    """Whether a job cache has committed progress short of the end for all its runs."""
    if not (folder / "cache.sqlite").exists():
        return False
    try:
        with Cache(folder) as job_cache:
            steps = [run.steps_done for run in job_cache.runs()]
    except Exception:  # the job is still creating it
        return False
    return bool(steps) and min(steps) > 0 and max(steps) < STEPS


def task_and_engine(submitted: object) -> tuple[int, int]:
    """The pids of a local job's task process (child of its controller) and of its engine."""
    controller = submitted._process.pid  # type: ignore[attr-defined]
    tasks = children(controller)
    assert len(tasks) == 1, tasks
    engines = children(tasks[0])
    assert len(engines) == 1, engines
    return tasks[0], engines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    """The sweep trained uninterrupted by local worker processes."""
    store = Cache(tmp_path_factory.mktemp("local") / "runs")
    _final, errors = run_sweep(store, preset(), TEXT, None, device="cpu")
    assert errors == []
    return store


@pytest.mark.slow
def test_signalled_job_checkpoints_requeues_and_resumes(tmp_path: Path, reference: Cache) -> None:
    """USR2 mid-run: the job checkpoints its runs in its folder, is requeued by submitit and
    resumes from that step; the curves equal an uninterrupted run's to float32 rounding."""
    backend = SlurmExecutor(tmp_path / "jobs", cluster="local", poll_seconds=0.2)
    sweep = Sweep(tmp_path / "runs", backend)
    sweep.start()
    wait_for(lambda: len(backend.jobs) == 1)
    folder = next((tmp_path / "jobs" / "preset").glob("shard-*"))
    wait_for(lambda: mid_run(folder))
    task, engine = task_and_engine(backend.jobs[0])
    os.kill(engine, preempt_signal())  # SLURM signals every process of the step
    os.kill(task, preempt_signal())
    sweep.join(timeout=300)
    assert not sweep.is_alive() and sweep.errors == []
    log = backend.jobs[0].stdout()
    assert "Calling checkpoint method" in log and "Requeued job" in log, log
    lines = [line for line in log.splitlines() if line.startswith("gamma-tui job:")]
    assert len(lines) == 3, lines  # trained, checkpointed, trained again
    resumed = lines[2].split(" at step ")[1].split(";")[0]
    assert resumed == lines[1].split(" at step ")[1].split(";")[0]
    assert resumed != "0" and str(STEPS) not in resumed  # resumed from mid-run, not step 0
    with Cache(tmp_path / "runs") as store:
        assert_same_results(store, reference, exact=False)


@pytest.mark.slow
def test_failed_array_element_loses_no_other_runs(tmp_path: Path, reference: Cache) -> None:
    """One of three array tasks dies mid-run: the other two's runs are all merged, the dead
    one's runs keep their progress, and the next `run` submits only those."""
    backend = Recording(tmp_path / "jobs", cluster="local", pieces=3, poll_seconds=0.2)
    sweep = Sweep(tmp_path / "runs", backend)
    sweep.start()
    wait_for(lambda: len(backend.jobs) == 3)
    folders = [tmp_path / "jobs" / "preset" / name for name in _names(backend.submitted)]
    wait_for(lambda: mid_run(folders[0]))
    task, engine = task_and_engine(backend.jobs[0])
    os.kill(engine, signal.SIGKILL)  # a node failure, as far as the job can tell
    sweep.join(timeout=300)
    assert not sweep.is_alive()
    assert len(sweep.errors) == 1 and "engine exited with -9" in sweep.errors[0], sweep.errors
    lost, kept = backend.submitted[0], backend.submitted[1] + backend.submitted[2]
    with Cache(tmp_path / "runs") as store:
        runs = {run.run_id: run for run in store.runs()}
        expected = {run.run_id: run for run in reference.runs()}
        for run_id in kept:  # every run of the two other elements, as if nothing had failed
            run, want = runs[run_id], expected[run_id]
            assert (run.status, run.steps_done, run.diverged_step) == (
                want.status,
                want.steps_done,
                want.diverged_step,
            )
        ours, theirs = store.curves(kept), reference.curves(kept)
        for run_id in kept:
            assert ours[run_id].loss == pytest.approx(theirs[run_id].loss, rel=1e-4, nan_ok=True)
        missing = sorted(i for i in lost if runs[i].status not in ("done", "diverged"))
        assert missing and all(runs[i].steps_done > 0 for i in missing)  # merged to its commit
    again = Recording(tmp_path / "jobs", cluster="local", poll_seconds=0.2)
    with Cache(tmp_path / "runs") as store:
        _final, errors = run_sweep(store, preset(), TEXT, None, device="cpu", backend=again)
        assert errors == []
        assert sorted(i for shard in again.submitted for i in shard) == missing
        assert_same_results(store, reference, exact=False)


def _names(shards: list[list[str]]) -> list[str]:
    """The job folders' names of the shards."""
    return [shard_name(shard) for shard in shards]


@pytest.mark.slow
def test_time_limit_signal_checkpoints_and_counts_against_max_num_timeout(
    tmp_path: Path,
) -> None:
    """submitit's own timer: USR2 comes `signal_delay_s` before timeout_min; with
    max_num_timeout = 0 the job checkpoints and is not requeued; its progress is merged."""
    long = 10**7  # far more than the job's minute: the signal always lands mid-run
    text = TEXT.replace(f"steps = {STEPS}", f"steps = {long}")
    backend = SlurmExecutor(
        tmp_path / "jobs",
        {"timeout_min": 1.0},
        cluster="local",
        max_num_timeout=0,
        signal_delay_s=35,  # the signal 25 s after the task starts (torch imports first)
        poll_seconds=0.2,
    )
    with Cache(tmp_path / "runs") as store:
        _final, errors = run_sweep(
            store, parse_preset(text), text, None, device="cpu", backend=backend
        )
        assert len(errors) == 1 and "timed-out too many times" in errors[0], errors
        log = backend.jobs[0].stdout()
        assert "this job is timed-out" in log and "Calling checkpoint method" in log, log
        steps = {run.steps_done for run in store.runs()}
        assert min(steps) > 0 and max(steps) < long, steps  # merged from mid-run


def test_backend_table_sets_the_timeout_requeues_and_signal_delay(tmp_path: Path) -> None:
    """[backend] slurm_max_num_timeout / slurm_signal_delay_s reach the executor and submitit's
    local executor; bad values name the key."""
    table = "[backend]\nkind = 'slurm'\nslurm_max_num_timeout = 5\nslurm_signal_delay_s = 120\n"
    settings = parse_preset(TEXT + table).backend
    backend = executor_for(settings, tmp_path)
    assert isinstance(backend, SlurmExecutor)
    assert (backend.max_num_timeout, backend.signal_delay_s) == (5, 120)
    local = SlurmExecutor(tmp_path, cluster="local", max_num_timeout=5, signal_delay_s=120)
    executor = local._submitit_executor("sweep", 2)
    assert executor.max_num_timeout == 5 and executor.parameters["signal_delay_s"] == 120
    assert "checkpoint signal 120 s before the limit" in describe_backend(settings, tmp_path)
    with pytest.raises(PresetError, match="slurm_signal_delay_s"):
        parse_preset(TEXT + table.replace("= 120", "= 5"))
