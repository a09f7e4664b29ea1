"""`gamma-tui export --format parquet`: a sweep as one long Parquet table (pyarrow, extra
`[export]`), for pandas, polars or DuckDB.

One row per recorded point: the training curve's points (series "train"), the held-out
evaluations ("test") and the diagnostics (series named after each: "sharpness", ...). Every
row carries its run's settings as columns: sweep, run_id, gamma, eta, seed, state,
diverged_step, then each setting of the run's spec by its dotted name (network.width,
data.kind, train.batch_size, ...; lists and tables as JSON text).

Point columns: step (int64, the first step of the point's window), window (int32, how many
steps its loss averages: 1 below the curve cap, wider past it; 1 for evaluations and
diagnostics), loss (float32, the curve's own precision: train and test rows), accuracy (float32,
test rows of classification data) and value (float64, diagnostic rows). Missing values are
nulls; text columns are dictionary-encoded (pandas categoricals, polars categoricals).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gamma_tui import __version__
from gamma_tui.cache import Cache, RunState
from gamma_tui.states import INTERRUPTED, RUNNING

SPEC_SECTIONS = ("network", "data", "diagnostics")
"""Spec tables whose keys become `section.key` columns; the other keys are training's."""

TOP_LEVEL = ("gamma", "eta", "seed")
"""Spec keys that are columns of their own name (the grid's axes)."""

POINT_SCHEMA = pa.schema(
    [
        ("run", pa.int32()),
        ("series", pa.string()),
        ("step", pa.int64()),
        ("window", pa.int32()),
        ("loss", pa.float32()),
        ("accuracy", pa.float32()),
        ("value", pa.float64()),
    ]
)
"""The per-point columns, with `run` indexing the table of runs (dropped once joined)."""


def write_parquet(cache: Cache, sweep: str, output: Path) -> tuple[int, int]:
    """Write the sweep to `output` (the caller moves it in place); returns (runs, rows)."""
    info = cache.sweep(sweep)
    runs = cache.runs(sweep)
    settings: list[dict[str, Any]] = []
    points: list[pa.RecordBatch] = []
    for index, run in enumerate(runs):
        # one run at a time: a state holds the run's checkpoint too, which is not kept
        (state,) = cache.export_runs([run.run_id])
        settings.append(
            {
                "sweep": sweep,
                "run_id": run.run_id,
                "state": RUNNING if run.state == INTERRUPTED else run.state,
                "diverged_step": run.diverged_step,
                **flatten_spec(json.loads(state.spec_json)),
            }
        )
        points.append(_points(index, state, info.steps))
    table = _joined(_runs_table(settings), pa.Table.from_batches(points, POINT_SCHEMA))
    metadata = {"sweep": sweep, "steps": info.steps, "gamma_tui": __version__}
    table = table.replace_schema_metadata({"gamma_tui": json.dumps(metadata)})
    pq.write_table(table, output)
    return len(runs), table.num_rows


def flatten_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A run spec as flat columns: gamma, eta, seed, `section.key` and `train.key`."""
    flat: dict[str, Any] = {key: spec[key] for key in TOP_LEVEL}
    for key, value in spec.items():
        if key in TOP_LEVEL:
            continue
        if key in SPEC_SECTIONS and isinstance(value, dict):
            flat |= {f"{key}.{name}": _scalar(item) for name, item in value.items()}
        else:
            flat[f"train.{key}"] = _scalar(value)
    return flat


def _scalar(value: Any) -> Any:
    """A column value: scalars as they are, lists and tables as JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def _points(run: int, state: RunState, steps_target: int) -> pa.RecordBatch:
    """A run's rows: curve points whose window centre is before the sweep's last step (as
    in the CSV export), then evaluations and diagnostics."""
    starts, windows, losses = [], [], []
    for start, window, data in state.chunks:
        values = np.frombuffer(data, dtype="<f4")
        starts.append(start + window * np.arange(len(values), dtype=np.int64))
        windows.append(np.full(len(values), window, dtype=np.int32))
        losses.append(values)
    step = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    window = np.concatenate(windows) if windows else np.zeros(0, dtype=np.int32)
    loss = np.concatenate(losses) if losses else np.zeros(0, dtype=np.float32)
    keep = step + (window - 1) / 2 < steps_target
    step, window, loss = step[keep], window[keep], loss[keep]
    series = ["train"] * len(step)
    accuracy: list[float | None] = [None] * len(step)
    value: list[float | None] = [None] * len(step)
    extra_steps, extra_loss = [], []
    for at, held_loss, hit in state.evals:
        series.append("test")
        extra_steps.append(at)
        extra_loss.append(_number(held_loss))
        accuracy.append(_number(hit))
        value.append(None)
    for at, name, measured in state.diagnostics:
        series.append(name)
        extra_steps.append(at)
        extra_loss.append(None)
        accuracy.append(None)
        value.append(_number(measured))
    extra = len(extra_steps)
    columns = [
        pa.array(np.full(len(series), run, dtype=np.int32)),
        pa.array(series, pa.string()),
        pa.concat_arrays([pa.array(step), pa.array(extra_steps, pa.int64())]),
        pa.concat_arrays([pa.array(window), pa.array(np.ones(extra, dtype=np.int32))]),
        pa.concat_arrays([pa.array(loss), pa.array(extra_loss, pa.float32())]),
        pa.array(accuracy, pa.float32()),
        pa.array(value, pa.float64()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=POINT_SCHEMA)


def _number(value: float | None) -> float | None:
    """A stored number, NaN (no accuracy without classes) as null."""
    return None if value is None or math.isnan(value) else float(value)


def _runs_table(settings: list[dict[str, Any]]) -> pa.Table:
    """One row per run; a setting some runs lack (another model kind's key) is null there."""
    names = list(dict.fromkeys(name for row in settings for name in row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in settings]
        if name in ("seed", "diverged_step"):
            columns[name] = pa.array(values, pa.int64())
        elif name in ("gamma", "eta"):
            columns[name] = pa.array(values, pa.float64())
        else:
            columns[name] = _inferred(values)
    return pa.table(columns)


def _inferred(values: list[Any]) -> pa.Array:
    """A setting's column: pyarrow's type for the values; ints and floats mixed as float64."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values if v is not None
        ):
            return pa.array(values, pa.float64())
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _joined(runs: pa.Table, points: pa.Table) -> pa.Table:
    """Each point row with its run's settings in front; text columns dictionary-encoded."""
    repeated = runs.take(points.column("run"))
    table = pa.table(
        {name: repeated.column(name) for name in repeated.column_names}
        | {name: points.column(name) for name in points.column_names if name != "run"}
    )
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            encoded = pc.dictionary_encode(table.column(index))
            table = table.set_column(index, field.name, encoded)
    return table
