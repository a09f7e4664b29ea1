"""Pilot tests of the app against fake sweeps written with the real Cache API (no training)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static

from gamma_tui.cache import Cache, Progress
from gamma_tui.config import expand, parse_preset
from gamma_tui.ui import launch
from gamma_tui.ui.app import GammaApp
from gamma_tui.ui.demo import (
    FAKE_OWNER,
    commit_fake,
    fake_preset_text,
    mixed_states,
    pin_timestamps,
    register_fake,
    write_fake_sweep,
    write_power_law_sweep,
)
from gamma_tui.ui.messages import FocusStep
from gamma_tui.ui.screens.browser import BrowserScreen
from gamma_tui.ui.screens.collapse import CollapseScreen
from gamma_tui.ui.screens.dashboard import DashboardScreen
from gamma_tui.ui.screens.dialogs import ConfirmScreen, HelpScreen, QuitScreen
from gamma_tui.ui.screens.launcher import LauncherScreen
from gamma_tui.ui.widgets import CurvePlot, HeatmapView


def make_app(start: str | None = None) -> GammaApp:
    """The app on the workspace's cache, polling fast."""
    return GammaApp(Path("runs"), Path("presets/smoke.toml"), poll_seconds=0.05, start_screen=start)


async def until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the app run until condition() holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)
    await pilot.pause()


def dashboard(app: GammaApp) -> DashboardScreen:
    screen = app.get_screen("dashboard")
    assert isinstance(screen, DashboardScreen)
    return screen


def heat_text(app: GammaApp) -> str:
    """What the heatmap drew, as plain text."""
    view = app.screen.query_one(HeatmapView)
    return "\n".join(strip.text for strip in view._lines or [])


async def dashboard_ready(pilot: Pilot[None], sweep: str = "demo") -> DashboardScreen:
    app = pilot.app
    assert isinstance(app, GammaApp)
    screen = dashboard(app)
    await until(
        pilot,
        lambda: (
            screen.snapshot is not None
            and screen.snapshot.name == sweep
            and screen.frame is not None
            and app.screen is screen
        ),
    )
    await pilot.pause(0.05)
    return screen


async def test_reopening_shows_the_running_sweep_live(workspace: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await dashboard_ready(pilot)
        assert app.current_sweep == "demo"
        text = heat_text(app)
        assert "x" in text and "·" in text and "›" in text and "*" in text
        assert "!" in text  # the failed run's cell
        progress = str(screen.query_one("#progress", Static).render())
        assert "runs 32/56" in progress and "12 diverged" in progress and "1 failed" in progress


async def test_dashboard_cursor_slider_and_curves(workspace: Path) -> None:
    app = make_app("dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await dashboard_ready(pilot)
        start = screen.cursor
        await pilot.press("h")
        assert screen.cursor[0] == start[0] - 1
        await pilot.press("right", "l")
        assert screen.cursor[0] == start[0] + 1
        before = screen.cursor
        await pilot.press("k")
        assert screen.cursor[1] > before[1]
        await pilot.press("down")
        assert screen.cursor == before
        details = str(screen.query_one("#details", Static).render())
        assert "γ 10" in details and "η*(γ)" in details
        # The step slider: earlier steps are computed off the UI thread and shown.
        assert screen.snapshot is not None
        await pilot.press("left_square_bracket", "left_square_bracket")
        wanted = screen.snapshot.slider[screen.step_index]
        assert wanted is not None
        await until(pilot, lambda: screen.frame is not None and screen.frame.step == wanted)
        assert f"t = {int(wanted):,}" in str(screen.query_one("#slider", Static).render())
        await pilot.press("home")
        await until(pilot, lambda: screen.frame is not None and screen.frame.step == 1.0)
        await pilot.press("end")
        await until(pilot, lambda: screen.frame is not None and screen.frame.step is None)
        # Curves: the γ column by default, the η row after v.
        panel = screen.query_one("#curve-panel")
        assert "by η" in str(panel.border_title)
        await pilot.press("v")
        assert "by γ" in str(panel.border_title)
        plot = screen.query_one(CurvePlot)
        assert plot.model is not None and plot.model.series
        await pilot.press("g")
        assert screen.guides and "⠒γ²" in str(screen.query_one("#heat-legend", Static).render())


async def test_live_updates_and_notifications(workspace: Path) -> None:
    app = make_app("dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await dashboard_ready(pilot)
        version = screen.snapshot.version if screen.snapshot else 0
        with Cache("runs") as cache:
            preset = parse_preset(fake_preset_text("demo"))
            running = [r for r in cache.runs("demo") if r.status == "running"]
            specs = {s.run_id: s for s in expand(preset)}
            for run in running[:2]:
                commit_fake(
                    cache,
                    preset,
                    specs[run.run_id],
                    "done",
                    preset.train.steps,
                    start=run.steps_done,
                )
        await until(
            pilot,
            lambda: (
                screen.snapshot is not None
                and screen.snapshot.version > version
                and screen.snapshot.progress.counts.get("running", 0) < len(running)
            ),
        )
        # A worker failure reaches the user as a notification with its error.
        with Cache("runs") as cache:
            run = next(r for r in cache.runs("demo") if r.status == "running")
            cache.commit(
                FAKE_OWNER, [Progress(run.run_id, run.steps_done, [], None, "running", None, None)]
            )
            cache.fail(FAKE_OWNER, "RuntimeError: CUDA out of memory")
        await until(
            pilot, lambda: any("CUDA out of memory" in n.message for n in app._notifications)
        )
        # Finishing the sweep is announced too.
        with Cache("runs") as cache:
            for run in cache.runs("demo"):
                if run.status in ("running", "queued"):
                    commit_fake(
                        cache,
                        preset,
                        specs[run.run_id],
                        "done",
                        preset.train.steps,
                        start=run.steps_done,
                    )
        await until(pilot, lambda: any("demo finished" in n.message for n in app._notifications))


async def test_collapse_view_fits_and_adjusts_k(workspace: Path) -> None:
    app = make_app("dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        await dashboard_ready(pilot)
        app.open_sweep("finished")
        await dashboard_ready(pilot, "finished")
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, CollapseScreen)
        await until(pilot, lambda: screen.result is not None and screen.result.sweep == "finished")
        result = screen.result
        assert result is not None and result.fit.ok
        assert abs(result.fit.k - 1.0) < 0.1  # the synthetic curves collapse at k = 1
        assert f"k = {result.fit.k:.3f}" in str(screen.query_one("#collapse-info", Static).render())
        await pilot.press("plus")
        await until(
            pilot,
            lambda: (
                screen.result is not None
                and screen.k is not None
                and abs(screen.result.k - (result.fit.k + 0.05)) < 1e-6
            ),
        )
        assert screen.result is not None and screen.result.spread > result.spread
        await pilot.press("f")
        await until(
            pilot,
            lambda: (
                screen.result is not None
                and screen.k is None
                and abs(screen.result.k - result.fit.k) < 1e-9
            ),
        )
        seen = set()
        for _ in range(6):
            await pilot.press("v")
            await until(
                pilot,
                lambda: screen.result is not None and screen.result.variable == screen.variable,
            )
            seen.add(screen.result.variable)
        assert len(seen) == 6
        await pilot.press("a")
        await until(
            pilot,
            lambda: screen.result is not None and len(screen.result.curves) > len(result.curves),
        )
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: screen.result is not None and screen.result.eta_offset == 1)


async def test_browser_filter_sort_open_delete_export(workspace: Path) -> None:
    app = make_app("browser")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, BrowserScreen)
        sweeps = screen.query_one("#sweeps", DataTable)
        runs = screen.query_one("#runs", DataTable)
        await until(pilot, lambda: sweeps.row_count == 2 and runs.row_count > 0)
        await pilot.press("slash", "f", "i", "n")
        await until(pilot, lambda: sweeps.row_count == 1)
        await pilot.press("backspace", "backspace", "backspace")
        await until(pilot, lambda: sweeps.row_count == 2)
        await pilot.press("escape", "s")
        assert screen.sort_key == "sweep" and screen._shown == ["demo", "finished"]
        await pilot.press("S")
        assert screen._shown == ["finished", "demo"]
        await pilot.press("S")
        # Export goes through `gamma-tui export`.
        await pilot.press("e")
        exported = Path(f"runs/exports/{screen.highlighted()}.csv")
        await until(pilot, exported.exists, timeout=60)
        assert exported.read_text().startswith("run_id,gamma,eta,seed,state")
        # Delete asks first; 'n' keeps, 'y' deletes.
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is screen
        victim = screen.highlighted()
        await pilot.press("d", "y")
        await until(pilot, lambda: sweeps.row_count == 1)
        with Cache("runs") as cache:
            survivor = [s.name for s in cache.sweeps()]
        assert victim is not None and survivor == [{"demo", "finished"}.difference([victim]).pop()]
        await pilot.press("enter")
        await dashboard_ready(pilot, survivor[0])


async def test_launcher_validates_as_you_type(workspace: Path) -> None:
    app = make_app("launcher")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, LauncherScreen)
        validation = screen.query_one("#validation", Static)
        await until(pilot, lambda: "cached:" in str(validation.render()))
        assert "32 runs = 4 γ × 4 η × 2 seeds" in str(validation.render())
        field = screen.query_one("#knob-gamma-min", Input)
        field.focus()
        field.value = "-1"
        await pilot.pause()
        assert "gamma" in str(validation.render()) and "✗" in str(validation.render())
        assert field.has_class("-invalid")
        assert screen.query_one("#start", Button).disabled
        await pilot.press("ctrl+s")
        assert app.screen is screen  # nothing started
        field.value = "1"
        await until(pilot, lambda: "cached:" in str(validation.render()))
        assert "24 runs" in str(validation.render()) and not field.has_class("-invalid")
        assert screen.sets == ["gamma.min=1"]
        await pilot.press("ctrl+r")
        assert field.value == "0.1"


class FakeDriver(launch.Driver):
    """A driver whose process sleeps instead of training."""


@pytest.fixture
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace the driver spawn by a sleeping process; records what would have run."""
    started: list[list[str]] = []

    def start(cache_dir: Path, preset_path: Path, sweep: str, sets: object = ()) -> launch.Driver:
        started.append([str(cache_dir), str(preset_path), sweep])
        process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        return launch.Driver(sweep, process, cache_dir / "driver.log", time.time())

    monkeypatch.setattr("gamma_tui.ui.app.start_driver", start)
    return started


async def test_start_writes_edited_preset_and_quit_stops_workers(
    workspace: Path, fake_driver: list[list[str]]
) -> None:
    app = make_app("launcher")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, LauncherScreen)
        validation = screen.query_one("#validation", Static)
        await until(pilot, lambda: "cached:" in str(validation.render()))
        screen.query_one("#knob-name", Input).value = "smoke-long"
        screen.query_one("#knob-train-steps", Input).value = "400"
        await until(
            pilot,
            lambda: (
                screen.edited is not None
                and screen.edited.name == "smoke-long"
                and screen.edited.train.steps == 400
            ),
        )
        await pilot.press("ctrl+s")
        assert fake_driver and fake_driver[0][2] == "smoke-long"
        written = Path(fake_driver[0][1])
        assert written == Path("runs/presets/smoke-long.toml")
        preset = parse_preset(written.read_text())
        assert preset.name == "smoke-long" and preset.train.steps == 400
        assert isinstance(app.screen, DashboardScreen)
        driver = app.drivers["smoke-long"]
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen) and driver.alive()
        await pilot.press("q", "s")
        driver.process.wait(timeout=10)
        assert driver.process.returncode == -signal.SIGTERM


async def test_quit_can_leave_workers_running(
    workspace: Path, fake_driver: list[list[str]]
) -> None:
    app = make_app("launcher")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, LauncherScreen)
        await until(pilot, lambda: screen.edited is not None)
        await pilot.press("ctrl+s")
        driver = app.drivers["smoke"]
        assert fake_driver[0][1] == "presets/smoke.toml"  # unedited: the file itself
        await pilot.press("q", "l")
    assert driver.alive()
    os.killpg(driver.process.pid, signal.SIGTERM)
    driver.process.wait(timeout=10)


async def test_help_palette_and_themes(workspace: Path) -> None:
    app = make_app("dashboard")
    async with app.run_test(size=(80, 24)) as pilot:
        await dashboard_ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Open collapse" in titles and "dashboard: guides" in titles
        view = app.screen.query_one(HeatmapView)
        dark = view.rgb_colors()[1]
        app.theme = "textual-light"
        await pilot.pause(0.1)
        assert view.rgb_colors()[1] != dark
        assert "x" in heat_text(app)
        for key in ("1", "3", "4", "2"):
            await pilot.press(key)
        assert isinstance(app.screen, DashboardScreen)


async def test_no_color_keeps_states_readable(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app("dashboard")
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        await dashboard_ready(pilot)
        text = heat_text(app)
        assert "x" in text and "·" in text and "*" in text


async def test_corrupt_cache_is_reported_and_the_app_stays_up(workspace: Path) -> None:
    app = make_app("dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await dashboard_ready(pilot)
        good = screen.snapshot
        with Cache("runs") as cache, cache.transaction() as db:
            run_id = cache.runs("demo")[0].run_id
            db.execute("UPDATE curve_chunks SET data=? WHERE run_id=?", (b"\x00\x01\x02", run_id))
        await until(pilot, lambda: any(n.severity == "error" for n in app._notifications))
        assert app.is_running and screen.snapshot is good
        await pilot.press("l", "right_square_bracket")
        assert app.is_running


def test_ui_never_imports_torch() -> None:
    code = (
        "import sys; import gamma_tui.ui.app, gamma_tui.cli, gamma_tui.ui.demo; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_screen_imports_the_app() -> None:
    """Screens post requests up as messages and read the UiState they are given."""
    screens = ["browser", "collapse", "compare", "dashboard", "dialogs", "launcher"]
    code = (
        "import sys; "
        + "; ".join(f"import gamma_tui.ui.screens.{name}" for name in screens)
        + "; assert 'gamma_tui.ui.app' not in sys.modules, 'a screen imported the app'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    folder = Path(__file__).parents[1] / "gamma_tui" / "ui" / "screens"
    for name in screens:  # deferred and TYPE_CHECKING imports too
        assert "gamma_tui.ui.app" not in (folder / f"{name}.py").read_text(encoding="utf-8")


async def test_screen_requests_reach_the_app(workspace: Path) -> None:
    """Marking in the browser, unmarking on the compare screen, and a stale slider request."""
    app = make_app("browser")
    async with app.run_test(size=(120, 40)) as pilot:
        browser = app.screen
        assert isinstance(browser, BrowserScreen)
        await until(pilot, lambda: browser.query_one("#runs", DataTable).row_count > 0)
        sweep = browser.highlighted()
        assert sweep is not None
        await pilot.press("space")
        await until(pilot, lambda: sweep in app.state.marked)
        table = browser.query_one("#sweeps", DataTable)
        await until(pilot, lambda: "1 marked" in str(table.border_subtitle))
        await pilot.press("5", "c")
        await until(pilot, lambda: not app.state.marked)
        current = app.current_sweep
        other = next(s.name for s in app.state.catalog.sweeps if s.name != current)
        app.screen.post_message(FocusStep(other, 10.0))  # queued before the user moved on
        await pilot.pause(0.2)
        assert app.current_sweep == current


def test_fake_sweeps_cover_every_state(tmp_path: Path) -> None:
    with Cache(tmp_path / "a") as cache:
        write_fake_sweep(cache, fake_preset_text("x"))
        assert set(cache.sweep("x").counts) == {"done", "diverged"}
    with Cache(tmp_path / "b") as cache:
        register_fake(cache, fake_preset_text("y"))
        assert set(cache.sweep("y").counts) == {"queued"}
        text = fake_preset_text("z")
        write_fake_sweep(cache, text, mixed_states(parse_preset(text)))
        assert {"done", "diverged", "running", "queued", "failed"} == set(cache.sweep("z").counts)


async def test_deleting_the_sweep_on_display_moves_on(workspace: Path) -> None:
    app = make_app("dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        await dashboard_ready(pilot, "demo")
        app.delete_sweep("demo")
        await until(
            pilot, lambda: any("no longer in the cache" in n.message for n in app._notifications)
        )
        await dashboard_ready(pilot, "finished")
        assert app.current_sweep == "finished"


async def test_stop_reaches_a_sweep_started_elsewhere(workspace: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; "
        "from gamma_tui.processes import register_driver; "
        "register_driver(Path('runs'), 'demo'); print('up', flush=True); time.sleep(60)"
    )
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "up"
        app = make_app("dashboard")
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_ready(pilot)
            await pilot.press("x")
            await until(pilot, lambda: driver.poll() is not None, timeout=20)
            await until(pilot, lambda: any("SIGTERM" in n.message for n in app._notifications))
        assert driver.returncode == -signal.SIGTERM
    finally:
        if driver.poll() is None:
            driver.kill()


async def test_dashboard_shows_the_fitted_eta_star_slopes_of_gamma_tui_fit(
    workspace: Path,
) -> None:
    """η* on known power laws (lazy 1.5, rich 0.5, a window other than the default): the
    progress panel shows the slopes `gamma-tui fit` reports on the same cache, and `g` draws
    the fitted lines next to the theory guides."""
    from gamma_tui.report import fit_summary

    text = fake_preset_text(
        "laws",
        gammas=(0.01, 100.0, 2.0),
        etas=(1e-5, 1e3, 3.0),
        seeds=2,
        steps=400,
        depth=3,
        scale="absolute",
    )
    text += "[analysis]\nwindow = 0.2\n"
    with Cache(Path("runs")) as cache:
        write_power_law_sweep(cache, text, lazy=1.5, rich=0.5)
        pin_timestamps(cache)
        summary = fit_summary(cache, "laws")
    lazy, rich = summary["lazy"], summary["rich"]
    assert lazy["slope"] == pytest.approx(1.5, abs=0.15)
    assert rich["slope"] == pytest.approx(0.5, abs=0.15)
    app = make_app("dashboard")
    async with app.run_test(size=(160, 40)) as pilot:
        app.open_sweep("laws")
        screen = await dashboard_ready(pilot, "laws")
        assert screen.frame is not None and screen.frame.step is None  # t = latest
        fits = screen.frame.fits
        assert fits is not None and fits.lazy is not None and fits.rich is not None
        assert fits.lazy.slope == pytest.approx(lazy["slope"], rel=1e-9)
        assert fits.rich.slope == pytest.approx(rich["slope"], rel=1e-9)
        assert fits.lazy.slope_ci95 == pytest.approx(lazy["ci95"], rel=1e-9)
        progress = str(screen.query_one("#progress", Static).render())
        line = (
            f"lazy {lazy['slope']:.2f}±{lazy['ci95']:.2f} (2) · "
            f"rich {rich['slope']:.2f}±{rich['ci95']:.2f} (0.67)"
        )
        assert line in progress, progress
        assert f"γ× {summary['crossover_gamma']:.2g}"[:5] in progress
        before = heat_text(app)
        await pilot.press("g")
        await pilot.pause(0.05)
        legend = str(screen.query_one("#heat-legend", Static).render())
        assert "fit ⠂⠂lazy ⠂⠂rich" in legend
        assert heat_text(app) != before
    # At 80 columns the line is shortened but keeps both slopes.
    small = make_app("dashboard")
    async with small.run_test(size=(80, 24)) as pilot:
        small.open_sweep("laws")
        screen = await dashboard_ready(pilot, "laws")
        progress = str(screen.query_one("#progress", Static).render())
        short = f"lazy {lazy['slope']:.2f}±{lazy['ci95']:.2f}".replace("±0.", "±.")
        assert short in progress and "rich" in progress, progress
