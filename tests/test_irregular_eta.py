"""Analysis on irregular η: every γ has its own η values (a coarse grid plus refined cells)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gamma_tui.analysis import (
    RunCurve,
    budget_edge,
    eta_div,
    eta_star,
    fit_collapse_k,
    fit_regimes,
    loss_grid,
)

GAMMAS = 10.0 ** np.arange(-2.0, 2.01, 0.5)
LOG10_C = -1.0


def true_log10_eta_star(gamma: float) -> float:
    """η* = c·γ² below γ = 1 and c·γ^(2/3) above (depth 3)."""
    log10_gamma = math.log10(gamma)
    return LOG10_C + (2.0 if log10_gamma < 0 else 2.0 / 3.0) * log10_gamma


def flat(gamma: float, eta: float, seed: int, value: float, status: str = "done") -> RunCurve:
    """A run whose recorded loss is constant (non-finite when it diverged)."""
    loss = np.full(4, value if status == "done" else np.inf)
    return RunCurve(gamma, eta, seed, status, 2 if status == "diverged" else None,
                    np.arange(1.0, 5.0), loss)  # fmt: skip


def irregular_runs(n_seeds: int, noise: float, refine: bool) -> list[RunCurve]:
    """Per γ a 1-per-decade η grid offset by a γ-dependent phase, plus, when refine, cells at
    1/16 decade around the true η*; diverged 0.6 decades above η*."""
    rng = np.random.default_rng(3)
    runs = []
    for k, gamma in enumerate(GAMMAS):
        centre = true_log10_eta_star(gamma)
        phase = 0.37 * k  # no two γ share an η value
        log10_etas = set(np.round(np.arange(-8.0, 4.01, 1.0) + phase % 1.0, 9))
        if refine:
            log10_etas |= set(np.round(centre + np.arange(-4, 5) / 16 + 0.013, 9))
        for x in sorted(log10_etas):
            diverged = x > centre + 0.6
            for seed in range(n_seeds):
                value = 0.01 * math.exp(2.0 * (x - centre) ** 2 + noise * rng.standard_normal())
                runs.append(flat(gamma, 10.0**x, seed, value, "diverged" if diverged else "done"))
    return runs


def test_each_gamma_keeps_its_own_eta_values() -> None:
    grid = loss_grid(irregular_runs(1, 0.0, refine=True))
    present = np.isfinite(grid.loss[0]) | grid.diverged[0]
    per_gamma = present.sum(axis=1)
    assert grid.etas.size > 2 * per_gamma.max()  # the union is much wider than any one γ
    assert (per_gamma == per_gamma[0]).all()


def test_eta_star_on_refined_cells_is_sharper_and_reports_local_spacing() -> None:
    coarse = eta_star(loss_grid(irregular_runs(1, 0.0, refine=False)))
    refined = eta_star(loss_grid(irregular_runs(1, 0.0, refine=True)))
    for c, r in zip(coarse, refined, strict=True):
        truth = true_log10_eta_star(r.gamma)
        assert r.ok and not r.at_edge and abs(math.log10(r.eta) - truth) < 1e-6
        assert 0.0 < r.log10_spacing <= 1 / 16 + 1e-9  # a coarse η may fall inside the cluster
        assert c.log10_spacing == pytest.approx(1.0, abs=1e-6)
        # one seed: no seed spread, so the interval is the local spacing's alone
        assert r.log10_eta_err == 0.0
        assert r.log10_interval == pytest.approx(r.log10_spacing / math.sqrt(12))
        assert c.log10_interval == pytest.approx(1 / math.sqrt(12))


def test_eta_star_interval_combines_seed_spread_and_spacing() -> None:
    points = eta_star(loss_grid(irregular_runs(4, 0.3, refine=True)), n_boot=100)
    for p in points:
        assert p.log10_eta_err > 0
        assert p.log10_interval == pytest.approx(
            math.hypot(p.log10_eta_err, p.log10_spacing / math.sqrt(12))
        )
        assert abs(math.log10(p.eta) - true_log10_eta_star(p.gamma)) < 3 * p.log10_interval + 0.05


def test_eta_div_brackets_with_this_gammas_neighbours() -> None:
    for refine in (False, True):
        grid = loss_grid(irregular_runs(1, 0.0, refine=refine))
        for point in eta_div(grid):
            g = int(np.flatnonzero(grid.gammas == point.gamma)[0])
            have = np.log10(grid.etas[np.isfinite(grid.loss[0, g]) | grid.diverged[0, g]])
            top = math.log10(point.eta)
            above = have[have > top + 1e-9].min()
            assert point.ok and not point.at_edge
            assert point.log10_spacing == pytest.approx(above - top)
            assert point.log10_interval == pytest.approx(0.5 * (above - top))
            assert top <= true_log10_eta_star(point.gamma) + 0.6 < above


def test_fits_weight_refined_gammas_by_their_interval() -> None:
    """A coarse γ whose seeds agree exactly must not outweigh the refined ones."""
    runs = irregular_runs(1, 0.0, refine=True)
    # A coarse column off the law: its η* is only known to a decade, so it barely counts.
    runs += [flat(30.0, 10.0**x, 0, 0.01 * math.exp(2.0 * (x - 0.3) ** 2)) for x in range(-3, 4)]
    fits = fit_regimes(eta_star(loss_grid(runs)), depth=3)
    assert fits.rich is not None and fits.lazy is not None
    assert fits.rich.slope == pytest.approx(2 / 3, abs=0.06)
    assert fits.lazy.slope == pytest.approx(2.0, abs=1e-6)


def test_budget_edge_and_collapse_accept_irregular_eta() -> None:
    runs = []
    for k, gamma in enumerate((10.0, 100.0, 1000.0)):
        for x in np.arange(-4.0, 1.0, 0.5) + 0.1 * k:  # η values differ per γ
            eta = 10.0**x
            steps = np.arange(1.0, 2001.0)
            t_half = 3.0 * gamma / eta  # leaves the plateau at t ~ γ/η: slope 1
            runs.append(RunCurve(gamma, eta, 0, "done", None, steps, 1.0 / (1.0 + steps / t_half)))
    edge = budget_edge(runs, 2000.0)
    assert edge.fit is not None and edge.fit.slope == pytest.approx(1.0, abs=0.15)
    assert all(p.log10_interval == pytest.approx(0.25) for p in edge.points if not p.at_edge)
    # one run per γ at an η that is on no shared grid: x = t·η/γ collapses them exactly
    picked = [
        RunCurve(g, e, 0, "done", None, s, 1.0 / (1.0 + s * e / (3.0 * g)))
        for g, e, s in ((10.0, 0.0213, steps), (100.0, 0.0871, steps), (1000.0, 0.414, steps))
    ]
    collapse = fit_collapse_k(picked)
    assert collapse.ok and collapse.k == pytest.approx(1.0, abs=0.1)


def test_heatmap_rows_put_refined_cells_at_their_true_eta() -> None:
    from gamma_tui.ui.frames import heat_layout

    runs = [flat(1.0, 10.0**x, 0, 1.0) for x in (-2.0, -1.0, 0.0)]
    runs += [flat(1.0, 10.0**x, 0, 1.0) for x in (-1.25, -1.125, -0.875)]  # refined around -1
    runs += [flat(10.0, 10.0**x, 0, 1.0) for x in (-1.5, -0.5)]  # another γ, other η
    layout = heat_layout(loss_grid(runs))
    assert layout.row_step == pytest.approx(0.125)
    rows = {
        round(math.log10(e), 3): int(r) for e, r in zip(layout.etas, layout.row_of_eta, strict=True)
    }
    for x, row in rows.items():
        assert layout.row_center(row) == pytest.approx(x, abs=1e-9)  # every cell sits at its own η
    assert len(set(rows.values())) == len(rows)
    assert layout.rows_of(0) == sorted(rows[x] for x in (-2.0, -1.25, -1.125, -1.0, -0.875, 0.0))
