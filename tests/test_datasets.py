"""Dataset loaders on small files written in each native format: no real data needed."""

from __future__ import annotations

import importlib.util
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import write_cifar_bin, write_idx, write_mnist1m

from gamma_tui import datasets
from gamma_tui.datasets import DatasetError, DatasetInfo, open_dataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR_MEAN = np.array([121.4, 119.3, 109.83])
CIFAR_STD = np.array([63.1, 62.1, 66.6])


def mnist_reference(pixels: np.ndarray) -> np.ndarray:
    """The expected normalization of uint8 MNIST pixels, in float64."""
    return ((pixels / 255.0 - MNIST_MEAN) / MNIST_STD).reshape(len(pixels), 1, 28, 28)


def test_mnist1m_shapes_normalization_and_online_order(tmp_path: Path) -> None:
    pixels, labels = write_mnist1m(tmp_path, [100, 70, 130])
    dataset = open_dataset("mnist1m", str(tmp_path))
    assert dataset.info == DatasetInfo("mnist1m", 300, (1, 28, 28), 784, 10)
    expected = mnist_reference(pixels)
    for step in range(300 // 32):  # batches 3, 5 and 6 cross part boundaries
        x, y = dataset.batch(step, 32)
        assert x.shape == (32, 1, 28, 28) and x.dtype == np.float32
        assert y.dtype == np.int64 and y.shape == (32,)
        np.testing.assert_allclose(x, expected[32 * step : 32 * step + 32], atol=1e-6)
        np.testing.assert_array_equal(y, labels[32 * step : 32 * step + 32])
    x, y = dataset.batch(2, 32, offset_batches=3)
    np.testing.assert_allclose(x, expected[160:192], atol=1e-6)
    np.testing.assert_array_equal(y, labels[160:192])


def test_mnist1m_exact_constants_float_images_and_reference_label_name(tmp_path: Path) -> None:
    images = np.zeros((4, 1, 28, 28), dtype=np.float32)  # the reference's float32 DDPM output
    images[1], images[2], images[3] = 1.0, 0.5, 0.1307
    np.savez(tmp_path / "MNIST_images_0.npz", images)
    np.save(tmp_path / "MNIST_labels_0.npz.npy", np.arange(4))  # what the reference writes
    x, y = open_dataset("mnist1m", tmp_path).take(4)
    np.testing.assert_allclose(
        x[:, 0, 0, 0], [-0.1307 / 0.3081, 0.8693 / 0.3081, 0.3693 / 0.3081, 0.0], atol=1e-6
    )
    np.testing.assert_array_equal(y, np.arange(4))


def test_cifar5m_per_channel_constants_and_channels_first(tmp_path: Path) -> None:
    pixels = np.zeros((50, 32, 32, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 0, 128, 255
    pixels[7, 3, 5] = (10, 20, 30)
    labels = np.arange(50) % 10
    np.savez(tmp_path / "cifar5m_part0.npz", X=pixels[:20], Y=labels[:20])
    np.savez_compressed(tmp_path / "cifar5m_part1.npz", X=pixels[20:], Y=labels[20:])
    dataset = open_dataset("cifar5m", tmp_path)
    assert dataset.info == DatasetInfo("cifar5m", 50, (3, 32, 32), 3072, 10)
    x, y = dataset.batch(0, 25)  # spans both parts
    assert x.shape == (25, 3, 32, 32) and x.dtype == np.float32
    expected = (np.array([0, 128, 255]) - CIFAR_MEAN) / CIFAR_STD
    np.testing.assert_allclose(x[0, :, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(x[24, :, 31, 31], expected, rtol=1e-6)
    np.testing.assert_allclose(
        x[7, :, 3, 5], (np.array([10, 20, 30]) - CIFAR_MEAN) / CIFAR_STD, rtol=1e-6
    )
    np.testing.assert_array_equal(y, labels[:25])


def test_cifar10_binary_test_and_train_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (30, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 30)
    write_cifar_bin(tmp_path / "test_batch.bin", pixels, labels)
    dataset = open_dataset("cifar10_bin", tmp_path)
    assert dataset.info == DatasetInfo("cifar10_bin", 30, (3, 32, 32), 3072, 10)
    x, y = dataset.take(10, start=20)
    expected = (pixels[20:] - CIFAR_MEAN[:, None, None]) / CIFAR_STD[:, None, None]
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, labels[20:])
    assert open_dataset("cifar10_bin", tmp_path / "test_batch.bin").info.n_samples == 30
    with pytest.raises(DatasetError, match="data_batch_1.bin is missing"):
        open_dataset("cifar10_bin", tmp_path, split="train")
    for i in range(1, 6):
        write_cifar_bin(tmp_path / f"data_batch_{i}.bin", pixels[:4], labels[:4])
    train = open_dataset("cifar10_bin", tmp_path, split="train")
    np.testing.assert_array_equal(train.batch(1, 6)[1], np.concatenate([labels[:4]] * 5)[6:12])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_idx_plain_and_gzip(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    pixels[0] = 255
    labels = rng.integers(0, 10, 40)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", pixels)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels)
    dataset = open_dataset("mnist_idx", tmp_path)
    assert dataset.info == DatasetInfo("mnist_idx", 40, (1, 28, 28), 784, 10)
    x, y = dataset.take(40)
    np.testing.assert_allclose(x, mnist_reference(pixels), atol=1e-6)
    assert x[0].min() == pytest.approx((1 - 0.1307) / 0.3081)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        open_dataset("mnist_idx", tmp_path, split="train")


def test_generic_npz_scaling_options_and_class_count(tmp_path: Path) -> None:
    inputs = np.full((12, 5), 255, dtype=np.uint8)
    np.savez(tmp_path / "data.npz", X=inputs, y=np.arange(12) % 4)
    dataset = open_dataset("npz", tmp_path / "data.npz", mean=0.5, std=0.25)
    assert dataset.info == DatasetInfo("npz", 12, (5,), 5, 4)
    x, y = dataset.batch(1, 4)
    np.testing.assert_allclose(x, 2.0)
    np.testing.assert_array_equal(y, [0, 1, 2, 3])
    floats = np.linspace(-1, 1, 24, dtype=np.float64).reshape(6, 2, 2)
    one_hot = np.eye(3)[[0, 1, 2, 2, 1, 0]]
    np.savez_compressed(tmp_path / "floats.npz", X=floats, y=one_hot)
    dataset = open_dataset("npz", tmp_path / "floats.npz")
    assert dataset.info == DatasetInfo("npz", 6, (2, 2), 4, 3)
    x, y = dataset.take(6)
    np.testing.assert_allclose(x, floats, rtol=1e-6)
    np.testing.assert_array_equal(y, [0, 1, 2, 2, 1, 0])
    np.savez(tmp_path / "wrong.npz", x=floats, Y=one_hot)
    with pytest.raises(DatasetError, match="no array 'X'"):
        open_dataset("npz", tmp_path / "wrong.npz")


def test_budget_errors_say_how_many_steps_fit(tmp_path: Path) -> None:
    write_mnist1m(tmp_path, [100, 100])
    dataset = open_dataset("mnist1m", tmp_path)
    dataset.check_budget(6, 32)
    with pytest.raises(DatasetError, match="at most 6 steps fit at batch 32"):
        dataset.check_budget(7, 32)
    with pytest.raises(DatasetError, match="at most 4 steps fit"):
        dataset.check_budget(5, 32, offset_batches=2)
    with pytest.raises(DatasetError, match="224 samples"):
        dataset.batch(6, 32)
    with pytest.raises(DatasetError):
        dataset.take(10, start=195)


def test_missing_paths_and_files_name_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"MNIST_images_\{i\}\.npz.*Richness_Sweep"):
        open_dataset("mnist1m", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no path was given.*cifar5m"):
        open_dataset("cifar5m", None)
    with pytest.raises(DatasetError, match=r"no cifar5m_part\{i\}\.npz in"):
        open_dataset("cifar5m", tmp_path)
    write_mnist1m(tmp_path, [10, 10, 10])
    (tmp_path / "MNIST_labels_2.npy").unlink()
    with pytest.raises(DatasetError, match="MNIST_labels_2.npy is missing"):
        open_dataset("mnist1m", tmp_path)
    (tmp_path / "MNIST_images_2.npz").unlink()
    (tmp_path / "MNIST_images_1.npz").rename(tmp_path / "MNIST_images_3.npz")
    with pytest.raises(DatasetError, match=r"lacks part\(s\) \[1, 2\]"):
        open_dataset("mnist1m", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        open_dataset("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="bad option"):
        open_dataset("cifar5m", tmp_path, colour=True)


def test_corrupted_files_raise_dataset_errors(tmp_path: Path) -> None:
    write_mnist1m(tmp_path, [20, 20])
    (tmp_path / "MNIST_images_1.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DatasetError, match="MNIST_images_1.npz: cannot read it"):
        open_dataset("mnist1m", tmp_path)
    write_mnist1m(tmp_path, [20, 20])
    labels = tmp_path / "MNIST_labels_1.npy"
    labels.write_bytes(labels.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="MNIST_labels_1.npy: cannot read it.*truncated"):
        open_dataset("mnist1m", tmp_path)
    write_mnist1m(tmp_path, [20, 20])
    np.save(tmp_path / "MNIST_labels_1.npy", np.full(20, 11))
    dataset = open_dataset("mnist1m", tmp_path)
    with pytest.raises(DatasetError, match="sample 0 has label 11"):
        dataset.batch(1, 20)
    compressed = tmp_path / "MNIST_images_1.npz"  # stored compressed: damage its deflate data
    data = bytearray(compressed.read_bytes())
    data[200:260] = bytes(60)
    compressed.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="MNIST_images_1.npz"):
        open_dataset("mnist1m", tmp_path).batch(1, 20)
    bad = tmp_path / "test_batch.bin"
    bad.write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DatasetError, match="3073-byte"):
        open_dataset("cifar10_bin", bad)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((4,)))
    with pytest.raises(DatasetError, match="5 inputs but 4 labels"):
        open_dataset("mnist_idx", tmp_path)


def test_one_open_part_and_memory_maps(tmp_path: Path) -> None:
    write_mnist1m(tmp_path, [64, 64])
    dataset = open_dataset("mnist1m", tmp_path)
    parts = dataset._parts
    assert isinstance(parts[0].images, datasets.rows.MappedRows)  # np.savez: memory-mapped
    assert isinstance(parts[1].images, datasets.rows.StreamRows)  # np.savez_compressed: streamed
    dataset.batch(0, 16)
    mapped = parts[0].images._map
    dataset.batch(1, 16)
    assert parts[0].images._map is mapped  # the open part is reused, not reopened
    dataset.batch(4, 16)
    stream = parts[1].images._stream
    assert parts[0].images._map is None and stream is not None  # one part open at a time
    dataset.batch(5, 16)
    assert parts[1].images._stream is stream
    dataset.close()
    assert parts[1].images._stream is None


def test_import_does_not_load_torch() -> None:
    code = "import sys, gamma_tui.datasets; print('torch' in sys.modules)"
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_mnist1d_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match="pip install mnist1d"):
        open_dataset("mnist1d", None)


@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="mnist1d not installed")
def test_mnist1d_generates_locally_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("mnist1d tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    np.random.seed(123)
    random.seed(123)
    expected_draw = np.random.random()
    np.random.seed(123)
    python_state = random.getstate()
    dataset = open_dataset("mnist1d", tmp_path, n_samples=45, part_size=20)
    assert dataset.info == DatasetInfo("mnist1d", 45, (40,), 40, 10)
    x, y = dataset.batch(1, 15)  # spans parts 0 and 1
    assert x.shape == (15, 40) and x.dtype == np.float32 and y.dtype == np.int64
    assert y.min() >= 0 and y.max() <= 9 and np.isfinite(x).all()
    assert np.random.random() == expected_draw  # make_dataset's global seeding is undone
    assert random.getstate() == python_state
    assert len(list(tmp_path.glob("mnist1d_train_part*.npz"))) == 2
    again = open_dataset("mnist1d", None, n_samples=45, part_size=20).batch(1, 15)
    np.testing.assert_array_equal(again[0], x)
    np.testing.assert_array_equal(again[1], y)
    with pytest.raises(DatasetError, match="at most 3 steps"):
        dataset.check_budget(4, 15)
    test = open_dataset("mnist1d", None, split="test")
    assert test.info.n_samples == 1000
    assert test.take(1000)[0].shape == (1000, 40)
