"""Messages between the app, its screens and their background threads.

Data messages carry what background threads read or computed to the app and its screens;
each "latest state" message replaces an older one of its kind still in the queue
(Message.can_replace), so a slow screen only ever handles the newest snapshot. Requests go
from a screen up to the app (they bubble from the screen to it), which acts on them: screens
never call the app.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from gamma_tui.cache import RunInfo
from gamma_tui.config import Preset
from gamma_tui.ui.collapse_data import CollapseResult
from gamma_tui.ui.data import Catalog, SweepSnapshot
from gamma_tui.ui.frames import Frame


class CatalogUpdated(Message):
    """The list of sweeps and their counts changed."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog
        """The new catalog."""

    def can_replace(self, message: Message) -> bool:
        """A newer message of the same kind replaces this one in the queue."""
        return isinstance(message, CatalogUpdated)


class SnapshotUpdated(Message):
    """A new snapshot of the sweep on display."""

    def __init__(self, snapshot: SweepSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot
        """The new snapshot."""

    def can_replace(self, message: Message) -> bool:
        """A newer message of the same kind replaces this one in the queue."""
        return isinstance(message, SnapshotUpdated) and message.snapshot.name == self.snapshot.name


class FrameReady(Message):
    """The analysis frame at a step the dashboard asked for."""

    def __init__(self, frame: Frame) -> None:
        super().__init__()
        self.frame = frame
        """The frame."""

    def can_replace(self, message: Message) -> bool:
        """A newer message of the same kind replaces this one in the queue."""
        return (
            isinstance(message, FrameReady)
            and message.frame.step == self.frame.step
            and message.frame.sweep == self.frame.sweep
            and message.frame.version <= self.frame.version
        )


class CollapseReady(Message):
    """The collapse view's curves and fit for the current settings."""

    def __init__(self, result: CollapseResult) -> None:
        super().__init__()
        self.result = result
        """The collapse data."""

    def can_replace(self, message: Message) -> bool:
        """A newer message of the same kind replaces this one in the queue."""
        return isinstance(message, CollapseReady)


class EstimateReady(Message):
    """The launcher's grid size, cached runs and work estimate for the edited preset."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__()
        self.key = key
        """The preset text the estimate is for (stale estimates are dropped)."""
        self.text = text
        """The estimate, one rich-markup line."""

    def can_replace(self, message: Message) -> bool:
        """A newer message of the same kind replaces this one in the queue."""
        return isinstance(message, EstimateReady)


class CacheEvent(Message):
    """Something a user should hear about: a sweep finished, a run failed, the cache broke."""

    def __init__(self, text: str, severity: str = "information", title: str = "") -> None:
        super().__init__()
        self.text = text
        """What happened, and what to do if anything."""
        self.severity = severity
        """information, warning or error."""
        self.title = title
        """A short title for the notification."""


class SweepGone(Message):
    """The sweep on display no longer exists (deleted, or a fresh cache)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        """The missing sweep."""


class RunsLoaded(Message):
    """The runs of one sweep, for the run browser."""

    def __init__(self, sweep: str, runs: list[RunInfo]) -> None:
        super().__init__()
        self.sweep = sweep
        """The sweep."""
        self.runs = runs
        """Its runs, ordered by γ, η, seed."""

    def can_replace(self, message: Message) -> bool:
        """A newer message of the same kind replaces this one in the queue."""
        return isinstance(message, RunsLoaded)


# ---- requests from the screens to the app ------------------------------------------------


class SweepRequest(Message):
    """A screen asks the app to act on one sweep (the subclass says how)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        """The sweep."""


class OpenSweep(SweepRequest):
    """Show the sweep in the dashboard."""


class ToggleMark(SweepRequest):
    """Mark the sweep for the compare screen, or unmark it."""


class ExportSweep(SweepRequest):
    """Write CACHE/exports/NAME.csv."""


class DeleteSweep(SweepRequest):
    """Delete the sweep (the user confirmed)."""


class StopSweep(SweepRequest):
    """Stop the sweep's workers."""


class FocusStep(SweepRequest):
    """The dashboard's slider points at `step` of the sweep on display: snapshot it there."""

    def __init__(self, name: str, step: float | None) -> None:
        super().__init__(name)
        self.step = step
        """The slider's step (None: each run's latest record)."""


class ClearMarks(Message):
    """Unmark every sweep."""


class StartSweep(Message):
    """Start a detached driver for a preset (the user confirmed a huge one)."""

    def __init__(self, path: Path, preset: Preset, edited: bool) -> None:
        super().__init__()
        self.path = path
        """The preset file."""
        self.preset = preset
        """The preset with the launcher's knob edits applied."""
        self.edited = edited
        """Whether knobs were edited (the edited preset is written to CACHE/presets/)."""
