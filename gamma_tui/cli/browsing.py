"""The commands that read the cache: `ls`, `show`, `fit`, `compare`, `report` and `export`.

They print data on stdout (text, or JSON with --json) and never train. `export` is
gamma_tui.exporting.export_sweep, the same code the app exports with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from gamma_tui.cli.common import (
    CacheOption,
    JsonOption,
    StepOption,
    SweepArgument,
    WindowOption,
    err,
    open_cache,
    out,
    resolve_name,
    user_errors,
)
from gamma_tui.exporting import finite_or_none, run_identity
from gamma_tui.states import DIVERGED, DONE, FAILED, QUEUED, RUNNING, SKIPPED

if TYPE_CHECKING:
    from gamma_tui.cache import Cache


def list_(
    cache: CacheOption = None,
    as_json: JsonOption = False,
    runs: Annotated[bool, typer.Option("--runs", help="List every run too.")] = False,
) -> None:
    """List the sweeps in the cache and the states of their runs."""
    with user_errors():
        store = open_cache(cache)
        sweeps = store.sweeps()
        if as_json:
            payload = [_sweep_json(store, s.name, s) for s in sweeps]
            out.print(json.dumps({"cache": str(store.root), "sweeps": payload}, indent=1))
            return
        table = Table(title=f"cache {store.root}", box=None, header_style="bold")
        table.add_column("sweep", no_wrap=True)
        for heading in ("runs", "done", "div", "run", "queue", "skip", "fail", "steps"):
            table.add_column(heading, justify="right")
        table.add_column("updated", no_wrap=True)
        states = (DONE, DIVERGED, RUNNING, QUEUED, SKIPPED, FAILED)
        for s in sweeps:
            table.add_row(
                s.name,
                str(s.total),
                *(str(s.counts.get(k, 0)) for k in states),
                str(s.steps),
                _time(s.updated),
            )
        out.print(
            table
            if sweeps
            else f"no sweeps in {store.root} yet; try `gamma-tui run presets/smoke.toml`"
        )
        if runs:
            for s in sweeps:
                out.print(_runs_table(store, s.name))


def _sweep_json(store: Cache, name: str, info: Any) -> dict[str, Any]:
    """One sweep and its runs as plain JSON."""
    return {
        "name": name,
        "steps": info.steps,
        "counts": info.counts,
        "preset": info.preset_path,
        "runs": [
            {
                **run_identity(r),
                "steps_done": r.steps_done,
                "steps_target": r.steps_target,
                "init_loss": r.init_loss,
                "last_loss": finite_or_none(r.last_loss),
                "error": r.error,
            }
            for r in store.runs(name)
        ],
    }


def _runs_table(store: Cache, name: str) -> Table:
    """A table of one sweep's runs."""
    table = Table("run", "γ", "η", "seed", "state", "steps", "last loss", title=name)
    for r in store.runs(name):
        table.add_row(
            r.run_id,
            f"{r.gamma:.3g}",
            f"{r.eta:.3g}",
            str(r.seed),
            r.state,
            f"{r.steps_done}/{r.steps_target}",
            "-" if r.last_loss is None else f"{r.last_loss:.3g}",
        )
    return table


def show(sweep: SweepArgument, cache: CacheOption = None) -> None:
    """Print a text heatmap of final loss over (γ, η), with η*(γ) per γ."""
    from gamma_tui.report import heatmap_text

    with user_errors():
        store = open_cache(cache)
        out.print(heatmap_text(store, resolve_name(store, sweep)))


def fit(
    sweep: SweepArgument,
    cache: CacheOption = None,
    as_json: JsonOption = False,
    step: StepOption = None,
    window: WindowOption = None,
) -> None:
    """Fit η*(γ) and η_div(γ): per-γ tables and log-log slopes in the lazy and rich regimes."""
    from gamma_tui.report import fit_summary, fit_text
    from gamma_tui.sharpness import summary_text, sweep_block

    with user_errors():
        store = open_cache(cache)
        name = resolve_name(store, sweep)
        summary = fit_summary(store, name, step=step, window=window)
        block = sweep_block(store, name, summary)
        if block is not None:  # sweeps measured with [diagnostics] sharpness = true
            summary["sharpness"] = block
        text = fit_text(summary) + ("" if block is None else "\n" + "\n".join(summary_text(block)))
        out.print(json.dumps(summary, indent=1) if as_json else text)


def compare(
    sweeps: Annotated[
        list[str], typer.Argument(help="Two or more sweep names from `ls`, or preset paths.")
    ],
    cache: CacheOption = None,
    as_json: JsonOption = False,
    step: StepOption = None,
    window: WindowOption = None,
) -> None:
    """Compare sweeps: slopes of η* and η_div, crossover, best loss per γ, cell differences."""
    from gamma_tui.compare import compare_summary, compare_sweeps, compare_text

    with user_errors():
        store = open_cache(cache)
        names = [resolve_name(store, sweep) for sweep in sweeps]
        summary = compare_summary(compare_sweeps(store, names, step=step, window=window))
        out.print(json.dumps(summary, indent=1) if as_json else compare_text(summary))


def report(
    sweeps: Annotated[
        list[str],
        typer.Argument(help="A sweep name from `ls` or a preset path; several compare them."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to write.")],
    cache: CacheOption = None,
    step: StepOption = None,
    window: WindowOption = None,
) -> None:
    """Write the paper's figures (PNG and SVG) and a markdown summary of SWEEP to a directory;
    with several sweeps, their comparison figure and table (compare.png/.svg, compare.md)."""
    from gamma_tui.config import PresetError

    with user_errors():
        try:
            from gamma_tui.compare_figures import write_compare_report
            from gamma_tui.figures import write_report
        except ImportError as error:
            raise PresetError(
                f"`report` needs matplotlib ({error}); install it with: pip install -e '.[report]'"
            ) from None
        store = open_cache(cache)
        names = [resolve_name(store, sweep) for sweep in sweeps]
        if len(names) == 1:
            written = write_report(store, names[0], output, step=step, window=window)
        else:
            written = write_compare_report(store, names, output, step=step, window=window)
    for path in written:
        err.print(f"wrote {path}")


def export(
    sweep: SweepArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    format_: Annotated[
        str,
        typer.Option("--format", help="csv (long: one row per point), json or parquet."),
    ] = "csv",
    cache: CacheOption = None,
) -> None:
    """Write every run of SWEEP with its loss curve to a CSV, JSON or Parquet file."""
    from gamma_tui.cache import default_cache_dir
    from gamma_tui.exporting import export_sweep

    with user_errors():
        written = export_sweep(cache or default_cache_dir(), sweep, format_, output)
    err.print(written.summary)


def _time(stamp: float) -> str:
    """A cache time stamp as local month-day hour:minute."""
    import time

    return time.strftime("%m-%d %H:%M", time.localtime(stamp))
