"""The dashboard's sharpness mode: frame data (step size × λ_max per cell, centred colour
range, cells without λ), its drawing, the λ(t) traces and the cell details' measurements."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gamma_tui.cache import Cache
from gamma_tui.ui.canvas import diverging
from gamma_tui.ui.data import SnapshotBuilder, SweepSnapshot
from gamma_tui.ui.demo import write_sharpness_demo
from gamma_tui.ui.edge import (
    LOG10_EDGE,
    cell_measures,
    cell_trace,
    edge_grid,
    edge_range,
    has_sharpness,
)
from gamma_tui.ui.plots import NO_LAMBDA_BG, NO_LAMBDA_GLYPH, HeatmapModel, draw_heatmap
from gamma_tui.ui.text import details_text, measures_text

WIDTH = 32
"""network.width of the demo preset: the step size is N·η under SGD."""


@pytest.fixture
def sharp(tmp_path: Path) -> Iterator[tuple[Cache, SweepSnapshot]]:
    """The synthetic 'sharp' sweep and its snapshot at the latest step."""
    with Cache(tmp_path / "runs") as cache:
        write_sharpness_demo(cache)
        yield cache, SnapshotBuilder().snapshot(cache, "sharp", None)


def _expected(cache: Cache, snapshot: SweepSnapshot, g: int, h: int, step: float | None) -> float:
    """log10 of the geometric mean over the cell's seeds of N·η·λ_max, read from the cache."""
    values = []
    for index in snapshot.runs_in_cell(g, h):
        run = snapshot.runs[index]
        found = cache.diagnostics([run.run_id]).get(run.run_id)
        if found is None or run.status == "diverged":
            continue
        keep = found.steps <= (math.inf if step is None else step)
        lam = found.values["sharpness"][keep]
        values.append(math.log10(WIDTH * run.eta * lam[-1]))
    return float(np.mean(values)) if values else math.nan


def test_edge_grid_is_step_size_times_lambda_per_cell(sharp) -> None:  # type: ignore[no-untyped-def]
    cache, snapshot = sharp
    assert has_sharpness(snapshot)
    layout = snapshot.layout
    checked = 0
    for step in (None, 5.0, 200.0):
        grid = edge_grid(snapshot, step)
        for g in range(layout.gammas.size):
            for h in np.flatnonzero(layout.present[g]):
                want = _expected(cache, snapshot, g, int(h), step)
                if math.isnan(want):
                    assert math.isnan(grid[g, h]), (g, h, step)
                else:
                    assert grid[g, h] == pytest.approx(want, abs=1e-12)
                    checked += 1
    assert checked >= 3 * 15  # 15 cells with λ at each step
    # the step is followed: λ relaxes over ~50 steps, so t = 5 and the end differ
    assert not np.allclose(edge_grid(snapshot, 5.0), edge_grid(snapshot, None), equal_nan=True)


def test_cells_without_lambda_are_nan_and_drawn_as_such(sharp) -> None:  # type: ignore[no-untyped-def]
    _, snapshot = sharp
    grid = edge_grid(snapshot, None)
    layout = snapshot.layout
    state = snapshot.frame.grid.state
    smallest = int(np.argmin(layout.gammas))  # the demo trains γ < 0.1 without diagnostics
    done = [h for h in np.flatnonzero(layout.present[smallest]) if state[smallest, h] == "done"]
    assert done and all(math.isnan(grid[smallest, h]) for h in done)
    diverged = np.argwhere(state == "diverged")
    assert diverged.size and all(math.isnan(grid[g, h]) for g, h in diverged)
    model = HeatmapModel(
        layout,
        grid,
        state,
        snapshot.frame.eta_star,
        edge_range(grid),
        (2, 0),
        False,
        2,
        (255, 255, 255),
        (0, 0, 0),
        mode="sharpness",
    )
    canvas = draw_heatmap(model, 60, 30)
    marks = np.argwhere(canvas.chars == NO_LAMBDA_GLYPH)
    assert len(marks) == len(done)  # one per done cell without λ (all rows fit at 30 lines)
    y, x = marks[0]
    assert tuple(canvas.bg[y, x]) == NO_LAMBDA_BG
    # the same cells in the loss map carry no such mark
    loss = draw_heatmap(
        HeatmapModel(
            layout,
            snapshot.frame.log10_loss,
            state,
            snapshot.frame.eta_star,
            snapshot.loss_range,
            (2, 0),
            False,
            2,
            (255, 255, 255),
            (0, 0, 0),
        ),
        60,
        30,
    )
    assert not (loss.chars == NO_LAMBDA_GLYPH).any()


def test_colour_range_is_centred_at_the_edge() -> None:
    values = np.array([[LOG10_EDGE - 0.2, LOG10_EDGE + 1.23], [np.nan, LOG10_EDGE]])
    low, high = edge_range(values)
    assert (low + high) / 2 == pytest.approx(LOG10_EDGE)
    assert high == pytest.approx(LOG10_EDGE + 1.3)  # the farthest value, up to a tenth
    assert edge_range(np.full((2, 2), np.nan)) == pytest.approx(
        (LOG10_EDGE - 0.5, LOG10_EDGE + 0.5)
    )
    assert edge_range(np.array([LOG10_EDGE + 0.1])) == pytest.approx(
        (LOG10_EDGE - 0.5, LOG10_EDGE + 0.5)
    )


def test_a_cell_at_the_edge_gets_the_centre_colour(sharp) -> None:  # type: ignore[no-untyped-def]
    _, snapshot = sharp
    layout = snapshot.layout
    g = int(np.argmax(layout.gammas))
    h = int(np.flatnonzero(layout.present[g])[0])
    values = np.full((layout.gammas.size, layout.etas.size), np.nan)
    values[g, h] = LOG10_EDGE
    state = np.full(values.shape, "missing", dtype=object)
    state[g, h] = "done"
    model = HeatmapModel(
        layout,
        values,
        state,
        (),
        edge_range(values),
        (0, 0),
        False,
        2,
        (255, 255, 255),
        (0, 0, 0),
        mode="sharpness",
    )
    canvas = draw_heatmap(model, 60, 30)
    centre = tuple(int(c) for c in diverging(np.array(0.5)))
    assert centre == (222, 222, 222)
    painted = {tuple(int(c) for c in canvas.bg[y, x]) for y, x in np.argwhere(canvas.has_bg)}
    assert centre in painted


def test_cell_trace_is_the_seeds_geometric_mean(sharp) -> None:  # type: ignore[no-untyped-def]
    cache, snapshot = sharp
    layout = snapshot.layout
    g = int(np.argmax(layout.gammas == 1.0))
    h = int(np.argmin(np.abs(np.log10(layout.etas))))  # η = 1
    indices = snapshot.runs_in_cell(g, h)
    x, y = cell_trace(snapshot, indices)
    assert x.size > 5 and x[0] == 0.0  # from step 1 on (step 0 has no place on a log axis)
    found = cache.diagnostics([snapshot.runs[i].run_id for i in indices])
    last = int(round(10 ** x[-1]))
    lam = []
    for i in indices:
        measured = found[snapshot.runs[i].run_id]
        lam.append(measured.values["sharpness"][list(measured.steps).index(last)])
    assert y[-1] == pytest.approx(float(np.mean(np.log10(WIDTH * 1.0 * np.array(lam)))))


def test_cell_details_show_ensemble_and_sharpness(sharp) -> None:  # type: ignore[no-untyped-def]
    cache, snapshot = sharp
    layout = snapshot.layout
    g = int(np.argmax(layout.gammas == 1.0))
    h = int(np.argmin(np.abs(np.log10(layout.etas))))
    indices = snapshot.runs_in_cell(g, h)
    measures = cell_measures(snapshot, indices, None)
    assert measures is not None
    run = snapshot.runs[indices[0]]
    found = cache.diagnostics([run.run_id])[run.run_id]
    assert measures.ens_loss == pytest.approx(found.values["ens_test_loss"][-1])
    assert measures.ens_accuracy == pytest.approx(found.values["ens_test_accuracy"][-1])
    assert measures.ens_seeds == 2
    assert measures.edge == pytest.approx(10 ** edge_grid(snapshot, None)[g, h])
    assert measures.lam == pytest.approx(measures.edge / (WIDTH * run.eta))
    assert measures.progressive and not measures.catapult  # λ grows 2.5× at γ ≥ 1
    line = measures_text(measures).plain
    assert line.startswith(f"ens {measures.ens_loss:.3g} ") and "×2" in line
    assert f"S·λ {measures.edge:.3g}" in line and "sharpening" in line
    text = details_text(snapshot, snapshot.frame, g, h)
    assert line in text.plain and "test " in text.plain  # next to the single-run values
    assert text.no_wrap
    # a cell without diagnostics keeps the run ids and wraps as before
    smallest = int(np.argmin(layout.gammas))
    done = [
        k
        for k in np.flatnonzero(layout.present[smallest])
        if snapshot.frame.grid.state[smallest, k] == "done"
    ]
    plain = details_text(snapshot, snapshot.frame, smallest, int(done[0]))
    assert cell_measures(snapshot, snapshot.runs_in_cell(smallest, int(done[0])), None) is None
    assert "\nrun " in plain.plain and not plain.no_wrap


def test_edge_line_is_labelled_on_the_curve_axis() -> None:
    from gamma_tui.ui.curves import PlotModel, Series, draw_curves

    x = np.linspace(0, 3, 20)
    edge = Series(np.array([0.0, 3.0]), np.full(2, LOG10_EDGE), (255, 90, 90), dashed=True)
    model = PlotModel(
        (edge, Series(x, x / 3 - 0.5, (0, 0, 255))),
        (0.0, 3.0),
        (-1.0, 1.0),
        True,
        None,
        (200, 200, 200),
        (0, 0, 0),
        y_labels=((LOG10_EDGE, "2"),),
    )
    canvas = draw_curves(model, 40, 18)
    row = int(round((1.0 - LOG10_EDGE) / 2.0 * (18 - 2 - 1)))
    assert "".join(canvas.chars[row, :6]).strip() == "2┤"
    assert canvas.chars[row, 6:].tolist().count(" ") < 34  # the dashed edge line on that row


def test_snapshots_reread_the_diagnostics_of_runs_that_changed(sharp) -> None:  # type: ignore[no-untyped-def]
    from gamma_tui.cache import Progress
    from gamma_tui.ui.demo import FAKE_OWNER, FOREVER

    cache, _ = sharp
    builder = SnapshotBuilder()
    before = builder.snapshot(cache, "sharp", None)
    index = next(i for i, r in enumerate(before.runs) if r.status == "running")
    run = before.runs[index]
    update = Progress(
        run.run_id,
        run.steps_done + 1,
        [],
        None,
        "running",
        None,
        None,
        diagnostics=[(run.steps_done + 1, "sharpness", 123.0)],
    )
    assert not cache.commit(FAKE_OWNER, [update], ttl=FOREVER)
    after = builder.snapshot(cache, "sharp", None)
    found = after.diagnostics[index]
    assert found is not None and found.steps[-1] == run.steps_done + 1
    assert found.values["sharpness"][-1] == 123.0
    unchanged = [i for i in range(len(before.runs)) if i != index]
    assert all(after.diagnostics[i] is before.diagnostics[i] for i in unchanged)
