"""The Ray backend: one task per shard, its runs shipped in and their states shipped back.

A task trains in a temporary job cache on its node (see gamma_tui.backends.jobs) and returns
the runs' states, which the driver merges shard by shard as tasks finish. ray is imported
only when the executor runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gamma_tui.backends.base import ShardJob, Tick, engine_failed, run_engine
from gamma_tui.backends.jobs import prepare_job_cache, remote_lease
from gamma_tui.cache import Cache, CacheError, RunState


def train_shipped_shard(states: list[RunState], job: ShardJob) -> tuple[list[RunState], dict]:
    """The Ray task's body: train shipped runs in a temporary job cache, return their states."""
    run_ids = [state.run_id for state in states]
    with tempfile.TemporaryDirectory(prefix="gamma-tui-job-") as folder:
        prepare_job_cache(Path(folder), states)
        result = run_engine(folder, [run_ids], job)
        with Cache(folder) as job_cache:
            return job_cache.export_runs(run_ids), result


@dataclass
class RayExecutor:
    """Shards as Ray tasks; results come back as run states, merged shard by shard.

    Args:
        address: a Ray cluster's address; None joins the running one or starts a local one.
        gpus_per_task: GPUs a task asks for; None means 1 when the device is cuda, else 0.
    """

    address: str | None = None
    pieces: int = 1
    cpus_per_task: float = 1.0
    gpus_per_task: float | None = None
    poll_seconds: float = 0.5
    pending: list[Any] = field(default_factory=list)

    def run(self, cache: Cache, shards: list[list[str]], job: ShardJob, tick: Tick) -> list[str]:
        """Submit one task per shard; merge each one's runs as soon as it returns."""
        import ray

        if not ray.is_initialized():
            try:
                ray.init(address=self.address)
            except (ValueError, ConnectionError, RuntimeError) as error:
                raise CacheError(f"cannot start or reach Ray at {self.address}: {error}") from None
        gpus = self.gpus_per_task
        if gpus is None:
            gpus = 1.0 if job.device.startswith("cuda") else 0.0
        task = ray.remote(train_shipped_shard).options(
            num_cpus=self.cpus_per_task, num_gpus=gpus, max_retries=0
        )
        errors: list[str] = []
        with remote_lease(cache, shards) as (owner, shards):
            self.pending = [task.remote(cache.export_runs(shard), job) for shard in shards]
            while self.pending:
                ready, self.pending = ray.wait(
                    self.pending, num_returns=1, timeout=self.poll_seconds
                )
                for ref in ready:
                    try:
                        states, result = ray.get(ref)
                    except Exception as error:  # a task that raised or whose node died
                        errors.append(f"ray task failed: {type(error).__name__}: {error}")
                        continue
                    cache.merge_runs(states, owner)
                    if engine_failed(result):
                        errors.append(
                            f"ray task engine exited with {result['code']}: {result['log']}"
                        )
                cache.renew(owner)
                tick()
        return errors

    def cost_seconds(self) -> tuple[float, float]:
        """(0, 0): the engine's cost reports stay in the job caches on the nodes."""
        return 0.0, 0.0

    def stop(self) -> None:
        """Cancel pending tasks (their progress since the shard started is lost)."""
        import ray

        for ref in self.pending:
            ray.cancel(ref)
