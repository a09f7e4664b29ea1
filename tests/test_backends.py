"""Distributed backends: job caches, merging, and SLURM (submitit) and Ray runs equal to local."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from support import tiny_preset_text

from gamma_tui.backends import (
    LocalExecutor,
    RayExecutor,
    ShardJob,
    SlurmExecutor,
    prepare_job_cache,
    remote_lease,
    shard_name,
    sync_jobs,
)
from gamma_tui.cache import Cache, Progress
from gamma_tui.config import Preset, parse_preset
from gamma_tui.runner import register, run_sweep
from gamma_tui.schedule import reduce_losses

TEXT = tiny_preset_text(
    train={"steps": 40, "checkpoint_every": 16},
    gamma={"min": 0.1, "max": 10, "per_decade": 1},
)


def preset_of(steps: int = 40) -> Preset:
    """The tiny preset (3 γ x 3 η x 2 seeds) with `steps` steps."""
    return parse_preset(TEXT.replace("steps = 40", f"steps = {steps}"))


def train(root: Path, preset: Preset, backend: object = None) -> Cache:
    """Run the sweep into the cache at `root` (locally or through `backend`); no errors."""
    store = Cache(root)
    _final, errors = run_sweep(store, preset, TEXT, None, device="cpu", backend=backend)  # type: ignore[arg-type]
    assert errors == []
    return store


ROUNDING = 1e-4
"""Relative difference allowed between runs trained in different ensembles: BLAS rounds
otherwise for other shapes on some CPUs, and a one-ulp difference stays below 3e-5 over a
thousand steps (tests/test_reliability.py measures it); these sweeps run 40."""


def assert_same_results(left: Cache, right: Cache, exact: bool = True) -> None:
    """Same runs, statuses, steps and curves: bitwise equal where both trained the same
    ensembles (`exact`), else equal to float32 rounding."""
    rows = {r.run_id: (r.status, r.steps_done, r.diverged_step) for r in left.runs()}
    assert rows == {r.run_id: (r.status, r.steps_done, r.diverged_step) for r in right.runs()}
    assert all(status in ("done", "diverged") for status, _, _ in rows.values())
    ours, theirs = left.curves(), right.curves()
    assert ours.keys() == theirs.keys() == rows.keys()
    for run_id, curve in ours.items():
        assert np.array_equal(curve.steps, theirs[run_id].steps), run_id
        if exact:
            assert np.array_equal(curve.loss, theirs[run_id].loss, equal_nan=True), run_id
        else:
            np.testing.assert_allclose(
                curve.loss, theirs[run_id].loss, rtol=ROUNDING, equal_nan=True, err_msg=run_id
            )


def fake_progress(store: Cache, run_id: str, steps: int, owner: str = "job") -> None:
    """Commit `steps` steps of a made-up curve and a checkpoint for one run."""
    store.claim([run_id], owner)
    losses = np.linspace(1.0, 0.5, steps, dtype=np.float32)
    chunks = reduce_losses(0, losses, 64)
    checkpoint = {"p0": np.full(3, float(steps))}
    store.commit(owner, [Progress(run_id, steps, chunks, checkpoint, "running", 1.0, 0.5)])
    store.release(owner)


# ---- fast: job caches and merging ------------------------------------------------------------


def test_job_cache_keeps_delete_journal_for_every_opener(tmp_path: Path) -> None:
    """A job cache is created in DELETE mode and a plain Cache() (the engine's) keeps it."""
    Cache(tmp_path / "job", journal="delete").close()
    with Cache(tmp_path / "job") as reopened:
        assert reopened.journal == "delete"
    mode = sqlite3.connect(tmp_path / "job" / "cache.sqlite").execute("PRAGMA journal_mode")
    assert mode.fetchone()[0] == "delete"
    assert not (tmp_path / "job" / "cache.sqlite-wal").exists()
    with Cache(tmp_path / "main") as main:
        assert main.journal == "wal"


def test_merge_takes_progress_and_never_lowers_it(tmp_path: Path) -> None:
    """A job's progress is taken once; merging again or merging older states changes nothing."""
    with Cache(tmp_path / "main") as main:
        run_id = register(main, preset_of(), TEXT)[0].run_id
        fake_progress(main, run_id, 8)
        before = main.export_runs([run_id])
        prepare_job_cache(tmp_path / "job", before)
        with Cache(tmp_path / "job") as job:
            assert job.checkpoint(run_id) is not None  # the job resumes, not restarts
            assert job.runs()[0].steps_done == 8
            fake_progress(job, run_id, 24)
            after = job.export_runs([run_id])
        assert main.merge_runs(after) == [run_id]
        assert main.merge_runs(after) == []  # idempotent
        assert main.merge_runs(before) == []  # never lowers progress
        run = main.runs(run_ids=[run_id])[0]
        assert (run.steps_done, run.status, run.lease_owner) == (24, "queued", None)
        saved = main.checkpoint(run_id)
        assert saved is not None and saved[0] == 24
        assert len(main.curves([run_id])[run_id].loss) == 24
        assert len(main.runs(preset_of().name)) == 18  # sweep membership untouched


def test_merge_leaves_runs_leased_by_a_live_local_worker(tmp_path: Path) -> None:
    """A live local lease wins: its worker's next commit would otherwise undo the merge."""
    with Cache(tmp_path / "main") as main:
        run_id = register(main, preset_of(), TEXT)[0].run_id
        prepare_job_cache(tmp_path / "jobs" / "job", main.export_runs([run_id]))
        with Cache(tmp_path / "jobs" / "job") as job:
            fake_progress(job, run_id, 16)
        main.claim([run_id], "local-worker")
        assert sync_jobs(main, tmp_path) == {str(tmp_path / "jobs" / "job"): 0}  # skips main
        main.release("local-worker")
        assert sync_jobs(main, tmp_path / "jobs") == {str(tmp_path / "jobs" / "job"): 1}
        assert main.runs(run_ids=[run_id])[0].steps_done == 16


def test_remote_runs_stay_leased_to_the_driver_until_they_end(tmp_path: Path) -> None:
    """While shards train remotely, nobody else can claim their runs; merges keep the lease
    on unfinished runs and drop it on finished ones; the end releases what is left."""
    with Cache(tmp_path / "main") as main:
        ids = [spec.run_id for spec in register(main, preset_of(), TEXT)]
        main.claim(ids[:1], "elsewhere")  # a live local worker holds the first run
        with remote_lease(main, [ids[:3], ids[3:5]]) as (owner, shards):
            assert shards == [ids[1:3], ids[3:5]]
            assert main.claim(ids[1:5], "intruder") == []
            prepare_job_cache(tmp_path / "jobs" / "job", main.export_runs(ids[1:3]))
            with Cache(tmp_path / "jobs" / "job") as job:
                fake_progress(job, ids[1], 16)  # mid-run
                job.claim([ids[2]], "job")
                losses = np.ones(40, dtype=np.float32)
                job.commit(
                    "job",
                    [Progress(ids[2], 40, reduce_losses(0, losses, 64), None, "done", 1.0, 1.0)],
                )
            sync_jobs(main, tmp_path / "jobs", owner=owner)
            runs = {r.run_id: r for r in main.runs(run_ids=ids[:5])}
            assert (runs[ids[1]].status, runs[ids[1]].steps_done) == ("running", 16)
            assert runs[ids[1]].lease_owner == owner and runs[ids[2]].status == "done"
            assert runs[ids[2]].lease_owner is None
            assert main.claim(ids[1:2], "intruder") == []
        runs = {r.run_id: r for r in main.runs(run_ids=ids[:5])}
        assert [runs[i].status for i in ids[1:5]] == ["queued", "done", "queued", "queued"]
        assert runs[ids[0]].lease_owner == "elsewhere"  # never touched


def test_shard_folder_name_is_stable() -> None:
    """A resubmitted shard reuses its job folder (and the progress in it)."""
    assert shard_name(["b", "a"]) == shard_name(["a", "b"]) != shard_name(["a"])


# ---- slow: whole sweeps through each backend equal a local run ---------------------------------


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    """The tiny sweep trained by local worker processes (the default LocalExecutor)."""
    return train(tmp_path_factory.mktemp("local") / "runs", preset_of())


def test_local_training_is_the_default_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a backend, run_sweep hands every round to a LocalExecutor of its `workers`."""
    rounds: list[tuple[int, float, list[list[str]], ShardJob]] = []
    original = LocalExecutor.run

    def recording(self, cache, shards, job, tick):  # type: ignore[no-untyped-def]
        rounds.append((self.workers, self.poll_seconds, shards, job))
        return original(self, cache, shards, job, tick)

    monkeypatch.setattr(LocalExecutor, "run", recording)
    preset = preset_of(8)
    with Cache(tmp_path / "runs") as store:
        final, errors = run_sweep(store, preset, TEXT, None, 2, "cpu", poll_seconds=0.1)
        assert errors == [] and final.finished == final.total == 18
        assert all(r.status in ("done", "diverged") for r in store.runs())
    ((workers, poll, shards, job),) = rounds
    assert (workers, poll, len(shards)) == (2, 0.1, 2)  # one shard group in two parts
    assert job == ShardJob(preset.name, "cpu", preset.train.checkpoint_every)


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["debug", "local"])
def test_slurm_backend_equals_local(tmp_path: Path, local_reference: Cache, cluster: str) -> None:
    """submitit's debug and local executors: job caches synced back give the local curves."""
    pytest.importorskip("submitit")
    backend = SlurmExecutor(tmp_path / "jobs", cluster=cluster, poll_seconds=0.2)
    with train(tmp_path / "runs", preset_of(), backend) as store:
        assert_same_results(store, local_reference)
        assert list((tmp_path / "jobs" / "preset").glob("shard-*/cache.sqlite"))
        assert not list((tmp_path / "jobs").rglob("*.sqlite-wal"))
        assert set(sync_jobs(store, tmp_path / "jobs").values()) == {0}  # rerun: nothing new
        assert_same_results(store, local_reference)


@pytest.mark.slow
def test_slurm_job_resumes_from_the_local_checkpoint(tmp_path: Path) -> None:
    """A longer horizon through a job extends cached runs from their checkpoints, exactly."""
    pytest.importorskip("submitit")
    with train(tmp_path / "direct", preset_of(48)) as direct:
        backend = SlurmExecutor(tmp_path / "jobs", cluster="debug", poll_seconds=0.2)
        with train(tmp_path / "runs", preset_of(32)) as store:
            train(tmp_path / "runs", preset_of(48), backend).close()
            assert_same_results(store, direct)
        logs = "".join(p.read_text() for p in (tmp_path / "jobs").rglob("engine.log"))
        assert "Traceback" not in logs


@pytest.mark.slow
def test_ray_backend_equals_local(tmp_path: Path, local_reference: Cache) -> None:
    """Shards as Ray tasks on a local ray.init(num_cpus=2), merged shard by shard."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        backend = RayExecutor(pieces=2, poll_seconds=0.2)
        with train(tmp_path / "runs", preset_of(), backend) as store:
            assert_same_results(store, local_reference, exact=False)  # shards split in two
    finally:
        ray.shutdown()
