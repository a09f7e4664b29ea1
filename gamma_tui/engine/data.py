"""Online data streams: a fresh batch every step, a pure function of (data seed, step).

Batches are drawn in blocks of steps, each block from its own generator seeded by the data
seed and the block index, so any step can be regenerated without replaying the ones before
it: a resumed run sees exactly the batches it would have seen. Every member of an ensemble
sees the same batch at each step, as in the reference code. A stream's held-out test set
(`test_set`) comes from a generator no block uses, or from the dataset's test files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gamma_tui.config import DataConfig

BLOCK_ELEMENTS = 1 << 22
"""About this many input numbers are drawn per block (16 MiB of float32)."""

TEST_STREAM = 2**40
"""The generator stream of synthetic test sets: no training block reaches this index."""

PROBE_STREAM = TEST_STREAM + 1
"""The generator stream of the diagnostics' probe batch (engine/diagnostics.py)."""


def _generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one (seed, stream) pair; stream 0 is the teacher, k+1 is block k."""
    return torch.Generator().manual_seed((seed * 0x9E3779B1 + stream * 0x85EBCA77) % 2**63)


@dataclass
class Batch:
    """One step's inputs and targets on the training device."""

    x: torch.Tensor  # (B, D)
    target: torch.Tensor  # (B, C) values for MSE, (B,) class indices for cross-entropy


@dataclass
class TestSet:
    """Held-out samples on the training device; `classes` is None for regression targets."""

    x: torch.Tensor
    target: torch.Tensor  # as Batch.target
    classes: torch.Tensor | None  # (T,) class indices, for accuracy


def _targets(classes: torch.Tensor, outputs: int, loss: str, dtype: torch.dtype) -> torch.Tensor:
    """Class indices for cross-entropy, one-hot {0, 1} rows for MSE (as the reference)."""
    if loss == "xent":
        return classes
    return torch.nn.functional.one_hot(classes, outputs).to(dtype)


class TeacherStream:
    """Gaussian inputs x ~ N(0, I_D) labelled by a fixed random teacher.

    teacher_mlp: y_c = Σ_k a_ck relu(u_k·x)/2, u_k ~ N(0, I/D), a_ck = ±1 (docs/science.md §2).
    teacher_classes: the same teacher's argmax as a class label (one-hot {0,1} targets for
    MSE, indices for cross-entropy). teacher_linear: y = U x with U ~ N(0, I/D).
    teacher_powerlaw: inputs with covariance diag(k^-alpha), k = 1..D, and y = U x / sqrt(Σ_k
    k^-alpha) with U ~ N(0, 1), a power-law spectrum as in linear-regression scaling-law models;
    E[y²] = 1 on average over teachers (one teacher's can be a few times more or less: the top
    directions dominate). single_index: y = (u·x)^degree with u ~ N(0, I/D).
    """

    def __init__(
        self,
        config: DataConfig,
        batch_size: int,
        loss: str,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.config, self.batch_size, self.loss = config, batch_size, loss
        self.dtype, self.device = dtype, device
        self.block_steps = max(1, min(256, BLOCK_ELEMENTS // (batch_size * config.input_dim)))
        self.input_dim = config.input_dim
        generator = _generator(config.seed, 0)
        d, k, c = config.input_dim, config.hidden, config.outputs
        spectrum = torch.arange(1, d + 1, dtype=torch.float64) ** -config.alpha
        self.scale = spectrum.sqrt().float() if config.kind == "teacher_powerlaw" else None
        if config.kind == "teacher_powerlaw":
            u = torch.randn(c, d, generator=generator, dtype=torch.float64)
            self.u, self.a = u / math.sqrt(float(spectrum.sum())), None
        elif config.kind in ("teacher_linear", "single_index"):
            self.u = torch.randn(c, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
            self.a = None
        else:
            self.u = torch.randn(k, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
            signs = torch.randint(0, 2, (c, k), generator=generator, dtype=torch.int64)
            self.a = (2.0 * signs - 1.0).to(torch.float64)
        self._block_index = -1
        self._x: torch.Tensor | None = None
        self._target: torch.Tensor | None = None

    @property
    def outputs(self) -> int:
        """Number of network outputs C."""
        return self.config.outputs

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher outputs (..., C) in float64 for inputs (..., D)."""
        pre = x.to(torch.float64) @ self.u.T
        if self.config.kind == "single_index":
            return pre**self.config.degree
        if self.a is None:
            return pre
        return torch.relu(pre) @ self.a.T / 2.0

    def batch(self, step: int) -> Batch:
        """The batch of `step` (0-based), on the device."""
        block, offset = divmod(step, self.block_steps)
        if block != self._block_index:
            self._load_block(block)
        assert self._x is not None and self._target is not None
        return Batch(self._x[offset], self._target[offset])

    def _load_block(self, block: int) -> None:
        """Draw the inputs of `block_steps` steps on CPU and label them."""
        shape = (self.block_steps, self.batch_size, self.config.input_dim)
        self._x, self._target, _ = self._draw(block + 1, shape)
        self._block_index = block

    def _draw(
        self, stream: int, shape: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs, targets and (for classes) class indices from generator `stream`, on device."""
        x = torch.randn(shape, generator=_generator(self.config.seed, stream), dtype=torch.float32)
        if self.scale is not None:
            x *= self.scale
        y = self.labels(x)
        classes = None
        if self.config.kind == "teacher_classes":
            classes = y.argmax(dim=-1)
            target = _targets(classes, self.config.outputs, self.loss, self.dtype)
        else:
            target = y.to(self.dtype)
        x = x.to(device=self.device, dtype=self.dtype)
        return x, target.to(self.device), None if classes is None else classes.to(self.device)

    def test_set(self) -> TestSet | None:
        """data.test_size fresh samples from a generator training never uses (None if 0)."""
        size = self.config.test_size
        if not size:
            return None
        return TestSet(*self._draw(TEST_STREAM, (size, self.config.input_dim)))

    def probe_batch(self, size: int) -> Batch:
        """`size` samples from a generator neither training nor the test set uses."""
        x, target, _classes = self._draw(PROBE_STREAM, (size, self.config.input_dim))
        return Batch(x, target)


class ScalarStream:
    """The scalar toy model's data: the input 1 and the fixed target y, at every step."""

    def __init__(self, config: DataConfig, dtype: torch.dtype, device: torch.device) -> None:
        self.config = config
        self.input_dim = 1
        self._batch = Batch(
            torch.ones(1, 1, dtype=dtype, device=device),
            torch.full((1, 1), config.target, dtype=dtype, device=device),
        )

    @property
    def outputs(self) -> int:
        """One output."""
        return 1

    def batch(self, step: int) -> Batch:
        """The same (x, y) = (1, target) at every step."""
        return self._batch

    def test_set(self) -> None:
        """The toy model has no held-out set."""
        return None

    def probe_batch(self, size: int) -> Batch:
        """The one sample (1, target), whatever `size`."""
        return self._batch


class FileStream:
    """Batches read in file order from a local dataset (gamma_tui.datasets), flattened for MLPs.

    Targets are one-hot {0, 1} vectors for MSE (as the reference code) and class indices for
    cross-entropy.
    """

    def __init__(
        self,
        config: DataConfig,
        batch_size: int,
        loss: str,
        dtype: torch.dtype,
        device: torch.device,
        flatten: bool = True,
    ) -> None:
        from gamma_tui.datasets import open_split

        self.config, self.batch_size, self.loss = config, batch_size, loss
        self.dtype, self.device, self.flatten = dtype, device, flatten
        self.dataset, self._held_out = open_split(
            config.kind, config.path, config.test_size, config.test_path
        )
        self.input_dim = self.dataset.info.input_dim
        self.input_shape = self.dataset.info.input_shape

    @property
    def outputs(self) -> int:
        """Number of classes C."""
        return self.dataset.info.classes

    def batch(self, step: int) -> Batch:
        """The batch of `step`: samples [(o + step)·B, (o + step + 1)·B) in file order."""
        x, labels = self.dataset.batch(step, self.batch_size, self.config.offset_batches)
        inputs, classes = self._on_device(x, labels)
        return Batch(inputs, _targets(classes, self.outputs, self.loss, self.dtype))

    def test_set(self) -> TestSet | None:
        """The held-out samples chosen by data.test_size and data.test_path (None if 0)."""
        if self._held_out is None:
            return None
        inputs, classes = self._on_device(*self._held_out)
        return TestSet(inputs, _targets(classes, self.outputs, self.loss, self.dtype), classes)

    def probe_batch(self, size: int) -> Batch:
        """The first `size` held-out samples (training never reads them); ValueError when the
        held-out set is smaller (config.diagnostics_problem refuses such presets)."""
        if self._held_out is None or len(self._held_out[0]) < size:
            held = 0 if self._held_out is None else len(self._held_out[0])
            raise ValueError(
                f"the probe batch of {size} samples needs as many held-out samples ({held} here)"
            )
        inputs, classes = self._on_device(self._held_out[0][:size], self._held_out[1][:size])
        return Batch(inputs, _targets(classes, self.outputs, self.loss, self.dtype))

    def _on_device(self, x: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (flattened for MLPs) and class indices as device tensors."""
        inputs = torch.from_numpy(x)
        inputs = inputs.reshape(len(x), -1) if self.flatten else inputs
        inputs = inputs.to(device=self.device, dtype=self.dtype)
        return inputs, torch.from_numpy(labels).to(self.device)


Stream = TeacherStream | ScalarStream | FileStream


def make_stream(
    config: DataConfig,
    batch_size: int,
    loss: str,
    dtype: torch.dtype,
    device: torch.device,
    flatten: bool = True,
) -> Stream:
    """The data stream named by `config.kind`; `flatten` gives (B, D) inputs for MLPs."""
    if config.kind == "scalar":
        return ScalarStream(config, dtype, device)
    if config.from_files:
        return FileStream(config, batch_size, loss, dtype, device, flatten)
    return TeacherStream(config, batch_size, loss, dtype, device)
