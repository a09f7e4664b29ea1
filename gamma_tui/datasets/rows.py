"""The storage layer of the datasets: arrays read by row ranges from .npy files, .npz members
(memory-mapped when stored, streamed when compressed) or generated records; file parts; and
the checks and errors every format shares."""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np


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


class Rows(Protocol):
    """An array read by ranges of its first axis."""

    shape: tuple[int, ...]

    def read(self, start: int, stop: int) -> np.ndarray: ...

    def close(self) -> None: ...


class MappedRows:
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


class StreamRows:
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


class ArrayRows:
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
class Part:
    """One file part: its inputs and labels, named for error messages."""

    name: str
    images: Rows
    labels: Rows

    @property
    def n(self) -> int:
        """Samples in this part."""
        return self.images.shape[0]

    def close(self) -> None:
        """Release both arrays."""
        self.images.close()
        self.labels.close()


@contextmanager
def reading(name: str) -> Iterator[None]:
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


def npy_header(stream: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
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


def npy_rows(path: Path) -> Rows:
    """A .npy file, memory-mapped."""

    with reading(str(path)), open(path, "rb") as handle:
        shape, fortran, dtype = npy_header(handle)
        return MappedRows(path, handle.tell(), dtype, shape, fortran)


def npz_rows(path: Path, key: str) -> Rows:
    """Member `key` of an .npz: memory-mapped if stored, streamed if compressed."""

    with reading(str(path)), zipfile.ZipFile(path) as archive:
        members = [name.removesuffix(".npy") for name in archive.namelist()]
        if key not in members:
            raise DatasetError(f"{path} holds no array {key!r} (it holds {members})")
        info = archive.getinfo(key + ".npy")
        if info.compress_type == zipfile.ZIP_STORED:
            return stored_member(path, info)
        with archive.open(info) as stream:
            shape, fortran, dtype = npy_header(stream)
            start = stream.tell()
        if fortran:  # rows are not contiguous in the stream: read it whole, once
            return ArrayRows(lambda: np.load(path)[key], shape)
        return StreamRows(path, info.filename, start, dtype, shape)


def stored_member(path: Path, info: zipfile.ZipInfo) -> Rows:
    """An uncompressed zip member's array, memory-mapped where its bytes lie in the file."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError("bad zip local header")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        shape, fortran, dtype = npy_header(handle)
        return MappedRows(path, handle.tell(), dtype, shape, fortran)


def same_length(part: Part) -> Part:
    """`part`, or a DatasetError if its inputs and labels disagree on the sample count."""
    if part.images.shape[0] != part.labels.shape[0]:
        raise DatasetError(
            f"{part.name}: {part.images.shape[0]:,} inputs but "
            f"{part.labels.shape[0]:,} labels; one of the files is damaged"
        )
    if part.n == 0:
        raise DatasetError(f"{part.name}: holds no samples")
    return part


def class_indices(labels: np.ndarray) -> np.ndarray:
    """Labels as int64 indices: (n,), (n, 1) or one-hot (n, C), integer or float."""
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(len(labels))
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError("labels are not whole numbers")
    return labels.astype(np.int64)


def check_sample_shape(rows: Rows, shapes: list[tuple[int, ...]], name: str, what: str) -> None:
    """A DatasetError unless rows' sample shape is one of `shapes`."""
    if tuple(rows.shape[1:]) not in shapes:
        raise DatasetError(
            f"{name}: samples have shape {tuple(rows.shape[1:])}, expected "
            f"{' or '.join(map(str, shapes))} for {what}"
        )


def dataset_info(kind: str, parts: list[Part], shape: tuple[int, ...], classes: int) -> DatasetInfo:
    """The DatasetInfo of `parts`."""
    n = sum(part.n for part in parts)
    return DatasetInfo(kind, n, shape, int(np.prod(shape)), classes)
