"""Presets: the pydantic schema of a sweep, its γ×η grid, and the RunSpecs it expands to.

A preset is a TOML file (see presets/). `load_preset` parses and validates it and turns every
problem into one `PresetError` whose message names the file, the key path and a fix, so the CLI
can print it and exit 2 instead of showing a traceback. `expand` turns a preset into one frozen
`RunSpec` per (γ, η, seed); a RunSpec's `run_id` is the hash of everything that changes the
result of training (never paths, devices or worker counts), which is what makes the cache
content-addressed.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

SPEC_VERSION = 1
"""Bumped whenever the parameterization or training loop changes results: it is part of run ids."""

MAX_GRID_RUNS = 100_000
"""A preset that expands to more runs than this is rejected as a likely typo."""

SIGNIFICANT_DIGITS = 10
"""Grid values are rounded to this many digits so equal points from different presets share runs."""


class Strict(BaseModel):
    """Base of every preset section: unknown keys are errors and values are immutable."""

    # strict: no silent coercion ("3" -> 3, true -> 1); no NaN/inf in any number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NetworkConfig(Strict):
    """The trained network: kind, width N, depth L (number of weight matrices), bias, activation.

    kind "cnn" is the reference code's CNN (two convs of width N and 2N, a linear layer of
    width 8N, μP readout; depth label L = 4; image datasets only). kind "resnet18" is the
    reference's CIFAR ResNet-18 (widths 64..512 × N/64, BatchNorm; L = 3). kind "vit" is a
    small pre-norm vision transformer of width N with `depth` blocks of `heads` heads on
    `patch`×`patch` patches (L = 3 unless `depth_label` says otherwise). kind "chain" is the
    scalar deep-linear toy model of PAPER.md §5: f = (Π w_l - 1)/γ with every w_l(0) = 1,
    trained on data.kind = "scalar" (width, bias and activation unused). kind "module" is your
    own torch.nn.Module: `factory` names the function that builds it, which gets
    input_shape, outputs, width and `kwargs` as keyword arguments (gamma_tui.factories; depth,
    bias and activation unused, L = depth_label or depth). `depth_label` overrides the L of
    the η ∝ γ^(2/L) guides; it never changes training.
    """

    kind: Literal["mlp", "chain", "cnn", "resnet18", "vit", "module"] = "mlp"
    width: int = Field(128, ge=1, le=1_000_000)
    depth: int = Field(3, ge=1, le=64)
    bias: bool = False
    activation: Literal["relu", "linear"] = "relu"
    heads: int = Field(4, ge=1, le=1024, description="vit: attention heads (divide width)")
    patch: int = Field(4, ge=1, le=1024, description="vit: patch side in pixels")
    depth_label: int | None = Field(None, ge=1, le=64, description="L of the η* guides")
    factory: str | None = Field(
        None,
        pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$",
        description="module: 'package.module:function' that returns the torch.nn.Module",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="module: more keyword arguments of the factory"
    )
    path: str | None = Field(
        None,
        min_length=1,
        description="module: folder holding the factory's module (default: the preset's, "
        "then sys.path); stored resolved, never part of run ids",
    )

    @field_validator("kwargs")
    @classmethod
    def _plain_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Values that JSON keeps exactly (they are part of run ids); no reserved names."""
        from gamma_tui.factories import RESERVED_ARGUMENTS

        taken = sorted(set(value) & set(RESERVED_ARGUMENTS))
        if taken:
            raise ValueError(
                f"{', '.join(taken)}: gamma-tui passes these to the factory itself "
                "(width is network.width); remove them from network.kwargs"
            )
        for key, item in value.items():
            if not _plain(item):
                raise ValueError(
                    f"network.kwargs.{key} = {item!r}: use strings, numbers, booleans, "
                    "arrays and tables (no dates or times)"
                )
        return value

    @model_validator(mode="after")
    def _kind_settings(self) -> NetworkConfig:
        if self.kind == "vit" and self.width % self.heads:
            raise ValueError(
                f"network.width ({self.width}) must be a multiple of network.heads ({self.heads})"
            )
        if (self.kind == "module") != (self.factory is not None):
            raise ValueError(
                "network.kind = 'module' needs network.factory = 'package.module:function' "
                "(and network.factory needs network.kind = 'module')"
            )
        return self

    def unused_keys(self) -> tuple[str, ...]:
        """Keys this kind ignores: left out of run ids, so they never split identical runs."""
        unused = ["depth_label", "path"]  # only the guides read L; the code's digest counts
        if self.kind != "vit":
            unused += ["heads", "patch"]
        if self.kind != "module":
            unused += ["factory", "kwargs"]
        unused += {
            "chain": ["width", "bias", "activation"],  # width 1, no bias, linear by definition
            "cnn": ["depth", "activation"],  # fixed layout, ReLU
            "resnet18": ["depth", "activation", "bias"],  # fixed layout, ReLU, BatchNorm
            "module": ["depth", "activation", "bias"],  # the factory defines the network
        }.get(self.kind, [])
        return tuple(unused)


FILE_DATASETS = ("mnist1m", "cifar5m", "npz", "mnist1d")
"""Data kinds read by gamma_tui.datasets; the others are synthetic streams."""

KNOWN_SHAPES = {"mnist1m": ((1, 28, 28), 10), "cifar5m": ((3, 32, 32), 10), "mnist1d": ((40,), 10)}
"""(sample shape, classes) of datasets whose format fixes them."""


DEPTH_LABELS = {"cnn": 4, "resnet18": 3, "vit": 3}
"""The L of the η ∝ γ^(2/L) law for kinds whose depth is fixed by the architecture.

The CNN's 4 and the ResNet's 3 are the reference code's labels; the ViT's 3 follows the ResNet
(normalized residual network) and is a guess to be checked against the measured η*: set
network.depth_label to change it."""

IMAGE_MODELS = ("cnn", "resnet18", "vit")
"""Network kinds that take (C, H, W) images, so they need an image dataset."""


class DataConfig(Strict):
    """The online data stream (a fresh batch every step) and the held-out test set.

    Synthetic kinds draw Gaussian inputs: teacher_mlp, teacher_classes and teacher_linear (see
    engine/data.py), teacher_powerlaw (a linear teacher on inputs with covariance spectrum
    k^-alpha) and single_index (y = (w·x)^degree). test_size > 0 evaluates every run on that
    many held-out samples at steps 0, 1, 2, 5, 10, 20, 50, ... and at its last step: fresh
    teacher samples, the file at test_path (CIFAR-10 binary, MNIST IDX, .npz) or, for a dataset
    without test_path, its last test_size samples (which training then never reaches).
    """

    kind: Literal[
        "teacher_mlp",
        "teacher_classes",
        "teacher_linear",
        "teacher_powerlaw",
        "single_index",
        "scalar",
        "mnist1m",
        "cifar5m",
        "npz",
        "mnist1d",
    ] = "teacher_mlp"
    input_dim: int = Field(32, ge=1, le=1_000_000)
    hidden: int = Field(4, ge=1, le=100_000, description="teacher hidden units k")
    outputs: int = Field(1, ge=1, le=100_000, description="teacher outputs C")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    target: float = Field(1.0, description="the target y of the scalar toy model")
    path: str | None = Field(None, description="local folder or file of a file dataset")
    offset_batches: int = Field(0, ge=0, le=10**9, description="file datasets: batches to skip")
    alpha: float = Field(1.5, gt=0, le=10, description="teacher_powerlaw: spectrum k^-alpha")
    degree: int = Field(2, ge=1, le=8, description="single_index: y = (w·x)^degree")
    test_size: int = Field(0, ge=0, le=1_000_000, description="held-out samples; 0: none")
    test_path: str | None = Field(None, description="held-out set file or folder")

    def unused_keys(self) -> tuple[str, ...]:
        """Keys that do not change this stream's samples: left out of run ids."""
        unused = ["path", "test_path"]  # the same data elsewhere gives the same runs
        if self.offset_batches == 0:
            unused.append("offset_batches")
        if self.kind != "scalar":
            unused.append("target")  # only the toy model has a fixed target
        if self.kind != "teacher_powerlaw":
            unused.append("alpha")
        if self.kind != "single_index":
            unused.append("degree")
        if self.test_size == 0:
            unused += ["test_size"]
        if self.from_files or self.kind == "scalar":  # the data fix inputs, classes and order
            unused += ["input_dim", "hidden", "outputs", "seed"]
        elif self.kind not in ("teacher_mlp", "teacher_classes"):
            unused.append("hidden")  # only the ReLU teacher has hidden units
        return tuple(unused)

    @property
    def from_files(self) -> bool:
        """Whether samples come from a dataset (their input size and classes come from it)."""
        return self.kind in FILE_DATASETS

    def sample_shape(self) -> tuple[tuple[int, ...], int] | None:
        """(input shape, outputs) of one sample, or None when only an unreadable file could say."""
        if self.kind == "scalar":
            return (1,), 1
        if not self.from_files:
            return (self.input_dim,), self.outputs
        if self.kind in KNOWN_SHAPES:
            return KNOWN_SHAPES[self.kind]
        from gamma_tui.datasets import DatasetError, open_dataset

        try:
            info = open_dataset(self.kind, self.path).info
        except (DatasetError, OSError, ValueError):
            return None
        return info.input_shape, info.classes


class TrainConfig(Strict):
    """How each run trains: online SGD settings, precision, device and cache cadence."""

    batch_size: int = Field(32, ge=1, le=1_000_000)
    steps: int = Field(1000, ge=1, le=10**9)
    loss: Literal["mse", "xent"] = "mse"
    optimizer: Literal["sgd", "signsgd", "adam"] = "sgd"
    dtype: Literal["auto", "float32", "float64"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = Field(
        False, description="torch.compile the training step; falls back to eager on failure"
    )
    checkpoint_every: int = Field(250, ge=1, le=10**9)
    curve_cap: int = Field(10_000, ge=16, le=10**8)
    divergence_factor: float = Field(1e6, gt=1.0)

    @field_validator("divergence_factor")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number, e.g. 1e6")
        return value


class LogRange(Strict):
    """A log-spaced range [min, max] with `per_decade` points per factor of ten."""

    min: float = Field(gt=0)
    max: float = Field(gt=0)
    per_decade: float = Field(2.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> LogRange:
        for name in ("min", "max", "per_decade"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number")
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}); swap them")
        return self

    def values(self) -> list[float]:
        """The grid points from min to max inclusive, rounded to SIGNIFICANT_DIGITS."""
        lo, hi = math.log10(self.min), math.log10(self.max)
        count = int(math.floor((hi - lo) * self.per_decade + 1e-9)) + 1
        return [_round(10 ** (lo + i / self.per_decade)) for i in range(count)]


class EtaRange(LogRange):
    """The η grid: absolute values, or multipliers c of the predicted scaling η = c·γ^p."""

    scale: Literal["absolute", "relative"] = "absolute"
    per_decade: float = Field(4.0, gt=0, le=1000)


class CutoffConfig(Strict):
    """The reference code's adaptive cut-off: skip η `decades` or more below the first stable η."""

    decades: float | None = Field(None, gt=0)


class RefineConfig(Strict):
    """Adaptive refinement: after the grid, rounds of extra η (and γ) where the answer is decided.

    Each round adds η values between existing neighbours around every γ's η* until its interval
    (seed spread with the local spacing) is within `eta_precision` decades or the seed spread
    alone exceeds it, and bisects the bracket of η_div until its half-width is within it. With
    `gamma`, a γ column is added where the lazy and rich fits of η* cross. `max_runs` caps the
    sweep's runs, grid included. Added runs are ordinary runs with their own ids.
    """

    eta_precision: float = Field(0.05, gt=0, le=10)
    max_runs: int = Field(400, ge=1, le=MAX_GRID_RUNS)
    gamma: bool = False


class AnalysisConfig(Strict):
    """How `fit`, `report` and the app rank η: the loss averaged over [T·(1-window), T]."""

    window: float = Field(0.05, gt=0, le=1)


NTK_JACOBIAN_BYTES = 2**31
"""diagnostics.ntk builds each member's probe-batch Jacobian explicitly; above this many bytes
(float32) it is refused before any worker starts."""


class DiagnosticsConfig(Strict):
    """Curvature diagnostics measured at the evaluation steps (engine/diagnostics.py).

    Never part of run ids: they use a fixed probe batch of their own, no training batch and no
    training RNG, so a run's loss curve is the same with them on or off. The probe batch comes
    from a generator training never uses (synthetic streams), the held-out samples (file
    datasets: the first `probe_batch` of them) or the toy model's one sample.
    """

    sharpness: bool = Field(False, description="top Hessian eigenvalue of the training loss")
    trace: bool = Field(False, description="Hessian trace (Hutchinson)")
    ntk: bool = Field(
        False, description="top NTK / Gauss-Newton eigenvalue and kernel-target alignment"
    )
    directional: bool = Field(False, description="gᵀHg / ‖g‖² along the probe gradient")
    probe_batch: int = Field(256, ge=1, le=100_000, description="samples of the probe batch")
    iterations: int = Field(20, ge=1, le=1000, description="Lanczos steps / Hutchinson probes")

    @property
    def enabled(self) -> bool:
        """Whether any diagnostic is measured."""
        return self.sharpness or self.trace or self.ntk or self.directional


class BackendConfig(Strict):
    """Where `gamma-tui run` trains the shards; never part of run ids (it never changes results).

    Command-line flags win over these keys (`--backend`, `--workers`, `--jobs-dir`,
    `--slurm-cluster`, `--ray-address`), and `--slurm KEY=VALUE` pairs merge over `slurm`.
    """

    kind: Literal["local", "slurm", "ray"] = Field(
        "local", description="local worker processes, a SLURM job array (submitit) or Ray tasks"
    )
    workers: int | None = Field(
        None, ge=1, le=100_000, description="worker processes, array tasks or Ray tasks; None: 1"
    )
    jobs_dir: str | None = Field(
        None, min_length=1, description="slurm: job folders on the filesystem the nodes share"
    )
    slurm: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="submitit parameters, e.g. slurm_partition = 'gpu'"
    )
    slurm_cluster: Literal["slurm", "local", "debug"] | None = Field(
        None, description="submitit's cluster; None: SLURM when present, else local"
    )
    ray_address: str | None = Field(None, min_length=1, description="a Ray cluster's address")
    slurm_max_num_timeout: int = Field(
        3, ge=0, le=1000, description="slurm: requeues of a job that timed out (preemptions: any)"
    )
    slurm_signal_delay_s: int = Field(
        90, ge=15, le=86_400, description="slurm: the checkpoint signal, seconds before the limit"
    )

    @field_validator("slurm", mode="before")
    @classmethod
    def _submitit_parameters(cls, value: Any) -> Any:
        """One clear message per bad parameter instead of one per member of the value union."""
        if not isinstance(value, dict):
            return value  # the dict type check reports it
        for key, item in value.items():
            if not (isinstance(key, str) and key.isascii() and key.isidentifier()):
                raise ValueError(
                    f"parameter name {key!r} is not an identifier; use submitit's names, "
                    "e.g. slurm_partition or timeout_min"
                )
            scalar = isinstance(item, str | int | float | bool)
            if not scalar or (isinstance(item, float) and not math.isfinite(item)):
                raise ValueError(
                    f"parameter {key!r} = {item!r}: a value must be a string, integer, finite "
                    "number or boolean"
                )
        return value


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
        problem = diagnostics_problem(self)
        if problem:
            raise ValueError(problem)
        if self.run_count() > MAX_GRID_RUNS:
            raise ValueError(
                f"the grid expands to {self.run_count()} runs (limit {MAX_GRID_RUNS}); "
                "narrow gamma/eta ranges or lower per_decade"
            )
        return self

    def run_count(self) -> int:
        """Number of runs the grid expands to (before any cut-off)."""
        return len(self.gamma.values()) * len(self.eta.values()) * len(self.seeds)

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


class PresetError(Exception):
    """A preset could not be used; the message names the file, the key path and a fix."""


def depth_label(network: NetworkConfig) -> int:
    """L of the η ∝ γ^(2/L) law: network.depth_label, network.depth, or the architecture's."""
    if network.depth_label is not None:
        return network.depth_label
    return DEPTH_LABELS.get(network.kind, network.depth)


def image_problem(network: NetworkConfig, shape: tuple[int, ...]) -> str | None:
    """Why `network` cannot train on samples of `shape` (a dataset's), or None if it can."""
    kind = network.kind
    if kind not in IMAGE_MODELS:
        return None
    if len(shape) != 3:
        return (
            f"network.kind = '{kind}' needs images (C, H, W), but this dataset's samples have "
            f"shape {shape}; use an MLP or an image dataset"
        )
    _, height, width = shape
    if kind == "cnn" and min(height, width) < 10:
        return (
            f"{height}×{width} images are too small for the CNN (two 3×3 convs and 2×2 pools "
            "need at least 10×10)"
        )
    if kind == "vit" and (height % network.patch or width % network.patch):
        return (
            f"network.patch = {network.patch} does not divide the {height}×{width} images; "
            "choose a patch size that divides both"
        )
    return None


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
    the others (PAPER.md §1).
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
    return [_round(c * scale) for c in base]


def resolve_dtype(preset: Preset, gamma: float) -> Literal["float32", "float64"]:
    """float64 when γ < 1e-2 under the auto policy (float32 cannot resolve the tiny updates)."""
    if preset.train.dtype != "auto":
        return preset.train.dtype
    return "float64" if gamma < 1e-2 else "float32"


def expand(preset: Preset) -> list[RunSpec]:
    """One RunSpec per (γ, η, seed) of the preset's grid, γ-major, η descending, then seed."""
    return [
        run_spec(preset, gamma, eta, seed)
        for gamma in preset.gamma.values()
        for eta in sorted(eta_values(preset, gamma), reverse=True)
        for seed in preset.seeds
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


def load_preset(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Preset:
    """Read, override and validate a preset file; every failure is one PresetError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file; list presets with `ls presets/`") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PresetError(f"{path}: cannot read the preset ({error})") from None
    return parse_preset(
        text, source=str(path), overrides=overrides, default_name=path.stem, folder=path.parent
    )


def parse_preset(
    text: str,
    source: str = "<preset>",
    overrides: list[str] | tuple[str, ...] = (),
    default_name: str = "preset",
    folder: Path | None = None,
) -> Preset:
    """Validate preset TOML text; `source` is the file name used in error messages, `folder`
    the preset's folder (where a kind = "module" factory is looked for first)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PresetError(
            f"{source}: invalid TOML: {error}. Fix the syntax at that line."
        ) from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise PresetError(f"{source}: invalid TOML: nested too deeply") from None
    for override in overrides:
        _apply_override(raw, override, source)
    raw.setdefault("name", _safe_name(default_name))
    try:
        preset = Preset.model_validate(raw)
    except ValidationError as error:
        raise PresetError(_describe(error, source)) from None
    except (ValueError, OverflowError) as error:
        raise PresetError(f"{source}: {error}") from None
    return _with_factory_folder(preset, source, folder)


def _with_factory_folder(preset: Preset, source: str, folder: Path | None) -> Preset:
    """A kind = "module" preset with network.path set to the absolute folder its factory's
    module was found in (the file is read, never imported), so a copy of the preset elsewhere
    (CACHE/presets, a SLURM node) finds the same code; other presets as they are."""
    network = preset.network
    if network.factory is None:
        return preset
    from gamma_tui.factories import FactoryError, locate

    base = folder if folder is not None else Path.cwd()
    folders = [str(base / network.path)] if network.path else [str(base)]
    try:
        found = locate(network.factory, folders)
    except FactoryError as error:
        raise PresetError(f"{source}: key 'network.factory': {error}") from None
    update = {"network": network.model_copy(update={"path": str(found.root)})}
    resolved = preset.model_copy(update=update)
    resolved.module_digest  # noqa: B018 -- read the file now: a problem is a preset error
    return resolved


def _apply_override(raw: dict[str, Any], override: str, source: str) -> None:
    """Apply one `key.path=value` override; the value is read as TOML, else as a string."""
    key, sep, value_text = override.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(k.strip() for k in keys):
        raise PresetError(f"--set {override!r}: expected KEY.PATH=VALUE, e.g. train.steps=2000")
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    except RecursionError:
        raise PresetError(f"--set {key}: the value is nested too deeply") from None
    node = raw
    for part in keys[:-1]:
        child = node.setdefault(part.strip(), {})
        if not isinstance(child, dict):
            raise PresetError(f"{source}: --set {key}: '{part}' is a value, not a table")
        node = child
    node[keys[-1].strip()] = value


def _describe(error: ValidationError, source: str) -> str:
    """One readable message for a pydantic error: file, key path, problem and a fix."""
    lines = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: key '{loc}': {_hint(item)}")
    return "\n".join(lines)


def _hint(item: Any) -> str:
    """The problem and a fix for one pydantic error item."""
    kind, message = item["type"], item["msg"]
    value = item.get("input")
    if kind == "extra_forbidden":
        key = item["loc"][-1]
        if len(item["loc"]) > 1 and key in Preset.model_fields:
            annotation = Preset.model_fields[key].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                return f"unknown key here; '{key}' is a table of its own: start it with [{key}]"
            return (
                f"unknown key here; '{key}' is a top-level key: move it above "
                "the first [table] header"
            )
        return "unknown key; remove it or check its spelling against presets/quickstart.toml"
    if kind == "missing":
        return "required key is missing; add it (see presets/quickstart.toml)"
    if kind == "literal_error":
        return f"{message} (got {value!r})"
    if kind == "value_error":
        return str(message).removeprefix("Value error, ")
    return f"{message} (got {value!r})"


def _safe_name(stem: str) -> str:
    """A valid preset name derived from a file stem."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).lstrip("._-")
    return (cleaned or "preset")[:64]


def round_grid_value(value: float) -> float:
    """A γ or η rounded as grid values are, so equal points of different sweeps share runs."""
    return _round(value)


def eta_scale(preset: Preset, gamma: float) -> float:
    """The factor γ^p of a relative η grid at γ (1 for an absolute grid): η = c · eta_scale."""
    if preset.eta.scale == "absolute":
        return 1.0
    return gamma ** predicted_eta_exponent(
        gamma, depth_label(preset.network), preset.train.optimizer
    )


def _round(value: float) -> float:
    """Round to SIGNIFICANT_DIGITS so 10**(k/2) from different grids compare equal."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _plain(value: Any) -> bool:
    """Whether a TOML value is one JSON keeps exactly: no dates, times or non-finite numbers."""
    if isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(_plain(item) for item in value.values())
    return False


def _digest(payload: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of canonical JSON."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
