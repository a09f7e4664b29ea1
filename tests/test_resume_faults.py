"""The chaos check (bench/chaos.py `compare`) against wrong resumes injected on purpose.

A small in-process sweep (presets/smoke.toml, 32 runs) trains three ways: the reference in
one ensemble, the floor in two halves (another composition), and the "resumed" sweep in
three stages with other groupings (all runs to step 80, halves to 96, then alternate runs to
the end), so it resumes from checkpoints twice and regroups each time. Each fault is
injected into the last resume only, mostly through what the cache hands the trainer (so the
faults do not depend on the trainer's internals): a lost step and a repeated step (the
checkpoint's step off by one), the next step's batch (the data stream, patched), a stale
checkpoint (the parameters of step 80 under the checkpoint step 96), and η or γ rolled by
one among the runs a trainer regroups.

The check must pass without a fault and fail with each one. On a CPU where composition
changes no bit, the floor is zero and the resumed sweep is bitwise the reference; so that
the tolerance path is exercised on every machine too, the "rounding" variants give the
floor and the resumed sweep a rounding-level kick of their own (every parameter moved by
one float32 ulp up or down at a resume, through the checkpoint the cache returns), which
is what a kernel that rounds differently does to a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from support import SMOKE
from test_reliability import load_chaos, ulp_kick

from gamma_tui.cache import Cache
from gamma_tui.config import parse_preset
from gamma_tui.engine import shard
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions
from gamma_tui.runner import register

STAGES = (80, 96, 160)
"""Steps trained by each stage of the resumed sweep (the faults hit the last resume)."""
OPTIONS = TrainerOptions(torch.device("cpu"), checkpoint_every=16, commit_seconds=1e9)
TEXT = SMOKE.read_text()


def preset(steps: int):  # type: ignore[no-untyped-def]
    return parse_preset(
        TEXT,
        overrides=[f"train.steps={steps}", "train.curve_cap=1000000", "train.checkpoint_every=16"],
    )


SWEEP = preset(STAGES[-1]).name


def train(cache: Path, steps: int, groups: Callable[[list[str]], list[list[str]]]) -> None:
    """Register the sweep for `steps` steps and train it with one ShardTrainer per group."""
    with Cache(cache) as store:
        ids = [s.run_id for s in register(store, preset(steps), TEXT)]
        for group in groups(ids):
            ShardTrainer(store, "test", OPTIONS).train(group)


def whole(ids: list[str]) -> list[list[str]]:
    return [ids]


def halves(ids: list[str]) -> list[list[str]]:
    return [ids[: len(ids) // 2], ids[len(ids) // 2 :]]


def alternate(ids: list[str]) -> list[list[str]]:
    return [ids[::2], ids[1::2]]


@contextmanager
def resume_through(
    monkeypatch: pytest.MonkeyPatch,
    kick: int | None = None,
    stale: dict[str, dict] | None = None,
    shift: int = 0,
    roll: str | None = None,
) -> Iterator[None]:
    """What the cache hands a resuming trainer, altered.

    kick: every checkpointed parameter one ulp off (a rounding-level difference, seeded).
    stale: these parameters instead of the checkpoint's, under its step. shift: the
    checkpoint's step moved by this many steps (+1: a step is lost, -1: one is repeated).
    roll: this spec field ("eta", "gamma") rolled by one among the runs a trainer resumes.
    """
    real_checkpoint, real_specs = Cache.checkpoint, Cache.specs

    def checkpoint(self: Cache, run_id: str):  # type: ignore[no-untyped-def]
        saved = real_checkpoint(self, run_id)
        if saved is None:
            return None
        step, arrays = saved
        if stale is not None and run_id in stale:
            arrays = stale[run_id]
        return step + shift, arrays if kick is None else ulp_kick(arrays, kick)

    def specs(self: Cache, run_ids):  # type: ignore[no-untyped-def]
        found = real_specs(self, run_ids)
        if roll is not None and len(found) > 1:
            values = [spec[roll] for spec in found.values()]
            for spec, value in zip(found.values(), values[-1:] + values[:-1], strict=True):
                spec[roll] = value
        return found

    with monkeypatch.context() as patch:
        patch.setattr(Cache, "checkpoint", checkpoint)
        patch.setattr(Cache, "specs", specs)
        yield


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference (one ensemble) and the floors: halves, and halves kicked at step 80."""
    base = tmp_path_factory.mktemp("references")
    train(base / "reference", STAGES[-1], whole)
    train(base / "floor", STAGES[-1], halves)
    train(base / "kicked", STAGES[0], halves)
    with pytest.MonkeyPatch.context() as patch, resume_through(patch, kick=1):
        train(base / "kicked", STAGES[-1], halves)
    return {"exact": base / "floor", "rounding": base / "kicked"}


def next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the resume, step t trains on batch t + 1 (the trainer's data stream, patched)."""
    real = shard.make_stream

    def make(*args, **kwargs):  # type: ignore[no-untyped-def]
        stream = real(*args, **kwargs)
        batch = stream.batch
        stream.batch = lambda step: batch(step + 1)
        return stream

    monkeypatch.setattr(shard, "make_stream", make)


FAULTS: dict[str, dict[str, object]] = {
    "none": {},
    "lost step": {"shift": 1},
    "repeated step": {"shift": -1},
    "wrong batch": {},  # next_batch
    "stale checkpoint": {},  # the parameters of step 80 under the checkpoint step 96
    "wrong eta": {"roll": "eta"},
    "wrong gamma": {"roll": "gamma"},
}
"""Each wrong resume, as arguments of `resume_through`."""


def resumed_sweep(cache: Path, fault: str, kick: int | None, monkeypatch) -> None:
    """The three stages; `fault` (and the ulp kick, if any) in the last resume only."""
    train(cache, STAGES[0], whole)
    with Cache(cache) as store:
        older = {r.run_id: saved[1] for r in store.runs() if (saved := store.checkpoint(r.run_id))}
    train(cache, STAGES[1], halves)
    stale = older if fault == "stale checkpoint" else None
    with monkeypatch.context() as patch:
        if fault == "wrong batch":
            next_batch(patch)
        with resume_through(patch, kick, stale, **FAULTS[fault]):  # type: ignore[arg-type]
            train(cache, STAGES[2], alternate)


CASES = [("none", "exact"), ("none", "rounding")] + [(f, "rounding") for f in FAULTS if f != "none"]
"""Faults run with the rounding floor only: its allowance is the larger, so the harder case."""


@pytest.mark.parametrize(("fault", "floor"), CASES)
def test_the_chaos_check_fails_for_each_wrong_resume(
    tmp_path: Path, references: dict[str, Path], monkeypatch, fault: str, floor: str
) -> None:
    chaos = load_chaos()
    kick = 2 if floor == "rounding" else None
    resumed_sweep(tmp_path / "resumed", fault, kick, monkeypatch)
    reference = references["exact"].parent / "reference"
    found = chaos.compare(tmp_path / "resumed", reference, references[floor], SWEEP)
    print(f"\n[{fault}, {floor} floor]\n{found.summary()}")
    assert found.runs == found.expected_runs == 32 and found.lost == 0
    if fault == "none":
        assert found.ok, found.summary()
        if floor == "rounding":  # the tolerance path, not bitwise equality, was exercised
            assert found.floor_deviation > 0 and found.largest_deviation > 0
    else:
        assert not found.ok, found.summary()
        assert found.duplicated + found.mismatches + found.deviations >= 1


def test_kicked_resumes_deviate_by_rounding_only(references: dict[str, Path]) -> None:
    """The rounding floor is a real perturbation and stays far below the tolerance early on."""
    chaos = load_chaos()
    reference = references["exact"].parent / "reference"
    found = chaos.compare(references["rounding"], reference, references["rounding"], SWEEP)
    assert 0 < found.largest_deviation < chaos.TOLERANCE
