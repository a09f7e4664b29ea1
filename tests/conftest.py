"""Shared fixtures: temporary caches, and the device the engine tests train on.

GAMMA_TUI_TEST_DEVICE=cuda (or cuda:1, mps) runs every ShardTrainer the tests build on that
device instead of the CPU their TrainerOptions name (bench/gpu_check.sh sets it); unset, the
tests train where they say. Workers the tests start pick their device from the preset ('auto'
takes CUDA where present).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SMOKE

from gamma_tui.cache import Cache


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    """An empty cache in a temporary directory."""
    with Cache(tmp_path / "runs") as opened:
        yield opened


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """For the UI tests: a working directory with presets/smoke.toml and a cache 'runs' holding
    the two demo sweeps, in a fixed time zone and without NO_COLOR."""
    from gamma_tui.ui.demo import pin_timestamps, write_demo_cache

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    (tmp_path / "presets").mkdir()
    shutil.copy(SMOKE, tmp_path / "presets" / "smoke.toml")
    with Cache(tmp_path / "runs") as cache:
        write_demo_cache(cache)
        pin_timestamps(cache)
    yield tmp_path


@pytest.fixture(autouse=True)
def engine_test_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Move the tests' trainers to GAMMA_TUI_TEST_DEVICE when it is set (see the docstring)."""
    name = os.environ.get("GAMMA_TUI_TEST_DEVICE")
    if not name:
        return
    import torch

    from gamma_tui.engine import trainer

    device = torch.device(name)
    original = trainer.ShardTrainer.__init__

    def on_device(self, cache, owner, options):  # type: ignore[no-untyped-def]
        original(self, cache, owner, dataclasses.replace(options, device=device))

    monkeypatch.setattr(trainer.ShardTrainer, "__init__", on_device)
