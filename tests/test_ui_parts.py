"""The app's pure parts: rasterizer, heatmap layout, snapshot reductions, launch helpers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from support import SMOKE

from gamma_tui.analysis import EtaPoint, RunCurve, loss_grid
from gamma_tui.cache import Cache
from gamma_tui.config import load_preset, parse_preset
from gamma_tui.ui.canvas import CharCanvas, decade_label, polyline, polyline_dots, short_number
from gamma_tui.ui.curves import PlotModel, Series, draw_curves
from gamma_tui.ui.data import SnapshotBuilder, _BinnedCurve, reduce_curve
from gamma_tui.ui.demo import fake_preset_text, mixed_states, write_fake_sweep
from gamma_tui.ui.frames import compute_frame, heat_layout, slider_steps
from gamma_tui.ui.launch import dump_preset, find_presets, knob_value, overrides
from gamma_tui.ui.plots import GLYPHS, HeatmapModel, draw_heatmap


def test_polyline_is_connected_and_clipped() -> None:
    dots = np.zeros((40, 60), dtype=bool)
    x = np.linspace(-10, 70, 9)
    polyline(dots, x, 0.5 * x)  # steep enough to need vertical spans, partly off-canvas
    columns = np.flatnonzero(dots.any(axis=0))
    assert columns[0] == 0 and columns[-1] == 59 and np.all(np.diff(columns) == 1)
    rows, cols = polyline_dots((40, 60), np.array([1.0, 25.0, 50.0]), np.array([5.0, np.nan, 5.0]))
    assert sorted(cols.tolist()) == [1, 50]  # a NaN record breaks the line: no bridge


def test_canvas_merges_segments_and_braille() -> None:
    canvas = CharCanvas(10, 2)
    canvas.text(0, 0, "ab", fg=(1, 2, 3))
    dots = np.zeros((8, 20), dtype=bool)
    dots[0, 0] = dots[3, 1] = True
    canvas.braille(dots, np.zeros((2, 10), dtype=int), np.array([[9, 9, 9]], dtype=np.uint8))
    lines = canvas.lines(__import__("rich.style", fromlist=["Style"]).Style())
    assert "".join(s.text for s in lines[0]) == "ab        "  # text wins over dots
    canvas = CharCanvas(3, 1)
    canvas.braille(dots[:4, :6], np.zeros((1, 3), dtype=int), np.array([[9, 9, 9]], np.uint8))
    assert canvas.chars[0, 0] == chr(0x2800 + 0x01 + 0x80)


def test_labels() -> None:
    assert decade_label(-3) == "10⁻³" and decade_label(2) == "10²"
    assert short_number(0.316227766) == "0.316" and short_number(1e-4) == "1e-4"
    assert short_number(1.2e-9) == "1.2e-9" and short_number(31622.7) == "3.2e4"
    assert short_number(math.nan) == "–"


def test_slider_is_log_spaced_and_ends_with_latest() -> None:
    steps = slider_steps(1000)
    assert steps[0] == 1.0 and steps[-2] == 1000.0 and steps[-1] is None
    assert all(b > a for a, b in zip(steps[:-2], steps[1:-1], strict=True))
    assert slider_steps(1) == (1.0, None)


def _runs(relative: bool) -> list[RunCurve]:
    """Curves on a 4 γ x 5 η grid; a relative grid shifts η with γ."""
    runs = []
    for gamma in (0.1, 1.0, 10.0, 100.0):
        for c in (0.01, 0.1, 1.0, 10.0, 100.0):
            eta = c * gamma if relative else c
            steps = np.arange(1, 101, dtype=float)
            runs.append(RunCurve(gamma, eta, 0, "done", None, steps, 1.0 / (1 + eta * steps)))
    return runs


def test_relative_grid_is_a_band_of_rows_in_absolute_eta() -> None:
    grid = loss_grid(_runs(relative=True))
    layout = heat_layout(grid)
    assert layout.etas.size == 8 and layout.rows == 8  # η from 1e-3 to 1e4, one decade a row
    assert layout.row_step == pytest.approx(1.0)
    for g in range(4):
        assert layout.rows_of(g) == list(range(g, g + 5))
        assert layout.cell_at(g, g) >= 0 and layout.cell_at(g, g + 5) == -1
    absolute = heat_layout(loss_grid(_runs(relative=False)))
    assert absolute.rows == 5 and all(absolute.rows_of(g) == list(range(5)) for g in range(4))


def _model(grid_runs: list[RunCurve], cursor: tuple[int, int], guides: bool) -> HeatmapModel:
    frame = compute_frame("x", 1, grid_runs, None)
    layout = heat_layout(frame.grid)
    return HeatmapModel(
        layout,
        frame.log10_loss,
        frame.grid.state,
        frame.eta_star,
        (-3.0, 0.0),
        cursor,
        guides,
        2,
        (220, 220, 220),
        (0, 0, 0),
    )


def test_heatmap_marks_every_state_and_scrolls_rows() -> None:
    runs = _runs(relative=True)
    states = ["done", "diverged", "queued", "running", "failed", "skipped"]
    marked = [
        RunCurve(
            r.gamma,
            r.eta,
            r.seed,
            states[i % len(states)],
            3 if states[i % len(states)] == "diverged" else None,
            r.steps if states[i % len(states)] != "queued" else r.steps[:0],
            r.loss if states[i % len(states)] != "queued" else r.loss[:0],
        )
        for i, r in enumerate(runs)
    ]
    canvas = draw_heatmap(_model(marked, (1, 3), True), 60, 20)
    text = "\n".join("".join(row) for row in canvas.chars)
    for state in ("diverged", "queued", "failed", "skipped"):
        assert GLYPHS[state] in text, state
    assert "[" in text and "]" in text and "▲" in text  # the cursor, on the cell and the axis
    assert any(ch in text for ch in "⠁⠂⠄⡀⠈⠐⠠⢀")  # guide lines in braille
    small = draw_heatmap(_model(runs, (0, 0), False), 40, 6)  # 8 rows into 4 lines
    small_text = "\n".join("".join(row) for row in small.chars)
    assert "↑more" in small_text and "▸" in small_text


def test_heatmap_marks_eta_star() -> None:
    runs = []
    for gamma in (1.0, 10.0):
        for eta in (0.01, 0.1, 1.0):
            loss = 0.1 + abs(math.log10(eta) + 1)  # best at η = 0.1
            runs.append(
                RunCurve(gamma, eta, 0, "done", None, np.array([1.0, 2.0]), np.array([1.0, loss]))
            )
    model = _model(runs, (0, 0), False)
    assert all(isinstance(p, EtaPoint) and p.ok for p in model.eta_star)
    assert "".join("".join(r) for r in draw_heatmap(model, 40, 10).chars).count("*") == 2


def test_curves_draw_bands_and_skip_blowups() -> None:
    x = np.linspace(0, 3, 50)
    y = -x / 3
    model = PlotModel(
        (
            Series(x, y, (255, 0, 0), y - 0.2, y + 0.2),
            Series(x, np.where(x > 1, 50.0, 0.0), (0, 255, 0)),
        ),
        (0.0, 3.0),
        (-1.2, 0.2),
        True,
        1.5,
        (200, 200, 200),
        (0, 0, 0),
    )
    canvas = draw_curves(model, 50, 16)
    assert canvas.has_bg.any()  # the seed band
    assert "┊" in "".join(canvas.chars.ravel())  # the step marker
    assert "10⁰" in "".join("".join(r) for r in canvas.chars)
    empty = draw_curves(
        PlotModel((), (0, 1), (0, 1), True, None, (1, 1, 1), (0, 0, 0), "nothing yet"), 40, 10
    )
    assert "nothing yet" in "".join("".join(r) for r in empty.chars)


def test_frames_cut_at_the_step_equal_full_curves() -> None:
    runs = _runs(relative=False)
    for step in (1.0, 7.0, 50.0, 99.5, None):
        full, cut = loss_grid(runs, step=step), compute_frame("x", 1, runs, step).grid
        np.testing.assert_array_equal(full.loss, cut.loss)
        np.testing.assert_array_equal(full.state, cut.state)
        np.testing.assert_array_equal(full.init_loss, cut.init_loss)


def test_binned_curve_grows_like_a_full_reduction() -> None:
    steps = np.arange(5000, dtype=float)
    loss = 1 / (1 + steps / 100)
    loss[4000:] = np.inf
    binned = _BinnedCurve(4.0)
    for start in range(0, 5000, 333):
        binned.add(steps[start : start + 333], loss[start : start + 333])
    np.testing.assert_allclose(binned.reduced(), reduce_curve(steps, loss, 4.0), equal_nan=True)
    assert np.isnan(reduce_curve(steps, loss, 4.0)[-1])


def test_snapshot_of_a_mixed_sweep(tmp_path: Path) -> None:
    text = fake_preset_text("mixed")
    with Cache(tmp_path) as cache:
        write_fake_sweep(cache, text, mixed_states(parse_preset(text)))
        builder = SnapshotBuilder()
        first = builder.snapshot(cache, "mixed", None)
        again = builder.snapshot(cache, "mixed", 100.0)
    assert first.log10_loss.shape == (len(first.runs), 240)
    assert again.frame.step == 100.0 and again.version == first.version + 1
    assert first.unfinished > 0 and first.progress.total == len(first.runs)
    low, high = first.loss_range
    assert low < high <= 0.1  # diverged blow-ups do not stretch the color scale
    for i, (g, h) in enumerate(first.cell_of_run):
        assert first.layout.gammas[g] == pytest.approx(first.runs[i].gamma)
        assert first.layout.etas[h] == pytest.approx(first.runs[i].eta)


def test_edited_presets_round_trip(tmp_path: Path) -> None:
    preset = load_preset(SMOKE)
    assert knob_value(preset, "seeds") == "2" and knob_value(preset, "eta.scale") == "relative"
    values = {"gamma.min": "1", "data.kind": "teacher_linear", "seeds": "3", "name": "x-2"}
    sets = overrides(preset, values | {"train.steps": knob_value(preset, "train.steps")})
    assert sorted(sets) == ['data.kind="teacher_linear"', "gamma.min=1", 'name="x-2"', "seeds=3"]
    edited = parse_preset(SMOKE.read_text(), overrides=sets)
    again = parse_preset(dump_preset(edited))
    assert again == edited and again.name == "x-2" and again.seeds == [0, 1, 2]
    (tmp_path / "a" / "paper").mkdir(parents=True)
    (tmp_path / "a" / "paper" / "p.toml").write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "q.toml").write_text("")
    found = find_presets([tmp_path / "a", tmp_path / "b", tmp_path / "a"], tmp_path / "b")
    assert [label for _, label in found] == ["paper/p", "q ✎"]


def test_preset_folders_include_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gamma_tui.ui.app import PRESETS_ENV, _preset_dirs

    monkeypatch.setenv(PRESETS_ENV, f"{tmp_path / 'x'}:{tmp_path / 'y'}")
    folders = _preset_dirs(tmp_path / "runs", Path("elsewhere/p.toml"), [tmp_path / "z"])
    shipped = [
        f
        for f in folders
        if f.is_absolute() and f.name == "presets" and f != tmp_path / "runs" / "presets"
    ]
    assert folders == [
        Path("presets"),
        *shipped,
        Path("elsewhere"),
        tmp_path / "z",
        tmp_path / "x",
        tmp_path / "y",
        tmp_path / "runs" / "presets",
    ]
