"""Per-shard and per-run progress of `gamma-tui run`, computed from a cache with fake commits."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from support import tiny_preset_text

from gamma_tui.backends import ShardJob
from gamma_tui.cache import Cache, Progress
from gamma_tui.cli import progress as display
from gamma_tui.config import parse_preset
from gamma_tui.planning import make_shards
from gamma_tui.progress import ShardProgress, SweepProgress, progress
from gamma_tui.runner import register, run_sweep
from gamma_tui.schedule import reduce_losses

TEXT = tiny_preset_text(train={"steps": 40, "checkpoint_every": 16})
OWNER = f"{socket.gethostname()}:{os.getpid()}:test"


def commit(cache: Cache, run_id: str, steps: int, status: str, release: bool = True) -> None:
    """Commit `steps` steps of a made-up curve for one run, with `status`."""
    cache.claim([run_id], OWNER)
    chunks = reduce_losses(0, np.linspace(1.0, 0.5, steps, dtype=np.float32), 64)
    diverged = steps - 1 if status == "diverged" else None
    update = Progress(run_id, steps, chunks, None, status, 1.0, 0.5, diverged_step=diverged)
    cache.commit(OWNER, [update])
    if release:
        cache.release(OWNER)


def test_progress_per_shard_from_one_read(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = parse_preset(TEXT)
    ids = [spec.run_id for spec in register(cache, preset, TEXT)]
    shards = make_shards(cache.runs(run_ids=ids), pieces=3)  # 18 runs: 3 shards of 6
    first, second, third = shards
    for run_id in first:
        commit(cache, run_id, 40, "done")
    commit(cache, second[0], 20, "diverged")
    commit(cache, second[1], 10, "running", release=False)  # a live worker holds it
    reads = []
    original = cache.runs
    monkeypatch.setattr(cache, "runs", lambda *a, **k: reads.append(1) or original(*a, **k))
    snapshot = progress(cache, preset.name, 0.0, 0, ids, shards, round_index=1)
    assert len(reads) == 1  # the whole snapshot, shards included, from one query
    assert snapshot.round_index == 1 and [s.index for s in snapshot.shards] == [1, 2, 3]
    done, busy, idle = snapshot.shards
    assert (done.runs, done.counts, done.finished, done.fraction) == (6, {"done": 6}, True, 1.0)
    assert busy.counts == {"diverged": 1, "running": 1, "queued": 4}
    assert (busy.finished, busy.training) == (False, True)
    assert (busy.steps_done, busy.steps_total) == (30, 20 + 5 * 40)
    assert (idle.steps_done, idle.training, idle.fraction) == (0, False, 0.0)
    assert snapshot.counts == {"done": 6, "diverged": 1, "running": 1, "queued": 10}
    assert snapshot.steps_done == sum(s.steps_done for s in snapshot.shards)
    assert progress(cache, preset.name, 0.0, 0, ids).shards == ()  # no round: no shards


def shard(index: int, counts: dict[str, int], steps_done: int, dtype: str = "float32") -> Any:
    """A ShardProgress of sum(counts) runs of 100 steps each."""
    runs = sum(counts.values())
    return ShardProgress(index, dtype, runs, counts, steps_done, runs * 100)


def snapshot(shards: tuple[ShardProgress, ...]) -> SweepProgress:
    """A sweep snapshot holding these shards."""
    counts = {"running": 5, "queued": 70, "done": 20, "diverged": 3, "skipped": 2}
    return SweepProgress(100, counts, 2500, 10000, 12.0, 210.0, shards, 2)


def test_shard_lines_show_open_shards_training_first_then_a_count() -> None:
    shards = (
        shard(1, {"done": 10}, 1000),
        *(shard(i, {"queued": 10}, 0) for i in range(2, 12)),
        shard(12, {"running": 4, "diverged": 3, "queued": 3}, 430, "float64"),
    )
    lines = display.shard_lines(snapshot(shards))
    assert lines[0] == "  round 2: 1/12 shards finished"
    assert lines[1] == "  shard 12/12 float64 · 10 runs · 43% · 3 diverged · training"
    assert lines[2] == "  shard 2/12 float32 · 10 runs · 0% · waiting"
    assert len(lines) == 1 + display.SHARD_LINES + 1 and lines[-1] == "  +3 more shards"
    assert not any("shard 1/12" in line for line in lines)  # finished shards are only counted
    assert display.shard_lines(snapshot(())) == []
    assert display.run_counts_line(snapshot(())) == (
        "  runs: 5 running · 70 queued · 20 done · 3 diverged · 2 skipped"
    )
    # the order of the counts, spelled as gamma_tui.states spells them
    order = ("running", "interrupted", "queued", "done", "diverged", "skipped", "failed")
    assert order == display.RUN_STATES


def render(progress: SweepProgress, width: int) -> list[str]:
    """The lines `run` prints for one progress snapshot on a terminal `width` columns wide."""
    captured = io.StringIO()
    previous = display.err
    display.err = Console(file=captured, width=width, force_terminal=False)
    try:
        with display.progress_display(quiet=False) as show:
            show(progress)
    finally:
        display.err = previous
    return captured.getvalue().splitlines()


def test_progress_display_fits_80_columns() -> None:
    big = tuple(
        shard(i, {"running": 888, "diverged": 300, "failed": 12}, 10**5, "float64")
        for i in range(1, 21)
    )
    lines = render(snapshot(big), 80)
    assert lines[0].startswith("training") and "25/100 runs" in lines[0]
    assert lines[1].startswith("  runs: 5 running")
    assert lines[2] == "  round 2: 0/20 shards finished"
    expected = "  shard 1/20 float64 · 1,200 runs · 83% · 300 diverged · 12 failed · training"
    assert lines[3] == expected
    assert lines[-1] == "  +12 more shards"
    assert len(lines) == 3 + display.SHARD_LINES + 1  # no line wrapped
    assert max(len(line) for line in lines) <= 80
    narrow = render(snapshot(big), 50)  # narrower terminals cut lines short, never wrap them
    assert len(narrow) == len(lines) and max(len(line) for line in narrow) <= 50


def test_quiet_progress_display_shows_nothing() -> None:
    with display.progress_display(quiet=True) as show:
        assert show is None


class FakeExecutor:
    """A backend that 'trains' each shard by committing finished runs, then ticks."""

    pieces = 2

    def __init__(self) -> None:
        self.rounds: list[list[list[str]]] = []

    def run(self, cache: Cache, shards: list[list[str]], job: ShardJob, tick: Any) -> list[str]:
        self.rounds.append(shards)
        for members in shards:
            for run_id in members:
                commit(cache, run_id, 40, "done")
            tick()
        return []

    def cost_seconds(self) -> tuple[float, float]:
        """No engine workers, so nothing measured."""
        return 0.0, 0.0

    def stop(self) -> None:
        """Nothing to stop."""


def test_run_sweep_reports_the_shards_of_each_round(tmp_path: Path) -> None:
    preset = parse_preset(TEXT)
    seen: list[SweepProgress] = []
    backend = FakeExecutor()
    with Cache(tmp_path / "runs") as store:
        final, errors = run_sweep(
            store, preset, TEXT, None, on_progress=seen.append, backend=backend
        )
    assert errors == [] and final.counts == {"done": 18}
    (shards,) = backend.rounds
    ticks = [p for p in seen if p.shards]
    assert [len(p.shards) for p in ticks] == [len(shards)] * len(ticks) and ticks
    assert [sum(s.finished for s in p.shards) for p in ticks[: len(shards)]] == list(
        range(1, len(shards) + 1)
    )
    assert {p.round_index for p in ticks} == {1}
    assert [s.runs for s in final.shards] == [len(ids) for ids in shards]
    assert all(s.finished for s in final.shards)
