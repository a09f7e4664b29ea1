"""The engine: parameterization checks, ensemble equivalence, determinism, divergence, resume."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from support import tiny_preset_text

from gamma_tui.cache import Cache
from gamma_tui.config import RunSpec, expand, parse_preset
from gamma_tui.engine.data import make_stream
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions
from gamma_tui.runner import register

CPU = TrainerOptions(torch.device("cpu"), checkpoint_every=16, commit_seconds=0.0)


def train(
    cache: Cache, text: str, owner: str = "test", options: TrainerOptions = CPU
) -> list[RunSpec]:
    """Register a preset in the cache and train all its runs in one shard per shard key."""
    preset = parse_preset(text)
    specs = register(cache, preset, text)
    trainer = ShardTrainer(cache, owner, options)
    for key in {s.shard_key for s in specs}:
        trainer.train([s.run_id for s in specs if s.shard_key == key])
    return specs


def curves_of(cache: Cache, specs: list[RunSpec]) -> dict[str, np.ndarray]:
    return {k: v.loss for k, v in cache.curves([s.run_id for s in specs]).items()}


def test_step_zero_loss_is_mean_square_target(cache: Cache) -> None:
    """Centering: f == 0 at init for every gamma, eta and seed, so loss_0 = mean(y^2)."""
    specs = train(cache, tiny_preset_text(gamma={"min": 0.001, "max": 1000}))
    spec = specs[0]
    stream = make_stream(spec.data, spec.batch_size, "mse", torch.float64, torch.device("cpu"))
    expected = float(stream.batch(0).target.square().mean())
    for run_id, loss in curves_of(cache, specs).items():
        assert loss[0] == pytest.approx(expected, rel=1e-6), run_id
    # the batch mean estimates E[y^2]: check against a large Monte-Carlo sample
    x = torch.randn(200_000, spec.data.input_dim, generator=torch.Generator().manual_seed(9))
    assert expected == pytest.approx(float(stream.labels(x).square().mean()), rel=0.5)


def test_cross_entropy_starts_at_log_classes(cache: Cache) -> None:
    text = tiny_preset_text(data={"kind": "teacher_classes", "outputs": 5}, train={"loss": "xent"})
    specs = train(cache, text)
    for loss in curves_of(cache, specs).values():
        assert loss[0] == pytest.approx(math.log(5), rel=1e-6)


def test_ensemble_member_matches_training_alone(tmp_path) -> None:
    """Same curve for a member trained in the grid and alone: float32 rtol 1e-5 (GEMM order)."""
    text = tiny_preset_text(train={"steps": 60})
    with Cache(tmp_path / "grid") as grid_cache:
        specs = train(grid_cache, text)
        grid = curves_of(grid_cache, specs)
    preset = parse_preset(text)
    chosen = [s for s in expand(preset) if s.gamma == 1.0 and s.seed == 1]
    assert sum(len(grid[s.run_id]) == 60 for s in chosen) >= 2
    for spec in chosen:
        with Cache(tmp_path / f"alone-{spec.run_id}") as alone_cache:
            alone_cache.register_sweep("one", text, {}, [spec], 60)
            ShardTrainer(alone_cache, "t", CPU).train([spec.run_id])
            alone = alone_cache.curves([spec.run_id])[spec.run_id].loss
        assert len(alone) == len(grid[spec.run_id])  # diverged runs stop at the same step
        np.testing.assert_allclose(alone, grid[spec.run_id], rtol=1e-5, atol=1e-7)


def test_float64_member_matches_alone_tightly(tmp_path) -> None:
    text = tiny_preset_text(train={"steps": 40, "dtype": "float64"})
    with Cache(tmp_path / "grid") as grid_cache:
        specs = train(grid_cache, text)
        grid = curves_of(grid_cache, specs)
    spec = specs[5]
    with Cache(tmp_path / "alone") as alone_cache:
        alone_cache.register_sweep("one", text, {}, [spec], 40)
        ShardTrainer(alone_cache, "t", CPU).train([spec.run_id])
        alone = alone_cache.curves([spec.run_id])[spec.run_id].loss
    np.testing.assert_allclose(alone, grid[spec.run_id], rtol=1e-6)  # stored as float32


def test_seeded_runs_are_deterministic(tmp_path) -> None:
    text = tiny_preset_text()
    results = []
    for name in ("a", "b"):
        with Cache(tmp_path / name) as store:
            results.append(curves_of(store, train(store, text)))
    assert results[0].keys() == results[1].keys()
    for run_id, loss in results[0].items():
        np.testing.assert_array_equal(loss, results[1][run_id])


def test_huge_eta_diverges_with_its_step(cache: Cache) -> None:
    text = tiny_preset_text(
        eta={"scale": "absolute", "min": 1e6, "max": 1e6}, gamma={"min": 1, "max": 1}
    )
    train(cache, text)
    runs = cache.runs()
    assert runs and all(r.status == "diverged" for r in runs)
    for run in runs:
        assert run.diverged_step is not None and 0 < run.diverged_step < 40
        assert run.steps_done == run.diverged_step + 1
        assert cache.checkpoint(run.run_id) is None


class Crash(Exception):
    """Stands in for a kill: the trainer dies without its final commit."""


@pytest.mark.parametrize("checkpoint_every", [16, 1000])
def test_resume_after_crash_equals_uninterrupted(tmp_path, checkpoint_every: int) -> None:
    """Crash after the commit at step 32 (with or without a checkpoint there), then resume.

    With a checkpoint the run resumes at 32; without one its 32 committed steps are dropped
    and it restarts from 0. Either way the final curve is bitwise the uninterrupted one.
    """
    text = tiny_preset_text(train={"steps": 80})
    with Cache(tmp_path / "full") as store:
        full = curves_of(store, train(store, text))
    options = TrainerOptions(torch.device("cpu"), checkpoint_every, commit_seconds=0.0)
    with Cache(tmp_path / "cut") as store:
        specs = register(store, parse_preset(text), text)
        ids = [s.run_id for s in specs]
        trainer = ShardTrainer(store, "first", options)
        original = trainer._run_steps

        def crash_at_64(model, active, start, stop):
            if stop >= 64:
                raise Crash
            return original(model, active, start, stop)

        trainer._run_steps = crash_at_64  # type: ignore[method-assign]
        with pytest.raises(Crash):
            trainer.train(ids)
        partial = {r.run_id: r for r in store.runs()}
        alive = [r for r in partial.values() if r.status == "running"]
        assert alive and all(r.steps_done == 32 for r in alive)
        has_checkpoint = store.checkpoint(alive[0].run_id) is not None
        assert has_checkpoint == (checkpoint_every == 16)
        store._db.execute("UPDATE runs SET lease_expires=0")  # the dead worker's lease lapses
        ShardTrainer(store, "second", options).train(ids)
        resumed = curves_of(store, specs)
        assert all(r.status in ("done", "diverged") for r in store.runs())
    assert resumed.keys() == full.keys()
    for run_id in ids:
        np.testing.assert_array_equal(resumed[run_id], full[run_id])


def test_more_steps_extend_from_checkpoint(tmp_path) -> None:
    with Cache(tmp_path / "short") as store:
        specs = train(store, tiny_preset_text(train={"steps": 30}))
        short = curves_of(store, specs)
        store.register_sweep("preset", "", {}, specs, 70)
        ShardTrainer(store, "more", CPU).train([s.run_id for s in specs])
        extended = curves_of(store, specs)
        runs = {r.run_id: r for r in store.runs()}
    with Cache(tmp_path / "long") as store:
        straight = curves_of(store, train(store, tiny_preset_text(train={"steps": 70})))
    for spec in specs:
        run = runs[spec.run_id]
        if run.status == "diverged" and run.diverged_step < 30:
            continue
        np.testing.assert_array_equal(extended[spec.run_id][:30], short[spec.run_id][:30])
        np.testing.assert_array_equal(extended[spec.run_id], straight[spec.run_id])


def test_shard_over_memory_budget_trains_in_pieces(tmp_path, monkeypatch) -> None:
    """A tiny budget splits the shard into one-member ensembles; curves stay identical."""
    text = tiny_preset_text(train={"steps": 40})
    with Cache(tmp_path / "whole") as store:
        whole = curves_of(store, train(store, text))
    import gamma_tui.engine.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "memory_budget", lambda device: 1.0)
    with Cache(tmp_path / "pieces") as store:
        pieces = curves_of(store, train(store, text))
    assert pieces.keys() == whole.keys()
    for run_id, loss in whole.items():
        np.testing.assert_allclose(pieces[run_id], loss, rtol=1e-5, atol=1e-7)


def test_each_gpu_worker_sees_one_device(monkeypatch) -> None:
    from gamma_tui.backends.local import worker_environment

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert [worker_environment("cuda", i, 2)["CUDA_VISIBLE_DEVICES"] for i in (0, 1)] == [
        "3",
        "5",
    ]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert worker_environment("cuda", 2, 4)["CUDA_VISIBLE_DEVICES"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment("cpu", 1, 2)


def test_diverged_member_leaves_the_ensemble_at_its_step(cache: Cache) -> None:
    """On the CPU a member's divergence ends the loss window at once, so the ensemble stops
    computing it there, not at the next loss read; its curve ends at the same step."""
    text = tiny_preset_text(
        eta={"scale": "absolute", "min": 1e6, "max": 1e6}, gamma={"min": 1, "max": 1}
    )
    preset = parse_preset(text)
    specs = register(cache, preset, text)
    trainer = ShardTrainer(cache, "test", CPU)
    windows = []
    original = trainer._run_steps

    def recording(model, active, start, stop):  # type: ignore[no-untyped-def]
        losses, evals, measured = original(model, active, start, stop)
        windows.append((len(active), start, stop, losses.shape[1]))
        return losses, evals, measured

    trainer._run_steps = recording  # type: ignore[method-assign]
    trainer.train([s.run_id for s in specs])
    runs = cache.runs()
    assert all(r.status == "diverged" for r in runs)
    last = max(r.diverged_step for r in runs)
    assert last + 1 < CPU.sync_every  # the test is about stopping before the first read
    assert sum(size * ran for size, _, _, ran in windows) == sum(r.steps_done for r in runs)
    assert all(stop == CPU.sync_every for _, _, stop, _ in windows)  # the window's end stays


def test_cuda_graphs_are_refused_off_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        TrainerOptions(torch.device("cpu"), cuda_graphs=True)
    assert TrainerOptions(torch.device("cpu"), compile_step=True).compile_mode == "default"
    assert TrainerOptions(torch.device("cpu")).compile_mode is None


def test_families_satisfy_the_protocols(tmp_path) -> None:
    """Each family builds ensembles with the interface family.py writes down; only the
    autograd ones hand out raw gradients."""
    from gamma_tui.engine.family import GradientEnsemble
    from gamma_tui.engine.shard import functional_mlp, model_family

    spec = expand(parse_preset(tiny_preset_text()))[0]
    stream = make_stream(spec.data, 8, "mse", torch.float64, torch.device("cpu"))
    fast = model_family(spec.network, stream)
    for family in (fast, functional_mlp(fast)):
        params = [torch.stack([p, p]) for p in family.init(0)]
        ensemble = family.ensemble(params)
        for name in ("forward", "predict", "sgd_step", "select", "extend", "params", "size"):
            assert hasattr(ensemble, name), (family, name)
        assert ensemble.size == 2
        assert isinstance(family.width, int) and isinstance(family.depth_label, int)
        assert family.parameter_count() == sum(p[0].numel() for p in params)
        assert family.activation_elements(8) > 0
        assert isinstance(ensemble, GradientEnsemble) == (family is not fast)


def test_worker_threads_follow_the_free_cpus(monkeypatch) -> None:
    from gamma_tui.backends import local

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(local, "busy_cpus", lambda seconds=0.25: cpus - 1)
    monkeypatch.setenv(local.THREADS_ENV, "auto")
    assert local.worker_threads(1) == 1
    monkeypatch.setenv(local.THREADS_ENV, "all")
    assert local.worker_threads(1) == cpus
    monkeypatch.setenv(local.THREADS_ENV, "3")
    assert local.worker_threads(2) == 3
    monkeypatch.setattr(local, "busy_cpus", lambda seconds=0.25: cpus + 5)
    monkeypatch.setenv(local.THREADS_ENV, "auto")
    assert local.worker_threads(2) == 1
    monkeypatch.undo()
    assert 0 <= local.busy_cpus(0.05) <= cpus
