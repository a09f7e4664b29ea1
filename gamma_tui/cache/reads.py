"""Reading the cache: sweeps, runs, curves, held-out evaluations, diagnostics, checkpoints
and a run's portable state. Readers never block the writer (WAL)."""

from __future__ import annotations

import itertools
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gamma_tui.cache.connection import Connection, decode_arrays
from gamma_tui.cache.records import (
    STATE_COLUMNS,
    CacheError,
    Curve,
    Diagnostics,
    Evals,
    RunInfo,
    RunState,
    SweepInfo,
)


class Reads(Connection):
    """Queries of the cache; nothing here writes."""

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

    def export_runs(self, run_ids: Sequence[str]) -> list[RunState]:
        """Everything stored about the given runs, as plain values (picklable, no numpy)."""
        states = []
        for run_id in run_ids:
            row = self._db.execute(
                f"SELECT {', '.join(STATE_COLUMNS)} FROM runs WHERE run_id=?", (run_id,)
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
            fields = dict(zip(STATE_COLUMNS, row, strict=True))
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


def _batches(ids: list[str], size: int = 500) -> list[list[str]]:
    """Split ids into groups small enough for one SQL IN (...) list."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]


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
