"""The run cache: one SQLite database in WAL mode under the cache directory (default runs/).

Workers write, the CLI and the TUI read; the database is the only channel between them. Each
worker commit is one transaction holding a run's new curve chunks, its checkpoint and its
counters, so a process killed at any moment leaves either the old or the new state, never a
mix. Curves are float32 BLOB chunks: every step up to the run's `curve_cap`, then means over
windows that double in width every octave of steps (see `window_at`), which keeps the shape
on a log-time axis at bounded size. Checkpoints are `numpy.savez` archives (no pickle).

Runs are claimed with leases: a worker owns a run while its lease is fresh, renews it at every
commit, and a run whose holder died is picked up by the next worker once the lease expires.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import socket
import sqlite3
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 3
"""2 added `evals` (held-out loss and accuracy), 3 `diagnostics` (curvature measurements at
the evaluation steps); an older cache is upgraded on open."""
DB_NAME = "cache.sqlite"
ENV_VAR = "GAMMA_TUI_CACHE"
LEASE_SECONDS = float(os.environ.get("GAMMA_TUI_LEASE_SECONDS") or 120.0)
"""A worker that has not committed for this long is presumed dead and its runs can be taken.

Workers commit every ~2 s, so the default is generous; GAMMA_TUI_LEASE_SECONDS lowers it
(the chaos tests do, so that killed workers' runs are picked up quickly)."""

FINAL_STATES = ("done", "diverged", "failed", "skipped")
JOURNAL_MODES = ("wal", "delete")
"""SQLite journal modes a cache may use: WAL for the local cache (readers never block the
writer), DELETE for per-job caches on NFS/Lustre, where WAL's shared memory does not work."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY, preset_path TEXT, preset_toml TEXT NOT NULL,
    config_json TEXT NOT NULL, steps INTEGER NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,
    run_id TEXT NOT NULL, PRIMARY KEY (sweep, run_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, spec_json TEXT NOT NULL, shard_key TEXT NOT NULL,
    gamma REAL NOT NULL, eta REAL NOT NULL, seed INTEGER NOT NULL, dtype TEXT NOT NULL,
    status TEXT NOT NULL, steps_target INTEGER NOT NULL, steps_done INTEGER NOT NULL DEFAULT 0,
    diverged_step INTEGER, init_loss REAL, last_loss REAL, error TEXT,
    lease_owner TEXT, lease_expires REAL, wall_seconds REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS curve_chunks (
    run_id TEXT NOT NULL, start_step INTEGER NOT NULL, window INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (run_id, start_step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT PRIMARY KEY, step INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS evals (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, accuracy REAL,
    PRIMARY KEY (run_id, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS diagnostics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, step, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
"""


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
        if self.status == "running" and (self.lease_expires or 0.0) < time.time():
            return "interrupted"
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
class Chunk:
    """Curve values of consecutive windows of `window` steps starting at `start_step`."""

    start_step: int
    window: int
    values: np.ndarray


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


def default_cache_dir() -> Path:
    """$GAMMA_TUI_CACHE if set, else ./runs."""
    return Path(os.environ.get(ENV_VAR) or "runs")


def window_at(step: int, cap: int) -> int:
    """Width of the recording window holding `step`: 1 below `cap`, doubling every octave above.

    Steps in [cap·2^k, cap·2^(k+1)) are averaged in windows of 2^(k+1), so each octave past the
    cap holds cap/2 points; window boundaries are aligned so chunks never split a window.
    """
    if step < cap:
        return 1
    octave = (step // cap).bit_length() - 1
    return 2 ** (octave + 1)


def next_boundary(step: int, cap: int) -> int:
    """The smallest window boundary >= step (a step where a new window starts)."""
    if step <= cap:
        return step
    octave_start = cap * 2 ** ((step // cap).bit_length() - 1)
    width = window_at(step, cap)
    return octave_start + -(-(step - octave_start) // width) * width


def is_eval_step(step: int) -> bool:
    """Whether held-out evaluation happens at `step`: 0 and 1, 2, 5 times powers of ten."""
    if step == 0:
        return True
    while step % 10 == 0:
        step //= 10
    return step in (1, 2, 5)


def reduce_losses(start: int, losses: np.ndarray, cap: int) -> list[Chunk]:
    """Average per-step losses from step `start` into chunks of equal window width.

    Windows follow `window_at`; a window cut by the start or end of `losses` (a commit in
    mid-window) becomes a chunk of one shorter window, so chunks can be written at any step.
    """
    chunks, offset = [], 0
    while offset < len(losses):
        step, left = start + offset, len(losses) - offset
        width = window_at(step, cap)
        segment_end = cap if step < cap else cap * 2 ** ((step // cap).bit_length())
        head = next_boundary(step, cap) - step
        if head:
            count, width = 1, min(head, left)
        else:
            count = min(segment_end - step, left) // width
            if count == 0:
                count, width = 1, min(segment_end - step, left)
        block = losses[offset : offset + count * width].astype(np.float64)
        values = block.reshape(count, width).mean(axis=1).astype(np.float32)
        chunks.append(Chunk(step, width, values))
        offset += count * width
    return chunks


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialize named arrays with numpy's savez (never pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwargs
    return buffer.getvalue()


def decode_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of encode_arrays; refuses pickled objects."""
    loaded = np.load(io.BytesIO(blob), allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("not an npz archive")
    with loaded as archive:
        return {key: archive[key] for key in archive.files}


class Cache:
    """A handle on the cache database; cheap to open, one per thread or process."""

    def __init__(self, root: str | Path | None = None, journal: str | None = None) -> None:
        """Open (or create) the cache under `root`.

        Args:
            journal: "wal" (default) or "delete" for a job cache on a shared filesystem. A
                cache created with "delete" records it, so every later opener (the engine
                worker too) keeps that mode without being told.
        """
        self.root = Path(root) if root is not None else default_cache_dir()
        self.path = self.root / DB_NAME
        if journal is not None and journal not in JOURNAL_MODES:
            raise CacheError(f"journal must be one of {', '.join(JOURNAL_MODES)}, not {journal!r}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.journal = journal or self._stored_journal() or "wal"
            self._db.execute(f"PRAGMA journal_mode={self.journal.upper()}")
            self._db.execute(
                "PRAGMA synchronous=" + ("NORMAL" if self.journal == "wal" else "FULL")
            )
            self._db.execute("PRAGMA foreign_keys=ON")
            self._init_schema()
            if self.journal != "wal":
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('journal', ?)", (self.journal,)
                )
        except sqlite3.DatabaseError as error:
            if self.root.is_dir() and not os.access(self.root, os.W_OK):
                raise CacheError(
                    f"{self.root}: the cache directory is read-only ({error}); use --cache with "
                    "a writable directory (copy the cache there to read it)"
                ) from None
            raise CacheError(f"{self.path}: cannot open the run cache ({error})") from None
        except OSError as error:
            raise CacheError(f"{self.root}: cannot create the cache directory ({error})") from None

    def _stored_journal(self) -> str | None:
        """The journal mode recorded by the cache's creator, if it is not the default."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='journal'").fetchone()
        except sqlite3.OperationalError:  # a new database: no meta table yet
            return None
        return str(row[0]) if row and row[0] in JOURNAL_MODES else None

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _init_schema(self) -> None:
        found = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if found:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise CacheError(
                    f"{self.path} was written by a newer gamma-tui (schema {version}, this one "
                    f"reads {SCHEMA_VERSION}); upgrade gamma-tui or use another --cache directory"
                )
            if version == SCHEMA_VERSION:
                return
        # first open, one cut short, or an older schema: create what is missing in one
        # transaction (BEGIN IMMEDIATE also serializes two processes creating the same cache)
        with self.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)  # idempotent: IF NOT EXISTS
            _rekey_runs(db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- sweeps and runs: registration ---------------------------------------------------

    def register_sweep(
        self,
        name: str,
        preset_toml: str,
        config: dict[str, Any],
        specs: Sequence[Any],
        steps: int,
        preset_path: str | None = None,
        replace: bool = True,
    ) -> None:
        """Record a sweep and its runs; runs already cached keep their state.

        A finished run whose steps are below `steps` is queued again to be extended from its
        checkpoint; a diverged run stays diverged. With `replace=False` the specs are added to
        the sweep's runs instead of replacing them (a refinement round adds its runs only).
        """
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sweeps VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "preset_path=excluded.preset_path, preset_toml=excluded.preset_toml, "
                "config_json=excluded.config_json, steps=excluded.steps, updated=excluded.updated",
                (name, preset_path, preset_toml, json.dumps(config), steps, now, now),
            )
            if replace:
                db.execute("DELETE FROM sweep_runs WHERE sweep=?", (name,))
            db.executemany(
                "INSERT OR IGNORE INTO sweep_runs VALUES (?,?)", [(name, s.run_id) for s in specs]
            )
            db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, spec_json, shard_key, gamma, eta, seed, dtype,"
                " status, steps_target, created, updated) VALUES (?,?,?,?,?,?,?,'queued',?,?,?)",
                [
                    (
                        s.run_id,
                        s.model_dump_json(),
                        s.shard_key,
                        s.gamma,
                        s.eta,
                        s.seed,
                        s.dtype,
                        steps,
                        now,
                        now,
                    )
                    for s in specs
                ],
            )
            # settings outside the run id (the diagnostics) follow the latest registration
            db.executemany(
                "UPDATE runs SET spec_json=?, shard_key=? WHERE run_id=? AND spec_json!=?",
                [(s.model_dump_json(), s.shard_key, s.run_id, s.model_dump_json()) for s in specs],
            )
            db.executemany(
                "UPDATE runs SET steps_target=?, updated=?, status=CASE WHEN status IN "
                "('done','failed','skipped') THEN 'queued' ELSE status END, error=NULL "
                "WHERE run_id=? AND steps_target<? AND status!='diverged'",
                [(steps, now, s.run_id, steps) for s in specs],
            )
            db.executemany(
                "UPDATE runs SET status='queued', error=NULL, updated=? WHERE run_id=? AND "
                "status IN ('failed','skipped') AND steps_done<steps_target",
                [(now, s.run_id) for s in specs],
            )

    def mark_skipped(self, run_ids: Iterable[str]) -> None:
        """Mark queued runs as skipped by the adaptive η cut-off."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE runs SET status='skipped', updated=? WHERE run_id=? AND status='queued'",
                [(time.time(), run_id) for run_id in run_ids],
            )

    def delete_sweep(self, name: str) -> int:
        """Delete a sweep and the runs no other sweep uses; returns the number of runs deleted."""
        self.sweep(name)
        with self.transaction() as db:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (run_id TEXT PRIMARY KEY)")
            db.execute("DELETE FROM doomed")
            db.execute(
                "INSERT INTO doomed SELECT run_id FROM sweep_runs WHERE sweep=? AND run_id NOT IN"
                " (SELECT run_id FROM sweep_runs WHERE sweep!=?)",
                (name, name),
            )
            for table in ("curve_chunks", "checkpoints", *MEASUREMENTS, "runs"):
                db.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM doomed)")
            count = db.execute("SELECT COUNT(*) FROM doomed").fetchone()[0]
            db.execute("DELETE FROM sweeps WHERE name=?", (name,))
        return int(count)

    # ---- leases and worker commits -------------------------------------------------------

    def claim(self, run_ids: Sequence[str], owner: str, ttl: float = LEASE_SECONDS) -> list[str]:
        """Lease the given runs that are unfinished and not held by a live worker."""
        now = time.time()
        claimed = []
        with self.transaction() as db:
            _expire_dead_leases(db, now)
            for run_id in run_ids:
                cursor = db.execute(
                    "UPDATE runs SET lease_owner=?, lease_expires=?, status='running', updated=? "
                    "WHERE run_id=? AND status IN ('queued','running') AND steps_done<steps_target"
                    " AND (lease_owner IS NULL OR lease_owner=? OR lease_expires<?)",
                    (owner, now + ttl, now, run_id, owner, now),
                )
                if cursor.rowcount:
                    claimed.append(run_id)
        return claimed

    def expire_dead_leases(self) -> None:
        """Let go of leases whose holder was a process of this host that no longer exists."""
        with self.transaction() as db:
            _expire_dead_leases(db, time.time())

    def renew(self, owner: str, ttl: float = LEASE_SECONDS) -> None:
        """Extend every lease `owner` holds by `ttl` from now (a driver whose runs train
        remotely renews them while it waits)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET lease_expires=? WHERE lease_owner=?", (time.time() + ttl, owner)
            )

    def release(self, owner: str) -> None:
        """Give up every lease held by `owner`; unfinished runs go back to queued."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status=CASE WHEN status='running' THEN 'queued' ELSE status END,"
                " lease_owner=NULL, lease_expires=NULL WHERE lease_owner=?",
                (owner,),
            )

    def fail(self, owner: str, error: str) -> None:
        """Mark every unfinished run leased by `owner` as failed with the error message."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status='failed', error=?, lease_owner=NULL, lease_expires=NULL,"
                " updated=? WHERE lease_owner=? AND status='running'",
                (error[:2000], time.time(), owner),
            )

    def commit(
        self, owner: str, updates: Sequence[Progress], ttl: float = LEASE_SECONDS
    ) -> list[str]:
        """Write progress for runs leased by `owner` in one transaction; returns runs it lost."""
        now, lost = time.time(), []
        with self.transaction() as db:
            for update in updates:
                final = update.status in FINAL_STATES
                cursor = db.execute(
                    "UPDATE runs SET steps_done=?, status=?, init_loss=COALESCE(init_loss, ?),"
                    " last_loss=?, diverged_step=?, error=?, wall_seconds=wall_seconds+?,"
                    " lease_owner=?, lease_expires=?, updated=? WHERE run_id=? AND lease_owner=?",
                    (
                        update.steps_done,
                        update.status,
                        update.init_loss,
                        update.last_loss,
                        update.diverged_step,
                        update.error,
                        update.wall_seconds,
                        None if final else owner,
                        None if final else now + ttl,
                        now,
                        update.run_id,
                        owner,
                    ),
                )
                if not cursor.rowcount:
                    lost.append(update.run_id)
                    continue
                db.executemany(
                    "INSERT OR REPLACE INTO curve_chunks VALUES (?,?,?,?)",
                    [
                        (update.run_id, c.start_step, c.window, c.values.astype("<f4").tobytes())
                        for c in update.chunks
                    ],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO evals VALUES (?,?,?,?)",
                    [(update.run_id, *values) for values in update.evals],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO diagnostics VALUES (?,?,?,?)",
                    [(update.run_id, *values) for values in update.diagnostics],
                )
                if update.checkpoint is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)",
                        (update.run_id, update.steps_done, encode_arrays(update.checkpoint)),
                    )
                elif update.status == "diverged":
                    db.execute("DELETE FROM checkpoints WHERE run_id=?", (update.run_id,))
            db.execute("UPDATE runs SET lease_expires=? WHERE lease_owner=?", (now + ttl, owner))
        return lost

    def rewind(self, run_id: str, step: int) -> None:
        """Drop a run's curve from `step` on (its last checkpoint), so training resumes there.

        Curve chunks are committed more often than checkpoints; after a crash the steps past
        the checkpoint are recomputed, so their chunks go first. Step 0 forgets the run.
        """
        with self.transaction() as db:
            db.execute("DELETE FROM curve_chunks WHERE run_id=? AND start_step>=?", (run_id, step))
            for table in MEASUREMENTS:
                db.execute(f"DELETE FROM {table} WHERE run_id=? AND step>?", (run_id, step))
            if step == 0:
                db.execute("DELETE FROM checkpoints WHERE run_id=?", (run_id,))
            db.execute(
                "UPDATE runs SET steps_done=?, init_loss=CASE WHEN ?=0 THEN NULL ELSE init_loss"
                " END WHERE run_id=?",
                (step, step, run_id),
            )

    def checkpoint(self, run_id: str) -> tuple[int, dict[str, np.ndarray]] | None:
        """The run's latest checkpoint as (step, named arrays), or None."""
        row = self._db.execute(
            "SELECT step, data FROM checkpoints WHERE run_id=?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        try:
            return int(row[0]), decode_arrays(row[1])
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise CacheError(f"run {run_id}: corrupt checkpoint ({error})") from None

    # ---- moving runs between caches (job caches of distributed backends) -----------------

    def export_runs(self, run_ids: Sequence[str]) -> list[RunState]:
        """Everything stored about the given runs, as plain values (picklable, no numpy)."""
        states = []
        for run_id in run_ids:
            row = self._db.execute(
                f"SELECT {', '.join(_STATE_COLUMNS)} FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
            if row is None:
                continue
            chunks = tuple(
                (int(start), int(window), bytes(data))
                for start, window, data in self._db.execute(
                    "SELECT start_step, window, data FROM curve_chunks WHERE run_id=?"
                    " ORDER BY start_step",
                    (run_id,),
                )
            )
            saved = self._db.execute(
                "SELECT step, data FROM checkpoints WHERE run_id=?", (run_id,)
            ).fetchone()
            checkpoint = (int(saved[0]), bytes(saved[1])) if saved else None
            evals = tuple(
                (int(step), loss, accuracy)
                for step, loss, accuracy in self._db.execute(
                    "SELECT step, loss, accuracy FROM evals WHERE run_id=? ORDER BY step",
                    (run_id,),
                )
            )
            diagnostics = tuple(
                (int(step), str(name), value)
                for step, name, value in self._db.execute(
                    "SELECT step, name, value FROM diagnostics WHERE run_id=? ORDER BY step, name",
                    (run_id,),
                )
            )
            fields = dict(zip(_STATE_COLUMNS, row, strict=True))
            states.append(
                RunState(
                    **fields,
                    chunks=chunks,
                    checkpoint=checkpoint,
                    evals=evals,
                    diagnostics=diagnostics,
                )
            )
        return states

    def merge_runs(
        self, states: Iterable[RunState], owner: str | None = None, ttl: float = LEASE_SECONDS
    ) -> list[str]:
        """Take each run's state where it is ahead of ours; returns the run ids updated.

        A state is taken when it has more steps done, or as many and a final status where
        ours is not; a run we do not have is added. Progress is never lowered, so merging
        the same states again changes nothing. Runs leased by a live local worker are left
        alone (a later merge takes them). A run a job left 'running' arrives 'queued',
        without a lease, and resumes from its checkpoint on the next `run`. With `owner`,
        runs that owner leased (a driver whose runs train remotely) are merged too, and
        stay 'running' under its lease until they end.
        """
        now, taken = time.time(), []
        with self.transaction() as db:
            for state in states:
                row = db.execute(
                    "SELECT steps_done, status, steps_target, lease_owner, lease_expires"
                    " FROM runs WHERE run_id=?",
                    (state.run_id,),
                ).fetchone()
                ours = row is not None and owner is not None and row[3] == owner
                if row is not None and not _is_ahead(state, row, now, ours):
                    continue
                target = max(state.steps_target, row[2]) if row else state.steps_target
                status = state.status
                if status == "running" or (status == "done" and state.steps_done < target):
                    status = "queued"
                keep = ours and status not in FINAL_STATES  # still training remotely
                status = "running" if keep else status
                lease = (owner, now + ttl) if keep else (None, None)
                values = state.row_values(status, target)
                if row is None:
                    db.execute(
                        f"INSERT INTO runs ({', '.join(_STATE_COLUMNS)}, lease_owner,"
                        " lease_expires, created, updated) VALUES"
                        f" ({','.join('?' * len(_STATE_COLUMNS))}, NULL, NULL, ?, ?)",
                        (*values, now, now),
                    )
                else:
                    assignments = ", ".join(f"{c}=?" for c in _STATE_COLUMNS[1:])
                    db.execute(
                        f"UPDATE runs SET {assignments}, lease_owner=?, lease_expires=?,"
                        " updated=? WHERE run_id=?",
                        (*values[1:], *lease, now, state.run_id),
                    )
                db.execute("DELETE FROM curve_chunks WHERE run_id=?", (state.run_id,))
                db.executemany(
                    "INSERT INTO curve_chunks VALUES (?,?,?,?)",
                    [(state.run_id, *chunk) for chunk in state.chunks],
                )
                db.execute("DELETE FROM evals WHERE run_id=?", (state.run_id,))
                db.executemany(
                    "INSERT INTO evals VALUES (?,?,?,?)",
                    [(state.run_id, *values) for values in state.evals],
                )
                db.execute("DELETE FROM diagnostics WHERE run_id=?", (state.run_id,))
                db.executemany(
                    "INSERT INTO diagnostics VALUES (?,?,?,?)",
                    [(state.run_id, *values) for values in state.diagnostics],
                )
                if state.checkpoint is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)",
                        (state.run_id, *state.checkpoint),
                    )
                elif row is None or state.status == "diverged" or state.steps_done == 0:
                    db.execute("DELETE FROM checkpoints WHERE run_id=?", (state.run_id,))
                taken.append(state.run_id)
        return taken

    # ---- reading -------------------------------------------------------------------------

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (cheap change polling)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def sweeps(self) -> list[SweepInfo]:
        """Every sweep, newest first, with per-state run counts."""
        counts: dict[str, dict[str, int]] = {}
        for sweep, status, count in self._db.execute(
            "SELECT sr.sweep, r.status, COUNT(*) FROM sweep_runs sr JOIN runs r USING (run_id)"
            " GROUP BY sr.sweep, r.status"
        ):
            counts.setdefault(sweep, {})[status] = count
        rows = self._db.execute("SELECT * FROM sweeps ORDER BY updated DESC").fetchall()
        return [_sweep_info(row, counts.get(row[0], {})) for row in rows]

    def sweep(self, name: str) -> SweepInfo:
        """One sweep by name; CacheError naming the known sweeps if it does not exist."""
        for info in self.sweeps():
            if info.name == name:
                return info
        known = ", ".join(s.name for s in self.sweeps()) or "none yet"
        raise CacheError(f"no sweep named {name!r} in {self.root} (known: {known})")

    def runs(self, sweep: str | None = None, run_ids: Sequence[str] | None = None) -> list[RunInfo]:
        """Runs of one sweep (or all, or the given ids), ordered by γ, then η, then seed."""
        columns = (
            "r.run_id, r.gamma, r.eta, r.seed, r.dtype, r.shard_key, r.status, r.steps_done,"
            " r.steps_target, r.diverged_step, r.init_loss, r.last_loss, r.error,"
            " r.lease_owner, r.lease_expires, r.wall_seconds, r.updated"
        )
        if sweep is not None:
            query = (
                f"SELECT {columns} FROM runs r JOIN sweep_runs sr USING (run_id) WHERE sr.sweep=?"
            )
            rows = self._db.execute(query, (sweep,)).fetchall()
            if run_ids is not None:
                wanted = set(run_ids)
                rows = [row for row in rows if row[0] in wanted]
        elif run_ids is not None:
            rows = []
            for batch in _batches(list(run_ids)):
                where = f" WHERE r.run_id IN ({','.join('?' * len(batch))})"
                rows += self._db.execute(f"SELECT {columns} FROM runs r" + where, batch).fetchall()
        else:
            rows = self._db.execute(f"SELECT {columns} FROM runs r").fetchall()
        return sorted((RunInfo(*row) for row in rows), key=lambda r: (r.gamma, r.eta, r.seed))

    def specs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored RunSpec JSON of each run, as dicts."""
        found = {}
        for run_id in run_ids:
            row = self._db.execute(
                "SELECT spec_json FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
            if row is not None:
                found[run_id] = json.loads(row[0])
        return found

    def curves(
        self, run_ids: Iterable[str] | None = None, since: Mapping[str, int] | None = None
    ) -> dict[str, Curve]:
        """The loss curves of the given runs (all runs if None), keyed by run id.

        With `since`, only the chunks starting at or after since[run_id] are read: a reader
        that already holds a run's curve up to that step appends instead of re-reading.
        """
        query = "SELECT run_id, start_step, window, data FROM curve_chunks"
        parts: dict[str, list[tuple[int, int, bytes]]] = {}
        if since is not None:  # one indexed range scan per run: only the new chunks are read
            ids = list(since if run_ids is None else run_ids)
            rows = itertools.chain.from_iterable(
                self._db.execute(
                    query + " WHERE run_id=? AND start_step>=? ORDER BY start_step",
                    (run_id, since.get(run_id, 0)),
                )
                for run_id in ids
            )
        else:
            batches = [[]] if run_ids is None else _batches(list(run_ids))
            rows = itertools.chain.from_iterable(
                self._db.execute(
                    query
                    + (f" WHERE run_id IN ({','.join('?' * len(batch))})" if batch else "")
                    + " ORDER BY run_id, start_step",
                    batch,
                )
                for batch in batches
            )
        for run_id, start, window, data in rows:
            parts.setdefault(run_id, []).append((start, window, data))
        return {run_id: _assemble(chunks) for run_id, chunks in parts.items()}

    def evals(self, run_ids: Iterable[str]) -> dict[str, Evals]:
        """The held-out evaluations of the given runs that have any, keyed by run id."""
        rows: dict[str, list[tuple[int, float, float | None]]] = {}
        for batch in _batches(list(run_ids)):
            for run_id, step, loss, accuracy in self._db.execute(
                "SELECT run_id, step, loss, accuracy FROM evals"
                f" WHERE run_id IN ({','.join('?' * len(batch))}) ORDER BY run_id, step",
                batch,
            ):
                rows.setdefault(run_id, []).append((step, loss, accuracy))
        return {
            run_id: Evals(
                np.array([r[0] for r in found], dtype=np.int64),
                np.array([np.nan if r[1] is None else r[1] for r in found], dtype=np.float64),
                np.array([np.nan if r[2] is None else r[2] for r in found], dtype=np.float64),
            )
            for run_id, found in rows.items()
        }

    def diagnostics(self, run_ids: Iterable[str]) -> dict[str, Diagnostics]:
        """The diagnostics of the given runs that have any, keyed by run id."""
        rows: dict[str, list[tuple[int, str, float | None]]] = {}
        for batch in _batches(list(run_ids)):
            for run_id, step, name, value in self._db.execute(
                "SELECT run_id, step, name, value FROM diagnostics"
                f" WHERE run_id IN ({','.join('?' * len(batch))}) ORDER BY run_id, step",
                batch,
            ):
                rows.setdefault(run_id, []).append((step, name, value))
        found = {}
        for run_id, items in rows.items():
            steps = np.array(sorted({step for step, _, _ in items}), dtype=np.int64)
            where = {int(step): index for index, step in enumerate(steps)}
            values: dict[str, np.ndarray] = {}
            for step, name, value in items:
                column = values.setdefault(name, np.full(len(steps), np.nan))
                column[where[step]] = np.nan if value is None else value
            found[run_id] = Diagnostics(steps, values)
        return found


MEASUREMENTS = ("evals", "diagnostics")
"""Tables of values measured at evaluation steps: committed with the curve, dropped past the
checkpoint on resume, moved with a run by export and merge."""

_STATE_COLUMNS = (
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
        """Values for _STATE_COLUMNS, with the merged status and target."""
        values = [getattr(self, column) for column in _STATE_COLUMNS]
        values[_STATE_COLUMNS.index("status")] = status
        values[_STATE_COLUMNS.index("steps_target")] = steps_target
        return tuple(values)


def _is_ahead(state: RunState, row: tuple[Any, ...], now: float, ours: bool = False) -> bool:
    """Whether `state` should replace our row (steps_done, status, target, owner, expires);
    `ours`: the row's lease belongs to the merging driver."""
    steps_done, status, _target, owner, expires = row
    live = owner is not None and status == "running" and (expires or 0.0) >= now
    if live and not ours:
        return False  # a live local worker holds it: its next commit would undo ours
    if state.steps_done != steps_done:
        return bool(state.steps_done > steps_done)
    return state.status in FINAL_STATES and status not in FINAL_STATES


def _rekey_runs(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: give every run the id and shard key its stored spec has now.

    Since schema 2, keys a run ignores (a CNN's depth, a dataset's input_dim, ...; see
    config's unused_keys) are left out of run ids, so the same runs get the same id whatever
    those keys said. A run whose new id another run already has keeps its old id (nothing is
    merged or lost; it simply is not found by presets any more).
    """
    from gamma_tui.config import RunSpec

    rows = db.execute("SELECT run_id, spec_json FROM runs").fetchall()
    taken = {row[0] for row in rows}
    for old, spec_json in rows:
        try:
            spec = RunSpec.model_validate(json.loads(spec_json))
        except ValueError:
            continue  # not a spec this version reads: leave the run as it is
        new = spec.run_id
        if new != old and new in taken:
            new = old
        db.execute(
            "UPDATE runs SET run_id=?, shard_key=? WHERE run_id=?", (new, spec.shard_key, old)
        )
        if new != old:
            taken.add(new)
            for table in ("sweep_runs", "curve_chunks", "checkpoints", *MEASUREMENTS):
                db.execute(f"UPDATE {table} SET run_id=? WHERE run_id=?", (new, old))


def _batches(ids: list[str], size: int = 500) -> list[list[str]]:
    """Split ids into groups small enough for one SQL IN (...) list."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _expire_dead_leases(db: sqlite3.Connection, now: float) -> None:
    """Expire fresh leases whose holder ran on this host and no longer exists (kill -9)."""
    host = socket.gethostname()
    owners = db.execute(
        "SELECT DISTINCT lease_owner FROM runs WHERE lease_owner IS NOT NULL AND lease_expires>=?",
        (now,),
    ).fetchall()
    for (owner,) in owners:
        owner_host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
            db.execute("UPDATE runs SET lease_expires=0 WHERE lease_owner=?", (owner,))


def pid_alive(pid: int) -> bool:
    """Whether a local process exists and is not a zombie (a reused pid counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a killed worker stays a zombie until its parent reaps it
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _assemble(chunks: list[tuple[int, int, bytes]]) -> Curve:
    """Concatenate a run's chunks into step positions (window centres) and losses."""
    steps, losses = [], []
    for start, window, data in chunks:
        values = np.frombuffer(data, dtype="<f4")
        steps.append(start + (window - 1) / 2 + window * np.arange(len(values), dtype=np.float64))
        losses.append(values)
    if not steps:
        return Curve(np.zeros(0), np.zeros(0, dtype=np.float32))
    return Curve(np.concatenate(steps), np.concatenate(losses))


def _sweep_info(row: tuple[Any, ...], counts: dict[str, int]) -> SweepInfo:
    """A SweepInfo from a `sweeps` row."""
    name, preset_path, preset_toml, config_json, steps, created, updated = row
    return SweepInfo(
        name, preset_path, preset_toml, json.loads(config_json), steps, created, updated, counts
    )
