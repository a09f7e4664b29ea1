"""`gamma-tui export --format parquet`, read back with pyarrow (and pandas and polars when
installed): the same points as the cache, with the run's settings and typed columns."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, tiny_preset_text
from test_cli import cli

from gamma_tui.cache import Cache

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

STEPS = 40


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A held-out classification sweep past its curve cap, exported: (cache, parquet file)."""
    folder = tmp_path_factory.mktemp("parquet")
    preset = folder / "held.toml"
    preset.write_text(
        tiny_preset_text(
            data={"kind": "teacher_classes", "outputs": 3, "test_size": 40},
            train={"steps": STEPS, "curve_cap": 16},
            gamma={"min": 1.0, "max": 1.0},
        )
    )
    cache = folder / "runs"
    cli("run", str(preset), cache=cache)
    target = folder / "out" / "held.parquet"
    done = cli("export", "held", "--format", "parquet", "-o", str(target), cache=cache)
    assert "wrote 6 runs of held" in done.stderr
    return cache, target


def test_schema_has_settings_and_typed_point_columns(exported: tuple[Path, Path]) -> None:
    _cache, target = exported
    schema = pq.read_schema(target)
    types = {field.name: field.type for field in schema}
    assert types["step"] == pa.int64() and types["window"] == pa.int32()
    assert types["loss"] == pa.float32() and types["accuracy"] == pa.float32()
    assert types["value"] == pa.float64()
    assert types["gamma"] == types["eta"] == pa.float64()
    assert types["seed"] == types["diverged_step"] == pa.int64()
    assert types["network.width"] == pa.int64() and types["train.batch_size"] == pa.int64()
    for name in ("sweep", "run_id", "state", "series", "network.kind", "data.kind"):
        assert pa.types.is_dictionary(types[name]), name
    assert b'"sweep": "held"' in schema.metadata[b"gamma_tui"]


def test_rows_are_the_cache_points(exported: tuple[Path, Path]) -> None:
    """Train rows give back each curve (window centres, float32 losses bitwise); test rows
    the held-out evaluations; the other series the diagnostics; nothing else."""
    cache, target = exported
    table = pq.read_table(target).to_pylist()
    with Cache(cache) as store:
        runs = store.runs("held")
        ids = [run.run_id for run in runs]
        curves, evals, measured = store.curves(ids), store.evals(ids), store.diagnostics(ids)
        specs = store.specs(ids)
    assert {row["run_id"] for row in table} == set(ids)
    assert any(run.state == "done" for run in runs)
    for run in runs:
        rows = [row for row in table if row["run_id"] == run.run_id]
        assert {(r["gamma"], r["eta"], r["seed"]) for r in rows} == {(run.gamma, run.eta, run.seed)}
        assert {r["network.width"] for r in rows} == {specs[run.run_id]["network"]["width"]}
        assert {r["state"] for r in rows} == {run.state}
        train = [r for r in rows if r["series"] == "train"]
        centres = [r["step"] + (r["window"] - 1) / 2 for r in train]
        keep = curves[run.run_id].steps < STEPS
        np.testing.assert_array_equal(centres, curves[run.run_id].steps[keep])
        loss = np.array([r["loss"] for r in train], dtype=np.float32)
        np.testing.assert_array_equal(loss, curves[run.run_id].loss[keep])
        assert train[0]["window"] == 1
        assert run.state != "done" or max(r["window"] for r in train) > 1  # past the cap
        test = [r for r in rows if r["series"] == "test"]
        held = evals[run.run_id]
        assert [r["step"] for r in test] == held.steps.tolist()
        np.testing.assert_allclose([r["loss"] for r in test], held.loss, rtol=1e-6)
        np.testing.assert_allclose([r["accuracy"] for r in test], held.accuracy, rtol=1e-6)
        others = [r for r in rows if r["series"] not in ("train", "test")]
        found = measured[run.run_id]
        want = sorted(
            (name, int(step), float(value))
            for name, column in found.values.items()
            for step, value in zip(found.steps, column, strict=True)
            if not np.isnan(value)
        )
        got = sorted((r["series"], r["step"], r["value"]) for r in others if r["value"] is not None)
        assert got == want and want
        assert all(r["loss"] is None for r in others) and all(r["value"] is None for r in train)


def test_row_count_matches_the_csv_export(exported: tuple[Path, Path], tmp_path: Path) -> None:
    cache, target = exported
    csv_file = tmp_path / "held.csv"
    cli("export", "held", "--format", "csv", "-o", str(csv_file), cache=cache)
    with csv_file.open() as handle:
        rows = list(csv.DictReader(handle))
    assert pq.read_metadata(target).num_rows == len(rows)


def test_pandas_reads_it_with_the_right_dtypes(exported: tuple[Path, Path]) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(exported[1])
    assert str(frame["series"].dtype) == "category" and str(frame["state"].dtype) == "category"
    assert frame["step"].dtype == np.int64 and frame["loss"].dtype == np.float32
    assert frame["gamma"].dtype == np.float64 and frame["seed"].dtype == np.int64
    final = frame[frame.series == "test"].groupby(["eta", "seed"], observed=True)["loss"].last()
    assert len(final) == 6 and final.notna().all()


def test_polars_reads_it_with_the_right_dtypes(exported: tuple[Path, Path]) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.read_parquet(exported[1])
    assert frame.schema["step"] == pl.Int64 and frame.schema["window"] == pl.Int32
    assert frame.schema["loss"] == pl.Float32 and frame.schema["gamma"] == pl.Float64
    assert frame.schema["series"] in (pl.Categorical, pl.Enum) or isinstance(
        frame.schema["series"], pl.Categorical
    )
    assert frame.filter(pl.col("series") == "train").height > 6 * 16


def test_without_pyarrow_the_error_names_the_extra(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    cache, _target = exported
    code = (
        "import sys; sys.modules['pyarrow'] = None; sys.argv = sys.argv[1:]; "
        "from gamma_tui.cli import main; main()"
    )
    args = ["gamma-tui", "export", "held", "--format", "parquet", "-o", str(tmp_path / "x")]
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "--cache", str(cache)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install -e '.[export]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()
