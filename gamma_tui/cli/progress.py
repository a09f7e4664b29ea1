"""The live display of `gamma-tui run`: a rich progress bar over steps, the runs per state
under it, and one line per unfinished shard of the current round."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Group, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from gamma_tui.cli.common import err
from gamma_tui.states import DIVERGED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, SKIPPED

SHARD_LINES = 8
"""At most this many shards get a progress line under the total bar; the rest are counted."""

RUN_STATES = (RUNNING, INTERRUPTED, QUEUED, DONE, DIVERGED, SKIPPED, FAILED)
"""The order of the per-run counts under the progress bar."""


class _SweepDisplay(Progress):
    """Rich's Progress (the total bar) with run counts and shard lines below it."""

    below: RenderableType = Group()

    def get_renderables(self) -> Iterable[RenderableType]:
        """The task table, then the lines below it."""
        yield self.make_tasks_table(self.tasks)
        yield self.below


@contextmanager
def progress_display(quiet: bool) -> Iterator[Any]:
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
            for state in (DIVERGED, FAILED)
            if shard.counts.get(state)
        ]
        parts.append("training" if shard.training else "waiting")
        lines.append("  " + " · ".join(parts))
    if len(open_shards) > limit:
        lines.append(f"  +{len(open_shards) - limit} more shards")
    return lines
