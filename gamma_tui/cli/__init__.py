"""The `gamma-tui` command: the app with no arguments, headless subcommands otherwise.

Diagnostics and progress go to stderr (rich), data to stdout. Bad input (a preset, a sweep
name, a cache from a newer version) exits with status 2 and one message, never a traceback.
Heavy modules (the engine, textual) are imported only by the commands that need them.

The commands live by what they do: `running` (run, sync, ps, stop), `browsing` (ls, show, fit,
compare, report, export) and `serving` (the app, serve); `common` holds the Typer app, the
consoles and the shared options, `progress` the live display of `run`. They are registered
here, in the order `gamma-tui --help` lists them.
"""

from __future__ import annotations

import sys

from gamma_tui.cli import browsing, running, serving
from gamma_tui.cli.common import app, err, open_cache, out, user_errors
from gamma_tui.cli.progress import (
    RUN_STATES,
    SHARD_LINES,
    progress_display,
    run_counts_line,
    shard_lines,
)

app.callback(invoke_without_command=True)(serving.main_callback)
app.command()(running.run)
app.command()(running.sync)
app.command("ls")(browsing.list_)
app.command()(running.ps)
app.command()(running.stop)
app.command()(browsing.show)
app.command()(browsing.fit)
app.command()(browsing.compare)
app.command()(browsing.report)
app.command()(browsing.export)
app.command()(serving.serve)

__all__ = [
    "RUN_STATES",
    "SHARD_LINES",
    "app",
    "err",
    "main",
    "open_cache",
    "out",
    "progress_display",
    "run_counts_line",
    "shard_lines",
    "user_errors",
]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; runs keep their checkpoints and resume on the next `run`")
        sys.exit(130)
