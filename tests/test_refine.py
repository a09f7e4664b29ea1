"""Adaptive refinement ([refine]): what a round proposes, on synthetic curves; one real sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support import ROOT

from gamma_tui.analysis import RunCurve, eta_div, eta_star, loss_grid
from gamma_tui.cache import Cache
from gamma_tui.config import eta_scale, eta_values, expand, parse_preset
from gamma_tui.refine import Lattice, Proposal, estimate, propose, round_specs

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


def curves_for(
    runs: set[tuple[float, float, int]],
    noise: float = 0.0,
    star: float = LOG10_STAR,
    div: float = LOG10_DIV,
    skew: float = 0.0,
    seed_factor: tuple[float, ...] = (),
) -> list:
    """Flat curves on log L = 3 (x − star)², times 1 + skew above star (x = log10 η), times
    seed_factor[seed]; diverged above div."""
    rng = np.random.default_rng(0)
    curves = []
    for gamma, eta, seed in sorted(runs):
        x = math.log10(eta)
        if x > div:
            loss, status = np.full(4, np.inf), "diverged"
        else:
            shape = 3 * (x - star) ** 2 * (1 + skew if x > star else 1)
            value = math.exp(shape + noise * rng.standard_normal())
            value *= seed_factor[seed] if seed_factor else 1.0
            loss, status = np.full(4, value), "done"
        curves.append(RunCurve(gamma, eta, seed, status, None, np.arange(97.0, 101.0), loss))
    return curves


def every_seed(cells, seeds: int = 2) -> set[tuple[float, float, int]]:
    """The runs of (γ, η) cells with seeds 0..seeds-1."""
    return {(g, e, s) for g, e in cells for s in range(seeds)}


def grid_runs(preset) -> set[tuple[float, float, int]]:
    return {(s.gamma, s.eta, s.seed) for s in expand(preset)}


def grid_cells(preset) -> set[tuple[float, float]]:
    return {(s.gamma, s.eta) for s in expand(preset)}


def refine_until_done(preset, **landscape) -> tuple[set, int]:
    """Apply rounds to the synthetic surface until none is proposed; (runs, rounds)."""
    runs = grid_runs(preset)
    for rounds in range(1, 30):
        proposal = propose(preset, curves_for(runs, **landscape))
        if not proposal.runs:
            return runs, rounds - 1
        runs |= set(proposal.runs)
    raise AssertionError("refinement did not stop")


def test_the_lattice_is_the_grid_density_times_what_the_precision_needs() -> None:
    preset = parse_preset(PRESET)  # 1 per decade, precision 0.05: step 1/6 <= 0.05·√12
    assert Lattice.of(preset) == Lattice(-4.0, 6)
    coarser = parse_preset(PRESET.replace("eta_precision = 0.05", "eta_precision = 0.2"))
    assert Lattice.of(coarser).n == 2  # 0.2·√12 = 0.69: halving the grid step is enough
    fine = parse_preset(PRESET.replace("per_decade = 1\n[refine]", "per_decade = 4\n[refine]"))
    assert Lattice.of(fine).n == 8  # a multiple of the grid's 4: its points are lattice points


def test_a_round_moves_towards_the_optimum_one_point_per_gamma() -> None:
    preset = parse_preset(PRESET)
    proposal = propose(preset, curves_for(grid_runs(preset)))
    # η* cell 10^-1, its upper neighbour 10^0 diverged: the gap is bisected on the lattice
    # (-0.5), which also bisects the η_div bracket, so η_div proposes nothing new.
    assert sorted({round(math.log10(eta), 6) for _, eta, _ in proposal.eta_star}) == [-0.5]
    # one run per γ: the search trains the explore seed only
    assert {seed for *_, seed in proposal.eta_star} == {0}
    assert len(proposal.eta_star) == 3 and proposal.eta_div == [] and proposal.gamma == []
    assert proposal.confirm == []


@pytest.mark.parametrize(
    ("star", "div", "skew"),
    [
        (-1.3, -0.45, 0.0),
        (-1.3, 0.5, 0.0),
        (-2.55, 0.5, 3.0),
        (-0.6, -0.45, -0.7),
        (-2.2, 0.5, -0.8),
        (-1.0, 0.5, 0),
    ],
)
def test_rounds_stop_at_the_precision_and_bracket_the_optimum(star, div, skew) -> None:
    """Known optima (symmetric, skewed, next to η_div, on a grid point): bracketed and bounded."""
    preset = parse_preset(PRESET)
    runs, rounds = refine_until_done(preset, star=star, div=div, skew=skew)
    step = 1 / 6  # the lattice of 1 η per decade at precision 0.05
    grid = loss_grid(curves_for(runs, star=star, div=div, skew=skew))
    added = len(runs) - len(grid_runs(preset))
    for point, edge in zip(eta_star(grid), eta_div(grid), strict=True):
        # η* within a lattice step of the optimum (next to η_div, with no parabola through a
        # diverged neighbour, the lowest cell is η*: up to a step off on a skewed landscape)
        assert abs(math.log10(point.eta) - star) <= step + 1e-9
        assert point.log10_interval <= 0.05 + 1e-9
        # η_div bracketed to one lattice step, or to the precision
        assert math.log10(edge.eta) <= div < math.log10(edge.eta) + step + 1e-9
    for g, gamma in enumerate(grid.gammas.tolist()):
        near, top = deciding_cells(grid, g)
        seeds = {eta: {s for c, e, s in runs if (c, e) == (gamma, eta)} for eta in near | {top}}
        assert all(seeds[eta] == {0, 1} for eta in near)  # η* from both seeds' mean
        assert 1 in seeds[top]  # η_div checked with the seed the search did not train
    # at most 7 explored cells and 4 confirmed per γ (a grid of the lattice's density over the
    # band has 31 cells per γ)
    assert rounds <= 9 and added <= 3 * (7 + 4)


def deciding_cells(grid, g: int) -> tuple[set[float], float]:
    """The η of a γ's η* cell and its neighbours that did not diverge; its top stable η."""
    mean = grid.mean_loss[g]
    present = np.flatnonzero(np.isfinite(mean) | grid.diverged[:, g].any(axis=0))
    finite = np.isfinite(mean[present])
    i = int(np.argmin(np.where(finite, mean[present], np.inf)))
    near = {j for j in (i - 1, i, i + 1) if 0 <= j < present.size and finite[j]}
    top = int(np.flatnonzero(finite)[-1])
    return {float(grid.etas[present[j]]) for j in near}, float(grid.etas[present[top]])


def test_a_wide_seed_spread_stops_refinement_earlier() -> None:
    """The spread is known where every seed trains: with explore_seeds = all, from the grid on;
    with one explore seed, from the confirmed cells, and refinement still ends."""
    preset = parse_preset(PRESET.replace("[refine]", "[refine]\nexplore_seeds = 2"))
    quiet, _ = refine_until_done(preset)
    noisy, _ = refine_until_done(preset, noise=3.0)
    assert len(noisy) < len(quiet)
    assert {s for *_, s in quiet} == {0, 1} and len(quiet) % 2 == 0  # whole cells only
    _, rounds = refine_until_done(parse_preset(PRESET), noise=3.0)
    assert rounds < 29


def test_a_lucky_explore_seed_finds_the_optimum_every_seed_finds() -> None:
    """Seed 0 at e^-1.8 of seed 1's loss everywhere (paper/mlp-L3's lazy γ are like that):
    refinement that explores with seed 0 ends on the η* and η_div that training every seed
    on the refined cells gives, with every deciding cell confirmed."""
    preset = parse_preset(PRESET)
    lucky = (math.exp(-1.8), 1.0)
    runs, rounds = refine_until_done(preset, seed_factor=lucky)
    full = every_seed({(g, e) for g, e, _ in runs})
    ours, theirs = (
        loss_grid(curves_for(runs, seed_factor=lucky)),
        loss_grid(curves_for(full, seed_factor=lucky)),
    )
    for a, b in zip(eta_star(ours), eta_star(theirs), strict=True):
        assert abs(math.log10(a.eta / b.eta)) < 1e-9
    assert [p.eta for p in eta_div(ours)] == [p.eta for p in eta_div(theirs)]
    assert len(runs) < 0.7 * len(full) and rounds <= 9


def test_new_eta_values_are_the_ones_a_denser_grid_has() -> None:
    preset = parse_preset(PRESET.replace('scale = "absolute"', 'scale = "relative"'))
    runs, _ = refine_until_done(preset)
    denser = preset.model_copy(update={"eta": preset.eta.model_copy(update={"per_decade": 6.0})})
    added = {(g, e) for g, e, _ in runs} - grid_cells(preset)
    inside = [(g, e) for g, e in added if 1e-4 <= e / eta_scale(preset, g) <= 10]
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
    new_gammas = {g for g, _, _ in proposal.gamma}
    assert new_gammas == {1.0}
    assert len(proposal.gamma) == len(eta_values(preset, 1.0))
    again = propose(preset, runs + curves_for(set(proposal.gamma)))
    assert again.gamma == []  # the column is there now
    specs = round_specs(preset, Proposal(proposal.gamma[:3], [], [], []), room=2)
    assert [(s.gamma, s.eta, s.seed) for s in specs] == proposal.gamma[:2]
    assert round_specs(preset, Proposal([], [], [], []), 100) == []


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
    assert "the grid and the search train 1 of the 2 seeds" in done.stdout
    assert "refine-test: 18 runs" in done.stdout  # 3 γ × 6 η, seed 0 only


def test_refine_round_leaves_the_sweeps_other_runs_as_they_are(tmp_path) -> None:
    """Only the added runs are registered: a run the cut-off skipped stays skipped."""
    from test_report import STEPS, build_fake_sweep

    from gamma_tui.config import run_spec
    from gamma_tui.runner import refine_round

    text = PRESET.replace("steps = 100", f"steps = {STEPS}")
    preset = parse_preset(text)
    with Cache(tmp_path / "runs") as cache:
        build_fake_sweep(cache, text)
        low = run_spec(preset, 1.0, 1e-6, 0)  # far below every η*: as if cut off
        specs = [*expand(preset), low]
        cache.register_sweep(preset.name, text, preset.model_dump(mode="json"), specs, STEPS)
        cache.mark_skipped([low.run_id])
        before = {r.run_id: (r.status, r.updated) for r in cache.runs(preset.name)}
        added = refine_round(cache, preset, text, None, list(before))
        after = {r.run_id: (r.status, r.updated) for r in cache.runs(preset.name)}
    assert added and before[low.run_id][0] == "skipped"
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) == set(before) | set(added)


def test_show_draws_refined_cells_at_their_eta(tmp_path) -> None:
    """`show` on a refined sweep: one row per η any column has; refined cells only where added."""
    from test_report import STEPS, build_fake_sweep

    from gamma_tui.report import heatmap_text
    from gamma_tui.runner import refine_round

    text = PRESET.replace("steps = 100", f"steps = {STEPS}")
    preset = parse_preset(text)
    with Cache(tmp_path / "runs") as cache:
        build_fake_sweep(cache, text)
        ids = [r.run_id for r in cache.runs(preset.name)]
        added = cache.runs(run_ids=refine_round(cache, preset, text, None, ids))
        heat = heatmap_text(cache, preset.name).splitlines()
    gammas = preset.gamma.values()
    end = next(i for i in range(3, len(heat)) if heat[i].startswith("─"))
    body = heat[3:end]
    rows = {}
    for line in body:
        label, cells = line.split("│")
        rows[float(label)] = [cells[8 * g : 8 * g + 8].strip() for g in range(len(gammas))]
    refined = {round(r.eta, 12): {gammas.index(r.gamma)} for r in added}
    for r in added:
        refined[round(r.eta, 12)].add(gammas.index(r.gamma))
    grid_etas = {round(e, 12) for e in preset.eta.values()}
    assert len(rows) == len(grid_etas | set(refined))
    for eta, cells in rows.items():
        key = next(k for k in grid_etas | set(refined) if math.isclose(k, eta, rel_tol=0.05))
        if key in grid_etas:
            assert all(cells), (eta, cells)  # every grid row is full: nothing shifted up
        else:
            assert [bool(c) for c in cells] == [g in refined[key] for g in range(len(gammas))]
            assert {c for c in cells if c} == {"q"}  # queued, at their own η


@pytest.mark.slow
def test_an_mlp_sweep_explores_with_one_seed_and_confirms_with_both(tmp_path) -> None:
    """A real 2-seed sweep with [refine]: the grid trains seed 0 only, and at every γ the
    cells that decide η* (its cell and stable neighbours) end with both seeds."""
    from gamma_tui.results import run_curves
    from gamma_tui.runner import run_sweep

    text = (ROOT / "presets" / "quickstart.toml").read_text()
    text = text.replace("steps = 1500", "steps = 150").replace("test_size = 1000", "test_size = 0")
    text = text.replace(
        "min = 0.01\nmax = 100\nper_decade = 2", "min = 1\nmax = 10\nper_decade = 1"
    )
    text = text.replace("width = 128", "width = 16").replace("per_decade = 3", "per_decade = 1")
    text = 'name = "mlp-refine"\n' + text + "\n[refine]\neta_precision = 0.1\nmax_runs = 200\n"
    preset = parse_preset(text)
    assert {s.seed for s in expand(preset)} == {0}
    with Cache(tmp_path / "runs") as cache:
        _, errors = run_sweep(cache, preset, text, None, workers=1, device="cpu")
        runs = cache.runs("mlp-refine")
        grid = loss_grid(run_curves(cache, runs, preset.train.steps), float(preset.train.steps))
    assert not errors and any(r.seed == 1 for r in runs)
    for g, gamma in enumerate(grid.gammas.tolist()):
        near, _ = deciding_cells(grid, g)
        for eta in near:
            assert {r.seed for r in runs if (r.gamma, r.eta) == (gamma, eta)} == {0, 1}
