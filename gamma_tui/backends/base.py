"""What every backend shares: the Executor protocol, the ShardJob it trains, the engine command.

The runner hands each round's shards to an Executor and waits for it; local worker
processes, SLURM job arrays and Ray tasks are three implementations of that one protocol.
All of them run the same engine worker (`python -m gamma_tui.engine`) on the same shards, so
a run's curve is bitwise the same whichever backend trained it. This module imports neither
the runner nor the other backends.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gamma_tui.cache import Cache

Tick = Callable[[], None]
"""Called by an executor while it waits, so the caller can show progress."""


@dataclass(frozen=True)
class ShardJob:
    """What every backend needs to train shards: the sweep, device and engine knobs."""

    sweep: str
    device: str
    checkpoint_every: int
    threads: int = 0
    """torch CPU threads per engine worker; 0: local workers share out the free CPUs
    (GAMMA_TUI_THREADS), remote ones keep torch's default (the CPUs it may use)."""
    compile_step: bool = False
    """torch.compile the training step (train.compile)."""


class Executor(Protocol):
    """Trains shards of runs registered in a cache; the runner calls `run` once per round."""

    @property
    def pieces(self) -> int:
        """How many parts the runner splits each shard group into (the parallelism it wants)."""
        ...

    def run(self, cache: Cache, shards: list[list[str]], job: ShardJob, tick: Tick) -> list[str]:
        """Train the shards into `cache`; blocks until done; returns one message per failure."""
        ...

    def cost_seconds(self) -> tuple[float, float]:
        """(training, diagnostics) seconds the engine workers of the last `run` measured;
        (0, 0) where the workers' reports stay on the nodes."""
        ...

    def stop(self) -> None:
        """Stop training early; runs keep their last checkpoint."""
        ...


def engine_command(
    cache_dir: Path | str, shards: Sequence[Sequence[str]], job: ShardJob
) -> list[str]:
    """The engine worker's command line for `shards` against the cache in `cache_dir`."""
    command = [sys.executable, "-m", "gamma_tui.engine", "--cache", str(cache_dir)]
    command += ["--device", job.device, "--threads", str(job.threads)]
    command += ["--checkpoint-every", str(job.checkpoint_every)]
    command += ["--compile"] if job.compile_step else []
    for shard in shards:
        command += ["--shard", ",".join(shard)]
    return command


def run_engine(
    cache_dir: Path | str, shards: Sequence[Sequence[str]], job: ShardJob
) -> dict[str, Any]:
    """Run the engine worker to completion; returns its exit code and the end of its log."""
    log = Path(cache_dir) / "engine.log"
    with log.open("ab") as handle:
        code = subprocess.run(
            engine_command(cache_dir, shards, job),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        ).returncode
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {"code": code, "log": " | ".join(tail)}


def engine_failed(result: dict[str, Any]) -> bool:
    """Whether an engine exit code means failure (0 is success, 130 a clean stop)."""
    return result["code"] not in (0, 130)
