"""Writing one sweep's runs and curves to a file: CSV (long), JSON or Parquet, with no front end.

`export_sweep` is the export of `gamma-tui export` and of the app: it reads the cache, writes
the file beside its destination (NAME.partial) and moves it in place, so a reader never sees a
half-written export. Bad input (an unknown format, an unknown sweep, Parquet without pyarrow)
raises PresetError or CacheError with one message that says the fix.

The CSV has one row per point: a run's training curve (series "train"), its held-out
evaluations ("test", with accuracy when measured) and its diagnostics (series named for the
diagnostic, the value in the loss column). JSON has one object per run; NaN and inf become null.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the CLI's --help must not import numpy
    from gamma_tui.cache import Cache

FORMATS = ("csv", "json", "parquet")
"""The file formats `export_sweep` writes."""

CSV_HEADER = ["run_id", "gamma", "eta", "seed", "state", "diverged_step"] + [
    "series",
    "step",
    "loss",
    "accuracy",
]
"""The columns of the long CSV export."""


@dataclass(frozen=True)
class Exported:
    """What `export_sweep` wrote: the file, the sweep's name, its runs and (Parquet) rows."""

    path: Path
    sweep: str
    runs: int
    rows: int | None = None

    @property
    def summary(self) -> str:
        """The line `gamma-tui export` prints, e.g. `wrote 12 runs of smoke to out.csv`."""
        rows = "" if self.rows is None else f" ({self.rows} rows)"
        return f"wrote {self.runs} runs of {self.sweep}{rows} to {self.path}"


def export_sweep(cache_dir: Path, sweep: str, fmt: str, output: Path) -> Exported:
    """Write every run of `sweep` (a sweep name, or a preset path naming one) in the cache at
    `cache_dir` with its curves to `output` in format `fmt` (one of FORMATS)."""
    from gamma_tui.cache import Cache
    from gamma_tui.config import PresetError
    from gamma_tui.results import resolve_sweep

    if fmt not in FORMATS:
        raise PresetError(f"--format {fmt!r}: use csv, json or parquet")
    store = Cache(cache_dir)
    name = resolve_sweep(store, sweep)
    if fmt == "parquet":
        return _export_parquet(store, name, output)
    from gamma_tui.results import load_run_curves

    runs, curves = load_run_curves(store, name)
    ids = [r.run_id for r in runs]
    evals, measured = store.evals(ids), store.diagnostics(ids)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", newline="") as handle:
        if fmt == "csv":
            _write_csv(handle, runs, curves, evals, measured)
        else:
            _write_json(handle, name, runs, curves, evals, measured)
    partial.replace(output)
    return Exported(output, name, len(runs))


def run_identity(run: Any) -> dict[str, Any]:
    """The JSON fields that place a run in the grid and say what became of it."""
    keys = ("run_id", "gamma", "eta", "seed", "state", "diverged_step")
    return {key: getattr(run, key) for key in keys}


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN/inf: such values become null."""
    return value if value is not None and math.isfinite(value) else None


def _write_csv(handle: IO[str], runs: Any, curves: Any, evals: Any, measured: Any) -> None:
    """The long CSV: one row per training point, held-out evaluation and diagnostic value."""
    writer = csv.writer(handle)
    writer.writerow(CSV_HEADER)
    for run, curve in zip(runs, curves, strict=True):
        head = [
            run.run_id,
            run.gamma,
            run.eta,
            run.seed,
            run.state,
            run.diverged_step if run.diverged_step is not None else "",
        ]
        for step, loss in zip(curve.steps, curve.loss, strict=True):
            writer.writerow([*head, "train", f"{step:g}", f"{loss:.7g}", ""])
        held = evals.get(run.run_id)
        for step, loss, hit in [] if held is None else _eval_rows(held):
            writer.writerow([*head, "test", step, f"{loss:.7g}", hit])
        for series, step, value in _diagnostic_rows(measured.get(run.run_id)):
            writer.writerow([*head, series, step, value, ""])


def _write_json(
    handle: IO[str], name: str, runs: Any, curves: Any, evals: Any, measured: Any
) -> None:
    """One JSON object: the sweep's name and every run with its curves."""
    json.dump(
        {
            "sweep": name,
            "runs": [
                {
                    **run_identity(r),
                    "steps": c.steps.tolist(),
                    "loss": [finite_or_none(v) for v in c.loss.tolist()],
                    **_eval_json(evals.get(r.run_id)),
                    **_diagnostics_json(measured.get(r.run_id)),
                }
                for r, c in zip(runs, curves, strict=True)
            ],
        },
        handle,
    )


def _export_parquet(store: Cache, name: str, output: Path) -> Exported:
    """The Parquet export (gamma_tui/parquet.py), written beside and moved in place."""
    from gamma_tui.config import PresetError

    try:
        from gamma_tui.parquet import write_parquet
    except ImportError as error:
        raise PresetError(
            f"--format parquet needs pyarrow ({error}); install it with: pip install -e '.[export]'"
        ) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    runs, rows = write_parquet(store, name, partial)
    partial.replace(output)
    return Exported(output, name, runs, rows)


def _eval_rows(held: Any) -> list[tuple[int, float, str]]:
    """(step, loss, accuracy text) of a run's held-out evaluations; accuracy '' if none."""
    return [
        (int(step), float(loss), "" if math.isnan(hit) else f"{hit:.6g}")
        for step, loss, hit in zip(held.steps, held.loss, held.accuracy, strict=True)
    ]


def _eval_json(held: Any) -> dict[str, Any]:
    """The `test` entry of a run in the JSON export (absent without evaluations)."""
    if held is None:
        return {}
    accuracy = [None if math.isnan(v) else v for v in held.accuracy.tolist()]
    loss = [finite_or_none(v) for v in held.loss.tolist()]
    return {"test": {"steps": held.steps.tolist(), "loss": loss, "accuracy": accuracy}}


def _diagnostic_rows(found: Any) -> list[tuple[str, int, str]]:
    """(series, step, value text) of a run's diagnostics for the CSV export: the series is the
    diagnostic's name (sharpness, trace, ...) and the value goes in the loss column."""
    if found is None:
        return []
    return [
        (name, int(step), "" if math.isnan(value) else f"{value:.7g}")
        for name, values in sorted(found.values.items())
        for step, value in zip(found.steps, values, strict=True)
    ]


def _diagnostics_json(found: Any) -> dict[str, Any]:
    """The `diagnostics` entry of a run in the JSON export (absent without diagnostics)."""
    if found is None:
        return {}
    values = {
        name: [finite_or_none(v) for v in column.tolist()] for name, column in found.values.items()
    }
    return {"diagnostics": {"steps": found.steps.tolist(), **values}}
