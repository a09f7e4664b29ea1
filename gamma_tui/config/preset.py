"""The whole preset (`Preset`): its sections, the checks that span sections, and its size.

`Preset` validation refuses combinations no run could train (a loss without labels, an image
network on vectors, diagnostics that cannot be measured) and grids too large to be meant.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

from pydantic import Field, field_validator, model_validator

from gamma_tui.config.errors import PresetError
from gamma_tui.config.sections import (
    FILE_DATASETS,
    IMAGE_MODELS,
    MAX_GRID_RUNS,
    NTK_JACOBIAN_BYTES,
    AnalysisConfig,
    BackendConfig,
    CutoffConfig,
    DataConfig,
    DiagnosticsConfig,
    EtaRange,
    LogRange,
    NetworkConfig,
    RefineConfig,
    Strict,
    TrainConfig,
)


class Preset(Strict):
    """A whole sweep: network, data, training, the γ and η grids, seeds and the cut-off."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    network: NetworkConfig = NetworkConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    gamma: LogRange
    eta: EtaRange
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=1000)
    cutoff: CutoffConfig = CutoffConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    backend: BackendConfig = BackendConfig()
    refine: RefineConfig | None = None
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_to_list(cls, value: Any) -> Any:
        """`seeds = 3` means seeds 0, 1, 2."""
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 1000:
                raise ValueError("a seed count must be between 1 and 1000")
            return list(range(value))
        return value

    @field_validator("seeds")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or min(value) < 0 or max(value) >= 2**31:
            raise ValueError("seeds must be distinct integers in [0, 2^31), e.g. [0, 1, 2]")
        return value

    @model_validator(mode="after")
    def _task_fits_loss(self) -> Preset:
        if self.train.loss == "xent" and self.data.kind not in ("teacher_classes", *FILE_DATASETS):
            raise ValueError(
                "loss 'xent' needs class labels: use data.kind = 'teacher_classes' or a dataset"
            )
        if self.data.kind in FILE_DATASETS and self.data.kind != "mnist1d" and not self.data.path:
            raise ValueError(f"data.kind = '{self.data.kind}' reads local files: set data.path")
        if self.network.kind in IMAGE_MODELS and self.data.kind not in FILE_DATASETS:
            raise ValueError(
                f"network.kind = '{self.network.kind}' needs an image dataset in data.kind"
            )
        if self.network.kind == "resnet18" and self.train.batch_size < 2:
            raise ValueError("network.kind = 'resnet18' needs train.batch_size >= 2 (BatchNorm)")
        if self.data.kind == "scalar" and self.data.test_size:
            raise ValueError("the scalar toy model has no test set: set data.test_size = 0")
        if (self.network.kind == "chain") != (self.data.kind == "scalar"):
            raise ValueError(
                "network.kind = 'chain' (the scalar toy model) goes with data.kind = 'scalar'"
            )
        if self.data.kind == "scalar" and (self.data.outputs, self.train.batch_size) != (1, 1):
            raise ValueError("the scalar toy model needs data.outputs = 1 and train.batch_size = 1")
        if self.data.kind == "teacher_classes" and self.data.outputs < 2:
            raise ValueError("data.outputs must be >= 2 for 'teacher_classes'")
        explore = self._explore_seeds
        if explore is not None and explore > len(self.seeds):
            raise ValueError(
                f"refine.explore_seeds = {explore} but the preset has {len(self.seeds)} seed(s):"
                f" at most {len(self.seeds)}, or leave it out for 1"
            )
        problem = diagnostics_problem(self)
        if problem:
            raise ValueError(problem)
        if self.run_count() > MAX_GRID_RUNS:
            raise ValueError(
                f"the grid expands to {self.run_count()} runs (limit {MAX_GRID_RUNS}); "
                "narrow gamma/eta ranges or lower per_decade"
            )
        return self

    @property
    def grid_seeds(self) -> list[int]:
        """The seeds the grid trains: all of them, or the first [refine] explore_seeds (the
        refinement rounds add the other seeds where they decide η* and η_div)."""
        explore = self._explore_seeds
        return self.seeds if explore is None else self.seeds[:explore]

    @property
    def _explore_seeds(self) -> int | None:
        """[refine] explore_seeds, None without refinement or when every seed explores."""
        return self.refine.explore_seeds if self.refine is not None else None

    def run_count(self) -> int:
        """Number of runs the grid expands to (before any cut-off)."""
        return len(self.gamma.values()) * len(self.eta.values()) * len(self.grid_seeds)

    @cached_property
    def module_digest(self) -> str | None:
        """The digest of a kind = "module" factory's source file (part of its run ids), read
        from network.path or sys.path without importing it; None for the built-in kinds."""
        network = self.network
        if network.kind != "module" or network.factory is None:
            return None
        from gamma_tui.factories import FactoryError, digest, locate

        try:
            return digest(locate(network.factory, [network.path] if network.path else []).file)
        except FactoryError as error:
            raise PresetError(f"{self.name}: key 'network.factory': {error}") from None


def diagnostics_problem(preset: Preset) -> str | None:
    """Why the preset's [diagnostics] cannot be measured, or None if they can (or are off)."""
    settings, data, network = preset.diagnostics, preset.data, preset.network
    if not settings.enabled:
        return None
    if data.from_files and settings.probe_batch > data.test_size:
        return (
            f"diagnostics.probe_batch = {settings.probe_batch} but file datasets take the probe "
            f"batch from the held-out samples and data.test_size = {data.test_size}; lower "
            "diagnostics.probe_batch or raise data.test_size"
        )
    if settings.ntk and network.kind == "module":
        return (
            "diagnostics.ntk sizes each member's probe-batch Jacobian from the architecture, "
            "which gamma-tui does not know for network.kind = 'module'; turn diagnostics.ntk "
            "off (sharpness, trace and directional work on every model)"
        )
    if settings.ntk and network.kind in IMAGE_MODELS:
        return (
            f"diagnostics.ntk builds each member's probe-batch Jacobian explicitly, which "
            f"network.kind = '{network.kind}' cannot afford; turn diagnostics.ntk off (sharpness, "
            "trace and directional work on every model)"
        )
    if settings.ntk:
        scalar = data.kind == "scalar"
        inputs, outputs = (1, 1) if scalar else (data.input_dim, data.outputs)
        if data.from_files:
            found = data.sample_shape()
            inputs, outputs = (math.prod(found[0]), found[1]) if found else (inputs, outputs)
        width = 1 if network.kind == "chain" else network.width
        widths = [inputs, *[width] * (network.depth - 1), outputs]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        params = sum(a * b + (b if network.bias else 0) for a, b in pairs)
        samples = 1 if scalar else settings.probe_batch  # the toy model has one sample
        size = 4 * samples * outputs * params
        if size > NTK_JACOBIAN_BYTES:
            return (
                f"diagnostics.ntk: the probe-batch Jacobian is {size / 2**30:.1f} GiB per member "
                f"({samples} samples x {outputs} outputs x {params:,} parameters), over the "
                f"{NTK_JACOBIAN_BYTES / 2**30:.0f} GiB limit; lower diagnostics.probe_batch or "
                "turn diagnostics.ntk off"
            )
    return None
