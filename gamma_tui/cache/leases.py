"""Leases: a worker owns a run while its lease is fresh and renews it at every commit; a run
whose holder died is taken by the next worker once the lease expires, or at once when the
holder was a process of this host that no longer exists."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Sequence

from gamma_tui.cache.connection import Connection

LEASE_SECONDS = float(os.environ.get("GAMMA_TUI_LEASE_SECONDS") or 120.0)
"""A worker that has not committed for this long is presumed dead and its runs can be taken.

Workers commit every ~2 s, so the default is generous; GAMMA_TUI_LEASE_SECONDS lowers it
(the chaos tests do, so that killed workers' runs are picked up quickly)."""


class Leases(Connection):
    """Claiming, renewing, releasing and failing the runs a worker holds."""

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
