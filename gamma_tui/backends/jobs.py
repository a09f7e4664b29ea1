"""Job caches, shared by the SLURM and Ray backends: preparing, syncing and leasing them.

Remote workers never touch the local cache: each shard trains in a job cache of its own
(SQLite in DELETE journal mode, since WAL needs shared memory that NFS/Lustre lack),
pre-filled with the shard's runs and checkpoints so a job resumes instead of restarting, and
merged back with `Cache.merge_runs`, which only ever takes a run's state when it is ahead.
SLURM jobs keep their caches in JOBS_ROOT/<sweep>/<shard>/ on the shared filesystem
(`sync_jobs` ingests them, idempotently); Ray tasks ship theirs back as run states.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gamma_tui.cache import DB_NAME, Cache, CacheError, RunState


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
