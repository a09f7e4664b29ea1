"""A dataset read online: batches in file order that may cross part boundaries."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gamma_tui.datasets.rows import DatasetError, DatasetInfo, Part, reading


class ArrayDataset:
    """A dataset read online, in file order, by batches that may cross part boundaries."""

    def __init__(
        self,
        info: DatasetInfo,
        parts: list[Part],
        to_inputs: Callable[[np.ndarray], np.ndarray],
        to_labels: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.info = info
        self._parts, self._to_inputs, self._to_labels = parts, to_inputs, to_labels
        self._starts = np.cumsum([0] + [part.n for part in parts]).tolist()
        self._open: int | None = None

    def batch(
        self, step: int, batch_size: int, offset_batches: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (B, *input_shape) float32 and labels (B,) int64 of `step` (0-based)."""
        if step < 0 or batch_size < 1 or offset_batches < 0:
            raise ValueError("step and offset_batches must be >= 0 and batch_size >= 1")
        start = (offset_batches + step) * batch_size
        if start + batch_size > self.info.n_samples:
            self.check_budget(step + 1, batch_size, offset_batches)
        return self._read(start, start + batch_size)

    def check_budget(self, steps: int, batch_size: int, offset_batches: int = 0) -> None:
        """Raise DatasetError unless `steps` online batches fit without reusing a sample."""
        needed = (offset_batches + steps) * batch_size
        if needed <= self.info.n_samples:
            return
        fit = max(0, self.info.n_samples // batch_size - offset_batches)
        offset = f" after an offset of {offset_batches} batches" if offset_batches else ""
        raise DatasetError(
            f"{steps} steps x batch {batch_size}{offset} need {needed:,} samples, but this "
            f"{self.info.kind} dataset has {self.info.n_samples:,} (online training never "
            f"reuses a sample): at most {fit:,} steps fit at batch {batch_size}; lower "
            "train.steps or the batch size, or use a larger dataset"
        )

    def hold_out(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove the last n samples from the training stream and return them (a test set)."""
        if not 0 < n < self.info.n_samples:
            raise DatasetError(
                f"data.test_size = {n:,} cannot be held out of a {self.info.kind} dataset of "
                f"{self.info.n_samples:,} samples; lower it or give data.test_path"
            )
        held = self.take(n, self.info.n_samples - n)
        self.info = replace(self.info, n_samples=self.info.n_samples - n)
        return held

    def take(self, n: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Samples [start, start + n), e.g. a held-out test set or its first n samples."""
        if n < 0 or start < 0 or start + n > self.info.n_samples:
            raise DatasetError(
                f"samples [{start:,}, {start + n:,}) were asked of a {self.info.kind} dataset "
                f"of {self.info.n_samples:,} samples"
            )
        return self._read(start, start + n)

    def close(self) -> None:
        """Release the open part."""
        if self._open is not None:
            self._parts[self._open].close()
            self._open = None

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalized samples [start, stop), gathered over as many parts as they span."""
        inputs, labels = [], []
        index = bisect.bisect_right(self._starts, start) - 1
        while start < stop:
            part = self._part(index)
            low = start - self._starts[index]
            high = min(stop - self._starts[index], part.n)
            with reading(part.name):
                inputs.append(self._to_inputs(part.images.read(low, high)))
                y = self._to_labels(part.labels.read(low, high))
            labels.append(self._checked_labels(y, part.name, low))
            start += high - low
            index += 1
        if len(inputs) == 1:
            return inputs[0], labels[0]
        return np.concatenate(inputs), np.concatenate(labels)

    def _part(self, index: int) -> Part:
        """Part `index`, closing the previously open one (an LRU cache of one part)."""
        if self._open != index:
            self.close()
            self._open = index
        return self._parts[index]

    def _checked_labels(self, labels: np.ndarray, name: str, first: int) -> np.ndarray:
        """`labels`, or a DatasetError naming the first sample whose label is out of range."""
        bad = np.flatnonzero((labels < 0) | (labels >= self.info.classes))
        if bad.size:
            raise DatasetError(
                f"{name}: sample {first + int(bad[0])} has label {int(labels[bad[0]])}, outside "
                f"0..{self.info.classes - 1}; the file is corrupted or not a {self.info.kind} file"
            )
        return labels
