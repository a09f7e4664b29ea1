"""The SLURM backend through submitit: one checkpointable array task per shard.

Each task trains its shard into the job cache in its folder (see gamma_tui.backends.jobs); the
driver merges the job caches into the local cache while the jobs run and when they end.
submitit is imported only when the executor submits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gamma_tui.backends.base import ShardJob, Tick, engine_command, engine_failed
from gamma_tui.backends.jobs import prepare_job_cache, remote_lease, shard_name, sync_jobs
from gamma_tui.cache import Cache

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

    def cost_seconds(self) -> tuple[float, float]:
        """(0, 0): the engine's cost reports stay in the job caches on the nodes."""
        return 0.0, 0.0

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
