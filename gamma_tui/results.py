"""Reading sweeps back: resolve a SWEEP argument, a stored sweep's settings as one typed view,
and its runs as analysis inputs.

Shared by the CLI and the TUI so both show the same numbers (docs/architecture.md, invariant 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from gamma_tui.analysis import RunCurve
from gamma_tui.cache import Cache, RunInfo, SweepInfo
from gamma_tui.config import (
    AnalysisConfig,
    Preset,
    depth_label,
    load_preset,
    sweep_depth_label,
    sweep_optimizer,
)
from gamma_tui.states import INTERRUPTED, RUNNING

DEFAULT_WINDOW: float = AnalysisConfig.model_fields["window"].default
"""The preset's default η* window ([analysis] window), for sweeps whose config does not say."""


def resolve_sweep(cache: Cache, sweep: str) -> str:
    """The sweep name for a SWEEP argument: a name from `ls`, or a preset file's path."""
    path = Path(sweep)
    if path.suffix == ".toml" or path.is_file():
        return load_preset(path).name
    return cache.sweep(sweep).name


@dataclass(frozen=True)
class StoredSweep:
    """A stored sweep's settings the analysis reads, from its config validated back into the
    preset model.

    `preset` is None when the stored config no longer validates (a sweep written by an older
    version, or registered without a full config); `invalid` then says why, and the fields
    are read from the raw config with the preset's defaults, as earlier versions did.
    """

    info: SweepInfo
    preset: Preset | None
    invalid: str | None
    depth: int  # L of the η ∝ γ^(2/L) law
    optimizer: str
    window: float  # [analysis] window: η* averages the loss over [T·(1-window), T]
    relative_eta: bool  # the η grid holds multipliers c of η = c·γ^p
    width: int  # the N of the step size N·η (1 for the scalar chain)
    scalar_target: float | None  # data.target of a scalar-data sweep, else None
    model: str  # "KIND N<width> L<depth label>", as the run browser lists it
    dataset: str  # data.kind

    @property
    def name(self) -> str:
        """The sweep's name."""
        return self.info.name

    @property
    def steps(self) -> int:
        """The sweep's target steps."""
        return self.info.steps

    @classmethod
    def of(cls, info: SweepInfo) -> StoredSweep:
        """The typed view of a stored sweep."""
        try:
            preset = Preset.model_validate(info.config)
        except ValidationError as error:
            return _from_raw(
                info, f"stored config does not validate: {error.error_count()} error(s)"
            )
        network, data = preset.network, preset.data
        return cls(
            info=info,
            preset=preset,
            invalid=None,
            depth=depth_label(network),
            optimizer=preset.train.optimizer,
            window=float(preset.analysis.window),
            relative_eta=preset.eta.scale == "relative",
            width=1 if network.kind == "chain" else int(network.width),
            scalar_target=float(data.target) if data.kind == "scalar" else None,
            model=f"{network.kind} N{network.width} L{depth_label(network)}",
            dataset=data.kind,
        )


def _from_raw(info: SweepInfo, why: str) -> StoredSweep:
    """The view of a config that does not validate: each field read with the preset's default."""
    config = info.config
    network: dict[str, Any] = config.get("network", {})
    data: dict[str, Any] = config.get("data", {})
    analysis: dict[str, Any] = config.get("analysis", {})
    return StoredSweep(
        info=info,
        preset=None,
        invalid=why,
        depth=sweep_depth_label(config),
        optimizer=sweep_optimizer(config),
        window=float(analysis.get("window", DEFAULT_WINDOW)),
        relative_eta=config.get("eta", {}).get("scale") == "relative",
        width=1 if network.get("kind") == "chain" else int(network.get("width", 1)),
        scalar_target=float(data.get("target", 1.0)) if data.get("kind") == "scalar" else None,
        model=f"{network.get('kind', '?')} N{network.get('width', '?')} "
        f"L{sweep_depth_label(config)}",
        dataset=str(data.get("kind", "?")),
    )


def stored_sweep(cache: Cache, sweep: str) -> StoredSweep:
    """The typed view of the named sweep."""
    return StoredSweep.of(cache.sweep(sweep))


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
        state = RUNNING if run.state == INTERRUPTED else run.state
        loaded.append(
            RunCurve(
                run.gamma, run.eta, run.seed, state, run.diverged_step, steps[keep], loss[keep]
            )
        )
    return loaded
