"""Choosing a backend: the [backend] table with the command line on top, and its executor.

`gamma-tui run` resolves the preset's [backend] settings with its flags (resolve_backend) and
gets the executor that trains there (executor_for): local worker processes, a SLURM job array
or Ray tasks. submitit and ray are optional extras, checked for here before use.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gamma_tui.backends.base import Executor
from gamma_tui.backends.local import LocalExecutor
from gamma_tui.backends.ray_tasks import RayExecutor
from gamma_tui.backends.slurm import SlurmExecutor
from gamma_tui.cache import CacheError
from gamma_tui.config import BackendConfig, PresetError

BACKENDS = ("local", "slurm", "ray")
"""Names accepted by `gamma-tui run --backend`."""

FLAGS = {
    "kind": "--backend",
    "workers": "--workers",
    "jobs_dir": "--jobs-dir",
    "slurm": "--slurm",
    "slurm_cluster": "--slurm-cluster",
    "ray_address": "--ray-address",
}
"""The `gamma-tui run` option that overrides each key of a preset's [backend] table."""

JOBS_ENV_VAR = "GAMMA_TUI_JOBS"
"""Environment variable naming the job folders' root (it must be on the shared filesystem)."""


def default_jobs_dir(cache_root: Path) -> Path:
    """$GAMMA_TUI_JOBS if set, else CACHE/jobs (put it on the filesystem the nodes share)."""
    return Path(os.environ.get(JOBS_ENV_VAR) or cache_root / "jobs")


def make_executor(
    name: str,
    workers: int = 1,
    jobs_dir: Path | None = None,
    slurm: dict[str, Any] | None = None,
    slurm_cluster: str | None = None,
    ray_address: str | None = None,
    slurm_max_num_timeout: int = 3,
    slurm_signal_delay_s: int = 90,
) -> Executor:
    """The executor for `--backend NAME`.

    `workers` is the parallelism asked for: worker processes, array tasks or Ray tasks.
    """
    if name == "local":
        return LocalExecutor(workers)
    extra = {"slurm": "submitit", "ray": "ray"}.get(name)
    if extra and importlib.util.find_spec(extra) is None:
        raise CacheError(f"the {name} backend needs {extra}: pip install 'gamma-tui[{name}]'")
    if name == "slurm":
        if jobs_dir is None:
            raise CacheError("the slurm backend needs a jobs folder on the shared filesystem")
        return SlurmExecutor(
            jobs_dir,
            slurm or {},
            slurm_cluster,
            pieces=workers,
            max_num_timeout=slurm_max_num_timeout,
            signal_delay_s=slurm_signal_delay_s,
        )
    if name == "ray":
        return RayExecutor(ray_address, pieces=workers)
    raise CacheError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def resolve_backend(
    preset: BackendConfig,
    kind: str | None = None,
    workers: int | None = None,
    jobs_dir: Path | str | None = None,
    slurm: dict[str, Any] | None = None,
    slurm_cluster: str | None = None,
    ray_address: str | None = None,
) -> BackendConfig:
    """The preset's [backend] table with the command line on top, validated.

    A flag that is given (not None) wins over the preset's key; `slurm` pairs are merged over
    the preset's table, key by key. A bad flag value is a PresetError naming the flag.
    """
    flags = {
        "kind": kind,
        "workers": workers,
        "jobs_dir": None if jobs_dir is None else str(jobs_dir),
        "slurm_cluster": slurm_cluster,
        "ray_address": ray_address,
    }
    merged = preset.model_dump() | {key: value for key, value in flags.items() if value is not None}
    merged["slurm"] = preset.slurm | (slurm or {})
    try:
        return BackendConfig.model_validate(merged)
    except ValidationError as error:  # the preset's own values were valid: a flag is wrong
        raise PresetError("\n".join(_flag_problem(item) for item in error.errors())) from None


def _flag_problem(item: Any) -> str:
    """One line for a bad command-line value: the flag, the value and the problem."""
    flag = FLAGS.get(str(item["loc"][0]), "--" + str(item["loc"][0]))
    problem = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] == "value_error":
        return f"{flag}: {problem}"
    return f"{flag} {item.get('input')!r}: {problem}"


def jobs_root(settings: BackendConfig, cache_root: Path) -> Path:
    """Where SLURM job folders go: backend.jobs_dir (or --jobs-dir), else default_jobs_dir."""
    if settings.jobs_dir:
        return Path(settings.jobs_dir).expanduser()
    return default_jobs_dir(cache_root)


def executor_for(settings: BackendConfig, cache_root: Path) -> Executor:
    """The executor of resolved backend settings."""
    return make_executor(
        settings.kind,
        settings.workers or 1,
        jobs_root(settings, cache_root),
        dict(settings.slurm),
        settings.slurm_cluster,
        settings.ray_address,
        settings.slurm_max_num_timeout,
        settings.slurm_signal_delay_s,
    )


def describe_backend(settings: BackendConfig, cache_root: Path) -> str:
    """One line naming where `run` would train, for `run --dry-run`."""
    workers = settings.workers or 1
    if settings.kind == "local":
        return f"backend local: {workers} worker process{'es' if workers > 1 else ''}"
    split = f"each shard group in up to {workers} part{'s' if workers > 1 else ''}"
    if settings.kind == "ray":
        return f"backend ray at {settings.ray_address or 'auto'}: one task per shard, {split}"
    parameters = " ".join(f"{key}={json.dumps(value)}" for key, value in settings.slurm.items())
    return (
        f"backend slurm (submitit cluster {settings.slurm_cluster or 'auto'}): one array task "
        f"per shard, {split}; job folders in {jobs_root(settings, cache_root)}; checkpoint "
        f"signal {settings.slurm_signal_delay_s} s before the limit, requeued up to "
        f"{settings.slurm_max_num_timeout} time-outs"
        + (f"; parameters {parameters}" if parameters else "")
    )
