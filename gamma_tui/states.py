"""The one vocabulary of run and cell states, shared by the cache, the analysis and both
front ends.

A run's stored status is one of RUN_STATUSES. Readers add "interrupted" (a running run whose
worker stopped renewing its lease) and the analysis adds "missing" (a grid cell with no run).
"""

from __future__ import annotations

QUEUED, RUNNING, DONE, DIVERGED, FAILED, SKIPPED = (
    "queued", "running", "done", "diverged", "failed", "skipped",
)  # fmt: skip
INTERRUPTED = "interrupted"
MISSING = "missing"

RUN_STATUSES = (QUEUED, RUNNING, DONE, DIVERGED, FAILED, SKIPPED)
"""Every status the cache stores for a run."""
FINAL_STATES = (DONE, DIVERGED, FAILED, SKIPPED)
"""Statuses after which a run is not trained again (until a longer horizon re-queues it)."""
