"""Helpers for tests: paths, tiny preset texts, and dataset files in their native formats."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "presets" / "smoke.toml"


def tiny_preset_text(**sections: dict[str, object]) -> str:
    """TOML of a tiny preset, with sections overridden by keyword (e.g. train={'steps': 50})."""
    base: dict[str, dict[str, object]] = {
        "network": {"width": 16, "depth": 3},
        "data": {"input_dim": 8, "hidden": 3, "outputs": 2, "seed": 1},
        "train": {"batch_size": 8, "steps": 40, "checkpoint_every": 16},
        "gamma": {"min": 0.1, "max": 10, "per_decade": 1},
        "eta": {"scale": "relative", "min": 0.1, "max": 10, "per_decade": 1},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = ["seeds = [0, 1]"]
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def write_mnist1m(folder: Path, sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1M parts of `sizes` samples: uint8 (n, 28, 28) images, alternately stored and
    compressed; returns all pixels and labels in file order."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (sum(sizes), 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, sum(sizes))
    start = 0
    for index, size in enumerate(sizes):
        save = np.savez if index % 2 == 0 else np.savez_compressed
        save(folder / f"MNIST_images_{index}.npz", pixels[start : start + size])
        np.save(folder / f"MNIST_labels_{index}.npy", labels[start : start + size])
        start += size
    return pixels, labels


def write_cifar5m(folder: Path, sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-5M parts cifar5m_part{i}.npz of `sizes` samples: X uint8 (n, 32, 32, 3) and Y
    labels, alternately stored and compressed; returns all pixels and labels in file order."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (sum(sizes), 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, sum(sizes))
    start = 0
    for index, size in enumerate(sizes):
        save = np.savez if index % 2 == 0 else np.savez_compressed
        save(
            folder / f"cifar5m_part{index}.npz",
            X=pixels[start : start + size],
            Y=labels[start : start + size],
        )
        start += size
    return pixels, labels


def write_cifar_bin(file: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    """CIFAR-10 binary records: label byte, then R, G, B planes of (n, 3, 32, 32) pixels."""
    records = np.concatenate([labels[:, None].astype(np.uint8), pixels.reshape(len(pixels), -1)], 1)
    file.write_bytes(records.tobytes())


def write_idx(file: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file, gzip'd if the name ends in .gz."""
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    file.write_bytes(gzip.compress(data) if file.suffix == ".gz" else data)


def run_preset(preset: Path, cache: Path, *overrides: str, timeout: float = 600) -> None:
    """`gamma-tui run PRESET --cache CACHE -q --set ...` in a subprocess; asserts exit 0."""
    sets = [word for override in overrides for word in ("--set", override)]
    done = subprocess.run(
        [sys.executable, "-m", "gamma_tui", "run", str(preset), "--cache", str(cache), "-q", *sets],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
