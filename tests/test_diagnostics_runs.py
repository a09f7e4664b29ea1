"""Diagnostics through the trainer and the cache: curves unchanged, values stored like the
held-out evaluations (committed, dropped past the checkpoint on resume, exported and merged),
run ids unchanged, bad settings refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from gamma_tui.cache import Cache
from gamma_tui.config import PresetError, RunSpec, expand, parse_preset
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions

CPU = TrainerOptions(torch.device("cpu"), checkpoint_every=8, commit_seconds=0.0)

DIAGNOSTICS = (
    "[diagnostics]\nsharpness = true\ntrace = true\nntk = true\ndirectional = true\n"
    "probe_batch = 16\niterations = 6\n"
)


def preset(
    steps: int = 12, diagnostics: str = "", optimizer: str = "sgd", kind: str = "mlp"
) -> str:
    """A 2 γ × 2 η × 2 seed float64 sweep on a class teacher with a held-out set."""
    network = (
        '[network]\nkind = "chain"\ndepth = 3\n'
        if kind == "chain"
        else ("[network]\nwidth = 8\ndepth = 3\n")
    )
    data = (
        '[data]\nkind = "scalar"\n'
        if kind == "chain"
        else '[data]\nkind = "teacher_classes"\ninput_dim = 6\noutputs = 3\ntest_size = 20\n'
    )
    batch = 1 if kind == "chain" else 8
    return (
        f"seeds = 2\n{network}{data}"
        f'[train]\nbatch_size = {batch}\nsteps = {steps}\noptimizer = "{optimizer}"\n'
        'dtype = "float64"\ncheckpoint_every = 8\n'
        "[gamma]\nmin = 0.1\nmax = 10\nper_decade = 0.5\n"
        "[eta]\nmin = 0.01\nmax = 0.1\nper_decade = 1\n" + diagnostics
    )


def train(cache: Cache, text: str) -> list[RunSpec]:
    """Register the preset's grid and train it in-process."""
    specs = expand(parse_preset(text))
    cache.register_sweep("s", text, {}, specs, parse_preset(text).train.steps)
    ShardTrainer(cache, "t", CPU).train([s.run_id for s in specs])
    return specs


@pytest.mark.parametrize(("optimizer", "kind"), [("sgd", "mlp"), ("adam", "mlp"), ("sgd", "chain")])
def test_curves_are_bitwise_the_same_with_and_without_diagnostics(
    tmp_path: Path, optimizer: str, kind: str
) -> None:
    with Cache(tmp_path / "off") as cache:
        off = train(cache, preset(optimizer=optimizer, kind=kind))
        curves_off = cache.curves([s.run_id for s in off])
        evals_off = cache.evals([s.run_id for s in off])
    with Cache(tmp_path / "on") as cache:
        on = train(cache, preset(diagnostics=DIAGNOSTICS, optimizer=optimizer, kind=kind))
        curves_on = cache.curves([s.run_id for s in on])
        evals_on = cache.evals([s.run_id for s in on])
        measured = cache.diagnostics([s.run_id for s in on])
        runs = {r.run_id: r for r in cache.runs()}
    assert [s.run_id for s in on] == [s.run_id for s in off]  # settings outside the run id
    for spec in off:
        np.testing.assert_array_equal(curves_on[spec.run_id].loss, curves_off[spec.run_id].loss)
        if kind != "chain":
            np.testing.assert_array_equal(evals_on[spec.run_id].loss, evals_off[spec.run_id].loss)
        found, run = measured[spec.run_id], runs[spec.run_id]
        if run.status == "diverged":  # measured up to the divergence (γ = 0.1, η = 0.01 > 2/λ)
            assert found.steps.max() <= run.diverged_step
        else:
            assert found.steps.tolist() == [0, 1, 2, 5, 10, 12]
        names = {"sharpness", "trace", "trace_error", "ggn", "ntk", "alignment", "directional"}
        if kind != "chain":  # two seeds and a held-out set: the seed-averaged predictor too
            names |= {"ens_test_loss", "ens_test_accuracy", "ens_seeds"}
        assert set(found.values) == names
        assert np.isfinite(found.values["sharpness"]).all()
        assert (found.values["sharpness"] > 0).all()


def test_seed_averaged_predictor_on_the_held_out_set(tmp_path: Path) -> None:
    """Without [diagnostics]: the loss of the seeds' mean prediction, at every evaluation step;
    f = 0 at step 0 makes it the single runs' loss there, and MSE is convex in f, so later it
    is at most the mean of the seeds' losses."""
    with Cache(tmp_path / "runs") as cache:
        specs = train(cache, preset())
        evals = cache.evals([s.run_id for s in specs])
        measured = cache.diagnostics([s.run_id for s in specs])
        runs = {r.run_id: r for r in cache.runs()}
    cells: dict[tuple[float, float], list[str]] = {}
    for spec in specs:
        cells.setdefault((spec.gamma, spec.eta), []).append(spec.run_id)
    checked = 0
    for members in cells.values():
        if any(runs[m].status != "done" for m in members):
            continue
        first = measured[members[0]]
        assert first.steps.tolist() == evals[members[0]].steps.tolist()
        assert (first.values["ens_seeds"] == 2).all()
        ens = first.values["ens_test_loss"]
        assert ens[0] == pytest.approx(evals[members[0]].loss[0], rel=1e-12)
        mean = np.mean([evals[m].loss for m in members], axis=0)
        assert (ens <= mean * (1 + 1e-12)).all() and (ens[1:] < mean[1:]).any()
        np.testing.assert_array_equal(measured[members[1]].values["ens_test_loss"], ens)
        assert (
            (first.values["ens_test_accuracy"] >= 0) & (first.values["ens_test_accuracy"] <= 1)
        ).all()
        checked += 1
    assert checked >= 2


def test_sharpness_at_init_scales_as_inverse_gamma_squared(tmp_path: Path) -> None:
    """The centered output makes λ_max(step 0) ∝ γ^-2: equal seeds give equal λ·γ²."""
    with Cache(tmp_path / "runs") as cache:
        specs = train(cache, preset(steps=1, diagnostics=DIAGNOSTICS))
        measured = cache.diagnostics([s.run_id for s in specs])
    by_seed: dict[int, list[float]] = {}
    for spec in specs:
        ggn = measured[spec.run_id].values["ggn"][0]
        by_seed.setdefault(spec.seed, []).append(ggn * spec.gamma**2)
    for values in by_seed.values():
        assert np.allclose(values, values[0], rtol=1e-9)


def test_resume_drops_diagnostics_past_the_checkpoint_and_remeasures_them(tmp_path: Path) -> None:
    text = preset(diagnostics=DIAGNOSTICS)
    with Cache(tmp_path / "straight") as cache:
        specs = train(cache, text)
        straight = cache.diagnostics([s.run_id for s in specs])
    short = text.replace("steps = 12", "steps = 5").replace("every = 8", "every = 5")
    with Cache(tmp_path / "resumed") as cache:
        train(cache, short)
        run_id = specs[0].run_id
        # a crash after a commit past the checkpoint: rows beyond step 5 are left behind
        with cache.transaction() as db:
            db.execute("INSERT INTO diagnostics VALUES (?, 7, 'sharpness', 1e9)", (run_id,))
            db.execute("UPDATE runs SET steps_done=7, status='running' WHERE run_id=?", (run_id,))
        train(cache, text)
        resumed = cache.diagnostics([s.run_id for s in specs])
    for spec in specs:
        got, want = resumed[spec.run_id], straight[spec.run_id]
        assert got.steps.tolist() == want.steps.tolist()
        for name, values in want.values.items():
            np.testing.assert_allclose(got.values[name], values, rtol=1e-12)


def test_export_and_merge_carry_diagnostics(tmp_path: Path) -> None:
    with Cache(tmp_path / "job") as job:
        specs = train(job, preset(steps=3, diagnostics=DIAGNOSTICS))
        states = job.export_runs([s.run_id for s in specs])
        want = job.diagnostics([s.run_id for s in specs])
    assert all(state.diagnostics for state in states)
    with Cache(tmp_path / "main") as main:
        main.merge_runs(states)
        got = main.diagnostics([s.run_id for s in specs])
    for spec in specs:
        assert got[spec.run_id].steps.tolist() == want[spec.run_id].steps.tolist()
        np.testing.assert_array_equal(
            got[spec.run_id].values["sharpness"], want[spec.run_id].values["sharpness"]
        )


def test_a_schema_2_cache_opens_and_gains_the_diagnostics_table(tmp_path: Path) -> None:
    with Cache(tmp_path / "runs") as cache:
        specs = train(cache, preset(steps=2))
        before = cache.curves([s.run_id for s in specs])
    db = sqlite3.connect(tmp_path / "runs" / "cache.sqlite")
    db.execute("DROP TABLE diagnostics")
    db.execute("UPDATE meta SET value='2' WHERE key='schema'")
    db.commit()
    db.close()
    with Cache(tmp_path / "runs") as cache:
        after = cache.curves([s.run_id for s in specs])
        assert cache.diagnostics([s.run_id for s in specs]) == {}
        assert {r.run_id for r in cache.runs()} == {s.run_id for s in specs}
        version = cache._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        assert version == ("3",)
    for spec in specs:
        np.testing.assert_array_equal(after[spec.run_id].loss, before[spec.run_id].loss)


def test_registering_with_diagnostics_updates_stored_specs_not_run_ids(tmp_path: Path) -> None:
    with Cache(tmp_path / "runs") as cache:
        plain = expand(parse_preset(preset()))
        cache.register_sweep("s", preset(), {}, plain, 12)
        measured = expand(parse_preset(preset(diagnostics=DIAGNOSTICS)))
        cache.register_sweep("s", preset(diagnostics=DIAGNOSTICS), {}, measured, 12)
        stored = cache.specs([s.run_id for s in plain])
    assert [s.run_id for s in measured] == [s.run_id for s in plain]
    assert all(RunSpec.model_validate(s).diagnostics.sharpness for s in stored.values())


@pytest.mark.parametrize(
    ("diagnostics", "message"),
    [
        ("[diagnostics]\nsharpness = true\niterations = 0\n", "diagnostics.iterations"),
        ("[diagnostics]\ntrace = true\nprobe_batch = 0\n", "diagnostics.probe_batch"),
    ],
)
def test_bad_settings_are_preset_errors(diagnostics: str, message: str) -> None:
    with pytest.raises(PresetError, match=message):
        parse_preset(preset(diagnostics=diagnostics))


def test_file_dataset_probe_batch_must_fit_the_held_out_set(tmp_path: Path) -> None:
    file = tmp_path / "d.npz"
    np.savez(file, X=np.zeros((50, 4), np.float32), y=np.zeros(50, np.int64))
    text = (
        f'[data]\nkind = "npz"\npath = "{file}"\ntest_size = 10\n'
        "[gamma]\nmin = 1\nmax = 1\n[eta]\nmin = 1\nmax = 1\n"
        "[diagnostics]\nsharpness = true\nprobe_batch = 11\n"
    )
    with pytest.raises(PresetError, match="probe_batch = 11 .* data.test_size = 10"):
        parse_preset(text)
    parse_preset(text.replace("probe_batch = 11", "probe_batch = 10"))


def test_ntk_is_refused_where_the_jacobian_cannot_be_built(tmp_path: Path) -> None:
    file = tmp_path / "d.npz"
    np.savez(file, X=np.zeros((50, 3, 12, 12), np.uint8), y=np.zeros(50, np.int64))
    text = (
        f'[network]\nkind = "cnn"\nwidth = 2\n[data]\nkind = "npz"\npath = "{file}"\n'
        "test_size = 10\n[gamma]\nmin = 1\nmax = 1\n[eta]\nmin = 1\nmax = 1\n"
        "[diagnostics]\nntk = true\nprobe_batch = 8\n"
    )
    with pytest.raises(PresetError, match="cannot afford"):
        parse_preset(text)
    big = preset(diagnostics="[diagnostics]\nntk = true\nprobe_batch = 100000\n")
    with pytest.raises(PresetError, match="GiB per member"):
        parse_preset(big.replace("width = 8", "width = 4000"))
