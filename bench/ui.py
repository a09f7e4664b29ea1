"""How fast the app paints and answers keys on a big sweep that a worker is still writing.

    python bench/ui.py [--keys 60] [--seconds 60]

The cache: one fake sweep of 16 γ × 16 η × 1 seed = 256 runs with a 10k-step target (every
step recorded: 10k points per curve), prefilled to 5k steps; 3 of the 16 η per γ diverge.
A writer process then commits 250 more steps to every running run every 0.5 s in one
transaction, like an ensemble worker (gamma_tui.ui.demo's synthetic curves, the real Cache
API), for the whole benchmark.

Measured, next to the targets from issue 3:
- first paint: a fresh `python` process that imports the app and runs it headless at 120x40;
  from spawning the process to the first painted screen, and to the first heatmap drawn
  from the cache (target 1 s);
- key-press to repaint, p50/p95 (target p95 ≤ 50 ms): in-process (App.run_test) on the
  dashboard, from posting the key to the end of the heatmap's redraw in the next screen
  update. Cursor keys (hjkl) repaint from data already there; step keys ([ ], scrubbing 8
  positions back and forth) wait for the loss grid at the new step (analysis.loss_grid in a
  worker thread) unless the dashboard prefetched it;
- dashboard redraw at 120x40 (target ≤ 50 ms): heatmap and curve-panel rasterization, and,
  to compare with the 1.2–2.4 s of off-the-shelf plot widgets, all 256 curves in one plot;
- the snapshot build (cache read + analysis, off the UI thread) for information.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER_OWNER = "bench-host:0:writer"
PREFILL_STEPS = 5_000
TARGET_STEPS = 10_000
COMMIT_STEPS = 250
COMMIT_SECONDS = 0.5
PRESET = {
    "name": "bench",
    "gammas": (0.01, 100.0, 3.75),
    "etas": (0.01, 10.0, 5.0),
    "seeds": 1,
    "steps": TARGET_STEPS,
    "depth": 2,
    "scale": "relative",
}


def build_cache(root: Path) -> None:
    """Register the sweep and prefill every run to PREFILL_STEPS under the writer's lease."""
    from gamma_tui.cache import Cache
    from gamma_tui.ui.demo import commit_fake, fake_preset_text, register_fake

    with Cache(root) as cache:
        preset, specs = register_fake(cache, fake_preset_text(**PRESET))
        assert len(specs) == 256, len(specs)
        for spec in specs:
            commit_fake(cache, preset, spec, "running", PREFILL_STEPS, owner=WRITER_OWNER)


def writer(root: Path, seconds: float) -> None:
    """Commit COMMIT_STEPS more steps of every running run every COMMIT_SECONDS."""
    from gamma_tui.cache import Cache, Progress
    from gamma_tui.config import expand, parse_preset
    from gamma_tui.schedule import reduce_losses
    from gamma_tui.ui.demo import FOREVER, fake_preset_text, synthetic_curve

    preset = parse_preset(fake_preset_text(**PRESET))
    specs = {s.run_id: s for s in expand(preset)}
    deadline = time.monotonic() + seconds
    with Cache(root) as cache:
        while time.monotonic() < deadline:
            updates = []
            for run in cache.runs("bench"):
                if run.status != "running":
                    continue
                end = min(run.steps_done + COMMIT_STEPS, TARGET_STEPS)
                losses, _ = synthetic_curve(specs[run.run_id], end, run.steps_done)
                updates.append(
                    Progress(
                        run.run_id,
                        end,
                        reduce_losses(run.steps_done, losses, preset.train.curve_cap),
                        None,
                        "done" if end >= TARGET_STEPS else "running",
                        None,
                        float(losses[-1]),
                        wall_seconds=COMMIT_SECONDS,
                    )
                )
            if updates:
                cache.commit(WRITER_OWNER, updates, ttl=FOREVER)
            time.sleep(COMMIT_SECONDS)


def first_paint_child(root: Path) -> None:
    """(in a fresh process) Run the app headless; print when it first paints and draws data."""
    from gamma_tui.ui.app import GammaApp
    from gamma_tui.ui.widgets import HeatmapView

    marks: dict[str, float] = {}
    app = GammaApp(root, None, start_screen="dashboard")
    original = HeatmapView._redraw

    def redraw(self: HeatmapView, width: int, height: int) -> None:
        original(self, width, height)
        if self.model is not None and "data" not in marks:
            self.app.call_after_refresh(lambda: marks.setdefault("data", time.time()))

    HeatmapView._redraw = redraw  # type: ignore[method-assign]

    def painted() -> None:
        marks.setdefault("chrome", time.time())

    async def watch() -> None:
        while "data" not in marks:
            await asyncio.sleep(0.005)
        print(json.dumps(marks), flush=True)
        app.exit()

    app.call_after_refresh(painted)
    app.call_later(lambda: app.run_worker(watch(), exit_on_error=True))
    app.run(headless=True, size=(120, 40))


def first_paint(root: Path, repeats: int = 3) -> list[tuple[float, float]]:
    """Seconds from spawning a process to its first paint and to its first heatmap."""
    results = []
    for _ in range(repeats):
        started = time.time()
        output = subprocess.run(
            [sys.executable, __file__, "--first-paint", str(root)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        line = [x for x in output.stdout.splitlines() if x.startswith("{")]
        if not line:
            raise RuntimeError(f"first-paint child failed: {output.stderr[-2000:]}")
        marks = json.loads(line[-1])
        results.append((marks["chrome"] - started, marks["data"] - started))
    return results


def import_floor(repeats: int = 3) -> float:
    """Seconds a bare `python -c "import textual.app, numpy"` takes here: the start-up floor."""
    best = math.inf
    for _ in range(repeats):
        started = time.time()
        subprocess.run([sys.executable, "-c", "import textual.app, numpy"], check=True)
        best = min(best, time.time() - started)
    return best


async def key_latency(root: Path, presses: int) -> dict[str, list[float]]:
    """Key-press to repaint (seconds) for cursor and step keys, and redraw timings."""
    from gamma_tui.ui.app import GammaApp
    from gamma_tui.ui.screens.dashboard import DashboardScreen
    from gamma_tui.ui.widgets import CurvePlot, HeatmapView

    app = GammaApp(root, None, start_screen="dashboard")
    done_at: list[float] = []
    original = HeatmapView._redraw

    def redraw(self: HeatmapView, width: int, height: int) -> None:
        original(self, width, height)
        done_at.append(time.perf_counter())

    HeatmapView._redraw = redraw  # type: ignore[method-assign]
    results: dict[str, list[float]] = {
        "cursor": [],
        "step": [],
        "heatmap": [],
        "curves": [],
        "snapshot": [],
    }
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.get_screen("dashboard")
        assert isinstance(screen, DashboardScreen)
        while screen.frame is None:
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        cursor_keys = ["l", "k", "h", "j"]
        # Scrub t back 8 positions, then forward 8, and so on (each press a new step).
        step_keys = ["left_square_bracket"] * 8 + ["right_square_bracket"] * 8
        for index in range(presses):
            for kind, key in (
                ("cursor", cursor_keys[index % 4]),
                ("step", step_keys[index % len(step_keys)]),
            ):
                count = len(done_at)
                started = time.perf_counter()
                await pilot.press(key)
                deadline = started + 5
                while len(done_at) == count and time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
                if len(done_at) > count:
                    results[kind].append(done_at[count] - started)
            results["heatmap"].append(screen.query_one(HeatmapView).redraw_seconds)
            results["curves"].append(screen.query_one(CurvePlot).redraw_seconds)
            if app.snapshot is not None:
                results["snapshot"].append(app.snapshot.built_seconds)
            await pilot.pause(0.02)
        heatmap, plot = screen.query_one(HeatmapView), screen.query_one(CurvePlot)
        for _ in range(20):  # forced full redraws of the current models at their sizes
            heatmap._redraw(*heatmap.size)
            plot._redraw(*plot.size)
            results["heatmap"].append(heatmap.redraw_seconds)
            results["curves"].append(plot.redraw_seconds)
        results["all256"] = all_curves(app.snapshot, plot)
    return results


def all_curves(snapshot: object, plot: object) -> list[float]:
    """Seconds to draw every run's curve (256 x 10k points, reduced) in one 120x40 plot."""
    import numpy as np

    from gamma_tui.ui.canvas import ramp
    from gamma_tui.ui.curves import PlotModel, Series, draw_curves

    colors = ramp(len(snapshot.runs))  # type: ignore[attr-defined]
    series = tuple(
        Series(snapshot.log10_t, row, color)  # type: ignore[attr-defined]
        for row, color in zip(snapshot.log10_loss, colors, strict=True)
    )  # type: ignore[attr-defined]
    finite = snapshot.log10_loss[np.isfinite(snapshot.log10_loss)]  # type: ignore[attr-defined]
    model = PlotModel(
        series,
        (0.0, 4.0),
        (float(finite.min()), float(finite.max())),
        True,
        None,
        (220, 220, 220),
        (20, 20, 30),
    )
    times = []
    for _ in range(10):
        started = time.perf_counter()
        draw_curves(model, 120, 40)
        times.append(time.perf_counter() - started)
    return times


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def report(paint: list[tuple[float, float]], keys: dict[str, list[float]], floor: float) -> None:
    """Print every measurement next to its target."""
    ms = 1000.0
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (other work slows every number)")

    def row(name: str, value: float, target: float | None, unit: str = "ms") -> None:
        goal = f"≤ {target:g} {unit}" if target is not None else ""
        verdict = "" if target is None else ("ok" if value <= target else "MISSED")
        print(f"  {name:<44} {value:9.1f} {unit:<3} {goal:>10}  {verdict}")

    print("first paint (fresh process, 120x40, best of 3):")
    row("spawn to first painted screen", min(p[0] for p in paint) * ms, 1000)
    row("spawn to first heatmap from the cache", min(p[1] for p in paint) * ms, 1000)
    row("(floor: python -c 'import textual.app, numpy')", floor * ms, None)
    print(f"key press to repaint ({len(keys['cursor'])} presses each, writer committing):")
    row("cursor keys hjkl, p50", statistics.median(keys["cursor"]) * ms, None)
    row("cursor keys hjkl, p95", percentile(keys["cursor"], 95) * ms, 50)
    row("step keys [ ], p50", statistics.median(keys["step"]) * ms, None)
    row("step keys [ ], p95", percentile(keys["step"], 95) * ms, 50)
    every = keys["cursor"] + keys["step"]
    row("all keys, p95", percentile(every, 95) * ms, 50)
    print("dashboard redraw at 120x40 (median):")
    row("heatmap (16 x 26 cells)", statistics.median(keys["heatmap"]) * ms, 50)
    row("curve panel (one γ column, seed bands)", statistics.median(keys["curves"]) * ms, 50)
    row(
        "heatmap + curves",
        (statistics.median(keys["heatmap"]) + statistics.median(keys["curves"])) * ms,
        50,
    )
    row("all 256 curves x 10k steps in one plot", statistics.median(keys["all256"]) * ms, 50)
    if keys["snapshot"]:
        print("off the UI thread (for information):")
        row(
            "snapshot build: read 256 curves + analysis",
            statistics.median(keys["snapshot"]) * ms,
            None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=60, help="presses of each kind")
    parser.add_argument("--seconds", type=float, default=120, help="writer lifetime")
    parser.add_argument("--first-paint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--writer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_paint:
        first_paint_child(args.first_paint)
        return
    if args.writer:
        writer(args.writer, args.seconds)
        return
    with tempfile.TemporaryDirectory(prefix="gamma-tui-bench-") as folder:
        root = Path(folder) / "runs"
        started = time.perf_counter()
        build_cache(root)
        print(
            f"cache: 256 runs x {TARGET_STEPS} steps, prefilled to {PREFILL_STEPS} "
            f"in {time.perf_counter() - started:.1f} s; writer commits {COMMIT_STEPS} steps "
            f"x 256 runs every {COMMIT_SECONDS} s"
        )
        background = subprocess.Popen(
            [sys.executable, __file__, "--writer", str(root), "--seconds", str(args.seconds)]
        )
        try:
            time.sleep(1.0)
            floor = import_floor()
            paint = first_paint(root)
            keys = asyncio.run(key_latency(root, args.keys))
        finally:
            background.terminate()
            background.wait()
        report(paint, keys, floor)


if __name__ == "__main__":
    main()
