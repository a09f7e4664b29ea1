"""From a preset to runs: the γ×η grid, one frozen `RunSpec` per (γ, η, seed), and run ids.

A RunSpec's `run_id` is the hash of everything that changes the result of training (never
paths, devices or worker counts), which is what makes the cache content-addressed. Also the
η ∝ γ^p law that places a relative η grid, read by the analysis and both front ends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from gamma_tui.config.preset import Preset
from gamma_tui.config.sections import (
    DEPTH_LABELS,
    DataConfig,
    DiagnosticsConfig,
    NetworkConfig,
    Strict,
    depth_label,
    round_grid_value,
)

SPEC_VERSION = 1
"""Bumped whenever the parameterization or training loop changes results: it is part of run ids."""


class RunSpec(Strict):
    """Everything that determines one run's result; its hash is the run id."""

    network: NetworkConfig
    data: DataConfig
    batch_size: int
    loss: Literal["mse", "xent"]
    optimizer: Literal["sgd", "signsgd", "adam"]
    dtype: Literal["float32", "float64"]
    divergence_factor: float
    curve_cap: int
    gamma: float
    eta: float
    seed: int
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    """What the worker measures besides the loss; left out of the run id (see _identity)."""
    module_digest: str | None = None
    """network.kind = "module": the digest of the factory's source file (Preset.module_digest);
    part of the run id, so edited code never reuses old runs."""

    @property
    def run_id(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of this spec and SPEC_VERSION.

        A dataset's location is not part of it: the same data read from another folder (or
        machine) gives the same runs.
        """
        return _digest({"v": SPEC_VERSION, **self._identity()})

    @property
    def shard_key(self) -> str:
        """Runs with equal shard keys share architecture, data stream and dtype: one ensemble."""
        shared = {k: v for k, v in self._identity().items() if k not in ("gamma", "eta", "seed")}
        shared["path"] = self.data.path  # one ensemble reads one copy of the data
        shared["test_path"] = self.data.test_path
        if self.diagnostics.enabled:  # one ensemble measures one set of diagnostics
            shared["diagnostics"] = self.diagnostics.model_dump()
        return _digest({"v": SPEC_VERSION, **shared})

    def _identity(self) -> dict[str, Any]:
        """The fields that determine the result: settings a run does not use are left out."""
        unset = {"module_digest"} if self.module_digest is None else set()
        dump = self.model_dump(exclude={"diagnostics", *unset})  # built-in kinds: ids as before
        for section in ("network", "data"):
            for key in getattr(self, section).unused_keys():
                dump[section].pop(key)
        return dump


def sweep_depth_label(config: Mapping[str, Any]) -> int:
    """`depth_label` of a sweep's stored config (a Preset dumped to JSON)."""
    network = config.get("network", {})
    if network.get("depth_label") is not None:
        return int(network["depth_label"])
    return DEPTH_LABELS.get(network.get("kind", "mlp"), int(network.get("depth", 2)))


def sweep_optimizer(config: Mapping[str, Any]) -> str:
    """The optimizer of a sweep's stored config."""
    return str(config.get("train", {}).get("optimizer", "sgd"))


def lazy_exponent(optimizer: str = "sgd") -> float:
    """p of η* ∝ γ^p for γ << 1: 2 for SGD, 1 for the scale-free SignSGD and Adam.

    SGD's step on a weight is η times a gradient ∝ 1/γ, and the output moves by that over γ:
    η/γ². SignSGD and Adam steps do not scale with the gradient: the output moves by η/γ.
    In the rich regime the weights must grow by γ^(1/L): η* ∝ γ^(2/L) for SGD, γ^(1/L) for
    the others (docs/science.md §1).
    """
    return 2.0 if optimizer == "sgd" else 1.0


def predicted_eta_exponent(gamma: float, depth: int, optimizer: str = "sgd") -> float:
    """The exponent p in η* ∝ γ^p: lazy_exponent below γ = 1, lazy_exponent/L above."""
    lazy = lazy_exponent(optimizer)
    return lazy if gamma < 1.0 else lazy / depth


def eta_values(preset: Preset, gamma: float) -> list[float]:
    """The η grid at one γ: absolute, or c·γ^p for every multiplier c in the η range."""
    base = preset.eta.values()
    if preset.eta.scale == "absolute":
        return base
    scale = gamma ** predicted_eta_exponent(
        gamma, depth_label(preset.network), preset.train.optimizer
    )
    return [round_grid_value(c * scale) for c in base]


def resolve_dtype(preset: Preset, gamma: float) -> Literal["float32", "float64"]:
    """float64 when γ < 1e-2 under the auto policy (float32 cannot resolve the tiny updates)."""
    if preset.train.dtype != "auto":
        return preset.train.dtype
    return "float64" if gamma < 1e-2 else "float32"


def expand(preset: Preset) -> list[RunSpec]:
    """One RunSpec per (γ, η, seed) of the preset's grid (its grid_seeds), γ-major, η
    descending, then seed."""
    return [
        run_spec(preset, gamma, eta, seed)
        for gamma in preset.gamma.values()
        for eta in sorted(eta_values(preset, gamma), reverse=True)
        for seed in preset.grid_seeds
    ]


def run_spec(preset: Preset, gamma: float, eta: float, seed: int) -> RunSpec:
    """The RunSpec of one (γ, η, seed) with the preset's settings (grid point or refinement)."""
    return RunSpec(
        network=preset.network,
        data=preset.data,
        batch_size=preset.train.batch_size,
        loss=preset.train.loss,
        optimizer=preset.train.optimizer,
        dtype=resolve_dtype(preset, gamma),
        divergence_factor=preset.train.divergence_factor,
        curve_cap=preset.train.curve_cap,
        gamma=gamma,
        eta=eta,
        seed=seed,
        diagnostics=preset.diagnostics,
        module_digest=preset.module_digest,
    )


def eta_scale(preset: Preset, gamma: float) -> float:
    """The factor γ^p of a relative η grid at γ (1 for an absolute grid): η = c · eta_scale."""
    if preset.eta.scale == "absolute":
        return 1.0
    return gamma ** predicted_eta_exponent(
        gamma, depth_label(preset.network), preset.train.optimizer
    )


def _digest(payload: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of canonical JSON."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
