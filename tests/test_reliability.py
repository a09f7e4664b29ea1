"""Reliability and security: kill -9, concurrent sweeps, full or read-only disks, hostile input.

The chaos and concurrency checks start real `gamma-tui run` processes and are marked slow;
the rest are fast.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
from support import ROOT, SMOKE, tiny_preset_text

from gamma_tui import runner
from gamma_tui.backends import local
from gamma_tui.cache import Cache, CacheError, Progress
from gamma_tui.config import expand, parse_preset
from gamma_tui.engine.parameterization import Architecture, init_weights
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions
from gamma_tui.runner import register

CPU = TrainerOptions(torch.device("cpu"), checkpoint_every=16, commit_seconds=0.0)
PACKAGE = ROOT / "gamma_tui"


def cli(
    *args: str,
    cache: Path | None = None,
    env: dict[str, str] | None = None,
    umask: int | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m gamma_tui ARGS [--cache CACHE]`, capturing its output."""
    command = [sys.executable, "-m", "gamma_tui", *args]
    if cache is not None:
        command += ["--cache", str(cache)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def flat(text: str) -> str:
    """Text with rich's line wrapping undone (wrapped lines lose their breaking space)."""
    return text.replace("\n", "")


def words(text: str, hide: Path | None = None) -> str:
    """Text with whitespace runs (rich's wrapping too) as one space and `hide` as TMP."""
    joined = " ".join(text.split())
    return joined.replace(str(hide), "TMP") if hide else joined


def no_traceback(done: subprocess.CompletedProcess[str]) -> bool:
    """Whether neither stream shows a Python traceback."""
    return "Traceback" not in done.stdout + done.stderr


def curves(cache_dir: Path) -> dict[str, tuple[bytes, bytes]]:
    """Every run's curve as (steps, float32 losses) bytes, for bitwise comparison."""
    with Cache(cache_dir) as store:
        return {k: (c.steps.tobytes(), c.loss.tobytes()) for k, c in store.curves().items()}


def train(store: Cache, text: str, owner: str = "test", options: TrainerOptions = CPU) -> list:
    """Register a preset and train it in-process, one ShardTrainer call per shard key."""
    specs = register(store, parse_preset(text), text)
    for key in {s.shard_key for s in specs}:
        ShardTrainer(store, owner, options).train([s.run_id for s in specs if s.shard_key == key])
    return specs


def assert_within_rounding(
    cache: Path, reference: Path, sweep: str, floor: Path | None = None
) -> None:
    """The chaos check (bench/chaos.py `compare`): exact counts, curves within rounding.

    Runs trained in other ensembles than the reference round differently on some CPUs, so
    their curves are compared against the noise floor of `floor` (the same sweep trained in
    another composition). Without one the floor is zero and TOLERANCE alone applies, which
    is enough for up to ~1000 steps (a one-ulp kick stays below 3e-5 that long).
    """
    found = load_chaos().compare(cache, reference, floor or reference, sweep)
    assert found.ok, found.summary()


def load_chaos():
    """bench/chaos.py as a module."""
    spec = importlib.util.spec_from_file_location("chaos", ROOT / "bench" / "chaos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = module
    spec.loader.exec_module(module)
    return module


def ulp_kick(arrays: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Every parameter one float32 ulp up or down (a random sign each), float64 as stored:
    the size of the difference a kernel that rounds otherwise makes in one step."""
    rng = np.random.default_rng(seed)
    kicked = {}
    for name, values in arrays.items():
        single = values.astype(np.float32)
        toward = np.where(rng.random(single.shape) < 0.5, np.inf, -np.inf).astype(np.float32)
        kicked[name] = np.nextafter(single, toward).astype(values.dtype)
    return kicked


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN)."""
    return os.geteuid() == 0 and sys.platform == "linux"


class Tmpfs:
    """A tiny tmpfs mounted at `path` (a full disk on demand); skips the test if not allowed."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        if not can_mount():
            pytest.skip("mounting a tmpfs needs root")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def __enter__(self) -> Tmpfs:
        return self

    def __exit__(self, *_: object) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


# ---- 1. crash safety -------------------------------------------------------------------


@pytest.mark.slow
def test_chaos_twenty_kills_lose_nothing_and_stay_within_rounding(tmp_path: Path) -> None:
    """bench/chaos.py: >= 20 SIGKILLs of workers/drivers, rerun, compare with unbroken runs.

    Two workers per round, so resumed shards are split and regrouped in new ways, down to
    one-member ensembles. Exact: no run lost, no step lost or repeated, the same steps and
    checkpoint steps. Curves and checkpoints: within the noise floor of composition (a
    second uninterrupted run on one worker) or TOLERANCE (bench/chaos.py `compare`, which
    tests/test_resume_faults.py shows failing for each kind of wrong resume).
    """
    chaos = load_chaos()
    report = chaos.chaos(
        kills=20,
        steps=15000,
        grow=10000,
        workers=2,
        seed=1,
        max_delay=4.5,
        workdir=tmp_path,
        log=sys.stdout,
    )
    print(report.summary())
    found = report.comparison
    assert found is not None, report.summary()
    assert report.worker_kills >= 20, report.summary()
    assert report.kills_mid_training >= 5, report.summary()
    assert report.runs == report.expected_runs == 32, report.summary()
    assert report.lost == 0 and report.duplicated == 0, report.summary()
    assert found.mismatches == 0 and found.deviations == 0, report.summary()
    assert report.integrity == "ok" and report.final_exit == 0, report.summary()
    assert not report.rerun_trained and report.lock_errors == report.log_tracebacks == 0
    assert report.ok, report.summary()


def test_sigterm_checkpoints_releases_and_exits_130(tmp_path: Path) -> None:
    """A worker asked to stop (SIGTERM) commits a checkpoint, frees its leases, exits 130."""
    text = tiny_preset_text(train={"steps": 400_000, "checkpoint_every": 10**6})
    with Cache(tmp_path / "runs") as store:
        specs = register(store, parse_preset(text), text)
        ids = [s.run_id for s in specs]
    worker = subprocess.Popen(
        [sys.executable, "-m", "gamma_tui.engine", "--cache", str(tmp_path / "runs")]
        + [
            "--device",
            "cpu",
            "--threads",
            "1",
            "--commit-seconds",
            "0.2",
            "--shard",
            ",".join(ids),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with Cache(tmp_path / "runs") as store:
            deadline = time.monotonic() + 60
            while not any(r.steps_done > 0 and r.status == "running" for r in store.runs()):
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 130
    finally:
        if worker.poll() is None:
            worker.kill()
    with Cache(tmp_path / "runs") as store:
        open_runs = [r for r in store.runs() if r.status not in ("done", "diverged")]
        assert open_runs, "everything finished before the signal"
        for run in open_runs:
            assert run.status == "queued" and run.lease_owner is None
            saved = store.checkpoint(run.run_id)
            assert saved is not None and saved[0] == run.steps_done > 0


def test_a_commit_that_dies_half_way_leaves_the_old_state(tmp_path: Path) -> None:
    """One commit is one transaction: an error after its first update rolls all of it back."""
    text = tiny_preset_text(train={"steps": 40})
    with Cache(tmp_path / "runs") as store:
        run_id = register(store, parse_preset(text), text)[0].run_id
        store.claim([run_id], "me")
        before = store.runs(run_ids=[run_id])[0]
        good = Progress(run_id, 5, [], {"p0": np.ones(3)}, "running", 1.0, 1.0)
        broken = Progress(run_id, 6, [None], None, "running", 1.0, 1.0)  # type: ignore[list-item]
        with pytest.raises(AttributeError):
            store.commit("me", [good, broken])
        after = store.runs(run_ids=[run_id])[0]
        assert (after.steps_done, after.status, after.last_loss) == (
            before.steps_done,
            before.status,
            before.last_loss,
        )
        assert store.checkpoint(run_id) is None and store.curves([run_id]) == {}


GRID_STEPS = 60
"""Steps of the γ = 10 grid below: before chaotic amplification (a one-ulp change of the
init stays below 1e-5 relative over the first 100 steps of every smoke run)."""


def gamma_ten(tmp_path: Path, name: str, members: list | None = None, kick: bool = False) -> dict:
    """Train smoke's γ = 10 runs (or `members`) as one ensemble in a fresh cache; their curves.

    `kick`: every initial weight one float32 ulp up or down, through a step-0 checkpoint.
    """
    text = SMOKE.read_text()
    preset = parse_preset(text, overrides=[f"train.steps={GRID_STEPS}"])
    specs = members or [s for s in expand(preset) if s.gamma == 10.0]

    def kicked_init(self: Cache, run_id: str):  # type: ignore[no-untyped-def]
        spec = next(s for s in specs if s.run_id == run_id)
        arch = Architecture.of(spec.network, spec.data.input_dim, spec.data.outputs)
        init = {f"p{i}": p.numpy() for i, p in enumerate(init_weights(arch, spec.seed))}
        return 0, ulp_kick(init, seed=spec.seed)

    with Cache(tmp_path / name) as store, pytest.MonkeyPatch.context() as patch:
        store.register_sweep(name, text, {}, specs, GRID_STEPS)
        if kick:
            patch.setattr(Cache, "checkpoint", kicked_init)
        ShardTrainer(store, name, CPU).train([s.run_id for s in specs])
    with Cache(tmp_path / name) as store:
        return {k: c.loss for k, c in store.curves().items()}


def test_identical_compositions_train_bitwise_alike(tmp_path: Path) -> None:
    """A grid trained twice, and a run trained alone twice: identical shapes, identical bits."""
    first, second = gamma_ten(tmp_path, "grid-1"), gamma_ten(tmp_path, "grid-2")
    assert first.keys() == second.keys() and len(first) == 8
    for run_id in first:
        assert first[run_id].tobytes() == second[run_id].tobytes(), run_id
    spec = parse_preset(SMOKE.read_text(), overrides=[f"train.steps={GRID_STEPS}"])
    one = [s for s in expand(spec) if s.gamma == 10.0][3]
    alone = [gamma_ten(tmp_path, f"alone-{i}", [one])[one.run_id] for i in (1, 2)]
    assert alone[0].tobytes() == alone[1].tobytes()


def test_a_member_alone_matches_the_grid_to_float32_rounding(tmp_path: Path) -> None:
    """Resuming a run alone (after a crash, or split off by make_shards) moves it by rounding.

    BLAS kernels depend on shapes and CPUs (the first layer's GEMM has E·N columns), so a
    member alone and inside the grid may round differently (bitwise on the development
    machine, not on a Xeon with AMX). The bound is the chaos check's allowance: TOLERANCE,
    or 10x the deviation a one-ulp kick of every initial weight produces in that run, which
    is far below what a wrong η does (checked at the end against the neighbouring η's curve).
    """
    chaos = load_chaos()
    grid = gamma_ten(tmp_path, "grid")
    preset = parse_preset(SMOKE.read_text(), overrides=[f"train.steps={GRID_STEPS}"])
    specs = [s for s in expand(preset) if s.gamma == 10.0]
    largest = 0.0
    for spec in specs:
        alone = gamma_ten(tmp_path, spec.run_id, [spec])[spec.run_id]
        kicked = gamma_ten(tmp_path, f"kicked-{spec.run_id}", [spec], kick=True)[spec.run_id]
        floor = chaos.relative_deviation(kicked, alone)
        deviation = chaos.relative_deviation(alone, grid[spec.run_id])
        allowed = chaos.allowance(floor, len(deviation))
        assert np.all(deviation <= allowed), (spec.eta, spec.seed, deviation.max())
        assert 0 < floor.max() < chaos.TOLERANCE / 10  # a real kick, rounding-sized
        largest = max(largest, float(deviation.max()))
    for spec, other in zip(specs[:-2], specs[2:], strict=True):  # the next η, same seed
        assert spec.seed == other.seed and spec.eta != other.eta
        wrong = chaos.relative_deviation(grid[other.run_id], grid[spec.run_id])
        assert np.any(wrong > chaos.allowance(np.zeros(1), len(wrong))), (spec.eta, other.eta)
    print(f"largest deviation alone vs grid: {largest:.2e}")


def test_reduced_curve_does_not_depend_on_commit_cadence(tmp_path: Path) -> None:
    text = tiny_preset_text(
        train={"steps": 1000, "curve_cap": 16}, gamma={"min": 1, "max": 1}, eta={"max": 1}
    )
    results = []
    for name, seconds in (("often", 0.0), ("never", 1e9)):
        options = TrainerOptions(torch.device("cpu"), checkpoint_every=16, commit_seconds=seconds)
        with Cache(tmp_path / name) as store:
            train(store, text, options=options)
        results.append(curves(tmp_path / name))
    assert results[0] == results[1]


def test_lease_of_a_dead_local_worker_is_taken_at_once(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    text = tiny_preset_text()
    with Cache(tmp_path / "runs") as store:
        ids = [s.run_id for s in register(store, parse_preset(text), text)]
        dead_owner = f"{socket.gethostname()}:{gone.pid}:deadbeef"
        assert store.claim(ids, dead_owner) == ids
        assert store.claim(ids, f"{socket.gethostname()}:{os.getpid()}:cafe") == ids


class Waited(Exception):
    """run_sweep slept far longer than training the sweep takes."""


def test_run_does_not_wait_for_a_dead_workers_lease(tmp_path: Path, monkeypatch) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    text = tiny_preset_text(train={"steps": 20})
    preset = parse_preset(text)
    sleeps, real_sleep = [], time.sleep

    def counting_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 750:  # about 15 s of polling; the sweep itself takes a few
            raise Waited
        real_sleep(seconds)

    monkeypatch.setattr(runner.time, "sleep", counting_sleep)
    with Cache(tmp_path / "runs") as store:
        ids = [s.run_id for s in register(store, preset, text)]
        store.claim(ids, f"{socket.gethostname()}:{gone.pid}:killed")  # then it died (kill -9)
        final, errors = runner.run_sweep(store, preset, text, None, device="cpu", poll_seconds=0.02)
    assert not errors and final.finished == final.total


def test_lease_of_a_live_worker_is_respected(tmp_path: Path) -> None:
    text = tiny_preset_text()
    with Cache(tmp_path / "runs") as store:
        ids = [s.run_id for s in register(store, parse_preset(text), text)]
        assert store.claim(ids, f"{socket.gethostname()}:{os.getpid()}:live") == ids
        assert store.claim(ids, "someone-else") == []
        store._db.execute("UPDATE runs SET lease_expires=0")  # the TTL ran out
        assert store.claim(ids, "someone-else") == ids


# ---- 2. concurrency --------------------------------------------------------------------


class Reader(threading.Thread):
    """What the TUI does: poll data_version, read runs and curves; records latencies."""

    def __init__(self, cache_dir: Path, sweeps: list[str]) -> None:
        super().__init__(daemon=True)
        self.cache_dir, self.sweeps = cache_dir, sweeps
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.owners: dict[str, set[str]] = {}

    def run(self) -> None:
        while not (self.cache_dir / "cache.sqlite").exists() and not self.stop.is_set():
            time.sleep(0.01)
        with Cache(self.cache_dir) as store:
            while not self.stop.is_set():
                for sweep in self.sweeps:
                    try:
                        began = time.monotonic()
                        store.data_version()
                        runs = store.runs(sweep)
                        store.curves([r.run_id for r in runs])
                        self.latencies.append(time.monotonic() - began)
                    except Exception as error:  # any error is a finding, keep reading
                        self.errors.append(f"{type(error).__name__}: {error}")
                        continue
                    for run in runs:
                        if run.status == "running" and run.lease_owner:
                            self.owners.setdefault(run.run_id, set()).add(run.lease_owner)
                time.sleep(0.02)


@pytest.mark.slow
def test_two_overlapping_sweeps_and_a_reader(tmp_path: Path) -> None:
    """Two `run` processes on overlapping grids plus a reader thread on one cache."""
    cache = tmp_path / "runs"
    steps = ["--set", "train.steps=8000", "--device", "cpu", "-q", "--cache", str(cache)]
    wide = ["--set", "name=smoke-wide", "--set", "gamma.max=1000"]
    reader = Reader(cache, ["smoke", "smoke-wide"])
    reader.start()
    base = [sys.executable, "-m", "gamma_tui", "run", str(SMOKE), *steps]
    processes = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for command in (base, base + wide)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    reader.stop.set()
    reader.join(30)
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        text = (stdout + stderr).decode(errors="replace")
        assert process.returncode == 0, text
        assert "locked" not in text and "Traceback" not in text, text
    for log in (cache / "logs").glob("*.log"):
        assert "locked" not in log.read_text() and "Traceback" not in log.read_text(), log
    assert not reader.errors, reader.errors[:3]
    assert len(reader.latencies) > 20  # the reader kept reading while both trained
    # one holder per run over the whole test: no run was ever trained by two workers
    assert all(len(owners) == 1 for owners in reader.owners.values()), reader.owners
    reference, floor = tmp_path / "reference", tmp_path / "floor"
    for where, workers in ((reference, "1"), (floor, "2")):  # the floor: other ensembles
        done = cli(
            "run",
            str(SMOKE),
            *steps[:2],
            *wide,
            "--device",
            "cpu",
            "-q",
            "--workers",
            workers,
            cache=where,
        )
        assert done.returncode == 0, done.stderr
    with Cache(cache) as store:
        assert len(store.runs("smoke")) == 32 and len(store.runs("smoke-wide")) == 40
        assert len(store.runs()) == 40
        assert all(r.status in ("done", "diverged") for r in store.runs())
        for run in store.runs():
            assert run.steps_done == (8000 if run.status == "done" else run.diverged_step + 1)
    assert_within_rounding(cache, reference, "smoke-wide", floor)
    print(
        f"reader: {len(reader.latencies)} reads, max {max(reader.latencies) * 1000:.0f} ms, "
        f"median {sorted(reader.latencies)[len(reader.latencies) // 2] * 1000:.1f} ms; "
        f"{len(reader.owners)} runs seen leased"
    )


def test_same_name_other_grid_registered_meanwhile(tmp_path: Path, monkeypatch) -> None:
    text = tiny_preset_text(train={"steps": 20})
    small = parse_preset(text, default_name="same")
    wide = parse_preset(text, overrides=["gamma.max=100"], default_name="same")
    original = runner.register

    def register_then_other(cache: Cache, preset, *args, **kwargs):
        specs = original(cache, preset, *args, **kwargs)
        original(cache, small, text)  # the other process registers in between
        return specs

    monkeypatch.setattr(runner, "register", register_then_other)
    with Cache(tmp_path / "runs") as store:
        final, errors = runner.run_sweep(store, wide, text, None, device="cpu")
        ids = [s.run_id for s in expand(wide)]
        unfinished = [r for r in store.runs(run_ids=ids) if r.status not in ("done", "diverged")]
    assert not errors and final.total == len(ids) and not unfinished


def test_runs_claimed_by_another_process_first_are_awaited(tmp_path: Path, monkeypatch) -> None:
    text = tiny_preset_text(train={"steps": 30})
    preset = parse_preset(text)
    original = local.start_workers
    helpers: list[threading.Thread] = []

    def other_process_claims_first(cache_dir: Path, shards, *args, **kwargs):
        ids = [run_id for shard in shards for run_id in shard]
        with Cache(cache_dir) as other:
            other.claim(ids, "otherhost:1:other")
        pool = original(cache_dir, shards, *args, **kwargs)

        def finish_after_our_workers() -> None:  # so the round ends with nothing finished
            while any(p.poll() is None for p in pool.processes):
                time.sleep(0.05)
            time.sleep(1.0)
            with Cache(cache_dir) as other:
                ShardTrainer(other, "otherhost:1:other", CPU).train(ids)

        helpers.append(threading.Thread(target=finish_after_our_workers))
        helpers[-1].start()
        return pool

    monkeypatch.setattr(local, "start_workers", other_process_claims_first)
    with Cache(tmp_path / "runs") as store:
        final, errors = runner.run_sweep(store, preset, text, None, device="cpu", poll_seconds=0.1)
    for helper in helpers:
        helper.join(60)
    assert not errors and final.finished == final.total


# ---- 3. full disk, read-only cache, a file where the cache should be ---------------------

DISK_FULL = re.compile(r"\b(disk|device)\b[^.]*\bfull\b|no space left", re.IGNORECASE)
"""What a message about a full disk says (match it on `words(text, tmp_path)`)."""


def test_disk_full_while_registering_is_a_clear_error(tmp_path: Path) -> None:
    with Tmpfs(tmp_path / "disk", "256k"):
        done = cli(
            "run", str(SMOKE), "--set", "seeds=60", "--yes", "-q", cache=tmp_path / "disk" / "runs"
        )
    assert done.returncode == 2 and no_traceback(done), done.stderr
    assert DISK_FULL.search(words(done.stderr, tmp_path)), done.stderr


@pytest.mark.slow
def test_disk_full_while_training_leaves_a_consistent_cache(tmp_path: Path) -> None:
    """The worker dies on ENOSPC; what was committed stays consistent and resumes (within
    rounding of an uninterrupted run: the resumed runs train in other ensembles)."""
    cache = tmp_path / "disk" / "runs"
    args = ("run", str(SMOKE), "--set", "train.steps=3000", "--device", "cpu", "-q")
    short_leases = {"GAMMA_TUI_LEASE_SECONDS": "3"}  # the dying worker may keep its leases
    with Tmpfs(tmp_path / "disk", "256k") as disk:
        full = cli(*args, cache=cache, env=short_leases)
        assert full.returncode != 0 and no_traceback(full), full.stderr
        with closing(sqlite3.connect(cache / "cache.sqlite")) as db, db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with Cache(cache) as store:
            stored = store.curves()
            runs = store.runs()
        assert any(r.steps_done for r in runs), "the disk filled before any commit"
        for run in runs:  # each commit wrote its curve chunks and counters together
            recorded = len(stored[run.run_id].loss) if run.run_id in stored else 0
            assert recorded == run.steps_done, run
        disk.resize("64m")
        again = cli(*args, cache=cache, env=short_leases)
        assert again.returncode == 0, again.stderr
        for name, workers in (("reference", "1"), ("floor", "2")):  # the floor: other ensembles
            done = cli(*args, "--workers", workers, cache=tmp_path / name)
            assert done.returncode == 0, done.stderr
        assert_within_rounding(cache, tmp_path / "reference", "smoke", tmp_path / "floor")


def test_disk_full_while_training_says_so(tmp_path: Path) -> None:
    with Tmpfs(tmp_path / "disk", "256k"):
        done = cli(
            "run",
            str(SMOKE),
            "--set",
            "train.steps=5000",
            "--device",
            "cpu",
            "-q",
            cache=tmp_path / "disk" / "runs",
        )
    assert done.returncode != 0 and DISK_FULL.search(words(done.stderr, tmp_path)), done.stderr


@pytest.fixture(scope="module")
def trained_smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the smoke sweep."""
    cache = tmp_path_factory.mktemp("trained") / "runs"
    done = cli("run", str(SMOKE), "--device", "cpu", "-q", cache=cache)
    assert done.returncode == 0, done.stderr
    return cache


@pytest.fixture
def read_only_cache(trained_smoke: Path, tmp_path: Path):
    """A copy of the smoke cache bind-mounted read-only (what a root user cannot chmod away)."""
    import shutil

    copy = tmp_path / "ro"
    shutil.copytree(trained_smoke, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    if not can_mount():
        pytest.skip("a read-only bind mount needs root")
    for command in (
        ["mount", "--bind", str(copy), str(copy)],
        ["mount", "-o", "remount,ro,bind", str(copy)],
    ):
        if subprocess.run(command, capture_output=True).returncode:
            subprocess.run(["umount", str(copy)], capture_output=True)
            pytest.skip("cannot bind-mount read-only here")
    yield copy
    subprocess.run(["umount", "-l", str(copy)], check=False)


@pytest.mark.parametrize(
    "args",
    [("ls",), ("show", "smoke"), ("export", "smoke", "-o", "{tmp}/out.csv"), ("run", str(SMOKE))],
)
def test_read_only_cache_is_a_clear_error(read_only_cache: Path, tmp_path: Path, args) -> None:
    before = {p: p.read_bytes() for p in read_only_cache.rglob("*") if p.is_file()}
    done = cli(*(a.format(tmp=tmp_path) for a in args), cache=read_only_cache)
    assert done.returncode == 2 and no_traceback(done), done.stderr
    assert str(read_only_cache) in flat(done.stderr)
    assert before == {p: p.read_bytes() for p in read_only_cache.rglob("*") if p.is_file()}


def test_read_only_cache_message_says_read_only(read_only_cache: Path) -> None:
    done = cli("ls", cache=read_only_cache)
    assert "read-only" in done.stderr, done.stderr


@pytest.mark.parametrize("command", [("ls",), ("run", str(SMOKE))])
def test_a_file_where_the_cache_directory_should_be(tmp_path: Path, command) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("not a directory\n")
    done = cli(*command, cache=blocker)
    assert done.returncode == 2 and no_traceback(done), done.stderr
    assert str(blocker) in flat(done.stderr) and "cache" in done.stderr
    assert blocker.read_text() == "not a directory\n"


# ---- 4. security -------------------------------------------------------------------------


def package_sources() -> dict[Path, str]:
    return {p: p.read_text() for p in PACKAGE.rglob("*.py")}


def test_no_pickle_and_no_unsafe_loading_in_the_package() -> None:
    """Nothing unpickles: no pickle/marshal/shelve, torch.load only with weights_only=True."""
    for path, text in package_sources().items():
        code = re.sub(r'"""[\s\S]*?"""|#.*', "", text)  # docstrings and comments may say it
        assert not re.search(r"\b(import|from)\s+(c?pickle|marshal|shelve|dill)\b", code), path
        assert "pickle.load" not in code and "yaml.load(" not in code, path
        for call in re.findall(r"torch\.load\([^)]*\)", code):
            assert "weights_only=True" in call, (path, call)
        assert "allow_pickle=True" not in code, path  # np.load's default is False


def test_presets_cannot_run_code(tmp_path: Path) -> None:
    """No eval/exec in the package; code in preset strings and --set values stays a string."""
    for path, text in package_sources().items():
        code = re.sub(r'"""[\s\S]*?"""|#.*', "", text)
        assert not re.search(r"(?<![\w.])(eval|exec)\(", code), path
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    preset = tmp_path / "evil.toml"
    body = re.sub(r"(?m)^description = .*$", "", SMOKE.read_text())
    preset.write_text(f"description = {json.dumps(payload)}\n{body}")
    done = cli(
        "run",
        str(preset),
        "--set",
        f"description={payload}",
        "--set",
        "train.steps=5",
        "--device",
        "cpu",
        "-q",
        cache=tmp_path / "runs",
    )
    assert done.returncode == 0, done.stderr
    refused = cli("run", str(preset), "--set", f"network.kind={payload}", cache=tmp_path / "runs")
    assert refused.returncode == 2 and no_traceback(refused) and "network.kind" in refused.stderr
    text = f"description = {json.dumps(payload)}\n[gamma]\nmin=1\nmax=1\n[eta]\nmin=1\nmax=1\n"
    assert parse_preset(text, overrides=[f"description={payload}"]).description == payload
    assert not marker.exists()


def test_pickled_checkpoint_blob_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    np.savez(buffer, p0=np.array([Payload()], dtype=object))
    with Cache(tmp_path / "runs") as store:
        store._db.execute("INSERT INTO checkpoints VALUES ('evil', 5, ?)", (buffer.getvalue(),))
        with pytest.raises(CacheError, match="corrupt checkpoint"):
            store.checkpoint("evil")
    assert not marker.exists()


GARBAGE = {
    "random": np.random.default_rng(0).bytes(512),
    "empty": b"",
    "npy-header": b"\x93NUMPY\x09\x00garbage",
    "zip-magic": b"PK\x03\x04" + np.random.default_rng(1).bytes(200),
    "truncated-npz": None,  # filled below
    "plain-npy": None,
}
_buffer = io.BytesIO()
np.savez(_buffer, p0=np.ones((4, 4)))
GARBAGE["truncated-npz"] = _buffer.getvalue()[:-40]
_buffer = io.BytesIO()
np.save(_buffer, np.ones(3))
GARBAGE["plain-npy"] = _buffer.getvalue()


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_checkpoint_blob_is_a_cache_error(tmp_path: Path, kind: str) -> None:
    with Cache(tmp_path / "runs") as store:
        store._db.execute("INSERT INTO checkpoints VALUES ('bad', 5, ?)", (GARBAGE[kind],))
        with pytest.raises(CacheError, match="corrupt checkpoint"):
            store.checkpoint("bad")


def test_corrupt_checkpoint_restarts_the_run_instead_of_failing(tmp_path: Path) -> None:
    cache = tmp_path / "runs"
    base = ("run", str(SMOKE), "--device", "cpu", "-q", "--set")
    assert cli(*base, "train.steps=60", cache=cache).returncode == 0
    with closing(sqlite3.connect(cache / "cache.sqlite")) as db, db:
        ids = [r for (r,) in db.execute("SELECT run_id FROM checkpoints")]
        for index, run_id in enumerate(ids):
            blob = list(GARBAGE.values())[index % len(GARBAGE)]
            db.execute("UPDATE checkpoints SET data=? WHERE run_id=?", (blob, run_id))
    done = cli(*base, "train.steps=100", cache=cache)
    assert done.returncode == 0 and no_traceback(done), done.stderr
    assert cli(*base, "train.steps=100", cache=tmp_path / "ref").returncode == 0
    assert_within_rounding(cache, tmp_path / "ref", "smoke")  # retrained in other ensembles


TRAVERSALS = ["../x", "/etc/passwd", "a/b", "..", "x/../../y", "~root", "a\\b", "-rf"]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_sweep_names_cannot_escape_the_cache(tmp_path: Path, name: str) -> None:
    """Preset names (file or --set) with path syntax are refused before anything is written."""
    cache = tmp_path / "deep" / "runs"
    preset = tmp_path / "p.toml"
    preset.write_text(f"name = {json.dumps(name)}\n" + SMOKE.read_text())
    for args in (("run", str(preset)), ("run", str(SMOKE), "--set", f"name={json.dumps(name)}")):
        done = cli(*args, "-q", cache=cache)
        assert done.returncode == 2 and no_traceback(done), done.stderr
        assert "'name'" in done.stderr
    assert not cache.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["p.toml"]


@pytest.mark.parametrize("command", ["show", "fit", "export", "stop", "report"])
def test_sweep_arguments_cannot_escape_the_cache(
    trained_smoke: Path, tmp_path: Path, command: str
) -> None:
    """SWEEP arguments with path syntax: exit 2, nothing read or written outside the cache."""
    from typer.testing import CliRunner

    from gamma_tui.cli import app

    def listing() -> list[str]:  # SQLite's -wal/-shm come and go with connections
        return sorted(str(p) for p in trained_smoke.rglob("*") if "sqlite-" not in p.name)

    before = listing()
    extra = ["-o", str(tmp_path / "out")] if command in ("export", "report") else []
    for name in TRAVERSALS:
        result = CliRunner().invoke(
            app, [command, "--cache", str(trained_smoke), *extra, "--", name]
        )
        assert result.exit_code == 2, (name, result.output)
        assert isinstance(result.exception, SystemExit), (name, result.exception)
        assert not (tmp_path / "out").exists()
    assert listing() == before


def test_files_honour_the_umask(tmp_path: Path) -> None:
    cache = tmp_path / "private" / "runs"
    done = cli(
        "run",
        str(SMOKE),
        "--set",
        "train.steps=20",
        "--device",
        "cpu",
        "-q",
        cache=cache,
        umask=0o077,
    )
    assert done.returncode == 0, done.stderr
    export = tmp_path / "private" / "out.csv"
    assert cli("export", "smoke", "-o", str(export), cache=cache, umask=0o077).returncode == 0
    created = [tmp_path / "private", *(tmp_path / "private").rglob("*")]
    assert len(created) > 4
    loose = {str(p): oct(p.stat().st_mode & 0o777) for p in created if p.stat().st_mode & 0o077}
    assert not loose


SITECUSTOMIZE = """
import os, socket
_log = os.environ["GAMMA_TUI_SOCKET_LOG"]
def _record(name, original):
    def wrapper(self, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            with open(_log, "a") as handle:
                handle.write(f"{os.getpid()} {name} {args!r}\\n")
        return original(self, *args, **kwargs)
    return wrapper
for _name in ("bind", "listen", "connect", "connect_ex"):
    setattr(socket.socket, _name, _record(_name, getattr(socket.socket, _name)))
"""


def test_run_opens_no_network_socket(tmp_path: Path) -> None:
    """Every Python process of `run` (driver and workers) records inet bind/listen/connect."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "sockets.log"
    log.write_text("")
    env = {
        "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
        "GAMMA_TUI_SOCKET_LOG": str(log),
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0))"],
        env={**os.environ, **env},
    )
    assert probe.returncode == 0 and "bind" in log.read_text()  # the hook works
    log.write_text("")
    done = cli(
        "run",
        str(SMOKE),
        "--device",
        "cpu",
        "-q",
        "--set",
        "train.steps=50",
        cache=tmp_path / "runs",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text() == ""


# ---- 5. huge grids ---------------------------------------------------------------------


HUGE = (
    "seeds = 10\n[gamma]\nmin = 1e-3\nmax = 1e3\nper_decade = 10\n"
    "[eta]\nmin = 1e-3\nmax = 1e3\nper_decade = 10\n"
)


@pytest.mark.parametrize(
    "text",
    [
        HUGE,
        "[network]\nwidth = 100000\n[train]\nsteps = 1000000\n[gamma]\nmin=1\nmax=1\n"
        "[eta]\nmin=1\nmax=1\n",
    ],
    ids=["many-runs", "many-flops"],
)
def test_huge_sweep_needs_yes_and_shows_an_estimate(tmp_path: Path, text: str) -> None:
    preset = tmp_path / "huge.toml"
    preset.write_text(text)
    cache = tmp_path / "runs"
    done = cli("run", str(preset), "-q", cache=cache, timeout=60)
    assert done.returncode == 2 and no_traceback(done), done.stderr
    assert "--yes" in done.stderr
    assert re.search(r"\d[\d,.]* runs", done.stderr) and re.search(r"FLOP|hour|h\b", done.stderr)
    with Cache(cache) as store:
        assert store.sweeps() == []  # nothing registered, nothing trained
    assert "--yes" in cli("run", "--help").stdout
