"""The `gamma-tui` command: the app with no arguments, headless subcommands otherwise.

Diagnostics and progress go to stderr (rich), data to stdout. Bad input (a preset, a sweep
name, a cache from a newer version) exits with status 2 and one message, never a traceback.
Heavy modules (the engine, textual) are imported only by the commands that need them.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # imported where used: --help needs neither numpy nor pydantic
    from gamma_tui.cache import Cache

DEFAULT_PRESET = Path("presets/quickstart.toml")

SHARD_LINES = 8
"""At most this many shards get a progress line under the total bar; the rest are counted."""

RUN_STATES = ("running", "interrupted", "queued", "done", "diverged", "skipped", "failed")
"""The order of the per-run counts under the progress bar."""

app = typer.Typer(
    name="gamma-tui",
    help="A terminal workbench for the γ–η landscape of online SGD (arXiv:2410.04642).\n\n"
    "With no command, opens the app on presets/quickstart.toml and the local cache (runs/).",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)

CacheOption = Annotated[
    Path | None,
    typer.Option("--cache", help="Cache directory (default: $GAMMA_TUI_CACHE or ./runs)."),
]
JobsOption = Annotated[
    Path | None,
    typer.Option(
        "--jobs-dir",
        help="SLURM job folders on the shared filesystem (default: $GAMMA_TUI_JOBS, CACHE/jobs).",
    ),
]
SweepArgument = Annotated[str, typer.Argument(help="A sweep name from `ls`, or a preset path.")]
StepOption = Annotated[
    float | None,
    typer.Option("--step", min=1, help="Choose η* by the loss at this step (default: the last)."),
]
WindowOption = Annotated[
    float | None,
    typer.Option(
        "--window",
        min=0.0,
        max=1.0,
        help="Average the loss over steps [step·(1-window), step]; 1 averages the whole run. "
        "Default: the preset's analysis.window (0.05).",
    ),
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn PresetError/CacheError into one red line and exit status 2."""
    try:
        yield
    except _user_error_types() as error:  # evaluated only when an exception arrives
        # escaped: messages hold brackets (pip install -e '.[report]') that are not markup
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except sqlite3.Error as error:  # damaged file, full disk, read-only directory
        err.print(
            f"[red]error:[/] the run cache failed: {error}. A damaged cache can be moved aside "
            "(runs are retrained); a full disk needs space; then run the command again",
            highlight=False,
            markup=True,
        )
        raise typer.Exit(2) from None


def _user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input, not a bug."""
    from gamma_tui.cache import CacheError
    from gamma_tui.config import PresetError
    from gamma_tui.datasets import DatasetError

    return PresetError, CacheError, DatasetError


def open_cache(path: Path | None) -> Cache:
    """The cache at `path` or the default location."""
    from gamma_tui.cache import Cache, default_cache_dir

    return Cache(path or default_cache_dir())


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    cache: CacheOption = None,
    preset: Annotated[Path, typer.Option(help="Preset the app opens on.")] = DEFAULT_PRESET,
    presets: Annotated[
        list[Path] | None,
        typer.Option("--presets", help="Another directory of presets for the launcher."),
    ] = None,
) -> None:
    """Open the app when no command is given."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from gamma_tui.cache import default_cache_dir
        from gamma_tui.ui.app import run_app

        run_app(cache_dir=cache or default_cache_dir(), preset=preset, preset_dirs=presets or [])


@app.command()
def run(
    preset: Annotated[Path, typer.Argument(help="Preset TOML file, e.g. presets/smoke.toml.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a preset key: --set train.steps=2000 (repeatable)."),
    ] = None,
    cache: CacheOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes, or the parts of each shard group for slurm/ray "
            "(default: the preset's backend.workers, else 1).",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N (default: the preset's).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start huge sweeps without asking.")] = (
        False
    ),
    detach: Annotated[
        bool, typer.Option("--detach", help="Keep training after this terminal closes.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (shards, work) and train nothing.")
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            help="local (worker processes), slurm (a job array) or ray "
            "(default: the preset's backend.kind, else local)."
        ),
    ] = None,
    jobs_dir: JobsOption = None,
    slurm: Annotated[
        list[str] | None,
        typer.Option(
            help="A submitit parameter: --slurm slurm_partition=gpu (repeatable; merged over "
            "the preset's backend.slurm)."
        ),
    ] = None,
    slurm_cluster: Annotated[
        str | None, typer.Option(help="submitit cluster: slurm, local or debug (default: auto).")
    ] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
) -> None:
    """Train every run of PRESET that the cache does not already have.

    Where it trains comes from the preset's [backend] table; the options given here win.
    """
    from gamma_tui.backends import executor_for, resolve_backend
    from gamma_tui.cache import default_cache_dir
    from gamma_tui.config import load_preset
    from gamma_tui.runner import run_sweep

    with user_errors():
        loaded = load_preset(preset, set_ or [])
        _check_factory(loaded, preset)
        settings = resolve_backend(
            loaded.backend,
            backend,
            workers,
            jobs_dir,
            _key_values(slurm or []),
            slurm_cluster,
            ray_address,
        )
        executor = executor_for(settings, cache or default_cache_dir())
        text = preset.read_text(encoding="utf-8")
        store = open_cache(cache)
        err.print(
            f"[bold]{loaded.name}[/]: {loaded.run_count()} runs, "
            f"{loaded.train.steps} steps, cache {store.root}"
        )
        if dry_run:
            _print_plan(store, loaded, settings)
            return
        _confirm_size(loaded, yes)
        _check_dataset(loaded)
        if detach:
            forwarded = _backend_words(settings) + _pairs("--device", [device] if device else [])
            _detach(preset, set_ or [], store, settings.workers or 1, forwarded, loaded.name)
            return
        _note_unmeasured(store, loaded)
        signal.signal(signal.SIGTERM, _interrupt)  # `gamma-tui stop`: stop workers cleanly
        with _progress_display(quiet) as show:
            final, errors = run_sweep(
                store,
                loaded,
                text,
                str(preset),
                settings.workers or 1,
                device or loaded.train.device,
                on_progress=show,
                backend=executor,
            )
    for message in errors:
        err.print(f"[red]worker failed:[/] {message}", markup=True, highlight=False)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(final.counts.items()))
    err.print(f"{final.finished}/{final.total} runs finished ({counts})")
    if loaded.diagnostics.enabled and final.cost_seconds[1] > 0:
        from gamma_tui.sharpness import cost_text

        err.print(cost_text(*final.cost_seconds), highlight=False)
    unfinished = (
        final.total
        - final.counts.get("done", 0)
        - final.counts.get("diverged", 0)
        - final.counts.get("skipped", 0)
    )
    raise typer.Exit(1 if errors or unfinished else 0)


def _note_unmeasured(store: Any, loaded: Any) -> None:
    """One line when [diagnostics] is on but cached runs were trained without it."""
    from rich.markup import escape

    from gamma_tui.sharpness import unmeasured_runs, unmeasured_text

    count = unmeasured_runs(store, loaded)
    if count:
        note = escape(unmeasured_text(count))
        err.print(f"[yellow]note:[/] {note}", highlight=False)


def _key_values(pairs: list[str]) -> dict[str, Any]:
    """--slurm KEY=VALUE options as a dict; values parse as JSON when they can (60 -> int)."""
    from gamma_tui.config import PresetError

    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PresetError(f"--slurm {pair!r}: expected KEY=VALUE, e.g. timeout_min=120")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


@app.command()
def sync(
    sweep: Annotated[str | None, typer.Argument(help="Only this sweep's jobs.")] = None,
    cache: CacheOption = None,
    jobs_dir: JobsOption = None,
) -> None:
    """Ingest the runs of SLURM job folders into the cache (safe to rerun, never loses steps)."""
    from gamma_tui.backends import default_jobs_dir, sync_jobs

    with user_errors():
        store = open_cache(cache)
        folder = jobs_dir or default_jobs_dir(store.root)
        taken = sync_jobs(store, folder, sweep)
    err.print(f"{sum(taken.values())} runs updated from {len(taken)} job folders in {folder}")


def _backend_words(settings: Any) -> list[str]:
    """Options that make a re-run (`--detach`) use these resolved backend settings.

    `--slurm` values are written as JSON so `_key_values` reads back the same types.
    """
    words = ["--backend", settings.kind]
    words += _pairs("--jobs-dir", [settings.jobs_dir] if settings.jobs_dir else [])
    words += _pairs("--slurm", [f"{k}={json.dumps(v)}" for k, v in settings.slurm.items()])
    words += _pairs("--slurm-cluster", [settings.slurm_cluster] if settings.slurm_cluster else [])
    return words + _pairs("--ray-address", [settings.ray_address] if settings.ray_address else [])


def _print_plan(store: Cache, preset: Any, settings: Any) -> None:
    """The backend and the shards `run` would start, and the work they hold, on stdout."""
    from gamma_tui.backends import describe_backend
    from gamma_tui.planning import plan

    found = plan(store, preset, settings.workers or 1)
    out.print(
        f"{found.sweep}: {found.total} runs, {found.finished} already finished, "
        f"{found.partial} partly trained, {found.to_train} to train in {len(found.shards)} "
        f"shard(s), "
        + (f"about {found.flops:.2g} FLOPs" if math.isfinite(found.flops) else "FLOPs unknown")
        + (
            f"; the η cut-off ({preset.cutoff.decades} decades) trains fewer"
            if preset.cutoff.decades and found.to_train
            else ""
        )
    )
    if preset.refine is not None:
        from gamma_tui.refine import estimate

        most, cap = estimate(preset)
        out.print(
            f"refinement (eta_precision {preset.refine.eta_precision:g} decades): up to "
            f"{most:,} more runs in rounds after the grid (max_runs {cap:,} caps the sweep), "
            "around each γ's η* and inside each η_div bracket"
            + ("; a γ column at the lazy/rich crossover" if preset.refine.gamma else "")
        )
    out.print(describe_backend(settings, store.root))
    for index, shard in enumerate(found.shards, start=1):
        out.print(
            f"  shard {index}/{len(found.shards)}: {shard.members} runs ({shard.dtype}), "
            f"{shard.steps_left:,} run-steps left"
        )


def _check_dataset(preset: Any) -> None:
    """Open a file dataset and check it holds steps x batch samples, before any worker starts."""
    if not preset.data.from_files:
        return
    from gamma_tui.config import PresetError, image_problem
    from gamma_tui.datasets import open_split

    data = preset.data
    dataset, _test = open_split(data.kind, data.path, data.test_size, data.test_path)
    problem = image_problem(preset.network, dataset.info.input_shape)
    if problem:
        raise PresetError(f"{preset.name}: {problem}")
    dataset.check_budget(preset.train.steps, preset.train.batch_size, preset.data.offset_batches)


def _check_factory(preset: Any, path: Path) -> None:
    """Import and try a kind = "module" factory before any worker starts (the only place
    outside training that runs the user's code)."""
    if preset.network.kind != "module":
        return
    from gamma_tui.costs import sample_shape
    from gamma_tui.engine.module_family import check_factory

    shape = sample_shape(preset.data)
    if shape is not None:  # an unreadable dataset: the dataset check says why
        check_factory(preset, str(path), shape)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _pairs(option: str, values: list[Any]) -> list[str]:
    """`option value` for every value, as command-line words."""
    return [word for value in values for word in (option, str(value))]


def _detach(
    preset: Path, sets: list[str], store: Cache, workers: int, forwarded: list[str], name: str
) -> None:
    """Re-run this command (with `forwarded` options) in its own session and return at once."""
    from gamma_tui.cache import pid_alive
    from gamma_tui.processes import DETACH_WAIT_SECONDS, detach_run, driver_registered

    arguments = [str(preset), "--cache", str(store.root), "--workers", str(workers), "--yes"]
    arguments += _pairs("--set", sets) + forwarded
    log = f"{store.root}/logs/driver-{name}.log"
    err.print(f"starting sweep {name} in the background; waiting until `gamma-tui ps` lists it")
    pid = detach_run(arguments, store.root, name)
    if driver_registered(store.root, name, pid) and pid_alive(pid):
        err.print(
            f"sweep {name} runs in the background (driver pid {pid}); follow it with "
            f"`gamma-tui ps`, the app, or {log}; stop it with `gamma-tui stop {name}`"
        )
    elif not pid_alive(pid):
        err.print(f"sweep {name}: the driver (pid {pid}) finished already; see {log}")
    else:
        err.print(
            f"sweep {name}: the driver (pid {pid}) has not registered after "
            f"{DETACH_WAIT_SECONDS:.0f} s; it goes on in the background, see {log}"
        )


def _confirm_size(preset: Any, yes: bool) -> None:
    """Ask before a huge sweep (or refuse without a terminal), showing an estimate."""
    from gamma_tui.config import PresetError

    if yes or not preset.is_huge():
        return
    flops = preset.flops_per_run() * preset.run_count()
    estimate = (
        f"{preset.run_count():,} runs x {preset.train.steps:,} steps, about {flops:.1e} FLOPs "
        f"(~{flops / 50e9 / 3600:,.1f} h at 50 GFLOP/s on a CPU, less on a GPU; "
        "cached runs and the η cut-off reduce it)"
    )
    if not sys.stdin.isatty():
        raise PresetError(f"huge sweep: {estimate}. Pass --yes to start it anyway.")
    if not typer.confirm(f"This is a huge sweep: {estimate}. Start it?", err=True):
        raise typer.Exit(1)


class _SweepDisplay(Progress):
    """Rich's Progress (the total bar) with run counts and shard lines below it."""

    below: RenderableType = Group()

    def get_renderables(self) -> Iterable[RenderableType]:
        """The task table, then the lines below it."""
        yield self.make_tasks_table(self.tasks)
        yield self.below


@contextmanager
def _progress_display(quiet: bool) -> Iterator[Any]:
    """A rich progress bar over steps with runs done/total, diverged, steps/s and ETA, then
    the runs per state and one line per unfinished shard of the current round."""
    if quiet:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[runs]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    with _SweepDisplay(*columns, console=err, transient=False) as bar:
        task = bar.add_task("training", total=1, runs="", rate="")

        def show(p: Any) -> None:
            eta = p.eta_seconds
            bar.below = Group(
                *(
                    Text(line, no_wrap=True, overflow="ellipsis")
                    for line in [run_counts_line(p), *shard_lines(p)]
                )
            )
            bar.update(
                task,
                completed=p.steps_done,
                total=max(p.steps_total, 1),
                runs=f"{p.finished}/{p.total} runs",
                rate=f"{p.steps_per_second:,.0f} steps/s"
                + (f", ETA {eta:,.0f}s" if eta is not None else ""),
            )

        yield show


def run_counts_line(p: Any) -> str:
    """The runs per state, e.g. `  runs: 12 running · 68 queued · 30 done · 3 diverged`."""
    parts = [f"{p.counts[state]:,} {state}" for state in RUN_STATES if p.counts.get(state)]
    return "  runs: " + (" · ".join(parts) if parts else "none")


def shard_lines(p: Any, limit: int = SHARD_LINES) -> list[str]:
    """One line per unfinished shard of the round (training ones first), at most `limit`.

    E.g. `  shard 2/5 float32 · 120 runs · 43% · 3 diverged · training`: under 80 columns for
    shards of up to thousands of runs; the display cuts longer lines short instead of wrapping.
    """
    if not p.shards:
        return []
    count = len(p.shards)
    open_shards = [s for s in p.shards if not s.finished]
    lines = [f"  round {p.round_index}: {count - len(open_shards)}/{count} shards finished"]
    open_shards.sort(key=lambda s: (not s.training, s.index))
    for shard in open_shards[:limit]:
        parts = [f"shard {shard.index}/{count} {shard.dtype}", f"{shard.runs:,} runs"]
        parts.append(f"{math.floor(100 * shard.fraction)}%")
        parts += [
            f"{shard.counts[state]:,} {state}"
            for state in ("diverged", "failed")
            if shard.counts.get(state)
        ]
        parts.append("training" if shard.training else "waiting")
        lines.append("  " + " · ".join(parts))
    if len(open_shards) > limit:
        lines.append(f"  +{len(open_shards) - limit} more shards")
    return lines


@app.command("ls")
def list_(
    cache: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
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
        states = ("done", "diverged", "running", "queued", "skipped", "failed")
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
                **_run_identity(r),
                "steps_done": r.steps_done,
                "steps_target": r.steps_target,
                "init_loss": r.init_loss,
                "last_loss": _finite(r.last_loss),
                "error": r.error,
            }
            for r in store.runs(name)
        ],
    }


def _run_identity(run: Any) -> dict[str, Any]:
    """The JSON fields that place a run in the grid and say what became of it."""
    keys = ("run_id", "gamma", "eta", "seed", "state", "diverged_step")
    return {key: getattr(run, key) for key in keys}


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


@app.command()
def ps(
    cache: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List running sweeps: their drivers and the workers holding their runs."""
    from gamma_tui.processes import sweep_processes

    with user_errors():
        store = open_cache(cache)
        found = sweep_processes(store)
    if as_json:
        out.print(json.dumps([vars(p) for p in found], indent=1))
        return
    if not found:
        err.print(f"no sweep is running in {store.root}")
        return
    table = Table("sweep", "role", "pid", "host", "runs held")
    for p in found:
        table.add_row(
            p.sweep, p.role, str(p.pid), p.host, str(p.runs) if p.role == "worker" else ""
        )
    out.print(table)


@app.command()
def stop(sweep: SweepArgument, cache: CacheOption = None) -> None:
    """Stop a running sweep cleanly: workers checkpoint and exit; `run` resumes it later."""
    from gamma_tui.processes import stop_sweep

    with user_errors():
        store = open_cache(cache)
        name = _resolve(store, sweep)
        stopped = stop_sweep(store, name)
    if not stopped:
        err.print(f"sweep {name} has no running process on this host")
        raise typer.Exit(1)
    err.print(f"sent SIGTERM to {len(stopped)} process(es) of {name}; runs keep their checkpoints")


@app.command()
def show(sweep: SweepArgument, cache: CacheOption = None) -> None:
    """Print a text heatmap of final loss over (γ, η), with η*(γ) per γ."""
    from gamma_tui.report import heatmap_text

    with user_errors():
        store = open_cache(cache)
        out.print(heatmap_text(store, _resolve(store, sweep)))


@app.command()
def fit(
    sweep: SweepArgument,
    cache: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    step: StepOption = None,
    window: WindowOption = None,
) -> None:
    """Fit η*(γ) and η_div(γ): per-γ tables and log-log slopes in the lazy and rich regimes."""
    from gamma_tui.report import fit_summary, fit_text
    from gamma_tui.sharpness import summary_text, sweep_block

    with user_errors():
        store = open_cache(cache)
        name = _resolve(store, sweep)
        summary = fit_summary(store, name, step=step, window=window)
        block = sweep_block(store, name, summary)
        if block is not None:  # sweeps measured with [diagnostics] sharpness = true
            summary["sharpness"] = block
        text = fit_text(summary) + ("" if block is None else "\n" + "\n".join(summary_text(block)))
        out.print(json.dumps(summary, indent=1) if as_json else text)


@app.command()
def compare(
    sweeps: Annotated[
        list[str], typer.Argument(help="Two or more sweep names from `ls`, or preset paths.")
    ],
    cache: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    step: StepOption = None,
    window: WindowOption = None,
) -> None:
    """Compare sweeps: slopes of η* and η_div, crossover, best loss per γ, cell differences."""
    from gamma_tui.compare import compare_summary, compare_sweeps, compare_text

    with user_errors():
        store = open_cache(cache)
        names = [_resolve(store, sweep) for sweep in sweeps]
        summary = compare_summary(compare_sweeps(store, names, step=step, window=window))
        out.print(json.dumps(summary, indent=1) if as_json else compare_text(summary))


@app.command()
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
        names = [_resolve(store, sweep) for sweep in sweeps]
        if len(names) == 1:
            written = write_report(store, names[0], output, step=step, window=window)
        else:
            written = write_compare_report(store, names, output, step=step, window=window)
    for path in written:
        err.print(f"wrote {path}")


@app.command()
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
    from gamma_tui.config import PresetError
    from gamma_tui.results import load_run_curves

    with user_errors():
        if format_ not in ("csv", "json", "parquet"):
            raise PresetError(f"--format {format_!r}: use csv, json or parquet")
        store = open_cache(cache)
        name = _resolve(store, sweep)
        if format_ == "parquet":
            _export_parquet(store, name, output)
            return
        runs, curves = load_run_curves(store, name)
        evals = store.evals([r.run_id for r in runs])
        measured = store.diagnostics([r.run_id for r in runs])
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        with partial.open("w", newline="") as handle:
            if format_ == "csv":
                writer = csv.writer(handle)
                writer.writerow(
                    ["run_id", "gamma", "eta", "seed", "state", "diverged_step"]
                    + ["series", "step", "loss", "accuracy"]
                )
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
            else:
                json.dump(
                    {
                        "sweep": name,
                        "runs": [
                            {
                                **_run_identity(r),
                                "steps": c.steps.tolist(),
                                "loss": [_finite(v) for v in c.loss.tolist()],
                                **_eval_json(evals.get(r.run_id)),
                                **_diagnostics_json(measured.get(r.run_id)),
                            }
                            for r, c in zip(runs, curves, strict=True)
                        ],
                    },
                    handle,
                )
        partial.replace(output)
    err.print(f"wrote {len(runs)} runs of {name} to {output}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; loopback by default.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    public_url: Annotated[
        str | None,
        typer.Option(help="The URL browsers use, if not http://HOST:PORT (a tunnel's port)."),
    ] = None,
    cache: CacheOption = None,
    preset: Annotated[Path, typer.Option(help="Preset the app opens on.")] = DEFAULT_PRESET,
    presets: Annotated[
        list[Path] | None,
        typer.Option("--presets", help="Another directory of presets for the launcher."),
    ] = None,
) -> None:
    """Serve the app to a web browser (textual-serve); one app per browser tab, on this cache."""
    from gamma_tui.config import PresetError
    from gamma_tui.serve import exposure_warning
    from gamma_tui.serve import serve as serve_app

    with user_errors():
        warning = exposure_warning(host, port)
        if warning:
            err.print(f"[bold red]{escape(warning)}[/]")
        try:
            from gamma_tui.cache import default_cache_dir

            serve_app(cache or default_cache_dir(), preset, presets or [], host, port, public_url)
        except ImportError as error:
            raise PresetError(
                f"`serve` needs textual-serve ({error}); install it with: pip install -e '.[serve]'"
            ) from None
        except OSError as error:
            raise PresetError(
                f"--host {host} --port {port}: cannot listen there ({error})"
            ) from None


def _export_parquet(store: Cache, name: str, output: Path) -> None:
    """`export --format parquet` (gamma_tui/parquet.py), written beside and moved in place."""
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
    err.print(f"wrote {runs} runs of {name} ({rows} rows) to {output}")


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
    loss = [_finite(v) for v in held.loss.tolist()]
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
    values = {name: [_finite(v) for v in column.tolist()] for name, column in found.values.items()}
    return {"diagnostics": {"steps": found.steps.tolist(), **values}}


def _resolve(store: Cache, sweep: str) -> str:
    from gamma_tui.results import resolve_sweep

    return resolve_sweep(store, sweep)


def _finite(value: float | None) -> float | None:
    """JSON has no NaN/inf: such values become null."""
    return value if value is not None and math.isfinite(value) else None


def _time(stamp: float) -> str:
    import time

    return time.strftime("%m-%d %H:%M", time.localtime(stamp))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; runs keep their checkpoints and resume on the next `run`")
        sys.exit(130)
