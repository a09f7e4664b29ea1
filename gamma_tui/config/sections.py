"""The sections of a preset: network, data, training, the γ and η ranges, cut-off, refinement,
analysis, diagnostics and backend tables, each a strict pydantic model.

Also the facts about kinds that several modules need (which data kinds read files, which
network kinds take images, the L of fixed architectures) and the rounding of grid values.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    scalar deep-linear toy model of docs/science.md §1: f = (Π w_l - 1)/γ with every w_l(0) = 1,
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
        return [round_grid_value(10 ** (lo + i / self.per_decade)) for i in range(count)]


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

    The grid and the search train the first `explore_seeds` seeds only; the cells that decide
    the answer (each γ's η* cell and its two neighbours once the search has settled, and its
    highest stable η) get every seed, so η* and its interval are the full seed mean and
    spread there. None explores with every seed.
    """

    eta_precision: float = Field(0.05, gt=0, le=10)
    max_runs: int = Field(400, ge=1, le=MAX_GRID_RUNS)
    gamma: bool = False
    explore_seeds: int | None = Field(1, ge=1)


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


def round_grid_value(value: float) -> float:
    """A γ or η rounded to SIGNIFICANT_DIGITS, as grid values are, so 10**(k/2) from different
    grids compare equal and equal points of different sweeps share runs."""
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
