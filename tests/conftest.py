"""Shared fixtures: temporary caches."""

from __future__ import annotations

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
