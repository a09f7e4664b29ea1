"""Every preset in presets/paper/ runs end to end through the real CLI, shrunk to seconds.

The presets hold the full-size settings (most of them sized for a GPU). Each case here shrinks
one with `--set` (width, steps, batch, 2 γ × 2 η × 1 seed; depth stays), writes small
synthetic files in the dataset's native format when the preset reads files (and its held-out
set in its own format when it sets data.test_path), runs `gamma-tui run`, and checks what can
go wrong: exit status 0, every run done or diverged, the centered start (step-0 loss 1/C for
one-hot MSE, ln C for cross-entropy, the batch mean of y² for teachers, on the training batch
and on the held-out set), and held-out evaluations at step 0 and at the last step. The glob
covers a new preset without touching this file. About 2-5 s a preset on a quiet 2-core
machine (ResNet-18 and the ViT included: ~3 s at width 4 and 8).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, run_preset, write_cifar5m, write_cifar_bin, write_idx, write_mnist1m
from typer.testing import CliRunner

from gamma_tui.cache import Cache
from gamma_tui.cli import app
from gamma_tui.config import FILE_DATASETS, Preset, PresetError, load_preset

PAPER = ROOT / "presets" / "paper"
PRESETS = sorted(PAPER.glob("*.toml"))

STEPS, BATCH, TEST_SIZE = 6, 4, 16
"""The shrunk budget: evaluations land at steps 0, 1, 2, 5 and the last step, 6."""

GRID = [
    "seeds=1",
    "gamma.min=0.1",  # one lazy and one rich γ
    "gamma.max=10",
    "gamma.per_decade=0.5",
    "eta.min=0.01",  # c (or η) 0.01 and 0.1: stable for 6 steps with every optimizer
    "eta.max=0.1",
    "eta.per_decade=1",
    "cutoff.decades=10",  # train both η whatever the preset's cut-off
]

SMALL_NETWORK = {
    "mlp": ["network.width=8"],
    "chain": [],
    "cnn": ["network.width=4"],
    "resnet18": ["network.width=4"],  # channels 4, 8, 16, 32
    "vit": ["network.width=8", "network.heads=2"],  # depth (blocks) and patch stay
}

CLASSES = 10
"""Classes of every file dataset written here (and of MNIST-1M, CIFAR-5M, MNIST-1D)."""


def _case(path: Path) -> object:
    """One preset as a test case, skipped for MNIST-1D without the optional mnist1d package
    (a preset that does not load is not skipped: its test then reports why)."""
    try:
        needs_mnist1d = load_preset(path).data.kind == "mnist1d"
    except PresetError:
        needs_mnist1d = False
    if needs_mnist1d and importlib.util.find_spec("mnist1d") is None:
        skip = pytest.mark.skip(reason="needs mnist1d: pip install -e '.[mnist1d]'")
        return pytest.param(path, id=path.stem, marks=[skip])
    return pytest.param(path, id=path.stem)


def test_the_paper_presets_are_there() -> None:
    names = {path.stem for path in PRESETS}
    assert {"mlp-L2", "mlp-L3", "mlp-L4", "toy-chain-L2", "toy-chain-L3"} <= names
    assert {"cnn-cifar5m", "resnet18-cifar5m", "vit-cifar5m", "mlp-mnist1m"} <= names
    assert {"mlp-mnist1d", "mlp-mnist1d-xent", "deep-linear-L3"} <= names
    assert {"mlp-L3-adam", "mlp-L3-signsgd"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_validates_as_shipped_and_dry_runs_without_its_data(
    path: Path, tmp_path: Path
) -> None:
    """The full-size preset loads without overrides, says what it is, names its data by a
    relative path, and `run --dry-run` plans it without opening any data file."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "the header comment says what the preset reproduces"
    preset = load_preset(path)
    assert preset.name == path.stem and preset.description
    assert preset.run_count() >= 100  # a real sweep, not a smoke test
    for key in ("path", "test_path"):
        value = getattr(preset.data, key)
        assert value is None or not Path(value).expanduser().is_absolute()
    result = CliRunner().invoke(
        app, ["run", str(path), "--cache", str(tmp_path / "runs"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert f"{preset.name}: {preset.run_count()} runs, 0 already finished" in result.output


@pytest.fixture(scope="module")
def mnist1d_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the generated MNIST-1D parts, so its presets generate them once."""
    return tmp_path_factory.mktemp("mnist1d")


@pytest.mark.parametrize("path", [_case(p) for p in PRESETS])
def test_preset_trains_shrunk_from_the_centered_start(
    path: Path, tmp_path: Path, mnist1d_parts: Path
) -> None:
    """The shrunk preset trains through `gamma-tui run` on data in its native format: every run
    done or diverged, each starting at the centered loss, evaluated at steps 0 and T."""
    full = load_preset(path)
    overrides = shrunk(full) + native_files(full, tmp_path / "data", mnist1d_parts)
    preset = load_preset(path, overrides)
    cache = tmp_path / "runs"
    had_data = (ROOT / "data").exists()
    run_preset(path, cache, *overrides, timeout=300)
    assert (ROOT / "data").exists() == had_data  # nothing written into the repository

    with Cache(cache) as store:
        runs = store.runs(preset.name)
        ids = [run.run_id for run in runs]
        curves = store.curves(ids)
        evals = store.evals(ids)
    assert len(runs) == preset.run_count() == 4
    assert {run.status for run in runs} <= {"done", "diverged"}
    assert any(run.status == "done" for run in runs)
    train_start, test_start = centered_start(preset)
    for run in runs:
        assert run.init_loss == pytest.approx(train_start, rel=1e-5)
        assert curves[run.run_id].loss[0] == pytest.approx(train_start, rel=1e-5)
        if run.status == "done":
            assert run.steps_done == len(curves[run.run_id].loss) == STEPS
        if not preset.data.test_size:
            assert run.run_id not in evals
            continue
        held = evals[run.run_id]
        assert held.steps[0] == 0
        assert held.loss[0] == pytest.approx(test_start, rel=1e-5)
        if run.status == "done":
            assert held.steps.tolist() == [0, 1, 2, 5, STEPS]
            assert np.isfinite(held.loss).all()
        if classes_of(preset) is None:
            assert np.isnan(held.accuracy).all()
        else:
            assert ((held.accuracy >= 0) & (held.accuracy <= 1)).all()


def shrunk(preset: Preset) -> list[str]:
    """Overrides that make `preset` a 2 γ × 2 η × 1 seed sweep of a few seconds."""
    overrides = [*GRID, f"train.steps={STEPS}", f"train.checkpoint_every={STEPS}"]
    overrides += SMALL_NETWORK[preset.network.kind]
    if preset.data.kind != "scalar":  # the toy model's batch is 1
        overrides.append(f"train.batch_size={BATCH}")
    if preset.data.test_size:
        overrides.append(f"data.test_size={TEST_SIZE}")
    return overrides


def native_files(preset: Preset, folder: Path, mnist1d_parts: Path) -> list[str]:
    """Write the preset's dataset (and its held-out set) in their native formats under
    `folder`, big enough for the shrunk budget; returns the overrides that point at them."""
    data = preset.data
    if not data.from_files:
        return []
    if data.kind == "mnist1d":  # generated locally: the path only keeps the generated parts
        return [f'data.path="{mnist1d_parts}"']
    folder.mkdir(parents=True)
    held_out = TEST_SIZE if data.test_size and data.test_path is None else 0
    samples = STEPS * BATCH + held_out + 5
    sizes = [samples // 2, samples - samples // 2]  # batches cross the part boundary
    rng = np.random.default_rng(7)
    if data.kind == "mnist1m":
        write_mnist1m(folder, sizes)
        train = folder
    elif data.kind == "cifar5m":
        write_cifar5m(folder, sizes)
        train = folder
    else:
        assert data.kind == "npz", f"no writer for data.kind = {data.kind!r}"
        train = folder / "train.npz"
        x = rng.integers(0, 256, (samples, 3, 32, 32), dtype=np.uint8)
        np.savez(train, X=x, y=np.arange(samples) % CLASSES)
    overrides = [f'data.path="{train}"']
    if data.test_size and data.test_path is not None:
        overrides.append(f'data.test_path="{write_test_set(data.kind, data.test_path, folder)}"')
    return overrides


def write_test_set(kind: str, shipped: str, folder: Path) -> Path:
    """A held-out set in the format the preset's test_path names: MNIST IDX, CIFAR-10
    binary or .npz; every label appears so the set has all CLASSES classes."""
    rng = np.random.default_rng(11)
    labels = np.arange(TEST_SIZE + 4) % CLASSES
    if shipped.endswith(".npz"):
        file = folder / "test.npz"
        shape = (28, 28) if kind == "mnist1m" else (32, 32, 3)
        if kind == "npz":
            shape = (3, 32, 32)
        np.savez(file, X=rng.integers(0, 256, (len(labels), *shape), dtype=np.uint8), y=labels)
        return file
    target = folder / "test"
    target.mkdir()
    if kind == "mnist1m":
        write_idx(target / "t10k-images-idx3-ubyte", rng.integers(0, 256, (len(labels), 28, 28)))
        write_idx(target / "t10k-labels-idx1-ubyte.gz", labels)
        return target
    assert kind == "cifar5m", f"no held-out writer for data.kind = {kind!r}"
    pixels = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    write_cifar_bin(target / "test_batch.bin", pixels, labels)
    return target


def classes_of(preset: Preset) -> int | None:
    """Classes of the preset's labels, None for regression targets."""
    if preset.data.kind in FILE_DATASETS:
        return CLASSES
    if preset.data.kind == "teacher_classes":
        return preset.data.outputs
    return None


def centered_start(preset: Preset) -> tuple[float, float]:
    """The step-0 loss on the training batch and on the held-out set: f == 0 at init, so
    MSE gives the mean of y² (1/C for one-hot targets) and cross-entropy ln C."""
    classes = classes_of(preset)
    if classes is not None:
        start = math.log(classes) if preset.train.loss == "xent" else 1.0 / classes
        return start, start
    if preset.data.kind == "scalar":
        return preset.data.target**2, math.nan
    import torch

    from gamma_tui.engine.data import TeacherStream

    stream = TeacherStream(
        preset.data, preset.train.batch_size, "mse", torch.float64, torch.device("cpu")
    )
    test = stream.test_set()
    train = float(stream.batch(0).target.square().mean())
    return train, math.nan if test is None else float(test.target.square().mean())
