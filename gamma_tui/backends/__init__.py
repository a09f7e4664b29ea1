"""Where shards train: local worker processes, a SLURM job array (submitit) or Ray tasks.

Each backend is an Executor (gamma_tui.backends.base) that the runner hands every round's
shards to: LocalExecutor (local.py, the default) starts engine workers on this machine,
SlurmExecutor (slurm.py) and RayExecutor (ray_tasks.py) train in job caches (jobs.py) merged
back into the local cache. settings.py turns a preset's [backend] table and the command line
into one of them. None of these modules imports the runner or torch; submitit and ray are
imported only by their executors.
"""

from gamma_tui.backends.base import Executor, ShardJob
from gamma_tui.backends.jobs import prepare_job_cache, remote_lease, shard_name, sync_jobs
from gamma_tui.backends.local import LocalExecutor
from gamma_tui.backends.ray_tasks import RayExecutor
from gamma_tui.backends.settings import (
    BACKENDS,
    default_jobs_dir,
    describe_backend,
    executor_for,
    make_executor,
    resolve_backend,
)
from gamma_tui.backends.slurm import SlurmExecutor, preempt_signal

__all__ = [
    "BACKENDS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "ShardJob",
    "SlurmExecutor",
    "default_jobs_dir",
    "describe_backend",
    "executor_for",
    "make_executor",
    "preempt_signal",
    "prepare_job_cache",
    "remote_lease",
    "resolve_backend",
    "shard_name",
    "sync_jobs",
]
