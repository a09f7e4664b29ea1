"""Screenshots of every screen at 80x24 and 120x40 (pytest-textual-snapshot).

The fake sweeps, their timestamps, the time zone and the working directory are fixed, and the
app is given no clock to show, so the screenshots are byte-for-byte reproducible. Update them
with `pytest tests/test_ui_snapshots.py --snapshot-update` after a deliberate change, and look
at the SVGs (snapshot_report.html) before committing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from gamma_tui.ui.app import GammaApp
from gamma_tui.ui.screens.collapse import CollapseScreen
from gamma_tui.ui.screens.compare import CompareScreen
from gamma_tui.ui.screens.dashboard import DashboardScreen

SIZES = [(80, 24), (120, 40)]


async def until(pilot: Pilot[None], condition: Callable[[], object]) -> None:
    """Let the app run until condition() holds (10 s at most)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)
    await pilot.pause(0.1)


def app_on(screen: str) -> GammaApp:
    """The app on the workspace, opening `screen`."""
    return GammaApp(
        Path("runs"), Path("presets/smoke.toml"), poll_seconds=0.05, start_screen=screen
    )


def settled(app: GammaApp) -> bool:
    """The full snapshot (plateau times included) has arrived after the quick first one."""
    return app.snapshot is not None and not app.watcher.builder.plateaus_pending


async def dashboard_loaded(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, GammaApp)
    screen = app.get_screen("dashboard")
    assert isinstance(screen, DashboardScreen)
    await until(
        pilot,
        lambda: (
            settled(app)
            and screen.snapshot is app.snapshot
            and screen.frame is not None
            and screen.frame.version == app.snapshot.version
        ),
    )


async def launcher_loaded(pilot: Pilot[None]) -> None:
    await until(
        pilot, lambda: "cached:" in str(pilot.app.screen.query_one("#validation", Static).render())
    )


async def collapse_loaded(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, GammaApp)
    app.focus_sweep("finished")
    await until(
        pilot, lambda: settled(app) and app.snapshot is not None and app.snapshot.name == "finished"
    )
    screen = app.screen
    assert isinstance(screen, CollapseScreen)
    screen.recompute()
    await until(pilot, lambda: screen.result is not None and screen.result.sweep == "finished")


async def browser_loaded(pilot: Pilot[None]) -> None:
    await until(pilot, lambda: pilot.app.screen.query_one("#runs", DataTable).row_count > 0)


async def help_loaded(pilot: Pilot[None]) -> None:
    await dashboard_loaded(pilot)
    await pilot.press("question_mark")


async def compare_loaded(pilot: Pilot[None]) -> None:
    """Both demo sweeps marked in the browser (space), then the compare screen (5)."""
    await browser_loaded(pilot)
    await pilot.press("space", "down", "space", "5")
    app = pilot.app
    assert isinstance(app, GammaApp)
    screen = app.get_screen("compare")
    assert isinstance(screen, CompareScreen)
    await until(pilot, lambda: screen.comparison is not None and len(screen.comparison.sweeps) == 2)


CASES: dict[str, tuple[str, Callable[[Pilot[None]], Awaitable[None]]]] = {
    "launcher": ("launcher", launcher_loaded),
    "dashboard": ("dashboard", dashboard_loaded),
    "collapse": ("collapse", collapse_loaded),
    "browser": ("browser", browser_loaded),
    "compare": ("browser", compare_loaded),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(CASES))
def test_screen(name: str, size: tuple[int, int], workspace: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    screen, ready = CASES[name]
    assert snap_compare(app_on(screen), terminal_size=size, run_before=ready)


def test_dashboard_moved_with_guides(workspace: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Cursor moved, an earlier step, guide lines and the η-row curves."""

    async def ready(pilot: Pilot[None]) -> None:
        await dashboard_loaded(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, DashboardScreen)
        await pilot.press("h", "k", "g", "v", "left_square_bracket", "left_square_bracket")
        await until(pilot, lambda: screen.frame is not None and screen.frame.step == 562.0)

    assert snap_compare(app_on("dashboard"), terminal_size=(120, 40), run_before=ready)


def test_help(workspace: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_on("dashboard"), terminal_size=(120, 40), run_before=help_loaded)


@pytest.fixture
def sharp_workspace(workspace: Path) -> Path:
    """The workspace with the demo sweeps replaced by 'sharp', which has λ_max diagnostics."""
    from gamma_tui.cache import Cache
    from gamma_tui.ui.demo import pin_timestamps, write_sharpness_demo

    shutil.rmtree(workspace / "runs")
    with Cache(workspace / "runs") as cache:
        write_sharpness_demo(cache)
        pin_timestamps(cache)
    return workspace


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_sharpness(size: tuple[int, int], sharp_workspace: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    """The sharpness map (m): log10 step size × λ_max, λ(t) of the cursor's column, and the
    cell's seed-averaged held-out values and S·λ in the details."""

    async def ready(pilot: Pilot[None]) -> None:
        await dashboard_loaded(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, DashboardScreen)
        await pilot.press("m")
        await until(pilot, lambda: screen.map_mode == "sharpness")

    assert snap_compare(app_on("dashboard"), terminal_size=size, run_before=ready)
