"""Presets: grids, run ids, overrides and the errors a bad preset gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT, tiny_preset_text

from gamma_tui.config import PresetError, expand, load_preset, parse_preset
from gamma_tui.costs import flops_per_run


def test_shipped_presets_validate() -> None:
    paths = sorted((ROOT / "presets").rglob("*.toml"))
    assert len(paths) >= 2
    for path in paths:
        preset = load_preset(path)
        assert preset.run_count() == len(expand(preset)) > 0


def test_grid_points_per_decade_inclusive() -> None:
    preset = parse_preset(tiny_preset_text(gamma={"min": 0.01, "max": 100, "per_decade": 2}))
    assert preset.gamma.values() == [
        0.01,
        0.0316227766,
        0.1,
        0.316227766,
        1.0,
        3.16227766,
        10.0,
        31.6227766,
        100.0,
    ]


def test_relative_eta_follows_predicted_scaling() -> None:
    preset = parse_preset(tiny_preset_text(eta={"scale": "relative", "min": 1, "max": 1}))
    by_gamma = {s.gamma: s.eta for s in expand(preset)}
    assert by_gamma[0.1] == pytest.approx(0.1**2)
    assert by_gamma[10.0] == pytest.approx(10.0 ** (2 / 3))


def test_run_id_ignores_steps_and_device_but_not_eta() -> None:
    a = expand(parse_preset(tiny_preset_text(train={"steps": 40, "device": "cpu"})))
    b = expand(parse_preset(tiny_preset_text(train={"steps": 999, "device": "auto"})))
    assert [s.run_id for s in a] == [s.run_id for s in b]
    assert len({s.run_id for s in a}) == len(a)


def test_small_gamma_runs_in_float64() -> None:
    preset = parse_preset(tiny_preset_text(gamma={"min": 0.001, "max": 0.1, "per_decade": 1}))
    dtypes = {s.gamma: s.dtype for s in expand(preset)}
    assert dtypes[0.001] == "float64" and dtypes[0.1] == "float32"


def test_override_sets_nested_keys() -> None:
    preset = parse_preset(tiny_preset_text(), overrides=["train.steps=77", "network.bias=true"])
    assert preset.train.steps == 77 and preset.network.bias is True


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("seeds = [0\n", [], "invalid TOML"),
        (tiny_preset_text(network={"widht": 3}), [], "key 'network.widht': unknown key"),
        (tiny_preset_text(train={"steps": "many"}), [], "key 'train.steps'"),
        (tiny_preset_text(gamma={"min": 10, "max": 0.1}), [], "swap them"),
        (tiny_preset_text(eta={"min": -1.0}), [], "key 'eta.min'"),
        (tiny_preset_text(eta={"min": 0.0}), [], "key 'eta.min'"),
        (tiny_preset_text(train={"loss": "hinge"}), [], "key 'train.loss'"),
        (tiny_preset_text(), ["train.steps"], "expected KEY.PATH=VALUE"),
        (tiny_preset_text(), ["train.nope=3"], "key 'train.nope': unknown key"),
        (tiny_preset_text(train={"loss": "xent"}), [], "teacher_classes"),
    ],
)
def test_bad_presets_name_file_key_and_fix(
    text: str, overrides: list[str], expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PresetError) as caught:
        load_preset(path, overrides)
    message = str(caught.value)
    assert expected in message
    assert "bad.toml" in message or "--set" in message


def test_missing_file_is_a_preset_error(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="no such preset file"):
        load_preset(tmp_path / "nope.toml")


def test_top_level_key_under_a_table_gets_a_hint() -> None:
    text = tiny_preset_text().replace("seeds = [0, 1]\n", "") + "seeds = 3\n"
    with pytest.raises(PresetError, match="top-level key"):
        parse_preset(text)


def test_keys_a_model_or_dataset_ignores_leave_run_ids_alone() -> None:
    """Settings a run does not use never split identical runs; those it uses always do."""

    def run_id(network: str, data: str) -> str:
        text = f"[network]\n{network}\n[data]\n{data}\n[gamma]\nmin=1\nmax=1\n[eta]\nmin=1\nmax=1\n"
        return expand(parse_preset(text))[0].run_id

    cnn, images = 'kind = "cnn"', 'kind = "npz"\npath = "a.npz"'
    base = run_id(cnn, images)
    assert run_id(cnn + '\ndepth = 7\nactivation = "linear"', images) == base
    assert run_id(cnn, 'kind = "npz"\npath = "b.npz"\ninput_dim = 5\nseed = 3') == base
    assert run_id(cnn + "\nwidth = 7", images) != base
    assert run_id('kind = "resnet18"\nbias = true', images) == run_id('kind = "resnet18"', images)
    assert run_id('kind = "vit"\nheads = 2', images) != run_id('kind = "vit"', images)
    linear = 'kind = "teacher_linear"'
    assert run_id("", linear + "\nhidden = 9") == run_id("", linear)
    assert run_id("", 'kind = "teacher_mlp"\nhidden = 9') != run_id("", 'kind = "teacher_mlp"')
    assert run_id("depth_label = 5", linear) == run_id("", linear)


def test_work_estimate_counts_training_and_held_out_evaluations() -> None:
    """6 x batch x forward multiply-adds per step, plus one forward per evaluation step."""
    text = "[gamma]\nmin = 1\nmax = 1\n[eta]\nmin = 1\nmax = 1\n[train]\nsteps = 1000\n"
    plain = parse_preset(text)
    macs = 32 * 128 + 128 * 128 + 128 * 1  # D=32, N=128, L=3, one output
    assert flops_per_run(plain) == 6 * 32 * macs * 1000
    held = parse_preset(text + "[data]\ntest_size = 500\n")
    evaluations = 11  # steps 0, 1, 2, 5, ..., 500, 1000
    assert flops_per_run(held) - flops_per_run(plain) == 2 * 500 * macs * evaluations
