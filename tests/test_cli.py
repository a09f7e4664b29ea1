"""The command line end to end on presets/smoke.toml, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, SMOKE, tiny_preset_text


def cli(*args: str, cache: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m gamma_tui ARGS` and capture its output."""
    command = [sys.executable, "-m", "gamma_tui", *args]
    if cache is not None:
        command += ["--cache", str(cache)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the smoke sweep, trained once for this module."""
    cache = tmp_path_factory.mktemp("cli") / "runs"
    cli("run", str(SMOKE), cache=cache)
    return cache


def runs_of(cache: Path) -> list[dict]:
    listing = json.loads(cli("ls", "--json", cache=cache).stdout)
    (sweep,) = listing["sweeps"]
    return sweep["runs"]


def test_run_finishes_every_run(trained: Path) -> None:
    runs = runs_of(trained)
    assert len(runs) == 32
    assert {r["state"] for r in runs} <= {"done", "diverged"}
    assert any(r["state"] == "diverged" and r["diverged_step"] is not None for r in runs)


def test_second_run_trains_nothing(trained: Path) -> None:
    before = runs_of(trained)
    again = cli("run", str(SMOKE), cache=trained)
    assert "32/32 runs finished" in again.stderr
    assert runs_of(trained) == before
    assert len(list((trained / "logs").glob("*.log"))) == 1  # no worker was started again


def test_more_steps_extend_runs(tmp_path: Path) -> None:
    cache = tmp_path / "runs"
    cli("run", str(SMOKE), "--set", "train.steps=60", cache=cache)
    short = {r["run_id"]: r for r in runs_of(cache)}
    cli("run", str(SMOKE), "--set", "train.steps=90", cache=cache)
    longer = {r["run_id"]: r for r in runs_of(cache)}
    for run_id, run in longer.items():
        if short[run_id]["state"] == "done":
            assert run["steps_done"] in (90,) or run["state"] == "diverged"
        else:
            assert run == short[run_id]  # diverged runs are final
    exported = tmp_path / "curves.json"
    cli("export", "smoke", "--format", "json", "-o", str(exported), cache=cache)
    curves = {r["run_id"]: r for r in json.loads(exported.read_text())["runs"]}
    done = next(k for k, r in longer.items() if r["state"] == "done")
    assert curves[done]["steps"] == list(range(90))


def test_progress_shows_runs_per_state_and_quiet_shows_none(trained: Path) -> None:
    shown = cli("run", str(SMOKE), cache=trained).stderr
    assert any(line.startswith("  runs: ") and " done" in line for line in shown.splitlines())
    quiet = cli("run", str(SMOKE), "--quiet", cache=trained).stderr
    assert "runs: " not in quiet and "training" not in quiet and "shard" not in quiet
    assert quiet.startswith("smoke: 32 runs") and "\n32/32 runs finished" in quiet


def test_fit_json_has_lazy_and_rich_slopes(trained: Path) -> None:
    summary = json.loads(cli("fit", "smoke", "--json", cache=trained).stdout)
    assert set(summary) >= {"lazy", "rich", "eta_star", "eta_div"}
    assert "slope" in summary["lazy"] and "slope" in summary["rich"]
    assert summary["init_loss"]["max_relative_spread"] == 0.0


def test_show_prints_heatmap_for_a_preset_path(trained: Path) -> None:
    shown = cli("show", str(SMOKE), cache=trained).stdout
    assert "DIV" in shown and "η*" in shown and "*" in shown


def test_export_csv(trained: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    cli("export", "smoke", "--format", "csv", "-o", str(target), cache=trained)
    lines = target.read_text().splitlines()
    assert lines[0] == "run_id,gamma,eta,seed,state,diverged_step,series,step,loss,accuracy"
    assert len(lines) > 32 * 5
    assert all(line.split(",")[6] == "train" for line in lines[1:])  # smoke has no test set


def test_export_includes_held_out_evaluations(tmp_path: Path) -> None:
    preset = tmp_path / "held.toml"
    preset.write_text(
        tiny_preset_text(
            data={"kind": "teacher_classes", "outputs": 3, "test_size": 40},
            train={"steps": 12},
            gamma={"min": 1.0, "max": 1.0},
        )
    )
    cache = tmp_path / "runs"
    cli("run", str(preset), cache=cache)
    target = tmp_path / "out.csv"
    cli("export", "held", "--format", "csv", "-o", str(target), cache=cache)
    rows = [line.split(",") for line in target.read_text().splitlines()[1:]]
    tests = [row for row in rows if row[6] == "test"]
    runs = {row[0] for row in rows}
    assert [int(row[7]) for row in tests if row[0] == tests[0][0]] == [0, 1, 2, 5, 10, 12]
    assert {row[0] for row in tests} == runs
    assert all(float(row[8]) == pytest.approx(1 / 3) for row in tests if row[7] == "0")
    assert all(0.0 <= float(row[9]) <= 1.0 for row in tests)
    exported = tmp_path / "out.json"
    cli("export", "held", "--format", "json", "-o", str(exported), cache=cache)
    first = json.loads(exported.read_text())["runs"][0]
    assert first["test"]["steps"] == [0, 1, 2, 5, 10, 12] and len(first["test"]["accuracy"]) == 6


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_sweep_writes_what_the_cli_writes(trained: Path, tmp_path: Path, fmt: str) -> None:
    """The app's headless export and `gamma-tui export` write the same file and line."""
    from gamma_tui.exporting import export_sweep

    by_cli = tmp_path / f"cli.{fmt}"
    printed = cli("export", "smoke", "--format", fmt, "-o", str(by_cli), cache=trained).stderr
    headless = tmp_path / "app" / f"app.{fmt}"
    written = export_sweep(trained, "smoke", fmt, headless)
    assert written.path == headless and headless.read_bytes() == by_cli.read_bytes()
    assert written.sweep == "smoke" and written.runs == len(runs_of(trained))
    assert " ".join(printed.split()) == f"wrote {written.runs} runs of smoke to {by_cli}"
    assert written.summary == f"wrote {written.runs} runs of smoke to {headless}"
    assert not list(tmp_path.rglob("*.partial"))


def test_export_sweep_refuses_an_unknown_format(trained: Path, tmp_path: Path) -> None:
    from gamma_tui.config import PresetError
    from gamma_tui.exporting import export_sweep

    with pytest.raises(PresetError, match="use csv, json or parquet"):
        export_sweep(trained, "smoke", "xlsx", tmp_path / "out.xlsx")
    assert not (tmp_path / "out.xlsx").exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[gamma\nmin=1", "invalid TOML"),
        ("[gamma]\nmin = 1\nmax = 0.1\n[eta]\nmin=1\nmax=2", "swap them"),
    ],
)
def test_bad_preset_exits_2_without_traceback(tmp_path: Path, content: str, fragment: str) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text(content)
    done = cli("run", str(bad), cache=tmp_path / "runs", check=False)
    assert done.returncode == 2
    assert fragment in done.stderr and "broken.toml" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_unknown_sweep_exits_2(tmp_path: Path) -> None:
    done = cli("show", "nope", cache=tmp_path / "runs", check=False)
    assert done.returncode == 2 and "no sweep named 'nope'" in done.stderr


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from gamma_tui.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'run' in r.output; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr


def write_npz_dataset(path: Path, samples: int = 4096, classes: int = 4) -> None:
    """A small image dataset in the generic .npz format (X uint8, y labels)."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(samples, 6, 6), dtype=np.uint8)
    np.savez(path, X=images, y=rng.integers(0, classes, size=samples))


@pytest.mark.parametrize(("loss", "step0"), [("mse", 1 / 4), ("xent", 1.3862944)])
def test_run_on_a_local_dataset(tmp_path: Path, loss: str, step0: float) -> None:
    data = tmp_path / "tiny.npz"
    write_npz_dataset(data)
    preset = tmp_path / "images.toml"
    preset.write_text(
        f'seeds = 1\n[network]\nwidth = 16\ndepth = 2\n[data]\nkind = "npz"\npath = "{data}"\n'
        f'[train]\nbatch_size = 16\nsteps = 100\nloss = "{loss}"\n'
        "[gamma]\nmin = 1\nmax = 10\n[eta]\nscale = 'relative'\nmin = 0.1\nmax = 1\n"
    )
    cache = tmp_path / "runs"
    cli("run", str(preset), cache=cache)
    runs = runs_of(cache)
    assert {r["state"] for r in runs} <= {"done", "diverged"} and runs
    assert all(r["init_loss"] == pytest.approx(step0, rel=1e-5) for r in runs)


def test_dataset_too_small_or_missing_exits_2(tmp_path: Path) -> None:
    data = tmp_path / "tiny.npz"
    write_npz_dataset(data, samples=100)
    preset = tmp_path / "images.toml"
    body = "[gamma]\nmin = 1\nmax = 10\n[eta]\nmin = 0.1\nmax = 1\n[train]\nbatch_size = 16\n"
    preset.write_text(f'[data]\nkind = "npz"\npath = "{data}"\n' + body)
    done = cli("run", str(preset), cache=tmp_path / "runs", check=False)
    assert done.returncode == 2 and "steps" in done.stderr and "Traceback" not in done.stderr
    preset.write_text(f'[data]\nkind = "mnist1m"\npath = "{tmp_path / "nowhere"}"\n' + body)
    done = cli("run", str(preset), cache=tmp_path / "runs", check=False)
    assert done.returncode == 2 and "MNIST_images_" in done.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(trained: Path, tmp_path: Path) -> None:
    done = cli("run", str(SMOKE), "--dry-run", cache=trained).stdout
    assert "32 runs, 32 already finished" in done and "0 to train" in done
    fresh = tmp_path / "runs"
    plan = cli("run", str(SMOKE), "--dry-run", "--workers", "2", cache=fresh).stdout
    assert "32 to train in 2 shard(s)" in plan and "shard 2/2: 16 runs (float32)" in plan
    assert "backend local: 2 worker processes" in plan.splitlines()
    assert json.loads(cli("ls", "--json", cache=fresh).stdout)["sweeps"] == []


@pytest.mark.parametrize(
    ("network", "test", "fragment"),
    [
        ('kind = "vit"\npatch = 5', "", "does not divide the 12×12 images"),
        ('kind = "cnn"', 'test_path = "{bad}"\ntest_size = 10', "has label 7"),
    ],
)
def test_models_and_held_out_sets_that_cannot_work_stop_before_training(
    tmp_path: Path, network: str, test: str, fragment: str
) -> None:
    """One clear line and exit 2, before any worker starts (no run is marked failed)."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images.npz"
    np.savez(
        images, X=rng.integers(0, 256, (500, 1, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 500)
    )
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=rng.integers(0, 256, (50, 1, 12, 12), dtype=np.uint8), y=np.full(50, 7))
    preset = tmp_path / "p.toml"
    preset.write_text(
        f"[network]\n{network}\nwidth = 4\n[data]\nkind = 'npz'\npath = '{images}'\n"
        + test.format(bad=bad)
        + "\n[train]\nbatch_size = 4\nsteps = 5\n[gamma]\nmin = 1\nmax = 1\n"
        "[eta]\nmin = 0.1\nmax = 0.1\n"
    )
    done = cli("run", str(preset), cache=tmp_path / "runs", check=False)
    assert done.returncode == 2 and fragment in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs" / "logs").exists()  # no worker was started
