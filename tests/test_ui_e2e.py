"""End to end: the real app starts presets/smoke.toml in real worker processes and watches it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from support import SMOKE
from textual.widgets import Static

from gamma_tui.ui.app import GammaApp
from gamma_tui.ui.screens.dashboard import DashboardScreen
from gamma_tui.ui.widgets import HeatmapView


@pytest.mark.slow
async def test_start_smoke_and_watch_cells_turn_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "presets").mkdir()
    shutil.copy(SMOKE, tmp_path / "presets" / "smoke.toml")
    app = GammaApp(
        Path("runs"), Path("presets/smoke.toml"), poll_seconds=0.1, start_screen="launcher"
    )
    async with app.run_test(size=(120, 40)) as pilot:
        validation = app.screen.query_one("#validation", Static)
        deadline = time.monotonic() + 30
        while "cached: 0 finished" not in str(validation.render()):
            assert time.monotonic() < deadline, str(validation.render())
            await pilot.pause(0.05)
        await pilot.press("ctrl+s")
        driver = app.drivers["smoke"]
        try:
            screen = app.screen
            assert isinstance(screen, DashboardScreen)
            seen: set[str] = set()
            deadline = time.monotonic() + 240
            while True:
                assert time.monotonic() < deadline, f"states seen: {seen}"
                await pilot.pause(0.1)
                if screen.frame is None or screen.snapshot is None:
                    continue
                seen |= set(screen.frame.grid.state.ravel().tolist())
                counts = screen.snapshot.progress.counts
                if (
                    screen.snapshot.unfinished == 0
                    and screen.frame.step is None
                    and counts.get("done", 0) > 0
                ):
                    break
            final = screen.frame.grid.state
            assert set(final.ravel().tolist()) <= {"done", "diverged", "missing"}
            assert seen - {"missing"} - {"done", "diverged"}, "never saw a cell before it finished"
            assert np.isfinite(screen.frame.log10_loss).sum() >= 8  # the heatmap filled in
            view = screen.query_one(HeatmapView)
            await pilot.pause(0.2)
            drawn = "\n".join(strip.text for strip in view._lines or [])
            assert "*" in drawn and "x" in drawn  # η* marks and diverged cells
            assert "·" not in drawn and "›" not in drawn  # nothing queued or running is left
        finally:
            driver.stop()
            driver.process.wait(timeout=30)
