"""The cache watcher: one background thread that polls the cache and posts snapshots to the app.

It owns its SQLite connection (PRAGMA data_version is per connection), checks the version
every `interval` seconds and rebuilds only when another process committed, when the app
focused another sweep or step, or every few seconds while runs are training (so states like
'interrupted' and the steps/s rate stay current). It never touches widgets (invariant 6).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from textual.message_pump import MessagePump

from gamma_tui.cache import FINAL_STATES, Cache, CacheError
from gamma_tui.states import FAILED
from gamma_tui.ui.data import Catalog, SnapshotBuilder
from gamma_tui.ui.messages import CacheEvent, CatalogUpdated, SnapshotUpdated, SweepGone

LIVE_REFRESH_SECONDS = 5.0
"""While a sweep has unfinished runs, rebuild at least this often even without commits."""

QUIET_SECONDS = 0.3
"""A rebuild waits until the user has not pressed a key for this long (keys come first) ..."""

MAX_DEFER_SECONDS = 2.0
"""... but never longer than this."""

LOAD_FACTOR = 8.0
"""Rebuilds start at most every LOAD_FACTOR x the last build's duration (and interval)."""


class CacheWatcher:
    """Polls one cache directory from a daemon thread; `focus` picks the sweep to snapshot.

    Until the app calls `focus`, the watcher snapshots Catalog.default_sweep().
    """

    def __init__(self, target: MessagePump, cache_dir: Path, interval: float = 0.5) -> None:
        self.target = target
        """Where messages go (the app)."""
        self.cache_dir = cache_dir
        """The cache directory."""
        self.interval = interval
        """Seconds between data_version checks."""
        self.builder = SnapshotBuilder()
        """Memoizes per-run reductions between snapshots."""
        self._lock = threading.Lock()
        self._focus: tuple[str | None, float | None] = (None, None)
        self._auto = True
        self._forced = False
        self._last_key = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="gamma-tui cache watcher", daemon=True
        )

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait briefly for the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)

    def focus(self, sweep: str | None, step: float | None = None) -> None:
        """Snapshot this sweep (with its frame at `step`) from now on; wakes the thread."""
        with self._lock:
            self._focus = (sweep, step)
            self._auto = False
        self._wake.set()

    def touch(self) -> None:
        """The user pressed a key: hold rebuilds back for QUIET_SECONDS."""
        self._last_key = time.monotonic()

    def refresh(self) -> None:
        """Rebuild now, changed or not."""
        with self._lock:
            self._forced = True
        self._wake.set()

    def _run(self) -> None:
        """The polling loop; every failure becomes a message and the loop goes on."""
        cache: Cache | None = None
        state = _WatchState()
        while not self._stop.is_set():
            try:
                if cache is None:
                    cache = Cache(self.cache_dir)
                self._poll(cache, state)
            except (CacheError, sqlite3.Error, OSError, ValueError) as error:
                key = f"{type(error).__name__}: {error}"
                if key != state.last_error:
                    self.target.post_message(
                        CacheEvent(
                            f"{key}. The app keeps the last good data and retries.",
                            "error",
                            "cache",
                        )
                    )
                state.last_error = key
                state.version = None  # retry the whole build next time
            self._wake.wait(0.0 if self.builder.plateaus_pending else self.interval)
            self._wake.clear()
        if cache is not None:
            cache.close()

    def _poll(self, cache: Cache, state: _WatchState) -> None:
        """One check: rebuild the catalog and the focused snapshot if anything changed."""
        version = cache.data_version()
        with self._lock:
            focus, forced = self._focus, self._forced
            self._forced = False
        focus = self._resolve(focus, state)
        changed = version != state.version or forced
        now = time.monotonic()
        live_due = state.live and now - state.built_at > LIVE_REFRESH_SECONDS
        if (changed or live_due) and not forced and focus[0] == state.focus[0]:
            if state.pending_since is None:
                state.pending_since = now
            typing = now - self._last_key < QUIET_SECONDS
            busy = now - state.built_at < LOAD_FACTOR * state.build_seconds
            if (typing or busy) and now - state.pending_since < MAX_DEFER_SECONDS:
                return  # the UI thread needs the CPU now; the change is picked up later
        if changed:
            catalog = self.builder.catalog(cache)
            self._report_events(cache, state.catalog, catalog)
            state.catalog = catalog
            self.target.post_message(CatalogUpdated(catalog))
            focus = self._resolve(focus, state)
        name, step = focus
        # A new step alone does not rebuild: the dashboard computes that frame itself; the
        # step is only remembered for the next snapshot.
        refine = self.builder.plateaus_pending and name == state.focus[0]
        if name is not None and (changed or live_due or refine or name != state.focus[0]):
            if state.catalog is not None and state.catalog.find(name) is None:
                if state.gone != name:
                    self.target.post_message(SweepGone(name))
                state.gone = name
            else:
                # A sweep seen for the first time paints before its plateau times are known;
                # the full snapshot follows on the next poll.
                first_sight = name != state.focus[0]
                snapshot = self.builder.snapshot(cache, name, step, quick=first_sight)
                self.target.post_message(SnapshotUpdated(snapshot))
                state.live = snapshot.unfinished > 0
                state.built_at = time.monotonic()
                state.build_seconds = snapshot.built_seconds
                state.gone = None
        state.focus, state.version, state.last_error = focus, version, None
        state.pending_since = None

    def _resolve(
        self, focus: tuple[str | None, float | None], state: _WatchState
    ) -> tuple[str | None, float | None]:
        """Until the app picks a sweep, the one it will pick (saves a round trip at start)."""
        if focus[0] is None and self._auto and state.catalog is not None:
            return (state.catalog.default_sweep(), None)
        return focus

    def _report_events(self, cache: Cache, before: Catalog | None, after: Catalog) -> None:
        """Notify when a sweep finishes or gains failed runs (not for the first catalog)."""
        if before is None:
            return
        for sweep in after.sweeps:
            old = before.find(sweep.name)
            if old is None:
                continue
            unfinished_before = old.total - sum(old.counts.get(s, 0) for s in FINAL_STATES)
            unfinished = sweep.total - sum(sweep.counts.get(s, 0) for s in FINAL_STATES)
            failed = sweep.counts.get(FAILED, 0) - old.counts.get(FAILED, 0)
            if failed > 0:
                errors = [r.error for r in cache.runs(sweep.name) if r.status == FAILED and r.error]
                detail = errors[-1] if errors else "no error message recorded"
                self.target.post_message(
                    CacheEvent(
                        f"{failed} run(s) of {sweep.name} failed: {detail}",
                        "error",
                        "worker failed",
                    )
                )
            if unfinished_before > 0 and unfinished == 0 and sweep.total:
                summary = ", ".join(f"{n} {s}" for s, n in sorted(sweep.counts.items()))
                self.target.post_message(
                    CacheEvent(f"{sweep.name} finished: {summary}", "information", "sweep finished")
                )


class _WatchState:
    """What the polling loop remembers between checks."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.catalog: Catalog | None = None
        self.focus: tuple[str | None, float | None] = (None, None)
        self.live = False
        self.built_at = 0.0
        self.build_seconds = 0.0
        self.pending_since: float | None = None
        self.gone: str | None = None
        self.last_error: str | None = None
