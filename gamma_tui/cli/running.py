"""The commands that train and control sweeps: `run`, `sync`, `ps` and `stop`.

`run` loads and checks a preset (the factory of a kind = "module" network, the dataset, the
size of the sweep) before any worker starts, then trains with live progress, in the background
(`--detach`) or only prints the plan (`--dry-run`). Heavy modules (the engine, the backends)
are imported by the command that needs them.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from gamma_tui.cli.common import (
    CacheOption,
    JobsOption,
    JsonOption,
    SweepArgument,
    err,
    open_cache,
    out,
    resolve_name,
    user_errors,
)
from gamma_tui.cli.progress import progress_display
from gamma_tui.states import DIVERGED, DONE, SKIPPED

if TYPE_CHECKING:
    from gamma_tui.cache import Cache


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
        with progress_display(quiet) as show:
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
        - final.counts.get(DONE, 0)
        - final.counts.get(DIVERGED, 0)
        - final.counts.get(SKIPPED, 0)
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
        explore, seeds = len(preset.grid_seeds), len(preset.seeds)
        if explore < seeds:
            out.print(
                f"the grid and the search train {explore} of the {seeds} seeds; the cells "
                "that decide η* and η_div get all of them (refine.explore_seeds)"
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
    from gamma_tui.engine.module_family import check_factory

    shape = preset.data.sample_shape()
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
    from gamma_tui.costs import flops_per_run, is_huge

    if yes or not is_huge(preset):
        return
    flops = flops_per_run(preset) * preset.run_count()
    estimate = (
        f"{preset.run_count():,} runs x {preset.train.steps:,} steps, about {flops:.1e} FLOPs "
        f"(~{flops / 50e9 / 3600:,.1f} h at 50 GFLOP/s on a CPU, less on a GPU; "
        "cached runs and the η cut-off reduce it)"
    )
    if not sys.stdin.isatty():
        raise PresetError(f"huge sweep: {estimate}. Pass --yes to start it anyway.")
    if not typer.confirm(f"This is a huge sweep: {estimate}. Start it?", err=True):
        raise typer.Exit(1)


def ps(
    cache: CacheOption = None,
    as_json: JsonOption = False,
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


def stop(sweep: SweepArgument, cache: CacheOption = None) -> None:
    """Stop a running sweep cleanly: workers checkpoint and exit; `run` resumes it later."""
    from gamma_tui.processes import stop_sweep

    with user_errors():
        store = open_cache(cache)
        name = resolve_name(store, sweep)
        stopped = stop_sweep(store, name)
    if not stopped:
        err.print(f"sweep {name} has no running process on this host")
        raise typer.Exit(1)
    err.print(f"sent SIGTERM to {len(stopped)} process(es) of {name}; runs keep their checkpoints")
