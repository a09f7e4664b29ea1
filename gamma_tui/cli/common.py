"""What every `gamma-tui` command shares: the Typer app, the two consoles, the common options
and the handling of bad input (one red line on stderr and exit status 2, never a traceback).

Diagnostics and progress go to `err` (stderr), data to `out` (stdout). Nothing heavy is imported
here: `gamma-tui --help` must not import numpy, pydantic or torch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:  # imported where used: --help needs neither numpy nor pydantic
    from gamma_tui.cache import Cache

DEFAULT_PRESET = Path("presets/quickstart.toml")

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
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
PresetOption = Annotated[Path, typer.Option(help="Preset the app opens on.")]
PresetsOption = Annotated[
    list[Path] | None,
    typer.Option("--presets", help="Another directory of presets for the launcher."),
]
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


def resolve_name(store: Cache, sweep: str) -> str:
    """The sweep a command argument names: a sweep name, or a preset path that names one."""
    from gamma_tui.results import resolve_sweep

    return resolve_sweep(store, sweep)
