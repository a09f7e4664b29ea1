"""The chaos check (bench/chaos.py `compare`) against wrong resumes injected on purpose.

A small in-process sweep (presets/smoke.toml, 32 runs) trains three ways: the reference in
one ensemble, the floor in two halves (another composition), and the "resumed" sweep in
three stages with other groupings (all runs to step 80, halves to 96, then alternate runs to
the end), so it resumes from checkpoints twice and regroups each time. Each fault is
injected into the last stage only, by monkeypatching the trainer or the cache: a lost
step, a repeated step, the next step's batch, a stale checkpoint (the parameters of step 80
under the checkpoint step 96), and the per-member η or γ rolled by one after regrouping.

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
from gamma_tui.engine import trainer
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
def checkpoints(
    monkeypatch: pytest.MonkeyPatch, kick: int | None, stale: dict[str, dict] | None = None
) -> Iterator[None]:
    """Cache.checkpoint returning a kicked (`kick` seeds it) or stale (`stale`) checkpoint."""
    real = Cache.checkpoint

    def patched(self: Cache, run_id: str):  # type: ignore[no-untyped-def]
        saved = real(self, run_id)
        if saved is None:
            return None
        step, arrays = saved
        if stale is not None and run_id in stale:
            arrays = stale[run_id]
        return step, arrays if kick is None else ulp_kick(arrays, kick)

    with monkeypatch.context() as patch:
        patch.setattr(Cache, "checkpoint", patched)
        yield


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference (one ensemble) and the floors: halves, and halves kicked at step 80."""
    base = tmp_path_factory.mktemp("references")
    train(base / "reference", STAGES[-1], whole)
    train(base / "floor", STAGES[-1], halves)
    train(base / "kicked", STAGES[0], halves)
    with pytest.MonkeyPatch.context() as patch, checkpoints(patch, kick=1):
        train(base / "kicked", STAGES[-1], halves)
    return {"exact": base / "floor", "rounding": base / "kicked"}


def lose_first_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first step after the resume computes its loss but its update is lost."""
    real, calls = ShardTrainer._train_step, []

    def step(self, model, x, target):  # type: ignore[no-untyped-def]
        before = [p.clone() for p in model.params]
        result = real(self, model, x, target)
        calls.append(None)
        if len(calls) == 1:
            for param, old in zip(model.params, before, strict=True):
                param.copy_(old)
        return result

    monkeypatch.setattr(ShardTrainer, "_train_step", step)


def repeat_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first step after the resume is applied twice (its loss recorded once)."""
    real, calls = ShardTrainer._train_step, []

    def step(self, model, x, target):  # type: ignore[no-untyped-def]
        calls.append(None)
        if len(calls) == 1:
            real(self, model, x, target)
        return real(self, model, x, target)

    monkeypatch.setattr(ShardTrainer, "_train_step", step)


def next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the resume, step t trains on batch t + 1."""
    real = trainer.make_stream

    def make(*args, **kwargs):  # type: ignore[no-untyped-def]
        stream = real(*args, **kwargs)
        batch = stream.batch
        stream.batch = lambda step: batch(step + 1)
        return stream

    monkeypatch.setattr(trainer, "make_stream", make)


def roll(name: str) -> Callable[[pytest.MonkeyPatch], None]:
    """After regrouping, the per-member vector `name` (step_size: η, gamma: γ) is rolled."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        real = ShardTrainer._set_vectors

        def set_vectors(self, members):  # type: ignore[no-untyped-def]
            real(self, members)
            setattr(self, name, getattr(self, name).roll(1))

        monkeypatch.setattr(ShardTrainer, "_set_vectors", set_vectors)

    return inject


FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None] | None] = {
    "none": None,
    "lost step": lose_first_update,
    "repeated step": repeat_first_step,
    "wrong batch": next_batch,
    "stale checkpoint": None,  # through the checkpoint the cache returns
    "wrong eta": roll("step_size"),
    "wrong gamma": roll("gamma"),
}


def resumed_sweep(cache: Path, fault: str, kick: int | None, monkeypatch) -> None:
    """The three stages; `fault` (and the ulp kick, if any) in the last resume only."""
    train(cache, STAGES[0], whole)
    with Cache(cache) as store:
        older = {r.run_id: saved[1] for r in store.runs() if (saved := store.checkpoint(r.run_id))}
    train(cache, STAGES[1], halves)
    stale = older if fault == "stale checkpoint" else None
    with monkeypatch.context() as patch, checkpoints(patch, kick, stale):
        inject = FAULTS[fault]
        if inject is not None:
            inject(patch)
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
    assert found.runs == found.expected_runs == 32 and found.lost == found.duplicated == 0
    if fault == "none":
        assert found.ok, found.summary()
        if floor == "rounding":  # the tolerance path, not bitwise equality, was exercised
            assert found.floor_deviation > 0 and found.largest_deviation > 0
    else:
        assert not found.ok, found.summary()
        assert found.deviations >= 1


def test_kicked_resumes_deviate_by_rounding_only(references: dict[str, Path]) -> None:
    """The rounding floor is a real perturbation and stays far below the tolerance early on."""
    chaos = load_chaos()
    reference = references["exact"].parent / "reference"
    found = chaos.compare(references["rounding"], reference, references["rounding"], SWEEP)
    assert 0 < found.largest_deviation < chaos.TOLERANCE
