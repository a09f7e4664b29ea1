"""Writing the cache: registering sweeps, a worker's commits, rewinds on resume and merges of
runs trained elsewhere. Each write is one transaction, so a process killed at any moment
leaves either the old or the new state, never a mix."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from gamma_tui.cache.connection import MEASUREMENTS, encode_arrays
from gamma_tui.cache.leases import LEASE_SECONDS, Leases
from gamma_tui.cache.reads import Reads
from gamma_tui.cache.records import STATE_COLUMNS, Progress, RunState
from gamma_tui.states import FINAL_STATES


class Writes(Reads, Leases):
    """Every change of the cache's contents, on top of its reads and leases."""

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
                        f"INSERT INTO runs ({', '.join(STATE_COLUMNS)}, lease_owner,"
                        " lease_expires, created, updated) VALUES"
                        f" ({','.join('?' * len(STATE_COLUMNS))}, NULL, NULL, ?, ?)",
                        (*values, now, now),
                    )
                else:
                    assignments = ", ".join(f"{c}=?" for c in STATE_COLUMNS[1:])
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
