"""What the curvature diagnostics cost, as a share of training.

Trains the same runs of a preset in one process with [diagnostics] off and on, alternating
(off, on, off, on, ...) so that load on a shared machine hits both alike, and prints the wall
time of each and the extra time as a share of training. The runs are the preset's grid at its
first `--gammas` γ values (all η and seeds there, one shard), for `--steps` steps.

    python bench/diagnostics.py presets/paper/mlp-L2.toml --steps 1000 --set \
        diagnostics.sharpness=true
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gamma_tui.cache import Cache
from gamma_tui.config import expand, load_preset
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions


def train_once(specs: list, steps: int) -> float:
    """Wall seconds to train `specs` for `steps` steps into a fresh cache."""
    with tempfile.TemporaryDirectory() as folder, Cache(Path(folder)) as cache:
        cache.register_sweep("bench", "", {}, specs, steps)
        options = TrainerOptions(torch.device("cpu"), checkpoint_every=10**9, commit_seconds=60)
        start = time.perf_counter()
        ShardTrainer(cache, "bench", options).train([s.run_id for s in specs])
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", type=Path)
    parser.add_argument("--set", action="append", default=[], help="preset override KEY=VALUE")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--gammas", type=int, default=2, help="first γ values of the grid")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = load_preset(args.preset, args.set)
    if not preset.diagnostics.enabled:
        parser.error("no diagnostic is on: add e.g. --set diagnostics.sharpness=true")
    steps = args.steps or preset.train.steps
    on = expand(preset)
    dtype = on[0].dtype
    kept = sorted({s.gamma for s in on if s.dtype == dtype})[: args.gammas]
    on = [s for s in on if s.gamma in kept and s.dtype == dtype]
    off = [s.model_copy(update={"diagnostics": type(s.diagnostics)()}) for s in on]
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        times["off"].append(train_once(off, steps))
        times["on"].append(train_once(on, steps))
    plain, measured = statistics.median(times["off"]), statistics.median(times["on"])
    settings = preset.diagnostics
    print(
        f"{preset.name}: {len(on)} runs (γ = {', '.join(f'{g:g}' for g in kept)}; {dtype}), "
        f"{steps} steps, {settings.iterations} iterations, probe batch {settings.probe_batch}, "
        f"{args.threads} thread(s)"
    )
    print(f"  training alone: {plain:.2f} s; with diagnostics: {measured:.2f} s (medians)")
    print(f"  diagnostics cost {100 * (measured - plain) / plain:.0f}% of training time")


if __name__ == "__main__":
    main()
