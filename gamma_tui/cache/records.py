"""The values the cache reads and writes: run and sweep rows, curves, measurements, a
worker's commit (`Progress`) and a run's portable state (`RunState`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gamma_tui.schedule import Chunk
from gamma_tui.states import INTERRUPTED, RUNNING


class CacheError(Exception):
    """The cache cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class RunInfo:
    """One run's row: settings that identify it in the grid, its state and counters."""

    run_id: str
    gamma: float
    eta: float
    seed: int
    dtype: str
    shard_key: str
    status: str
    steps_done: int
    steps_target: int
    diverged_step: int | None
    init_loss: float | None
    last_loss: float | None
    error: str | None
    lease_owner: str | None
    lease_expires: float | None
    wall_seconds: float
    updated: float

    @property
    def state(self) -> str:
        """The status, with 'interrupted' for a running run whose worker stopped renewing."""
        if self.status == RUNNING and (self.lease_expires or 0.0) < time.time():
            return INTERRUPTED
        return self.status


@dataclass(frozen=True)
class SweepInfo:
    """A named sweep: the preset it came from, its target steps and its runs' states."""

    name: str
    preset_path: str | None
    preset_toml: str
    config: dict[str, Any]
    steps: int
    created: float
    updated: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Number of runs in the sweep."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class Curve:
    """A recorded loss curve: step positions (window centres) and float32 losses."""

    steps: np.ndarray
    loss: np.ndarray


@dataclass(frozen=True)
class Evals:
    """A run's held-out evaluations: steps, losses and accuracies (NaN without classes)."""

    steps: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray


@dataclass(frozen=True)
class Diagnostics:
    """A run's diagnostics: the steps measured and each quantity's values there (NaN where
    missing), keyed by name (engine/diagnostics.py: sharpness, trace, ...)."""

    steps: np.ndarray
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class Progress:
    """What a worker commits for one run: new chunks, a checkpoint and counters."""

    run_id: str
    steps_done: int
    chunks: list[Chunk]
    checkpoint: dict[str, np.ndarray] | None
    status: str
    init_loss: float | None
    last_loss: float | None
    diverged_step: int | None = None
    error: str | None = None
    wall_seconds: float = 0.0
    evals: list[tuple[int, float | None, float | None]] = field(default_factory=list)
    """Held-out (step, loss, accuracy or None) measured since the last commit."""
    diagnostics: list[tuple[int, str, float | None]] = field(default_factory=list)
    """Diagnostics (step, name, value or None) measured since the last commit."""


STATE_COLUMNS = (
    "run_id", "spec_json", "shard_key", "gamma", "eta", "seed", "dtype", "status",
    "steps_target", "steps_done", "diverged_step", "init_loss", "last_loss", "error",
    "wall_seconds",
)  # fmt: skip
"""Columns of `runs` that travel with a RunState (leases and timestamps stay local)."""


@dataclass(frozen=True)
class RunState:
    """Everything one cache knows about a run, as plain values that pickle cheaply.

    Distributed backends move runs between the local cache and job caches with these:
    `Cache.export_runs` makes them, `Cache.merge_runs` takes them where they are ahead.
    """

    run_id: str
    spec_json: str
    shard_key: str
    gamma: float
    eta: float
    seed: int
    dtype: str
    status: str
    steps_target: int
    steps_done: int
    diverged_step: int | None
    init_loss: float | None
    last_loss: float | None
    error: str | None
    wall_seconds: float
    chunks: tuple[tuple[int, int, bytes], ...] = ()
    checkpoint: tuple[int, bytes] | None = None
    evals: tuple[tuple[int, float | None, float | None], ...] = ()
    diagnostics: tuple[tuple[int, str, float | None], ...] = ()

    def row_values(self, status: str, steps_target: int) -> tuple[Any, ...]:
        """Values for STATE_COLUMNS, with the merged status and target."""
        values = [getattr(self, column) for column in STATE_COLUMNS]
        values[STATE_COLUMNS.index("status")] = status
        values[STATE_COLUMNS.index("steps_target")] = steps_target
        return tuple(values)
