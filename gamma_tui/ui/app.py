"""The app: a router over five screens, the cache watcher, and the sweeps it started.

Data flows one way: the watcher thread reads the cache and posts catalogs and snapshots; the
handlers here keep the latest of each in the UiState every screen reads and hand them to the
screens, which only draw. What a user asks for on a screen (open, mark, export, delete, stop,
start a sweep) comes up to the app as a message (ui/messages.py), so no screen imports the
app. Training runs in detached driver processes (see launch.py), so closing the app never
loses a sweep and reopening it shows running sweeps live.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from gamma_tui.cache import Cache, CacheError
from gamma_tui.config import Preset, PresetError
from gamma_tui.exporting import export_sweep
from gamma_tui.states import RUNNING
from gamma_tui.ui.compare_view import SWEEP_COLORS
from gamma_tui.ui.data import SweepSnapshot
from gamma_tui.ui.launch import Driver, start_driver, write_edited
from gamma_tui.ui.messages import (
    CacheEvent,
    CatalogUpdated,
    ClearMarks,
    DeleteSweep,
    ExportSweep,
    FocusStep,
    OpenSweep,
    SnapshotUpdated,
    StartSweep,
    StopSweep,
    SweepGone,
    ToggleMark,
)
from gamma_tui.ui.screens.browser import BrowserScreen
from gamma_tui.ui.screens.collapse import CollapseScreen
from gamma_tui.ui.screens.compare import CompareScreen
from gamma_tui.ui.screens.dashboard import DashboardScreen
from gamma_tui.ui.screens.dialogs import HelpScreen, QuitScreen
from gamma_tui.ui.screens.launcher import LauncherScreen
from gamma_tui.ui.state import UiState
from gamma_tui.ui.watcher import CacheWatcher

SCREENS = ("launcher", "dashboard", "collapse", "browser", "compare")
"""Screen names, in the order of their number keys."""

DEFAULT_PRESET = Path("presets/quickstart.toml")
"""The CLI's default --preset (not reported when missing)."""


class GammaApp(App[None]):
    """gamma-tui: launch sweeps, watch them live, read the γ–η landscape, browse the cache."""

    CSS_PATH = "app.tcss"
    TITLE = "gamma-tui"
    BINDINGS = [
        Binding("1", "show('launcher')", "launch"),
        Binding("2", "show('dashboard')", "dashboard"),
        Binding("3", "show('collapse')", "collapse"),
        Binding("4", "show('browser')", "runs"),
        Binding("5", "show('compare')", "compare"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+q", "quit", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        cache_dir: Path,
        preset: Path | None = None,
        preset_dirs: Sequence[Path] = (),
        poll_seconds: float = 0.5,
        start_screen: str | None = None,
    ) -> None:
        super().__init__()
        cache_dir = Path(cache_dir)
        self.state = UiState(cache_dir, preset, _preset_dirs(cache_dir, preset, preset_dirs))
        """What the screens read (this app is its only writer)."""
        self.start_screen = start_screen
        """Screen to open first (None: the launcher, or a running sweep's dashboard)."""
        self.drivers: dict[str, Driver] = {}
        """Driver processes this app started, by sweep."""
        self.watcher = CacheWatcher(self, cache_dir, poll_seconds)
        """The background thread that reads the cache."""
        self._navigated = start_screen is not None
        self._screens: dict[str, Screen[None]] = {}

    @property
    def cache_dir(self) -> Path:
        """The run cache this app reads."""
        return self.state.cache_dir

    @property
    def initial_preset(self) -> Path | None:
        """The preset the launcher selects first."""
        return self.state.initial_preset

    @property
    def snapshot(self) -> SweepSnapshot | None:
        """The latest snapshot of the current sweep."""
        return self.state.snapshot

    @property
    def current_sweep(self) -> str | None:
        """The sweep the dashboard and collapse view show."""
        return self.state.current_sweep

    # ---- startup, screens, shutdown ------------------------------------------------------

    def on_mount(self) -> None:
        """Set up once the widgets exist."""
        self.watcher.start()  # reads the cache while the screens are built and painted
        self._screens = {
            "launcher": LauncherScreen(self.state),
            "dashboard": DashboardScreen(self.state),
            "collapse": CollapseScreen(self.state),
            "browser": BrowserScreen(self.state),
            "compare": CompareScreen(self.state),
        }
        for name, screen in self._screens.items():
            self.install_screen(screen, name)
        self.push_screen(self.start_screen or "launcher")
        self.set_interval(1.0, self._check_drivers)
        if (
            self.initial_preset is not None
            and not self.initial_preset.exists()
            and self.initial_preset != DEFAULT_PRESET
        ):
            self.notify(f"{self.initial_preset}: no such preset file", severity="warning")

    def on_unmount(self) -> None:
        """Stop the cache watcher."""
        self.watcher.stop()

    async def on_event(self, event: events.Event) -> None:
        """Every key tells the watcher to hold back rebuilds for a moment (keys first)."""
        if isinstance(event, events.Key):
            self.watcher.touch()
        await super().on_event(event)

    def action_show(self, name: str) -> None:
        """Switch to one of the five screens."""
        self._navigated = True
        while len(self.screen_stack) > 1 and self.screen.id not in SCREENS:
            self.pop_screen()
        if self.screen.id != name:
            self.switch_screen(name)

    def action_help(self) -> None:
        """Show every key binding."""
        if not isinstance(self.screen, HelpScreen):
            app_bindings = [b for b in self.BINDINGS if isinstance(b, Binding) and b.show]
            self.push_screen(HelpScreen(self._screens, app_bindings))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The command palette: screens, this screen's actions, then textual's own commands."""
        for index, name in enumerate(SCREENS, start=1):
            yield SystemCommand(
                f"Open {name}",
                f"switch to the {name} screen (key {index})",
                lambda name=name: self.action_show(name),
            )
        for binding in getattr(screen, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description:
                yield SystemCommand(
                    f"{screen.id}: {binding.description}",
                    f"key {binding.key}",
                    lambda action=binding.action, target=screen: self.call_later(
                        target.run_action, action
                    ),
                )
        yield SystemCommand("Help", "every key binding (?)", self.action_help)
        yield from super().get_system_commands(screen)

    async def action_quit(self) -> None:
        """Quit; if workers started here still train, ask whether to stop them."""
        running = [
            name for name, driver in self.drivers.items() if driver.alive() and not driver.stopping
        ]
        if not running:
            self.exit()
            return

        def decide(choice: str | None) -> None:
            """Act on the quit dialog's answer."""
            if choice is None:
                return
            if choice == "stop":
                for name in running:
                    self.drivers[name].stop()
            self.exit()

        self.push_screen(QuitScreen(running), decide)

    # ---- data from the watcher -----------------------------------------------------------

    def focus_sweep(self, name: str | None, step: float | None = None) -> None:
        """Make `name` the current sweep (the watcher snapshots it, at `step`)."""
        if name != self.state.current_sweep:
            self.state.current_sweep = name
            self.state.snapshot = None
        self.watcher.focus(name, step)

    def toggle_mark(self, name: str) -> bool:
        """Mark a sweep for comparing (or unmark it); returns whether it is marked now.

        A sweep gets the first colour no other marked sweep has, and keeps it while marked.
        """
        marked = self.state.marked
        if name in marked:
            del marked[name]
            return False
        taken = set(marked.values())
        free = [c for c in SWEEP_COLORS if c not in taken]
        marked[name] = free[0] if free else SWEEP_COLORS[len(marked) % len(SWEEP_COLORS)]
        return True

    def open_sweep(self, name: str) -> None:
        """Show a sweep in the dashboard."""
        self.focus_sweep(name)
        self.action_show("dashboard")

    def on_catalog_updated(self, message: CatalogUpdated) -> None:
        """Keep the newest catalog; pick a sweep to show if none is chosen yet."""
        first = self.state.catalog is None
        self.state.catalog = message.catalog
        name = message.catalog.default_sweep()
        if self.current_sweep is None and name is not None:
            self.focus_sweep(name)
            info = message.catalog.find(name)
            if first and info is not None and info.counts.get(RUNNING) and not self._navigated:
                self.notify(f"{name} is training: showing it live", title="running sweep")
                self.action_show("dashboard")
        browser = self._screens.get("browser")
        if self.screen is browser and isinstance(browser, BrowserScreen):
            browser.apply_catalog(message.catalog)

    def on_snapshot_updated(self, message: SnapshotUpdated) -> None:
        """Keep the newest snapshot of the current sweep and hand it to its screens."""
        if message.snapshot.name != self.current_sweep:
            return
        self.state.snapshot = message.snapshot
        dashboard = self._screens["dashboard"]
        assert isinstance(dashboard, DashboardScreen)
        dashboard.apply_snapshot(message.snapshot)
        collapse = self._screens["collapse"]
        assert isinstance(collapse, CollapseScreen)
        collapse.apply_snapshot(message.snapshot)

    def on_cache_event(self, message: CacheEvent) -> None:
        """Tell the user (a sweep finished, a run failed, the cache broke)."""
        self.notify(
            message.text,
            title=message.title,
            severity=message.severity,  # type: ignore[arg-type]
            timeout=12 if message.severity == "error" else 6,
        )

    def on_sweep_gone(self, message: SweepGone) -> None:
        """Forget a sweep that left the cache."""
        if message.name == self.current_sweep:
            self.state.current_sweep = self.state.snapshot = None
            dashboard = self._screens["dashboard"]
            assert isinstance(dashboard, DashboardScreen)
            dashboard.clear()
            self.notify(f"sweep {message.name} is no longer in the cache", severity="warning")
            name = self.state.catalog.default_sweep() if self.state.catalog else None
            self.focus_sweep(name if name != message.name else None)

    # ---- requests from the screens ---------------------------------------------------------

    def on_open_sweep(self, message: OpenSweep) -> None:
        """A screen opens a sweep in the dashboard."""
        self.open_sweep(message.name)

    def on_focus_step(self, message: FocusStep) -> None:
        """The dashboard's slider moved: snapshot the sweep on display at its step.

        A request for a sweep that is no longer the current one (the user opened another
        while it was queued) is stale and dropped."""
        if message.name == self.state.current_sweep:
            self.focus_sweep(message.name, message.step)

    def on_toggle_mark(self, message: ToggleMark) -> None:
        """The browser marks or unmarks a sweep; it redraws with the new marks."""
        self.toggle_mark(message.name)
        browser = self._screens.get("browser")
        if isinstance(browser, BrowserScreen):
            browser.apply_catalog(self.state.catalog)

    def on_clear_marks(self, message: ClearMarks) -> None:
        """The compare screen unmarks every sweep; it reads the (empty) marks again."""
        self.state.marked.clear()
        compare = self._screens.get("compare")
        if isinstance(compare, CompareScreen):
            compare.marks_changed()

    def on_export_sweep(self, message: ExportSweep) -> None:
        """A screen exports a sweep to CSV."""
        self.export_sweep(message.name)

    def on_delete_sweep(self, message: DeleteSweep) -> None:
        """The browser deletes a sweep (confirmed)."""
        self.delete_sweep(message.name)

    def on_stop_sweep(self, message: StopSweep) -> None:
        """The dashboard stops a sweep's workers."""
        self.stop_sweep(message.name)

    def on_start_sweep(self, message: StartSweep) -> None:
        """The launcher starts a sweep."""
        self.start_sweep(message.path, message.preset, message.edited)

    # ---- sweeps: start, stop, delete, export ---------------------------------------------

    def start_sweep(self, path: Path, preset: Preset, edited: bool) -> None:
        """Start a detached driver for the preset (edited knobs go to CACHE/presets/)."""
        driver = self.drivers.get(preset.name)
        if driver is not None and driver.alive():
            self.notify(f"{preset.name} is already training from this app", severity="warning")
            self.open_sweep(preset.name)
            return
        try:
            source = write_edited(self.cache_dir, preset) if edited else path
            self.drivers[preset.name] = start_driver(self.cache_dir, source, preset.name)
        except OSError as error:
            self.notify(f"cannot start {preset.name}: {error}", severity="error")
            return
        self.notify(
            f"started {preset.name}: {preset.run_count()} runs (log in {self.cache_dir / 'logs'})",
            title="sweep started",
        )
        self.open_sweep(preset.name)

    def stop_sweep(self, name: str) -> None:
        """Stop a sweep: SIGTERM the driver group this app started, else (a sweep started
        elsewhere on this host) its driver and workers found by gamma_tui.processes."""
        driver = self.drivers.get(name)
        if driver is not None and driver.alive():
            driver.stop()
            self.notify(f"stopping {name}: workers checkpoint and exit; start it again to resume")
            return
        self._stop_elsewhere(name)

    @work(thread=True, group="cache-write")
    def _stop_elsewhere(self, name: str) -> None:
        """`gamma-tui stop NAME`, off the UI thread."""
        from gamma_tui.processes import stop_sweep

        try:
            with Cache(self.cache_dir) as cache:
                stopped = stop_sweep(cache, name)
        except (CacheError, OSError, ValueError) as error:
            self.post_message(CacheEvent(f"cannot stop {name}: {error}", "error", "stop"))
            return
        if stopped:
            text = (
                f"sent SIGTERM to {len(stopped)} process(es) of {name}; runs keep their checkpoints"
            )
            self.post_message(CacheEvent(text, "information", "stopping"))
        else:
            self.post_message(
                CacheEvent(f"{name} has no running process on this host", "warning", "stop")
            )

    def _check_drivers(self) -> None:
        """Report drivers that exited with an error (once each)."""
        for name, driver in list(self.drivers.items()):
            if driver.alive():
                continue
            failure = driver.failure()
            if failure:
                self.notify(failure, title="worker failed", severity="error", timeout=20)
            del self.drivers[name]

    @work(thread=True, group="cache-write")
    def delete_sweep(self, name: str) -> None:
        """Delete a sweep (Cache.delete_sweep) off the UI thread."""
        try:
            with Cache(self.cache_dir) as cache:
                count = cache.delete_sweep(name)
        except CacheError as error:
            self.post_message(CacheEvent(str(error), "error", "delete failed"))
            return
        self.post_message(
            CacheEvent(f"deleted {name} and {count} run(s)", "information", "deleted")
        )
        self.watcher.refresh()

    @work(thread=True, group="export")
    def export_sweep(self, name: str) -> None:
        """Write CACHE/exports/NAME.csv with the export the CLI runs (exporting.export_sweep)."""
        output = self.cache_dir / "exports" / f"{name}.csv"
        try:
            export_sweep(self.cache_dir, name, "csv", output)
        except (CacheError, PresetError, OSError, sqlite3.Error) as error:
            self.post_message(
                CacheEvent(f"export of {name} failed: {error}", "error", "export failed")
            )
            return
        self.post_message(CacheEvent(f"wrote {output}", "information", "exported"))


PRESETS_ENV = "GAMMA_TUI_PRESETS"
"""More preset folders for the launcher, separated by os.pathsep."""


def _preset_dirs(cache_dir: Path, preset: Path | None, extra: Sequence[Path]) -> list[Path]:
    """presets/ here (else the source checkout's), the given preset's folder, extra folders
    ($GAMMA_TUI_PRESETS too) and CACHE/presets (edited presets)."""
    folders = [Path("presets")]
    shipped = Path(__file__).resolve().parents[2] / "presets"  # a source checkout's presets
    if shipped.is_dir() and not Path("presets").is_dir():
        folders.append(shipped)
    if preset is not None:
        folders.append(preset.parent)
    folders += [Path(p) for p in extra]
    folders += [Path(p) for p in os.environ.get(PRESETS_ENV, "").split(os.pathsep) if p]
    folders.append(cache_dir / "presets")
    return folders


def run_app(cache_dir: Path, preset: Path, preset_dirs: Sequence[Path] = ()) -> None:
    """Open the app on a cache directory; `preset` is selected first in the launcher."""
    app = GammaApp(cache_dir, preset, preset_dirs)
    app.run()
    left = [name for name, driver in app.drivers.items() if driver.alive() and not driver.stopping]
    if left:
        print(
            f"gamma-tui: {', '.join(left)} keep(s) training in the background; reopen with "
            f"`gamma-tui --cache {cache_dir}` to watch",
            file=sys.stderr,
        )
