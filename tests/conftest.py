"""Shared fixtures: temporary caches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gamma_tui.cache import Cache


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    """An empty cache in a temporary directory."""
    with Cache(tmp_path / "runs") as opened:
        yield opened
