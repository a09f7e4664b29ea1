"""What the app knows and its screens read: the cache, the catalog, the sweep on display, the
marked sweeps.

The app owns one UiState and is its only writer; every screen gets it at construction and
only reads it. A screen's actions go up to the app as messages (ui/messages.py), and new
data comes down through the screens' apply_* methods, so no screen imports the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gamma_tui.ui.canvas import RGB
from gamma_tui.ui.data import Catalog, SweepSnapshot
from gamma_tui.ui.launch import find_presets


@dataclass
class UiState:
    """The app's shared state (written by the app only)."""

    cache_dir: Path
    """The run cache the app reads."""
    initial_preset: Path | None = None
    """The preset the launcher selects first."""
    preset_dirs: list[Path] = field(default_factory=list)
    """Where the launcher looks for presets."""
    catalog: Catalog | None = None
    """Every sweep in the cache (latest catalog)."""
    snapshot: SweepSnapshot | None = None
    """The latest snapshot of the current sweep."""
    current_sweep: str | None = None
    """The sweep the dashboard and collapse view show."""
    marked: dict[str, RGB] = field(default_factory=dict)
    """Sweeps marked for the compare screen, in marking order, with their colours."""

    def preset_files(self) -> list[tuple[Path, str]]:
        """The preset files the launcher lists, with their labels."""
        return find_presets(self.preset_dirs, self.cache_dir / "presets")
