"""Adaptive refinement ([refine]): what a round proposes, on synthetic curves; one real sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support import ROOT

from gamma_tui.analysis import RunCurve, eta_div, eta_star, loss_grid
from gamma_tui.cache import Cache
from gamma_tui.config import eta_scale, eta_values, expand, parse_preset
from gamma_tui.refine import Proposal, estimate, propose, round_specs

PRESET = """
name = "refine-test"
seeds = 2
[train]
steps = 100
[gamma]
min = 0.1
max = 10
per_decade = 1
[eta]
scale = "absolute"
min = 1e-4
max = 10
per_decade = 1
[refine]
eta_precision = 0.05
max_runs = 10000
"""
LOG10_STAR = -1.3  # η* at every γ; runs above 10^(LOG10_DIV) diverge
LOG10_DIV = -0.45


def curves_for(cells: set[tuple[float, float]], seeds: int = 2, noise: float = 0.0) -> list:
    """Flat curves on log L = 3 (log10 η − LOG10_STAR)², diverged above LOG10_DIV."""
    rng = np.random.default_rng(0)
    runs = []
    for gamma, eta in sorted(cells):
        x = math.log10(eta)
        for seed in range(seeds):
            if x > LOG10_DIV:
                loss, status = np.full(4, np.inf), "diverged"
            else:
                value = math.exp(3 * (x - LOG10_STAR) ** 2 + noise * rng.standard_normal())
                loss, status = np.full(4, value), "done"
            runs.append(RunCurve(gamma, eta, seed, status, None, np.arange(97.0, 101.0), loss))
    return runs


def grid_cells(preset) -> set[tuple[float, float]]:
    return {(s.gamma, s.eta) for s in expand(preset)}


def refine_until_done(preset, noise: float = 0.0) -> tuple[set, int]:
    """Apply rounds to the synthetic surface until none is proposed; (cells, rounds)."""
    cells = grid_cells(preset)
    for rounds in range(1, 30):
        proposal = propose(preset, curves_for(cells, noise=noise))
        if not proposal.cells:
            return cells, rounds - 1
        cells |= set(proposal.cells)
    raise AssertionError("refinement did not stop")


def test_a_round_adds_midpoints_around_eta_star_and_in_the_eta_div_bracket() -> None:
    preset = parse_preset(PRESET)
    proposal = propose(preset, curves_for(grid_cells(preset)))
    # η* cell is 10^-1 (closest to -1.3 after the parabola): midpoints -1.5 and -0.5 are added.
    stars = sorted({round(math.log10(eta), 6) for _, eta in proposal.eta_star})
    assert stars == [-1.5, -0.5]
    # η_div: 10^-1 stable, 10^0 diverged: the bracket is bisected at -0.5, already proposed.
    assert proposal.eta_div == [] and proposal.gamma == []
    assert len(proposal.eta_star) == 2 * 3  # both gaps at each of the 3 γ


def test_rounds_stop_at_the_precision_and_find_the_optimum() -> None:
    preset = parse_preset(PRESET)
    cells, rounds = refine_until_done(preset)
    assert 2 <= rounds <= 8
    grid = loss_grid(curves_for(cells))
    for star, edge in zip(eta_star(grid), eta_div(grid), strict=True):
        assert abs(math.log10(star.eta) - LOG10_STAR) < 0.02
        assert star.log10_interval <= 0.05 + 1e-9
        assert edge.log10_interval <= 0.05 + 1e-9
        assert math.log10(edge.eta) <= LOG10_DIV < math.log10(edge.eta) + 2 * 0.05 + 1e-9
    # Far fewer runs than a grid as fine as the refined cells everywhere (1/16 decade).
    dense = 3 * 5 * 16
    assert len(cells) < dense / 5


def test_a_wide_seed_spread_stops_refinement_earlier() -> None:
    preset = parse_preset(PRESET)
    quiet, _ = refine_until_done(preset)
    noisy, _ = refine_until_done(preset, noise=3.0)
    assert len(noisy) < len(quiet)


def test_new_eta_values_are_the_ones_a_denser_grid_has() -> None:
    preset = parse_preset(PRESET.replace('scale = "absolute"', 'scale = "relative"'))
    proposal = propose(preset, curves_for(grid_cells(preset)))
    denser = preset.model_copy(update={"eta": preset.eta.model_copy(update={"per_decade": 2.0})})
    inside = [(g, e) for g, e in proposal.eta_star if 1e-4 <= e / eta_scale(preset, g) <= 10]
    assert inside
    for gamma, eta in inside:
        assert eta in eta_values(denser, gamma)  # equal floats: the runs would be shared


def test_gamma_column_at_the_crossover_and_max_runs() -> None:
    text = PRESET.replace("max_runs = 10000", "max_runs = 10000\ngamma = true")
    text = text.replace("min = 0.1\nmax = 10", "min = 0.003\nmax = 300")
    text = text.replace('scale = "absolute"', 'scale = "relative"')
    preset = parse_preset(text)
    # η* = 0.05 γ² below γ = 1 and 0.05 γ^(2/3) above: the fits cross at γ = 1
    cells = {(g, e) for g, e in grid_cells(preset)}
    runs = []
    for gamma, eta in sorted(cells):
        star = math.log10(0.05) + (2 if gamma < 1 else 2 / 3) * math.log10(gamma)
        value = math.exp(3 * (math.log10(eta) - star) ** 2)
        runs += [RunCurve(gamma, eta, s, "done", None, np.arange(97.0, 101.0), np.full(4, value))
                 for s in range(2)]  # fmt: skip
    proposal = propose(preset, runs)
    # the fits cross at γ = 1, half a decade from the columns 0.3 and 3
    new_gammas = {g for g, _ in proposal.gamma}
    assert new_gammas == {1.0}
    assert len(proposal.gamma) == len(eta_values(preset, 1.0))
    again = propose(preset, runs + curves_for(set(proposal.gamma)))
    assert again.gamma == []  # the column is there now
    specs = round_specs(preset, Proposal(proposal.gamma[:3], [], []), room=7)
    assert len(specs) == 6  # whole cells only: 3 cells of 2 seeds
    assert round_specs(preset, Proposal([], [], []), 100) == []


def test_dry_run_estimate_is_bounded_by_max_runs() -> None:
    preset = parse_preset(PRESET)
    most, cap = estimate(preset)
    assert cap == 10000 and 0 < most < 10000
    capped = parse_preset(PRESET.replace("max_runs = 10000", "max_runs = 50"))
    assert estimate(capped) == (50 - capped.run_count(), 50)
    assert estimate(parse_preset(PRESET.split("[refine]")[0])) == (0, 0)


def test_refine_round_registers_the_added_runs_in_the_sweep(tmp_path) -> None:
    """refine_round on fake finished runs: the sweep holds grid and added runs, ids are new."""
    from test_report import STEPS, build_fake_sweep

    from gamma_tui.runner import refine_round

    text = PRESET.replace("steps = 100", f"steps = {STEPS}")
    preset = parse_preset(text)
    with Cache(tmp_path / "runs") as cache:
        build_fake_sweep(cache, text)
        ids = [r.run_id for r in cache.runs("refine-test")]
        added = refine_round(cache, preset, text, None, ids)
        runs = cache.runs("refine-test")
        assert added and not set(added) & set(ids)
        assert {r.run_id for r in runs} == set(ids) | set(added)
        assert all(r.status == "queued" for r in runs if r.run_id in added)
        capped = preset.model_copy(
            update={"refine": preset.refine.model_copy(update={"max_runs": len(ids) + len(added)})}
        )
        assert refine_round(cache, capped, text, None, ids + added) == []


@pytest.mark.slow
def test_refinement_trains_added_runs_as_ordinary_runs(tmp_path) -> None:
    """The toy chain, coarse η plus [refine]: the sweep grows, every added run is cached."""
    from gamma_tui.runner import run_sweep

    text = (ROOT / "presets" / "paper" / "toy-chain-L2.toml").read_text()
    text = text.replace("per_decade = 12", "per_decade = 1").replace("steps = 2000", "steps = 200")
    text = text.replace(
        "min = 0.001\nmax = 1000\nper_decade = 2", "min = 0.01\nmax = 100\nper_decade = 1"
    )
    text = 'name = "toy-refine"\n' + text + "\n[refine]\neta_precision = 0.1\nmax_runs = 80\n"
    preset = parse_preset(text)
    with Cache(tmp_path / "runs") as cache:
        final, errors = run_sweep(cache, preset, text, None, workers=1, device="cpu")
        runs = cache.runs("toy-refine")
    assert not errors
    grid = preset.run_count()
    assert grid < len(runs) <= 80 and final.total == len(runs)
    assert all(r.status in ("done", "diverged", "skipped") for r in runs)
    grid_ids = {s.run_id for s in expand(preset)}
    added = [r for r in runs if r.run_id not in grid_ids]
    assert added and all(r.steps_done > 0 for r in added if r.status == "done")
    # added η values are finer than the grid's decade
    gaps = {round(math.log10(r.eta) % 1, 3) for r in added}
    assert gaps - {0.0}


@pytest.mark.parametrize(
    "bad", ["eta_precision = 0", "eta_precision = 0.05\nmax_runs = 0\n[x]", "extra = 1"]
)
def test_bad_refine_tables_are_preset_errors(bad: str) -> None:
    from gamma_tui.config import PresetError

    with pytest.raises(PresetError, match="refine"):
        parse_preset(PRESET.replace("eta_precision = 0.05", bad))


def test_dry_run_says_what_refinement_may_add(tmp_path) -> None:
    from typer.testing import CliRunner

    from gamma_tui.cli import app

    preset = tmp_path / "refine-test.toml"
    preset.write_text(PRESET)
    done = CliRunner().invoke(
        app, ["run", str(preset), "--cache", str(tmp_path / "runs"), "--dry-run"]
    )
    assert done.exit_code == 0, done.output
    most, cap = estimate(parse_preset(PRESET))
    assert f"refinement (eta_precision 0.05 decades): up to {most:,} more runs" in done.stdout
    assert f"max_runs {cap:,}" in done.stdout
