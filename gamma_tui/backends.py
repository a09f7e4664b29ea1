"""Where shards train: local worker processes, a SLURM job array (submitit) or Ray tasks.

Every backend runs the same engine worker (`python -m gamma_tui.engine`) on the same shards,
so a run's curve is bitwise the one a local run records. Local workers write the local cache
directly. Remote ones never touch it: each shard trains in a job cache of its own (SQLite in
DELETE journal mode, since WAL needs shared memory that NFS/Lustre lack), pre-filled with
the shard's runs and checkpoints so a job resumes instead of restarting, and merged back
with `Cache.merge_runs`, which only ever takes a run's state when it is ahead. SLURM jobs
keep their caches in JOBS_ROOT/<sweep>/<shard>/ on the shared filesystem (`sync_jobs`
ingests them, idempotently); Ray tasks train in a temporary folder on their node and return
the runs' states, which the driver merges shard by shard as tasks finish.

This module never imports torch; submitit and ray are imported only by their executors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from gamma_tui import runner
from gamma_tui.cache import DB_NAME, Cache, CacheError, RunState
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

Tick = Callable[[], None]
"""Called by an executor while it waits, so the caller can show progress."""


@dataclass(frozen=True)
class ShardJob:
    """What every backend needs to train shards: the sweep, device and engine knobs."""

    sweep: str
    device: str
    checkpoint_every: int
    threads: int = 0
    """torch CPU threads per engine worker; 0 keeps torch's default (the CPUs it may use)."""
    compile_step: bool = False
    """torch.compile the training step (train.compile)."""


class Executor(Protocol):
    """Trains shards of runs registered in a cache; the runner calls `run` once per round."""

    pieces: int
    """How many parts the runner splits each shard group into (the parallelism it wants)."""

    def run(self, cache: Cache, shards: list[list[str]], job: ShardJob, tick: Tick) -> list[str]:
        """Train the shards into `cache`; blocks until done; returns one message per failure."""
        ...

    def stop(self) -> None:
        """Stop training early; runs keep their last checkpoint."""
        ...


def engine_command(
    cache_dir: Path | str, shards: Sequence[Sequence[str]], job: ShardJob
) -> list[str]:
    """The engine worker's command line for `shards` against the cache in `cache_dir`."""
    return runner.worker_command(
        cache_dir, shards, job.device, job.threads, job.checkpoint_every, job.compile_step
    )


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


# ---- local processes ---------------------------------------------------------------------


@dataclass
class LocalExecutor:
    """Engine worker processes on this machine, writing the local cache directly."""

    workers: int = 1
    poll_seconds: float = 0.5
    pool: runner.WorkerPool = field(default_factory=runner.WorkerPool)

    @property
    def pieces(self) -> int:
        """One shard part per worker process."""
        return self.workers

    def run(self, cache: Cache, shards: list[list[str]], job: ShardJob, tick: Tick) -> list[str]:
        """Start the workers (runner.start_workers) and wait for them."""
        self.pool = runner.start_workers(
            cache.root,
            shards,
            self.workers,
            job.device,
            job.checkpoint_every,
            compile_step=job.compile_step,
        )
        while self.pool.alive():
            tick()
            time.sleep(self.poll_seconds)
        return self.pool.failures()

    def stop(self) -> None:
        """SIGTERM the workers: they checkpoint and exit."""
        self.pool.stop()


# ---- job caches: shared by SLURM and Ray -------------------------------------------------


def shard_name(shard: Sequence[str]) -> str:
    """A stable folder name for a shard, so a resubmitted shard reuses its job cache."""
    return "shard-" + hashlib.sha1(",".join(sorted(shard)).encode()).hexdigest()[:12]


def prepare_job_cache(folder: Path, states: Sequence[RunState]) -> None:
    """Create (or bring up to date) a job cache holding the shard's runs and checkpoints."""
    with Cache(folder, journal="delete") as job_cache:
        job_cache.merge_runs(states)


def sync_jobs(
    cache: Cache, jobs_root: Path, sweep: str | None = None, owner: str | None = None
) -> dict[str, int]:
    """Merge every job cache under jobs_root[/sweep] into `cache`; safe to rerun.

    Returns the number of runs taken from each job folder (0 when it had nothing new).
    `owner`: the driver's lease on the remotely training runs (see `remote_lease`).
    """
    base = jobs_root / sweep if sweep else jobs_root
    taken: dict[str, int] = {}
    for database in sorted(base.rglob(DB_NAME)) if base.is_dir() else []:
        if database.parent.resolve() == cache.root.resolve():
            continue  # jobs_root may contain the local cache itself
        try:
            with Cache(database.parent) as job_cache:
                states = job_cache.export_runs([r.run_id for r in job_cache.runs()])
        except (CacheError, OSError) as error:
            raise CacheError(f"{database.parent}: cannot read the job cache ({error})") from None
        taken[str(database.parent)] = len(cache.merge_runs(states, owner))
    return taken


@contextmanager
def remote_lease(cache: Cache, shards: list[list[str]]) -> Iterator[tuple[str, list[list[str]]]]:
    """Lease the shards' runs for the driver while they train remotely.

    Another `run` on an overlapping preset then sees them running and waits instead of
    training them twice. Yields the owner and the shards cut to the runs it could lease
    (one held by a live worker elsewhere is left to it). The lease names this host and
    process, so it lapses if the driver dies (the jobs' work is still ingested by `sync`);
    the driver renews it while it waits, and releases what is left at the end.
    """
    owner = f"{socket.gethostname()}:{os.getpid()}:remote-{uuid.uuid4().hex[:8]}"
    claimed = set(cache.claim([run_id for shard in shards for run_id in shard], owner))
    mine = [[run_id for run_id in shard if run_id in claimed] for shard in shards]
    try:
        yield owner, [shard for shard in mine if shard]
    finally:
        cache.release(owner)


PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"
"""submitit's variable naming its preemption/timeout signal (USR2 unless set)."""


def preempt_signal() -> signal.Signals:
    """The signal submitit's job handler checkpoints and requeues on (SIGUSR2 by default)."""
    return signal.Signals[f"SIG{os.environ.get(PREEMPT_SIGNAL_ENV, 'USR2')}"]


def ignoring_preempt_signal(command: list[str]) -> list[str]:
    """`command` run with submitit's signal ignored (an ignored signal stays ignored across
    exec): SLURM signals every process of the job step, and only the job body may act on it
    (the engine stops on its SIGTERM). A shell trap rather than preexec_fn, which is unsafe
    when the caller has threads (the debug executor runs jobs in the driver)."""
    name = preempt_signal().name.removeprefix("SIG")
    return ["/bin/sh", "-c", f'trap "" {name}; exec "$@"', "sh", *command]


class ShardTask:
    """The SLURM job's body: train one shard into the job cache in its folder; checkpointable.

    A callable with a `checkpoint` method is what submitit requeues (the contract of
    submitit.helpers.Checkpointable, which is not subclassed so this module can be imported
    without submitit). On its preemption or timeout signal (USR2, sent `signal_delay_s`
    before the time limit) submitit calls `checkpoint` in the job: it stops the engine, which
    commits every run's state at its current step into the job cache, and returns the same
    call, which submitit pickles and requeues (at most `max_num_timeout` times for
    time-outs). The requeued job runs the engine again on the job cache, so every run resumes
    from the step it reached.
    """

    def __init__(self, job: ShardJob, grace_seconds: float = 60.0, poll_seconds: float = 0.5):
        self.job, self.grace_seconds, self.poll_seconds = job, grace_seconds, poll_seconds
        self._process: subprocess.Popen[bytes] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the engine process (submitit pickles the task to requeue it)."""
        return self.__dict__ | {"_process": None}

    def __call__(self, folder: str, shard: list[str]) -> dict[str, Any]:
        """Run the engine on the shard until it exits; its exit code and the end of its log."""
        print(f"gamma-tui job: {_steps_line(folder, shard)}; training", flush=True)
        log = Path(folder) / "engine.log"
        with log.open("ab") as handle:
            self._process = subprocess.Popen(
                ignoring_preempt_signal(engine_command(folder, [shard], self.job)),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            # poll rather than wait(): wait() would hold the lock that `checkpoint`, called
            # from the signal handler in this thread, needs to reap the engine
            while (code := self._process.poll()) is None:
                time.sleep(self.poll_seconds)
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return {"code": code, "log": " | ".join(tail)}

    def checkpoint(self, folder: str, shard: list[str]) -> Any:
        """Stop the engine (it checkpoints and exits; killed after grace_seconds) and return
        the call to requeue: a submitit DelayedSubmission of a fresh task on the same shard."""
        from submitit.helpers import DelayedSubmission

        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.grace_seconds)
            except subprocess.TimeoutExpired:  # runs keep their last periodic checkpoint
                process.kill()
        print(f"gamma-tui job: checkpointed, {_steps_line(folder, shard)}; requeued", flush=True)
        return DelayedSubmission(ShardTask(self.job, self.grace_seconds), folder, shard)


def _steps_line(folder: str, shard: list[str]) -> str:
    """Where the shard's runs stand in the job cache, for the job's log."""
    with Cache(folder) as job_cache:
        steps = sorted({run.steps_done for run in job_cache.runs(run_ids=shard)})
    shown = ", ".join(map(str, steps[:5])) + (", ..." if len(steps) > 5 else "")
    return f"{len(shard)} runs at step {shown}"


def train_shipped_shard(states: list[RunState], job: ShardJob) -> tuple[list[RunState], dict]:
    """The Ray task's body: train shipped runs in a temporary job cache, return their states."""
    run_ids = [state.run_id for state in states]
    with tempfile.TemporaryDirectory(prefix="gamma-tui-job-") as folder:
        prepare_job_cache(Path(folder), states)
        result = run_engine(folder, [run_ids], job)
        with Cache(folder) as job_cache:
            return job_cache.export_runs(run_ids), result


# ---- SLURM via submitit ------------------------------------------------------------------


@dataclass
class SlurmExecutor:
    """A SLURM job array through submitit; one array task per shard, each in its job folder.

    Each task is a checkpointable `ShardTask`: preempted or timed out, it checkpoints its runs
    in its job folder and is requeued, resuming from there. A failed task loses only its own
    runs' work since their last commit; the others' are merged all the same.

    Args:
        jobs_root: a folder on the filesystem shared with the compute nodes.
        parameters: submitit parameters (timeout_min, slurm_partition, gpus_per_node, ...).
        cluster: submitit's cluster: None (SLURM, or local without it), "local" or "debug".
        max_num_timeout: how many times a task that timed out is requeued (preemptions do
            not count).
        signal_delay_s: how long before the time limit the job gets the checkpoint signal;
            the engine has all but 10 s of it to checkpoint.
        sync_seconds: how often the driver merges the job caches while jobs run.
    """

    jobs_root: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    cluster: str | None = None
    pieces: int = 1
    max_num_timeout: int = 3
    signal_delay_s: int = 90
    poll_seconds: float = 2.0
    sync_seconds: float = 30.0
    jobs: list[Any] = field(default_factory=list)

    def run(self, cache: Cache, shards: list[list[str]], job: ShardJob, tick: Tick) -> list[str]:
        """Prepare a job folder per shard, submit the array, sync until every job ended."""
        with remote_lease(cache, shards) as (owner, shards):
            if not shards:
                return []
            folders = []
            for shard in shards:
                folder = self.jobs_root / job.sweep / shard_name(shard)
                prepare_job_cache(folder, cache.export_runs(shard))
                folders.append(str(folder))
            executor = self._submitit_executor(job.sweep, len(shards))
            task = ShardTask(job, grace_seconds=max(1, self.signal_delay_s - 10))
            self.jobs = executor.map_array(task, folders, shards)
            return self._wait(cache, job, tick, owner)

    def _submitit_executor(self, sweep: str, tasks: int) -> Any:
        """submitit's executor for the cluster, with the timeout and signal settings.

        submitit's local executor takes its signal delay only when built directly (the
        AutoExecutor accepts no `local_` signal parameter); SLURM's is `slurm_signal_delay_s`.
        """
        import submitit

        folder = self.jobs_root / sweep / "submitit"
        cluster = self.cluster or submitit.AutoExecutor.which()
        parameters = {"timeout_min": 60, "name": f"gamma-tui-{sweep}"}
        parameters |= {"slurm_array_parallelism": max(1, tasks)} | self.parameters
        if cluster == "local":
            executor: Any = submitit.LocalExecutor(folder, max_num_timeout=self.max_num_timeout)
            parameters["signal_delay_s"] = self.signal_delay_s
        else:
            executor = submitit.AutoExecutor(
                folder, cluster=cluster, slurm_max_num_timeout=self.max_num_timeout
            )
            parameters["slurm_signal_delay_s"] = self.signal_delay_s
        executor.update_parameters(**_valid(cluster, parameters))
        return executor

    def _wait(self, cache: Cache, job: ShardJob, tick: Tick, owner: str) -> list[str]:
        """Poll the jobs, merging job caches every sync_seconds and when all have ended."""
        errors: list[str] = []
        pending, last_sync = list(self.jobs), time.monotonic()
        while pending:
            for submitted in [j for j in pending if j.done()]:
                pending.remove(submitted)
                errors += _job_errors(submitted)
            if time.monotonic() - last_sync >= self.sync_seconds:
                sync_jobs(cache, self.jobs_root, job.sweep, owner)
                last_sync = time.monotonic()
            cache.renew(owner)
            tick()
            if pending:
                time.sleep(self.poll_seconds)
        sync_jobs(cache, self.jobs_root, job.sweep, owner)
        return errors

    def stop(self) -> None:
        """Cancel the jobs (SLURM sends SIGTERM: workers checkpoint; `sync` ingests them)."""
        for submitted in self.jobs:
            submitted.cancel(check=False)


def _valid(cluster: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Drop `slurm_*` parameters when the cluster is not SLURM (local and debug runs)."""
    if cluster == "slurm":
        return parameters
    return {k: v for k, v in parameters.items() if not k.startswith("slurm_")}


def _job_errors(submitted: Any) -> list[str]:
    """A message for a job that raised or whose engine failed, else nothing."""
    try:
        result = submitted.result()
    except Exception as error:  # submitit re-raises the job's failure here
        return [f"job {submitted.job_id} failed: {type(error).__name__}: {error}"]
    if engine_failed(result):
        return [f"job {submitted.job_id} engine exited with {result['code']}: {result['log']}"]
    return []


# ---- Ray ---------------------------------------------------------------------------------


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

    def stop(self) -> None:
        """Cancel pending tasks (their progress since the shard started is lost)."""
        import ray

        for ref in self.pending:
            ray.cancel(ref)


# ---- choosing a backend -----------------------------------------------------------------


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
) -> Executor | None:
    """The executor for `--backend NAME`; None for local (the runner's own default path).

    `workers` is the parallelism asked for: worker processes, array tasks or Ray tasks.
    """
    if name == "local":
        return None
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


def executor_for(settings: BackendConfig, cache_root: Path) -> Executor | None:
    """The executor of resolved backend settings (None: the runner's local worker processes)."""
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
