"""The typed view of a stored sweep (results.StoredSweep) and the shared η landscape.

A config dumped from a preset validates back into it; one that does not (an older version's,
or a test's partial config) falls back to the raw values with the preset's defaults and says why.
"""

from __future__ import annotations

import numpy as np

from gamma_tui.analysis import RunCurve, eta_div, eta_landscape, eta_star, fit_regimes, loss_grid
from gamma_tui.cache import SweepInfo
from gamma_tui.config import parse_preset
from gamma_tui.results import DEFAULT_WINDOW, StoredSweep

PRESET = """
name = "typed"
[network]
kind = "{kind}"
width = 16
depth = 3
[data]
kind = "{data}"
outputs = 1
[train]
optimizer = "{optimizer}"
batch_size = {batch}
steps = 100
[gamma]
min = 0.1
max = 10
[eta]
scale = "relative"
min = 0.1
max = 1
[analysis]
window = 0.2
"""


def _info(config: dict, steps: int = 100) -> SweepInfo:
    return SweepInfo("typed", None, "", config, steps, 0.0, 0.0)


def test_a_stored_preset_validates_back_into_the_model() -> None:
    preset = parse_preset(PRESET.format(kind="mlp", data="teacher_mlp", optimizer="adam", batch=16))
    view = StoredSweep.of(_info(preset.model_dump(mode="json")))
    assert view.preset == preset and view.invalid is None
    assert (view.depth, view.optimizer, view.window) == (3, "adam", 0.2)
    assert view.relative_eta and view.width == 16 and view.scalar_target is None
    assert (view.name, view.steps) == ("typed", 100)


def test_the_scalar_chain_has_width_one_and_a_target() -> None:
    preset = parse_preset(PRESET.format(kind="chain", data="scalar", optimizer="sgd", batch=1))
    view = StoredSweep.of(_info(preset.model_dump(mode="json")))
    assert view.preset is not None
    assert view.width == 1 and view.scalar_target == 1.0 and view.depth == 3


def test_a_config_that_no_longer_validates_falls_back_to_its_raw_values() -> None:
    empty = StoredSweep.of(_info({}))
    assert empty.preset is None and empty.invalid.startswith("stored config does not validate")
    assert (empty.depth, empty.optimizer, empty.window) == (2, "sgd", DEFAULT_WINDOW)
    assert not empty.relative_eta and empty.width == 1 and empty.scalar_target is None
    old = StoredSweep.of(
        _info(
            {
                "network": {"kind": "mlp", "depth": 4, "width": 8, "retired_key": 1},
                "train": {"optimizer": "signsgd"},
                "eta": {"scale": "relative"},
                "analysis": {"window": 0.5},
                "data": {"kind": "scalar", "target": 2.0},
            }
        )
    )
    assert old.preset is None and old.invalid is not None
    assert (old.depth, old.optimizer, old.window, old.width) == (4, "signsgd", 0.5, 8)
    assert old.relative_eta and old.scalar_target == 2.0


def test_the_landscape_is_the_grid_and_the_fits_computed_separately() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(1.0, 101.0)
    curves = []
    for gamma in (0.1, 1.0, 10.0):
        for eta in (0.01, 0.1, 1.0, 10.0):
            for seed in (0, 1):
                scale = (1 + (np.log10(eta) - np.log10(gamma)) ** 2) * (1 + 0.01 * rng.random())
                curves.append(RunCurve(gamma, eta, seed, "done", None, steps, scale / steps))
    land = eta_landscape(curves, step=80.0, window=0.1, depth=3, optimizer="sgd")
    grid = loss_grid(curves, step=80.0, window=0.1)
    np.testing.assert_array_equal(land.grid.mean_loss, grid.mean_loss)
    assert land.stars == eta_star(grid) and land.edges == eta_div(grid)
    assert land.star_fit == fit_regimes(eta_star(grid), depth=3, optimizer="sgd")
    assert land.div_fit == fit_regimes(eta_div(grid), depth=3, optimizer="sgd")
