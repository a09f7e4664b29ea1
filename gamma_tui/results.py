"""Reading sweeps back: resolve a SWEEP argument and load its runs as analysis inputs.

Shared by the CLI and the TUI so both show the same numbers (DESIGN.md invariant 7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gamma_tui.analysis import RunCurve
from gamma_tui.cache import Cache, RunInfo
from gamma_tui.config import load_preset


def resolve_sweep(cache: Cache, sweep: str) -> str:
    """The sweep name for a SWEEP argument: a name from `ls`, or a preset file's path."""
    path = Path(sweep)
    if path.suffix == ".toml" or path.is_file():
        return load_preset(path).name
    return cache.sweep(sweep).name


def load_run_curves(cache: Cache, sweep: str) -> tuple[list[RunInfo], list[RunCurve]]:
    """The sweep's runs and their curves, truncated to the sweep's target steps."""
    info = cache.sweep(sweep)
    runs = cache.runs(sweep)
    return runs, run_curves(cache, runs, info.steps)


def run_curves(cache: Cache, runs: list[RunInfo], steps_target: int) -> list[RunCurve]:
    """The runs' curves as analysis inputs, truncated to `steps_target`."""
    curves = cache.curves([r.run_id for r in runs])
    loaded = []
    for run in runs:
        curve = curves.get(run.run_id)
        steps = curve.steps if curve else np.zeros(0)
        loss = curve.loss if curve else np.zeros(0, dtype=np.float32)
        keep = steps < steps_target
        state = "running" if run.state == "interrupted" else run.state
        loaded.append(
            RunCurve(
                run.gamma, run.eta, run.seed, state, run.diverged_step, steps[keep], loss[keep]
            )
        )
    return loaded
