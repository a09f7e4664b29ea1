"""The run cache: one SQLite database in WAL mode under the cache directory (default runs/).

Workers write, the CLI and the TUI read; the database is the only channel between them. Each
worker commit is one transaction holding a run's new curve chunks, its checkpoint and its
counters, so a process killed at any moment leaves either the old or the new state, never a
mix. Curves are float32 BLOB chunks: every step up to the run's `curve_cap`, then means over
windows that double in width every octave of steps (see `window_at`), which keeps the shape
on a log-time axis at bounded size. Checkpoints are `numpy.savez` archives (no pickle).

Modules, by what they own: `connection` (location, schema and migrations, transactions),
`records` (the values read and written), `reads`, `leases` and `writes` (one layer each, and
`Cache` is all of them). The recording schedule lives in gamma_tui.schedule.

Runs are claimed with leases: a worker owns a run while its lease is fresh, renews it at every
commit, and a run whose holder died is picked up by the next worker once the lease expires.
"""

from __future__ import annotations

from gamma_tui.cache.connection import (
    DB_NAME,
    ENV_VAR,
    JOURNAL_MODES,
    MEASUREMENTS,
    SCHEMA_VERSION,
    decode_arrays,
    default_cache_dir,
    encode_arrays,
)
from gamma_tui.cache.leases import LEASE_SECONDS, pid_alive
from gamma_tui.cache.records import (
    CacheError,
    Curve,
    Diagnostics,
    Evals,
    Progress,
    RunInfo,
    RunState,
    SweepInfo,
)
from gamma_tui.cache.writes import Writes
from gamma_tui.states import FINAL_STATES


class Cache(Writes):
    """A handle on the cache database; cheap to open, one per thread or process."""


__all__ = [
    "DB_NAME",
    "ENV_VAR",
    "FINAL_STATES",
    "JOURNAL_MODES",
    "LEASE_SECONDS",
    "MEASUREMENTS",
    "SCHEMA_VERSION",
    "Cache",
    "CacheError",
    "Curve",
    "Diagnostics",
    "Evals",
    "Progress",
    "RunInfo",
    "RunState",
    "SweepInfo",
    "decode_arrays",
    "default_cache_dir",
    "encode_arrays",
    "pid_alive",
]
