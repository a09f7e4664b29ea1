"""`[network] kind = "module"`: your own network through the CLI, the cache and the app.

The example (examples/gated_mlp.toml) trains shrunk through `gamma-tui run`; bad factories
stop `run` with exit 2 and one line naming network.factory before any worker starts; run ids
follow the factory's source and kwargs; `ls`, `show` and the app never import the factory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, run_preset

from gamma_tui.cache import Cache
from gamma_tui.config import PresetError, expand, load_preset
from gamma_tui.runner import register

EXAMPLE = ROOT / "examples" / "gated_mlp.toml"
SHRUNK = (
    "train.steps=120",
    "gamma.min=0.1",
    "gamma.max=1",
    "eta.min=0.1",
    "eta.max=1",
    "eta.per_decade=1",
    "seeds=1",
    "data.test_size=200",
)
"""2 γ × 2 η × 1 seed of the example, at stable step sizes."""


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m gamma_tui ARGS`, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "gamma_tui", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )


def module_preset(
    folder: Path, name: str, factory: str, source: str | None, **network: str
) -> Path:
    """A tiny kind = "module" preset `name`.toml in `folder`, and the factory's module file
    holding `source` (None: no file)."""
    if source is not None:
        module = factory.partition(":")[0]
        (folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    lines = [
        f'name = "{name}"',
        "seeds = [0]",
        "[network]",
        'kind = "module"',
        f'factory = "{factory}"',
        "width = 8",
        *(f"{key} = {value}" for key, value in network.items()),
        "[data]",
        'kind = "teacher_mlp"',
        "input_dim = 4",
        "outputs = 2",
        "[train]",
        "batch_size = 4",
        "steps = 10",
        "[gamma]",
        "min = 1",
        "max = 1",
        "[eta]",
        "min = 0.1",
        "max = 0.1",
    ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = """
    from torch import nn
    from gamma_tui.nn import Linear, Readout

    def build(input_shape, outputs, width, hidden=1):
        layers = [Linear(input_shape[0], width), nn.ReLU()]
        for _ in range(hidden - 1):
            layers += [Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, Readout(width, outputs))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the shrunk example, trained once through the CLI."""
    cache = tmp_path_factory.mktemp("module") / "runs"
    run_preset(EXAMPLE, cache, *SHRUNK, timeout=300)
    return cache


def test_the_example_trains_through_the_cli(trained: Path) -> None:
    preset = load_preset(EXAMPLE, SHRUNK)
    with Cache(trained) as store:
        runs = store.runs(preset.name)
        ids = [run.run_id for run in runs]
        curves = store.curves(ids)
        evals = store.evals(ids)
    assert len(runs) == preset.run_count() == 4
    assert {run.status for run in runs} == {"done"}
    for run in runs:
        assert run.steps_done == 120
        losses = curves[run.run_id].loss
        assert np.all(np.isfinite(losses))
        head, tail = losses[:10].mean(), losses[-10:].mean()
        assert tail < 0.8 * head, (run.gamma, run.eta, head, tail)
        steps = evals[run.run_id].steps
        assert list(steps[:2]) == [0, 1] and steps[-1] == 120
        assert np.all(np.isfinite(evals[run.run_id].loss))


def test_the_example_shows_in_the_app(trained: Path) -> None:
    import asyncio

    from test_ui import dashboard_ready, heat_text

    from gamma_tui.ui.app import GammaApp

    name = load_preset(EXAMPLE).name

    async def scenario() -> None:
        app = GammaApp(trained, EXAMPLE, poll_seconds=0.05, start_screen="dashboard")
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_ready(pilot, name)
            assert app.current_sweep == name
            assert "*" in heat_text(app)  # a best η marked in every γ column

    asyncio.run(scenario())


BAD_FACTORIES = {
    "missing": ("nowhere:build", None, "no module 'nowhere'"),
    "raises": ("raises_on_import:build", "raise ImportError('needs a GPU library')", "importing"),
    "no_function": ("no_function:build", "x = 1", "has no 'build'"),
    "not_callable": ("not_callable:build", "build = 3", "not callable"),
    "no_module": ("no_module:build", "def build(**kw):\n    return {'a': 1}", "not a torch.nn"),
    "bad_call": ("bad_call:build", "def build(width):\n    return None", "calling the factory"),
    "wrong_shape": (
        "wrong_shape:build",
        "from gamma_tui.nn import Readout\n"
        "def build(input_shape, outputs, width):\n    return Readout(input_shape[0], 3)",
        "not (2, 2)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FACTORIES))
def test_a_bad_factory_stops_run_with_one_line(case: str, tmp_path: Path) -> None:
    factory, source, fragment = BAD_FACTORIES[case]
    preset = module_preset(tmp_path, case, factory, source)
    cache = tmp_path / "runs"
    done = cli("run", str(preset), "--cache", str(cache), "-q")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "network.factory" in lines[0], done.stderr
    assert fragment in lines[0] and "Traceback" not in done.stderr
    assert not (cache / "logs").exists()  # no worker was started


def test_run_ids_follow_the_factory_source_and_kwargs(tmp_path: Path) -> None:
    path = module_preset(tmp_path, "ids_model", "ids_model:build", GOOD, kwargs="{ hidden = 1 }")
    ids = [spec.run_id for spec in expand(load_preset(path))]
    assert ids == [spec.run_id for spec in expand(load_preset(path))]  # reading is stable
    deeper = [spec.run_id for spec in expand(load_preset(path, ["network.kwargs.hidden=2"]))]
    model = tmp_path / "ids_model.py"
    model.write_text(model.read_text() + "\n# an edit\n")
    edited = [spec.run_id for spec in expand(load_preset(path))]
    assert len({*ids, *deeper, *edited}) == 3 * len(ids)
    # the folder is not part of the id: the same code elsewhere gives the same runs
    other = tmp_path / "copy"
    other.mkdir()
    for name in ("ids_model.py", "ids_model.toml"):
        (other / name).write_text((tmp_path / name).read_text())
    moved = load_preset(other / "ids_model.toml")
    assert moved.network.path == str(other.resolve())
    assert [spec.run_id for spec in expand(moved)] == edited


def test_kwargs_may_not_repeat_what_gamma_tui_passes(tmp_path: Path) -> None:
    path = module_preset(tmp_path, "kw_model", "kw_model:build", GOOD, kwargs="{ width = 3 }")
    with pytest.raises(PresetError, match=r"network\.kwargs.*width"):
        load_preset(path)


MARKER = """
    import pathlib
    pathlib.Path(__file__).with_suffix(".imported").write_text("imported")
    raise RuntimeError("this module must not be imported")
"""


def test_ls_show_and_the_app_never_import_the_factory(tmp_path: Path) -> None:
    path = module_preset(tmp_path, "marker_model", "marker_model:build", MARKER)
    marker = tmp_path / "marker_model.imported"
    preset = load_preset(path)
    cache = tmp_path / "runs"
    with Cache(cache) as store:
        register(store, preset, path.read_text(), str(path))
    assert "marker_model" not in sys.modules and not marker.exists()
    for args in (["ls"], ["ls", "--json"], ["show", "marker_model"], ["show", str(path)]):
        done = cli(*args, "--cache", str(cache))
        assert done.returncode == 0, (args, done.stderr)
        assert "marker_model" in done.stdout
    assert not marker.exists()

    import asyncio

    from test_ui import dashboard_ready

    from gamma_tui.ui.app import GammaApp

    async def scenario() -> None:
        app = GammaApp(cache, path, poll_seconds=0.05, start_screen="dashboard")
        async with app.run_test(size=(80, 24)) as pilot:
            await dashboard_ready(pilot, "marker_model")
            await pilot.press("4")  # the run browser
            await pilot.pause(0.2)

    asyncio.run(scenario())
    assert "marker_model" not in sys.modules and not marker.exists()
    # training is where it is imported: the check before any worker names the failure
    done = cli("run", str(path), "--cache", str(cache), "-q")
    assert done.returncode == 2 and "must not be imported" in done.stderr
    assert marker.exists()


def test_an_edited_copy_written_by_the_app_finds_the_same_code(tmp_path: Path) -> None:
    """The launcher writes edited presets to CACHE/presets: network.path carries the folder."""
    from gamma_tui.ui.launch import write_edited

    preset = load_preset(EXAMPLE, SHRUNK)
    copy = write_edited(tmp_path / "runs", preset)
    assert copy.parent != EXAMPLE.parent
    again = load_preset(copy)
    assert again.network.path == str(EXAMPLE.parent.resolve())
    assert [s.run_id for s in expand(again)] == [s.run_id for s in expand(preset)]


@pytest.mark.slow
def test_the_example_through_a_slurm_job_equals_local(tmp_path: Path) -> None:
    """submitit's local executor (a job process per shard, as on a cluster node) loads the
    factory from network.path and trains the same curves as local workers."""
    pytest.importorskip("submitit")
    from gamma_tui.backends import SlurmExecutor
    from gamma_tui.runner import run_sweep

    preset = load_preset(EXAMPLE, [*SHRUNK, "train.steps=40", "data.test_size=0"])
    text = EXAMPLE.read_text()
    curves = []
    for name, backend in (
        ("local", None),
        ("slurm", SlurmExecutor(tmp_path / "jobs", cluster="local", poll_seconds=0.2)),
    ):
        with Cache(tmp_path / name) as store:
            _final, errors = run_sweep(store, preset, text, None, device="cpu", backend=backend)
            assert errors == []
            assert {run.status for run in store.runs(preset.name)} == {"done"}
            curves.append(store.curves())
    local, slurm = curves
    assert local.keys() == slurm.keys() and len(local) == 4
    for run_id, curve in local.items():
        np.testing.assert_allclose(slurm[run_id].loss, curve.loss, rtol=1e-4)
