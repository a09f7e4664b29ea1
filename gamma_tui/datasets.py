"""Real datasets streamed online from local files: numpy and the standard library only.

Online means every sample is used once, in file order: the batch of step k with batch size B is
samples [(o + k)·B, (o + k + 1)·B) of the concatenated file parts, where o = `offset_batches`
(0 reproduces the reference code's order; a nonzero offset starts the same stream o batches
later). Batches cross part boundaries. The reference instead trains len(part) // B steps per
part and skips the remainder, which is the same order whenever B divides the part sizes (CIFAR-5M:
1,000,448 = 7816·128). Nothing here is random, so a batch is a pure function of (offset, step).

Parts are never loaded whole. A `.npy` file or a member of an uncompressed `.npz` (what np.savez
writes, as both reference datasets are) is memory-mapped: the member's bytes sit unchanged inside
the zip at the local header's offset + 30 + name and extra lengths, followed by the .npy header.
A compressed member (np.savez_compressed) is read through zipfile's seekable stream, so
sequential batches decompress each byte once and memory stays at one batch. One part is open at
a time (an LRU of one), so consecutive batches reuse the open map or stream.

Inputs come back as float32 (B, *input_shape), images channels-first (C, H, W), labels as int64
(B,). Normalization, by dataset:
- mnist1m, mnist_idx: x in [0, 1], then (x - 0.1307) / 0.3081. Integer pixels are divided by 255;
  floating pixels are taken as already in [0, 1] (the reference's MNIST-1M files hold the float32
  output of its diffusion model, shape (n, 1, 28, 28)).
- cifar5m, cifar10_bin: per channel (x - mean) / std on the 0..255 scale, mean (121.4, 119.3,
  109.83), std (63.1, 62.1, 66.6); the CIFAR-10 test set uses the CIFAR-5M constants so that
  the test loss measures the same function the network was trained on.
- npz: arrays exactly named X and y; uint8 X is divided by 255, then (x - mean) / std with scalar
  options mean (0) and std (1); X keeps its stored sample shape.
- mnist1d: as the mnist1d package generates it (already standardized).
"""

from __future__ import annotations

import bisect
import gzip
import importlib.util
import inspect
import os
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

KINDS = ("mnist1m", "cifar5m", "npz", "mnist1d", "cifar10_bin", "mnist_idx")
"""The dataset kinds `open_dataset` accepts."""

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
"""MNIST pixel statistics on the [0, 1] scale (PAPER.md §2)."""

CIFAR_MEAN = np.array([121.4, 119.3, 109.83], dtype=np.float32)
"""CIFAR-5M per-channel means on the 0..255 scale (PAPER.md §2)."""

CIFAR_STD = np.array([63.1, 62.1, 66.6], dtype=np.float32)
"""CIFAR-5M per-channel standard deviations on the 0..255 scale."""

MNIST1D_TRAIN_SEED = 1_000_000
"""Training part p of MNIST-1D is generated with seed MNIST1D_TRAIN_SEED + p; the reference
test set uses seed 42, so train and test never share the generator's draws."""

SOURCES = {
    "mnist1m": "MNIST-1M is the set of 1M diffusion-generated digits made with the MNIST-1M "
    "script of the paper's code (Pehlevan-Group/Richness_Sweep, Atanasov et al. 2024)",
    "cifar5m": "CIFAR-5M is released with Nakkiran, Neyshabur & Sedghi, 'The Deep Bootstrap "
    "Framework' (ICLR 2021), repository preetum/cifar5m",
    "cifar10_bin": "CIFAR-10 'binary version' is distributed by Krizhevsky's CIFAR page "
    "(cifar-10-binary.tar.gz, folder cifar-10-batches-bin)",
    "mnist_idx": "MNIST in IDX format is distributed by LeCun, Cortes & Burges' MNIST page",
    "npz": "an .npz file you wrote yourself with np.savez(path, X=inputs, y=labels)",
    "mnist1d": "MNIST-1D is generated locally by the mnist1d package (Greydanus 2020)",
}
"""Where each dataset comes from, quoted by every error about a missing or broken file."""

EXPECTED = {
    "mnist1m": "a folder of MNIST_images_{i}.npz (array arr_0) and MNIST_labels_{i}.npy files",
    "cifar5m": "a folder of cifar5m_part{i}.npz files (arrays X and Y)",
    "cifar10_bin": "the folder cifar-10-batches-bin (test_batch.bin, data_batch_{1..5}.bin) "
    "or one of its .bin files",
    "mnist_idx": "a folder holding t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte "
    "(or train-*; .gz accepted)",
    "npz": "an .npz file with arrays X and y",
    "mnist1d": "nothing (optional: a folder in which to keep generated parts)",
}
"""What `path` must point at, per kind."""


class DatasetError(Exception):
    """A dataset is missing, malformed or too small; the message says what to fix."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    kind: str
    n_samples: int
    input_shape: tuple[int, ...]
    input_dim: int
    classes: int


class _Rows(Protocol):
    """An array read by ranges of its first axis."""

    shape: tuple[int, ...]

    def read(self, start: int, stop: int) -> np.ndarray: ...

    def close(self) -> None: ...


class _MappedRows:
    """Rows of a raw array at a byte offset of a file, memory-mapped on first use."""

    def __init__(
        self, path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...], fortran: bool
    ) -> None:
        self.path, self.offset, self.dtype, self.shape = path, offset, dtype, shape
        self.fortran = fortran
        self._map: np.ndarray | None = None
        needed = offset + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if path.stat().st_size < needed:
            raise ValueError(f"the data ends before byte {needed:,} (file truncated)")

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop), a view of the map (the caller's conversion copies it)."""
        if self._map is None:
            order: Literal["C", "F"] = "F" if self.fortran else "C"
            self._map = np.memmap(self.path, self.dtype, "r", self.offset, self.shape, order)
        return self._map[start:stop].view(np.ndarray)

    def close(self) -> None:
        """Drop the map (numpy unmaps it when the last view goes)."""
        self._map = None


class _StreamRows:
    """Rows of a C-order array inside a compressed .npz member, read through a seekable stream."""

    def __init__(
        self, path: Path, member: str, data_start: int, dtype: np.dtype, shape: tuple[int, ...]
    ) -> None:
        self.path, self.member, self.data_start = path, member, data_start
        self.dtype, self.shape = dtype, shape
        self.row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        self._zip: zipfile.ZipFile | None = None
        self._stream: Any = None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop); forward seeks decompress through, backward ones restart."""
        if self._stream is None:
            self._zip = zipfile.ZipFile(self.path)
            self._stream = self._zip.open(self.member)
        self._stream.seek(self.data_start + start * self.row_bytes)
        wanted = (stop - start) * self.row_bytes
        data = self._stream.read(wanted)
        if len(data) != wanted:
            raise EOFError(f"member {self.member} ends early")
        return np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))

    def close(self) -> None:
        """Close the member stream and the zip file."""
        if self._zip is not None:
            self._zip.close()
        self._zip, self._stream = None, None


class _ArrayRows:
    """Rows of an array already in memory (small gzip'd test sets, generated data)."""

    def __init__(self, load: Callable[[], np.ndarray], shape: tuple[int, ...]) -> None:
        self.load, self.shape = load, shape
        self._array: np.ndarray | None = None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop), loading the array on first use."""
        if self._array is None:
            self._array = self.load()
        return self._array[start:stop]

    def close(self) -> None:
        """Forget the array."""
        self._array = None


@dataclass
class _Part:
    """One file part: its inputs and labels, named for error messages."""

    name: str
    images: _Rows
    labels: _Rows

    @property
    def n(self) -> int:
        """Samples in this part."""
        return self.images.shape[0]

    def close(self) -> None:
        """Release both arrays."""
        self.images.close()
        self.labels.close()


class ArrayDataset:
    """A dataset read online, in file order, by batches that may cross part boundaries."""

    def __init__(
        self,
        info: DatasetInfo,
        parts: list[_Part],
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
            with _reading(part.name):
                inputs.append(self._to_inputs(part.images.read(low, high)))
                y = self._to_labels(part.labels.read(low, high))
            labels.append(self._checked_labels(y, part.name, low))
            start += high - low
            index += 1
        if len(inputs) == 1:
            return inputs[0], labels[0]
        return np.concatenate(inputs), np.concatenate(labels)

    def _part(self, index: int) -> _Part:
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


def open_dataset(kind: str, path: str | Path | None, **options: Any) -> ArrayDataset:
    """Open the dataset `kind` at `path`, checking its files' headers but reading no samples.

    Options: npz takes mean, std and classes; cifar10_bin and mnist_idx take split ("test" or
    "train"); mnist1d takes split, n_samples and part_size (and uses `path`, if given, as a
    folder in which generated parts are kept).
    """
    openers: dict[str, Callable[..., ArrayDataset]] = {
        "mnist1m": _open_mnist1m,
        "cifar5m": _open_cifar5m,
        "npz": _open_npz,
        "mnist1d": _open_mnist1d,
        "cifar10_bin": _open_cifar10_bin,
        "mnist_idx": _open_mnist_idx,
    }
    if kind not in openers:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    opener = openers[kind]
    if path is not None:
        path = Path(path).expanduser()
    if kind != "mnist1d" and (path is None or not path.exists()):
        where = "no path was given" if path is None else f"{path} does not exist"
        raise DatasetError(
            f"dataset {kind!r} needs {EXPECTED[kind]}, but {where}. "
            f"{SOURCES[kind]}; nothing is downloaded."
        )
    try:
        inspect.signature(opener).bind(path, **options)
    except TypeError as error:
        raise DatasetError(f"bad option for dataset {kind!r}: {error}") from None
    return opener(path, **options)


TEST_KINDS = {"mnist1m": "mnist_idx", "cifar5m": "cifar10_bin", "npz": "npz"}
"""The format of a training dataset's held-out set at data.test_path (a .npz file is npz)."""


def open_split(
    kind: str, path: str | None, test_size: int, test_path: str | None
) -> tuple[ArrayDataset, tuple[np.ndarray, np.ndarray] | None]:
    """The training stream of a dataset and its first `test_size` held-out samples (or None).

    The held-out set is read from `test_path` (MNIST IDX for mnist1m, CIFAR-10 binary for
    cifar5m, or any .npz with X and y), else from the mnist1d package's test split, else it is
    the last `test_size` samples of the training files, which the training stream then ends
    before.
    """
    dataset = open_dataset(kind, path)
    if not test_size:
        return dataset, None
    if test_path is None and kind != "mnist1d":
        return dataset, dataset.hold_out(test_size)
    if test_path is None:
        test = open_dataset("mnist1d", path, split="test")
    else:
        test_kind = "npz" if str(test_path).endswith(".npz") else TEST_KINDS.get(kind, kind)
        options = {} if test_kind == "npz" else {"split": "test"}
        test = open_dataset(test_kind, test_path, **options)
    if test.info.input_shape != dataset.info.input_shape:
        raise DatasetError(
            f"the held-out set at {test_path} has samples of shape {test.info.input_shape}, "
            f"the training data {dataset.info.input_shape}; point data.test_path at the "
            "matching test set"
        )
    if test_size > test.info.n_samples:
        raise DatasetError(
            f"data.test_size = {test_size:,} but the held-out set has "
            f"{test.info.n_samples:,} samples; lower data.test_size"
        )
    held = test.take(test_size)
    if held[1].size and int(held[1].max()) >= dataset.info.classes:
        raise DatasetError(
            f"the held-out set at {test_path} has label {int(held[1].max())}, but the training "
            f"data has {dataset.info.classes} classes; point data.test_path at the matching "
            "test set"
        )
    return dataset, held


@contextmanager
def _reading(name: str) -> Iterator[None]:
    """Turn low-level read errors into a DatasetError that names the file."""
    try:
        yield
    except DatasetError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        KeyError,
        zipfile.BadZipFile,
        zlib.error,
        struct.error,
    ) as error:
        raise DatasetError(
            f"{name}: cannot read it ({type(error).__name__}: {error}); the file is truncated "
            "or corrupted, copy it again"
        ) from None


def _npy_header(stream: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the .npy header at the stream's position."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        shape, fortran, dtype = np.lib.format._read_array_header(stream, version)  # type: ignore[attr-defined]
    if dtype.hasobject:
        raise ValueError("object arrays are not data")
    if not shape:
        raise ValueError("a 0-d array holds no samples")
    return tuple(shape), bool(fortran), dtype


def _npy_rows(path: Path) -> _Rows:
    """A .npy file, memory-mapped."""

    with _reading(str(path)), open(path, "rb") as handle:
        shape, fortran, dtype = _npy_header(handle)
        return _MappedRows(path, handle.tell(), dtype, shape, fortran)


def _npz_rows(path: Path, key: str) -> _Rows:
    """Member `key` of an .npz: memory-mapped if stored, streamed if compressed."""

    with _reading(str(path)), zipfile.ZipFile(path) as archive:
        members = [name.removesuffix(".npy") for name in archive.namelist()]
        if key not in members:
            raise DatasetError(f"{path} holds no array {key!r} (it holds {members})")
        info = archive.getinfo(key + ".npy")
        if info.compress_type == zipfile.ZIP_STORED:
            return _stored_member(path, info)
        with archive.open(info) as stream:
            shape, fortran, dtype = _npy_header(stream)
            start = stream.tell()
        if fortran:  # rows are not contiguous in the stream: read it whole, once
            return _ArrayRows(lambda: np.load(path)[key], shape)
        return _StreamRows(path, info.filename, start, dtype, shape)


def _stored_member(path: Path, info: zipfile.ZipInfo) -> _Rows:
    """An uncompressed zip member's array, memory-mapped where its bytes lie in the file."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError("bad zip local header")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        shape, fortran, dtype = _npy_header(handle)
        return _MappedRows(path, handle.tell(), dtype, shape, fortran)


def _numbered(folder: Path, pattern: str, expected: str, kind: str) -> list[tuple[int, Path]]:
    """Files of `folder` whose names match `pattern` (one integer group), by number 0, 1, ..."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} is not a folder; expected a folder of {expected}. {SOURCES[kind]}."
        )
    found = sorted((int(m[1]), p) for p in folder.iterdir() if (m := re.fullmatch(pattern, p.name)))
    if not found:
        raise DatasetError(f"no {expected} in {folder}. {SOURCES[kind]}.")
    numbers = [number for number, _ in found]
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        raise DatasetError(f"{folder} lacks part(s) {missing} of {expected}; copy them too")
    return found


def _same_length(part: _Part) -> _Part:
    """`part`, or a DatasetError if its inputs and labels disagree on the sample count."""
    if part.images.shape[0] != part.labels.shape[0]:
        raise DatasetError(
            f"{part.name}: {part.images.shape[0]:,} inputs but "
            f"{part.labels.shape[0]:,} labels; one of the files is damaged"
        )
    if part.n == 0:
        raise DatasetError(f"{part.name}: holds no samples")
    return part


def _class_indices(labels: np.ndarray) -> np.ndarray:
    """Labels as int64 indices: (n,), (n, 1) or one-hot (n, C), integer or float."""
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(len(labels))
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError("labels are not whole numbers")
    return labels.astype(np.int64)


def _mnist_inputs(pixels: np.ndarray) -> np.ndarray:
    """(B, ...) MNIST pixels of 784 per sample, as normalized (B, 1, 28, 28) float32."""
    x = pixels.reshape(len(pixels), 1, 28, 28).astype(np.float32)
    if pixels.dtype.kind in "ui":
        x /= np.float32(255.0)
    x -= np.float32(MNIST_MEAN)
    x /= np.float32(MNIST_STD)
    return x


def _check_sample_shape(rows: _Rows, shapes: list[tuple[int, ...]], name: str, what: str) -> None:
    """A DatasetError unless rows' sample shape is one of `shapes`."""
    if tuple(rows.shape[1:]) not in shapes:
        raise DatasetError(
            f"{name}: samples have shape {tuple(rows.shape[1:])}, expected "
            f"{' or '.join(map(str, shapes))} for {what}"
        )


def _info(kind: str, parts: list[_Part], shape: tuple[int, ...], classes: int) -> DatasetInfo:
    """The DatasetInfo of `parts`."""
    n = sum(part.n for part in parts)
    return DatasetInfo(kind, n, shape, int(np.prod(shape)), classes)


def _open_mnist1m(path: Path) -> ArrayDataset:
    """MNIST-1M: MNIST_images_{i}.npz (arr_0) with MNIST_labels_{i}.npy beside each."""
    images = _numbered(path, r"MNIST_images_(\d+)\.npz", "MNIST_images_{i}.npz", "mnist1m")
    parts = []
    for number, image_file in images:
        # The reference script saves labels with np.save(".../MNIST_labels_{i}.npz"), which
        # writes MNIST_labels_{i}.npz.npy; accept that name too.
        names = [f"MNIST_labels_{number}.npy", f"MNIST_labels_{number}.npz.npy"]
        label_file = next((path / n for n in names if (path / n).exists()), None)
        if label_file is None:
            raise DatasetError(
                f"{path / names[0]} is missing (labels of {image_file.name}). {SOURCES['mnist1m']}."
            )
        part = _same_length(
            _Part(image_file.name, _npz_rows(image_file, "arr_0"), _npy_rows(label_file))
        )
        _check_sample_shape(part.images, [(1, 28, 28), (28, 28), (784,)], part.name, "MNIST")
        parts.append(part)
    info = _info("mnist1m", parts, (1, 28, 28), 10)
    return ArrayDataset(info, parts, _mnist_inputs, _class_indices)


def _open_cifar5m(path: Path) -> ArrayDataset:
    """CIFAR-5M: cifar5m_part{i}.npz holding X uint8 (n, 32, 32, 3) and Y."""
    files = _numbered(path, r"cifar5m_part(\d+)\.npz", "cifar5m_part{i}.npz", "cifar5m")
    parts = []
    for _, file in files:
        part = _same_length(_Part(file.name, _npz_rows(file, "X"), _npz_rows(file, "Y")))
        _check_sample_shape(part.images, [(32, 32, 3)], part.name, "CIFAR-5M (uint8 HWC)")
        parts.append(part)

    def inputs(pixels: np.ndarray) -> np.ndarray:
        x = pixels.transpose(0, 3, 1, 2).astype(np.float32, order="C")
        x -= CIFAR_MEAN[:, None, None]
        x /= CIFAR_STD[:, None, None]
        return x

    return ArrayDataset(_info("cifar5m", parts, (3, 32, 32), 10), parts, inputs, _class_indices)


def _open_cifar10_bin(path: Path, split: str = "test") -> ArrayDataset:
    """CIFAR-10 binary: records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32)."""
    names = {"test": ["test_batch.bin"], "train": [f"data_batch_{i}.bin" for i in range(1, 6)]}
    if split not in names:
        raise DatasetError(f"cifar10_bin split must be 'test' or 'train', not {split!r}")
    files = [path] if path.is_file() else [path / name for name in names[split]]
    parts = []
    for file in files:
        if not file.exists():
            raise DatasetError(f"{file} is missing. {SOURCES['cifar10_bin']}.")
        size = file.stat().st_size
        if size == 0 or size % 3073:
            raise DatasetError(
                f"{file}: {size:,} bytes is not a whole number of 3073-byte "
                "CIFAR-10 records; the file is truncated or of another format"
            )
        rows = _MappedRows(file, 0, np.dtype(np.uint8), (size // 3073, 3073), False)
        parts.append(_Part(file.name, rows, rows))

    def inputs(records: np.ndarray) -> np.ndarray:
        x = records[:, 1:].reshape(len(records), 3, 32, 32).astype(np.float32)
        x -= CIFAR_MEAN[:, None, None]
        x /= CIFAR_STD[:, None, None]
        return x

    def labels(records: np.ndarray) -> np.ndarray:
        return records[:, 0].astype(np.int64)

    return ArrayDataset(_info("cifar10_bin", parts, (3, 32, 32), 10), parts, inputs, labels)


def _open_mnist_idx(path: Path, split: str = "test") -> ArrayDataset:
    """MNIST IDX: {t10k,train}-images-idx3-ubyte and -labels-idx1-ubyte, optionally .gz."""
    prefixes = {"test": "t10k", "train": "train"}
    if split not in prefixes:
        raise DatasetError(f"mnist_idx split must be 'test' or 'train', not {split!r}")
    images = _idx_rows(path, prefixes[split], "images", 3)
    labels = _idx_rows(path, prefixes[split], "labels", 1)
    part = _same_length(_Part(f"{prefixes[split]}-images-idx3-ubyte", images, labels))
    _check_sample_shape(images, [(28, 28)], part.name, "MNIST")
    return ArrayDataset(
        _info("mnist_idx", [part], (1, 28, 28), 10),
        [part],
        _mnist_inputs,
        lambda y: y.astype(np.int64),
    )


def _idx_rows(folder: Path, prefix: str, what: str, dims: int) -> _Rows:
    """An unsigned-byte IDX file with `dims` dimensions: mapped, or decompressed if .gz."""
    stem = f"{prefix}-{what}-idx{dims}-ubyte"
    candidates = [
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ]
    file = next((folder / name for name in candidates if (folder / name).exists()), None)
    if file is None:
        raise DatasetError(f"{folder / stem} (or {stem}.gz) is missing. {SOURCES['mnist_idx']}.")

    with _reading(str(file)):
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rb") as handle:
            header = handle.read(4 + 4 * dims)
            if len(header) != 4 + 4 * dims or header[:4] != bytes([0, 0, 8, dims]):
                raise ValueError(f"not an unsigned-byte IDX file with {dims} dimension(s)")
            shape = struct.unpack(f">{dims}I", header[4:])
            if file.suffix == ".gz":
                data = np.frombuffer(handle.read(), np.uint8)
                if data.size != np.prod(shape):
                    raise ValueError(f"{data.size:,} pixel bytes, the header says {shape}")
                return _ArrayRows(lambda: data.reshape(shape), shape)
        return _MappedRows(file, len(header), np.dtype(np.uint8), shape, False)


def _open_npz(
    path: Path, mean: float = 0.0, std: float = 1.0, classes: int | None = None
) -> ArrayDataset:
    """Any .npz with arrays named exactly X (inputs) and y (class labels)."""
    if not path.is_file():
        raise DatasetError(
            f"{path} is not a file; expected an .npz with arrays X and y. {SOURCES['npz']}."
        )
    part = _same_length(_Part(path.name, _npz_rows(path, "X"), _npz_rows(path, "y")))
    if classes is None:
        with _reading(path.name):
            labels = part.labels.read(0, part.n)
            one_hot = labels.ndim == 2 and labels.shape[1] > 1
            classes = labels.shape[1] if one_hot else int(_class_indices(labels).max()) + 1
        part.labels.close()
    shape = tuple(part.images.shape[1:])

    def inputs(x: np.ndarray) -> np.ndarray:
        scaled = x.astype(np.float32)
        if x.dtype == np.uint8:
            scaled /= np.float32(255.0)
        scaled -= np.float32(mean)
        scaled /= np.float32(std)
        return scaled

    return ArrayDataset(_info("npz", [part], shape, classes), [part], inputs, _class_indices)


def _open_mnist1d(
    path: Path | None, split: str = "train", n_samples: int = 1_000_000, part_size: int = 10_000
) -> ArrayDataset:
    """MNIST-1D generated by the mnist1d package: a long train stream or the reference test set.

    split "train": n_samples samples in parts of part_size, part p generated by
    make_dataset(num_samples=part_size, seed=MNIST1D_TRAIN_SEED + p), each part standardized by
    the package with its own statistics; parts are generated when first read (~2 s per 10k).
    split "test": the package's reference held-out set, the last 1000 of make_dataset() (seed 42).
    """
    if importlib.util.find_spec("mnist1d") is None:
        raise DatasetError(
            "dataset 'mnist1d' needs the optional package mnist1d: "
            "pip install mnist1d (it generates the data locally, nothing is "
            "downloaded)"
        )
    if split not in ("train", "test") or part_size < 10 or part_size % 10 or n_samples < 1:
        raise DatasetError(
            "mnist1d takes split 'train' or 'test', n_samples >= 1 and a "
            "part_size that is a multiple of 10"
        )
    if split == "test":
        specs = [(1000, "test", 5000, 42, 0.8)]
    else:
        specs = [
            (
                min(part_size, n_samples - p * part_size),
                f"train_part{p}",
                part_size,
                MNIST1D_TRAIN_SEED + p,
                1.0,
            )
            for p in range(-(-n_samples // part_size))
        ]
    parts = []
    for index, (n, *spec) in enumerate(specs):
        shared = _ArrayRows(partial(_mnist1d_records, path, n, *spec), (n,))
        parts.append(_Part(f"mnist1d {split} part {index}", shared, shared))
    return ArrayDataset(
        _info("mnist1d", parts, (40,), 10),
        parts,
        lambda records: np.array(records["x"], dtype=np.float32),
        lambda records: records["y"].astype(np.int64),
    )


def _mnist1d_records(cache: Path | None, n: int, *spec: Any) -> np.ndarray:
    """The first n samples of one generated MNIST-1D set, as records of (x: 40 floats, y)."""
    x, y = _mnist1d_arrays(cache, *spec)
    records = np.empty(n, dtype=[("x", np.float32, (x.shape[1],)), ("y", np.int64)])
    records["x"], records["y"] = x[:n], y[:n]
    return records


def _mnist1d_arrays(
    cache: Path | None, name: str, num_samples: int, seed: int, train_split: float
) -> tuple[np.ndarray, np.ndarray]:
    """Generate (or reuse from the cache folder) one MNIST-1D set; restores global RNG state."""
    file = None if cache is None else Path(cache) / f"mnist1d_{name}_seed{seed}_n{num_samples}.npz"
    if file is not None and file.exists():
        with np.load(file) as stored:
            return stored["x"], stored["y"]
    from mnist1d.data import (  # type: ignore[import-untyped]  # optional
        get_dataset_args,
        make_dataset,
    )

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)  # seeds the global generators itself
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    key = "x" if train_split == 1.0 else "x_test"
    x = data[key].astype(np.float32)
    y = data[key.replace("x", "y")].astype(np.int64)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_suffix(f".{os.getpid()}.tmp.npz")  # workers may race
        np.savez(temporary, x=x, y=y)
        temporary.replace(file)
    return x, y
