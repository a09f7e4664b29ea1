"""The file formats gamma-tui reads (MNIST-1M, CIFAR-5M, CIFAR-10 binary, MNIST IDX, npz)
and the locally generated MNIST-1D, each opened into an ArrayDataset with its normalization."""

from __future__ import annotations

import gzip
import importlib.util
import os
import random
import re
import struct
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from gamma_tui.datasets.rows import (
    ArrayRows,
    DatasetError,
    MappedRows,
    Part,
    Rows,
    check_sample_shape,
    class_indices,
    dataset_info,
    npy_rows,
    npz_rows,
    reading,
    same_length,
)
from gamma_tui.datasets.stream import ArrayDataset

KINDS = ("mnist1m", "cifar5m", "npz", "mnist1d", "cifar10_bin", "mnist_idx")
"""The dataset kinds `open_dataset` accepts."""

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
"""MNIST pixel statistics on the [0, 1] scale (docs/science.md §2)."""

CIFAR_MEAN = np.array([121.4, 119.3, 109.83], dtype=np.float32)
"""CIFAR-5M per-channel means on the 0..255 scale (docs/science.md §2)."""

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


def numbered(folder: Path, pattern: str, expected: str, kind: str) -> list[tuple[int, Path]]:
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


def mnist_inputs(pixels: np.ndarray) -> np.ndarray:
    """(B, ...) MNIST pixels of 784 per sample, as normalized (B, 1, 28, 28) float32."""
    x = pixels.reshape(len(pixels), 1, 28, 28).astype(np.float32)
    if pixels.dtype.kind in "ui":
        x /= np.float32(255.0)
    x -= np.float32(MNIST_MEAN)
    x /= np.float32(MNIST_STD)
    return x


def open_mnist1m(path: Path) -> ArrayDataset:
    """MNIST-1M: MNIST_images_{i}.npz (arr_0) with MNIST_labels_{i}.npy beside each."""
    images = numbered(path, r"MNIST_images_(\d+)\.npz", "MNIST_images_{i}.npz", "mnist1m")
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
        part = same_length(
            Part(image_file.name, npz_rows(image_file, "arr_0"), npy_rows(label_file))
        )
        check_sample_shape(part.images, [(1, 28, 28), (28, 28), (784,)], part.name, "MNIST")
        parts.append(part)
    info = dataset_info("mnist1m", parts, (1, 28, 28), 10)
    return ArrayDataset(info, parts, mnist_inputs, class_indices)


def open_cifar5m(path: Path) -> ArrayDataset:
    """CIFAR-5M: cifar5m_part{i}.npz holding X uint8 (n, 32, 32, 3) and Y."""
    files = numbered(path, r"cifar5m_part(\d+)\.npz", "cifar5m_part{i}.npz", "cifar5m")
    parts = []
    for _, file in files:
        part = same_length(Part(file.name, npz_rows(file, "X"), npz_rows(file, "Y")))
        check_sample_shape(part.images, [(32, 32, 3)], part.name, "CIFAR-5M (uint8 HWC)")
        parts.append(part)

    def inputs(pixels: np.ndarray) -> np.ndarray:
        x = pixels.transpose(0, 3, 1, 2).astype(np.float32, order="C")
        x -= CIFAR_MEAN[:, None, None]
        x /= CIFAR_STD[:, None, None]
        return x

    return ArrayDataset(
        dataset_info("cifar5m", parts, (3, 32, 32), 10), parts, inputs, class_indices
    )


def open_cifar10_bin(path: Path, split: str = "test") -> ArrayDataset:
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
        rows = MappedRows(file, 0, np.dtype(np.uint8), (size // 3073, 3073), False)
        parts.append(Part(file.name, rows, rows))

    def inputs(records: np.ndarray) -> np.ndarray:
        x = records[:, 1:].reshape(len(records), 3, 32, 32).astype(np.float32)
        x -= CIFAR_MEAN[:, None, None]
        x /= CIFAR_STD[:, None, None]
        return x

    def labels(records: np.ndarray) -> np.ndarray:
        return records[:, 0].astype(np.int64)

    return ArrayDataset(dataset_info("cifar10_bin", parts, (3, 32, 32), 10), parts, inputs, labels)


def open_mnist_idx(path: Path, split: str = "test") -> ArrayDataset:
    """MNIST IDX: {t10k,train}-images-idx3-ubyte and -labels-idx1-ubyte, optionally .gz."""
    prefixes = {"test": "t10k", "train": "train"}
    if split not in prefixes:
        raise DatasetError(f"mnist_idx split must be 'test' or 'train', not {split!r}")
    images = _idx_rows(path, prefixes[split], "images", 3)
    labels = _idx_rows(path, prefixes[split], "labels", 1)
    part = same_length(Part(f"{prefixes[split]}-images-idx3-ubyte", images, labels))
    check_sample_shape(images, [(28, 28)], part.name, "MNIST")
    return ArrayDataset(
        dataset_info("mnist_idx", [part], (1, 28, 28), 10),
        [part],
        mnist_inputs,
        lambda y: y.astype(np.int64),
    )


def _idx_rows(folder: Path, prefix: str, what: str, dims: int) -> Rows:
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

    with reading(str(file)):
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
                return ArrayRows(lambda: data.reshape(shape), shape)
        return MappedRows(file, len(header), np.dtype(np.uint8), shape, False)


def open_npz(
    path: Path, mean: float = 0.0, std: float = 1.0, classes: int | None = None
) -> ArrayDataset:
    """Any .npz with arrays named exactly X (inputs) and y (class labels)."""
    if not path.is_file():
        raise DatasetError(
            f"{path} is not a file; expected an .npz with arrays X and y. {SOURCES['npz']}."
        )
    part = same_length(Part(path.name, npz_rows(path, "X"), npz_rows(path, "y")))
    if classes is None:
        with reading(path.name):
            labels = part.labels.read(0, part.n)
            one_hot = labels.ndim == 2 and labels.shape[1] > 1
            classes = labels.shape[1] if one_hot else int(class_indices(labels).max()) + 1
        part.labels.close()
    shape = tuple(part.images.shape[1:])

    def inputs(x: np.ndarray) -> np.ndarray:
        scaled = x.astype(np.float32)
        if x.dtype == np.uint8:
            scaled /= np.float32(255.0)
        scaled -= np.float32(mean)
        scaled /= np.float32(std)
        return scaled

    return ArrayDataset(dataset_info("npz", [part], shape, classes), [part], inputs, class_indices)


def open_mnist1d(
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
        shared = ArrayRows(partial(_mnist1d_records, path, n, *spec), (n,))
        parts.append(Part(f"mnist1d {split} part {index}", shared, shared))
    return ArrayDataset(
        dataset_info("mnist1d", parts, (40,), 10),
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
