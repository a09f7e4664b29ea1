"""The cache database itself: where it lives, its schema and migrations, one connection and
its transactions. `Cache` adds reads, leases and writes on top (see the package docstring)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import numpy as np

from gamma_tui.cache.records import CacheError

SCHEMA_VERSION = 3
"""2 added `evals` (held-out loss and accuracy), 3 `diagnostics` (curvature measurements at
the evaluation steps); an older cache is upgraded on open."""
DB_NAME = "cache.sqlite"
ENV_VAR = "GAMMA_TUI_CACHE"
JOURNAL_MODES = ("wal", "delete")
"""SQLite journal modes a cache may use: WAL for the local cache (readers never block the
writer), DELETE for per-job caches on NFS/Lustre, where WAL's shared memory does not work."""

MEASUREMENTS = ("evals", "diagnostics")
"""Tables of values measured at evaluation steps: committed with the curve, dropped past the
checkpoint on resume, moved with a run by export and merge."""

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


def default_cache_dir() -> Path:
    """$GAMMA_TUI_CACHE if set, else ./runs."""
    return Path(os.environ.get(ENV_VAR) or "runs")


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


class Connection:
    """One connection to the cache database under a root directory, with its schema current."""

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

    def __enter__(self) -> Self:
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
