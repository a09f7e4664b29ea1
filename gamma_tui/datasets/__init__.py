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

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gamma_tui.datasets.formats import (
    CIFAR_MEAN,
    CIFAR_STD,
    EXPECTED,
    KINDS,
    MNIST1D_TRAIN_SEED,
    MNIST_MEAN,
    MNIST_STD,
    SOURCES,
    open_cifar5m,
    open_cifar10_bin,
    open_mnist1d,
    open_mnist1m,
    open_mnist_idx,
    open_npz,
)
from gamma_tui.datasets.rows import DatasetError, DatasetInfo
from gamma_tui.datasets.stream import ArrayDataset


def open_dataset(kind: str, path: str | Path | None, **options: Any) -> ArrayDataset:
    """Open the dataset `kind` at `path`, checking its files' headers but reading no samples.

    Options: npz takes mean, std and classes; cifar10_bin and mnist_idx take split ("test" or
    "train"); mnist1d takes split, n_samples and part_size (and uses `path`, if given, as a
    folder in which generated parts are kept).
    """
    openers: dict[str, Callable[..., ArrayDataset]] = {
        "mnist1m": open_mnist1m,
        "cifar5m": open_cifar5m,
        "npz": open_npz,
        "mnist1d": open_mnist1d,
        "cifar10_bin": open_cifar10_bin,
        "mnist_idx": open_mnist_idx,
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


__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "KINDS",
    "MNIST1D_TRAIN_SEED",
    "MNIST_MEAN",
    "MNIST_STD",
    "TEST_KINDS",
    "ArrayDataset",
    "DatasetError",
    "DatasetInfo",
    "open_dataset",
    "open_split",
]
