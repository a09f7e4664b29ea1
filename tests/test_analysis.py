"""Tests of the pure analysis layer on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gamma_tui.analysis import (
    NOT_ENOUGH_DATA,
    TIME_VARIABLES,
    EtaPoint,
    LossGrid,
    RunCurve,
    best_loss_vs_gamma,
    budget_edge,
    collapse_spread,
    eta_div,
    eta_star,
    fit_collapse_k,
    fit_power_law,
    fit_regimes,
    loss_grid,
    plateau_time,
    rescale_time,
    t_quantile_95,
    theory_slopes,
)

GAMMAS = 10.0 ** np.arange(-3.0, 3.01, 0.5)
ETAS = 10.0 ** np.arange(-9.0, 5.01, 0.25)
LOG10_C = -1.0


def run(
    gamma: float,
    eta: float,
    seed: int,
    loss: np.ndarray | list[float],
    steps: np.ndarray | list[float] | None = None,
    status: str = "done",
    diverged_step: int | None = None,
) -> RunCurve:
    """A RunCurve with steps 1..n unless given."""
    loss = np.asarray(loss, dtype=np.float64)
    steps = np.arange(1.0, loss.size + 1) if steps is None else np.asarray(steps, float)
    return RunCurve(gamma, eta, seed, status, diverged_step, steps, loss)


def flat_run(gamma: float, eta: float, seed: int, value: float, **kwargs: object) -> RunCurve:
    """A run whose recorded loss is constant."""
    return run(gamma, eta, seed, np.full(4, value), **kwargs)  # type: ignore[arg-type]


def true_log10_eta_star(gamma: np.ndarray | float) -> np.ndarray:
    """eta* = c gamma^2 below gamma = 1 and c gamma^(2/3) above (depth 3)."""
    log10_gamma = np.log10(gamma)
    return LOG10_C + np.where(log10_gamma < 0, 2.0 * log10_gamma, (2.0 / 3.0) * log10_gamma)


def surface_runs(n_seeds: int, noise: float, rng_seed: int = 1) -> list[RunCurve]:
    """Runs on a loss surface log L = 2 (log10 eta - log10 eta*)^2 + noise, flat in time."""
    rng = np.random.default_rng(rng_seed)
    runs = []
    for gamma in GAMMAS:
        centre = float(true_log10_eta_star(gamma))
        for eta in ETAS:
            base = 2.0 * (math.log10(eta) - centre) ** 2
            for seed in range(n_seeds):
                value = 0.01 * math.exp(base + noise * rng.standard_normal())
                runs.append(flat_run(gamma, eta, seed, value))
    return runs


@pytest.fixture(scope="module")
def noisy_grid() -> LossGrid:
    """Three noisy seeds on the two-regime surface."""
    return loss_grid(surface_runs(n_seeds=3, noise=0.05))


# ---------------------------------------------------------------- loss_grid


def test_loss_grid_sorts_merges_round_off_and_fills_missing() -> None:
    runs = [
        flat_run(10.0, 1e-2, 1, 2.0),
        flat_run(0.1, 0.1 * 0.1, 0, 1.0),  # 0.010000000000000002 is the same eta as 1e-2
        flat_run(0.1, 1e-1, 0, 3.0),
        flat_run(0.0, 1e-1, 0, 9.0),  # gamma 0 is unusable and skipped
    ]
    grid = loss_grid(runs)
    np.testing.assert_allclose(grid.gammas, [0.1, 10.0])
    np.testing.assert_allclose(grid.etas, [1e-2, 1e-1])
    np.testing.assert_array_equal(grid.seeds, [0, 1])
    assert grid.loss.shape == (2, 2, 2)
    assert grid.loss[0, 0, 0] == 1.0 and grid.loss[1, 1, 0] == 2.0 and grid.loss[0, 0, 1] == 3.0
    assert np.isnan(grid.loss[0, 1, 1])
    assert grid.state.tolist() == [["done", "done"], ["done", "missing"]]
    np.testing.assert_allclose(grid.mean_loss, [[1.0, 3.0], [2.0, np.nan]])


def test_cells_some_seeds_lack_are_scaled_by_the_seeds_they_have() -> None:
    """Full cells are the plain seed mean; a cell with seed 0 only is seed 0's loss times
    seed 0's ratio to the mean at the γ's full cells, so a lucky seed does not win alone."""
    factor = {0: 0.2, 1: 1.0, 2: 1.8}  # seed 0 reaches a fifth of the others' loss
    runs = [flat_run(1.0, eta, s, factor[s] * base) for eta, base in ((1e-2, 4.0), (1e-1, 3.0))
            for s in factor]  # fmt: skip
    runs.append(flat_run(1.0, 1.0, 0, factor[0] * 3.5))  # seed 0 only: really 3.5, worse
    runs.append(flat_run(1.0, 10.0, 1, 2.0))  # seed 1 only
    mean = loss_grid(runs).mean_loss[0]
    np.testing.assert_allclose(mean[:2], [4.0, 3.0])  # full cells: unchanged
    np.testing.assert_allclose(mean[2], 3.5, rtol=1e-12)  # ratio 1/0.2 recovered exactly
    np.testing.assert_allclose(mean[3], 2.0)  # seed 1 is the size of the seed mean
    assert eta_star(loss_grid(runs))[0].eta == 10.0  # not seed 0's lucky η = 1
    # without a full cell there is nothing to scale by: the plain mean of what is there
    alone = loss_grid([flat_run(1.0, 1e-2, 0, 0.8), flat_run(1.0, 1e-1, 1, 3.0)])
    np.testing.assert_allclose(alone.mean_loss[0], [0.8, 3.0])


def test_loss_grid_window_mean_and_sparse_interpolation() -> None:
    linear = run(1.0, 1.0, 0, np.arange(1.0, 101.0))
    assert loss_grid([linear]).loss[0, 0, 0] == pytest.approx(np.mean(np.arange(95, 101)))
    assert loss_grid([linear], step=50).loss[0, 0, 0] == pytest.approx(49.0)
    assert loss_grid([linear], step=50, window=0.0).loss[0, 0, 0] == pytest.approx(50.0)
    sparse = run(1.0, 1.0, 0, [4.0, 3.0, 2.0, 1.0], steps=[1, 10, 100, 1000])
    assert loss_grid([sparse], step=500).loss[0, 0, 0] == pytest.approx(2.0 - 400.0 / 900.0)
    assert np.isnan(loss_grid([sparse], step=5000).loss[0, 0, 0])
    assert loss_grid([sparse]).init_loss[0, 0, 0] == 4.0


def test_loss_grid_divergence_depends_on_the_step() -> None:
    values = np.concatenate([np.linspace(1.0, 0.01, 59), np.full(41, np.nan)])
    blown = run(1.0, 1.0, 0, values, status="diverged", diverged_step=60)
    healthy = run(1.0, 1.0, 1, np.full(100, 0.5))
    before = loss_grid([blown, healthy], step=50)
    assert not before.diverged.any() and before.state[0, 0] == "done"
    assert before.loss[0, 0, 0] < 0.2
    for step in (None, 60.0, 70.0):
        after = loss_grid([blown, healthy], step=step)
        assert after.diverged[0, 0, 0] and not after.diverged[1, 0, 0]
        assert np.isnan(after.loss[0, 0, 0]) and after.state[0, 0] == "diverged"
        assert np.isnan(after.mean_loss[0, 0])  # a diverged seed never counts as low loss


def test_loss_grid_non_finite_window_counts_as_diverged() -> None:
    spiky = run(1.0, 1.0, 0, [1.0, 0.5, np.inf, 0.1], status="done")
    grid = loss_grid([spiky], step=3)
    assert grid.diverged[0, 0, 0] and grid.state[0, 0] == "diverged"
    assert np.isnan(grid.mean_loss[0, 0])


def test_loss_grid_aggregate_states() -> None:
    runs = [
        flat_run(1.0, 1.0, 0, 1.0),
        run(1.0, 1.0, 1, [], status="queued"),
        run(1.0, 2.0, 0, [], status="queued"),
        flat_run(1.0, 3.0, 0, 1.0),
        run(1.0, 3.0, 1, [0.5, np.nan], status="diverged", diverged_step=2),
        run(1.0, 4.0, 0, [1.0], status="failed"),
        flat_run(1.0, 4.0, 1, 1.0),
        run(1.0, 5.0, 0, [], status="skipped"),
    ]
    grid = loss_grid(runs)
    expected = ["running", "queued", "diverged", "failed", "skipped"]
    assert grid.state[0].tolist() == expected


def test_loss_grid_empty_input() -> None:
    grid = loss_grid([])
    assert grid.loss.shape == (0, 0, 0) and grid.state.shape == (0, 0)
    assert grid.mean_loss.shape == (0, 0)
    assert eta_star(grid) == [] and eta_div(grid) == [] and best_loss_vs_gamma(grid) == []


# ---------------------------------------------------------------- eta*(gamma)


def test_eta_star_recovers_two_regime_slopes(noisy_grid: LossGrid) -> None:
    points = eta_star(noisy_grid)
    assert all(p.ok and not p.at_edge for p in points)
    errors = [abs(math.log10(p.eta) - true_log10_eta_star(p.gamma)) for p in points]
    assert max(errors) < 0.1  # well under the 0.25-decade grid spacing
    fits = fit_regimes(points, depth=3)
    assert fits.lazy is not None and fits.rich is not None and fits.reason == ""
    assert fits.lazy.slope == pytest.approx(2.0, abs=0.05)
    assert fits.rich.slope == pytest.approx(2.0 / 3.0, abs=0.05)
    assert fits.lazy.n == 6 and fits.rich.n == 6  # gamma == 1 belongs to neither regime
    assert abs(fits.lazy.slope - 2.0) < fits.lazy.slope_ci95 + 0.02
    assert (fits.theory_lazy, fits.theory_rich) == (2.0, pytest.approx(2.0 / 3.0))
    assert fits.crossover_gamma is not None
    assert abs(math.log10(fits.crossover_gamma)) < 0.2


def test_eta_star_parabola_beats_grid_resolution() -> None:
    true_log10 = -2.13
    etas = 10.0 ** np.arange(-4.0, 0.01, 0.25)
    runs = [flat_run(1.0, eta, 0, math.exp((math.log10(eta) - true_log10) ** 2)) for eta in etas]
    (point,) = eta_star(loss_grid(runs))
    grid_error = np.min(np.abs(np.log10(etas) - true_log10))
    assert grid_error > 0.1
    assert abs(math.log10(point.eta) - true_log10) < 1e-9  # exact on a true parabola
    assert point.ok and not point.at_edge and point.log10_eta_err == 0.0


def test_eta_star_on_a_relative_grid_uses_each_gammas_own_etas() -> None:
    """A relative grid gives each gamma its own band of eta: neighbours are within the band."""
    runs = []
    for gamma in (0.1, 0.3, 1.0):
        true_log10 = 2 * math.log10(gamma) - 0.07
        for c in 10.0 ** np.arange(-1.0, 1.01, 1 / 3):
            eta = c * gamma**2
            runs.append(flat_run(gamma, eta, 0, math.exp((math.log10(eta) - true_log10) ** 2)))
    points = eta_star(loss_grid(runs))
    assert len(loss_grid(runs).etas) > 7  # the union of bands is wider than one band
    for point in points:
        assert point.ok and not point.at_edge
        assert math.log10(point.eta) == pytest.approx(2 * math.log10(point.gamma) - 0.07)


def test_eta_star_never_extrapolates_and_flags_edges() -> None:
    etas = 10.0 ** np.arange(-4.0, 0.01, 0.5)
    decreasing = [flat_run(1.0, eta, 0, 1.0 / eta) for eta in etas]
    (point,) = eta_star(loss_grid(decreasing))
    assert point.ok and point.at_edge and point.eta == pytest.approx(etas[-1])
    # Beyond the best point everything diverged: divergence brackets the optimum.
    bracketed = decreasing[:-2] + [
        run(1.0, eta, 0, [1.0, np.nan], status="diverged", diverged_step=2) for eta in etas[-2:]
    ]
    (point,) = eta_star(loss_grid(bracketed))
    assert point.ok and not point.at_edge and point.eta == pytest.approx(etas[-3])


def test_eta_star_bootstrap_error_positive_with_seeds_zero_with_one(noisy_grid: LossGrid) -> None:
    assert all(p.log10_eta_err > 0 for p in eta_star(noisy_grid, n_boot=100))
    single = loss_grid(surface_runs(n_seeds=1, noise=0.1))
    assert all(p.ok and p.log10_eta_err == 0.0 for p in eta_star(single))
    again = eta_star(noisy_grid, n_boot=100)
    assert [p.log10_eta_err for p in again] == [p.log10_eta_err for p in eta_star(noisy_grid, 100)]


def test_eta_star_ignores_cells_where_a_seed_diverged() -> None:
    runs = [flat_run(1.0, 1.0, s, 0.5) for s in range(2)]
    runs += [flat_run(1.0, 2.0, 0, 0.01), run(1.0, 2.0, 1, [0.01, np.nan], status="diverged")]
    runs += [flat_run(1.0, 0.5, s, 0.9) for s in range(2)]
    (point,) = eta_star(loss_grid(runs))
    assert point.eta == pytest.approx(1.0, rel=0.2) and not point.at_edge
    (best,) = best_loss_vs_gamma(loss_grid(runs))
    assert best == (1.0, 0.5, 1.0)


def test_eta_star_without_data_is_not_ok() -> None:
    runs = [run(1.0, eta, 0, [np.nan, np.nan], status="diverged") for eta in (0.1, 1.0)]
    (point,) = eta_star(loss_grid(runs))
    assert not point.ok and math.isnan(point.eta)


# ---------------------------------------------------------------- eta_div(gamma)


def divergence_runs(offset: float) -> list[RunCurve]:
    """Runs that diverge above eta* * 10^offset, with loss 1 otherwise."""
    runs = []
    for gamma in GAMMAS:
        edge = float(true_log10_eta_star(gamma)) + offset
        for eta in ETAS:
            if math.log10(eta) > edge:
                runs.append(run(gamma, eta, 0, [1.0, np.inf], status="diverged", diverged_step=2))
            else:
                runs.append(flat_run(gamma, eta, 0, 1.0))
    return runs


def test_eta_div_picks_largest_non_diverged() -> None:
    points = eta_div(loss_grid(divergence_runs(offset=0.6)))
    for point in points:
        edge = float(true_log10_eta_star(point.gamma)) + 0.6
        expected = ETAS[np.log10(ETAS) <= edge + 1e-9].max()
        assert point.ok and not point.at_edge and point.eta == pytest.approx(expected)
        assert point.log10_eta_err == pytest.approx(0.125)
    fits = fit_regimes(points, depth=3)
    assert fits.lazy is not None and fits.rich is not None
    assert fits.lazy.slope == pytest.approx(2.0, abs=0.1)
    assert fits.rich.slope == pytest.approx(2.0 / 3.0, abs=0.1)


def test_eta_div_all_or_none_diverged_is_not_ok() -> None:
    none = eta_div(loss_grid(divergence_runs(offset=20.0)))
    assert all(not p.ok and p.at_edge and p.eta == pytest.approx(ETAS[-1]) for p in none)
    every = eta_div(loss_grid(divergence_runs(offset=-20.0)))
    assert all(not p.ok and p.at_edge and math.isnan(p.eta) for p in every)


# ---------------------------------------------------------------- power laws


def test_fit_power_law_exact_and_noisy() -> None:
    x = np.logspace(-2, 3, 12)
    exact = fit_power_law(x, 3.0 * x**1.5)
    assert exact is not None
    assert exact.slope == pytest.approx(1.5) and exact.intercept == pytest.approx(math.log10(3))
    assert exact.r2 == pytest.approx(1.0) and exact.n == 12 and exact.slope_ci95 < 1e-9
    np.testing.assert_allclose(exact.predict(np.array([10.0])), [3.0 * 10**1.5])
    rng = np.random.default_rng(0)
    noisy = fit_power_law(x, 3.0 * x**1.5 * 10 ** (0.1 * rng.standard_normal(12)))
    assert noisy is not None and 0 < noisy.slope_ci95 < 0.2
    assert abs(noisy.slope - 1.5) < noisy.slope_ci95 and 0.9 < noisy.r2 < 1.0


def test_fit_power_law_drops_bad_points_and_weights_errors() -> None:
    x = np.array([1.0, 10.0, 100.0, np.nan, -1.0, 1000.0])
    y = np.array([1.0, 10.0, 100.0, 5.0, 5.0, 1e6])  # the last point is an outlier
    unweighted = fit_power_law(x, y)
    weighted = fit_power_law(x, y, [0.01, 0.01, 0.01, 0.01, 0.01, 100.0])
    assert unweighted is not None and weighted is not None and weighted.n == 4
    assert abs(unweighted.slope - 1.0) > 0.3
    assert weighted.slope == pytest.approx(1.0, abs=0.01)


def test_fit_power_law_not_enough_points() -> None:
    assert fit_power_law([], []) is None
    assert fit_power_law([1.0, np.nan], [1.0, 2.0]) is None
    assert fit_power_law([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) is None  # no spread in x
    two = fit_power_law([1.0, 10.0], [1.0, 100.0])
    assert two is not None and two.slope == pytest.approx(2.0) and two.slope_ci95 == math.inf


def test_t_quantiles_and_theory_slopes() -> None:
    assert t_quantile_95(1) == 12.706 and t_quantile_95(30) == 2.042
    assert t_quantile_95(31) == 1.96 and t_quantile_95(0) == math.inf
    assert theory_slopes(3) == (2.0, pytest.approx(2.0 / 3.0))
    assert theory_slopes(4, "adam") == (1.0, 0.25) and theory_slopes(2, "SignSGD") == (1.0, 0.5)
    assert all(math.isnan(v) for v in theory_slopes(3, "lion"))


def test_fit_regimes_excludes_edges_and_explains_missing_fits() -> None:
    good = [EtaPoint(g, 0.1 * g**2, 0.05, False, True) for g in (1e-3, 1e-2, 1e-1)]
    bad = [EtaPoint(1e-4, 1e3, 0.05, True, True), EtaPoint(0.5, 1e3, 0.05, False, False)]
    fits = fit_regimes(good + bad, depth=4, optimizer="signsgd")
    assert fits.lazy is not None and fits.lazy.slope == pytest.approx(2.0) and fits.lazy.n == 3
    assert fits.rich is None and fits.crossover_gamma is None
    assert fits.reason.startswith(NOT_ENOUGH_DATA) and "rich" in fits.reason
    assert (fits.theory_lazy, fits.theory_rich) == (1.0, 0.25)
    empty = fit_regimes([], depth=3)
    assert empty.lazy is None and empty.rich is None and "lazy" in empty.reason
    assert "unknown optimizer" in fit_regimes(good, depth=3, optimizer="lion").reason


# ---------------------------------------------------------------- plateaus and budget


def sigmoid_loss(steps: np.ndarray, t_half: float, power: float = 4.0) -> np.ndarray:
    """A plateau at 1 that drops through 1/2 exactly at t_half (symmetric in log time)."""
    return 1.0 / (1.0 + (steps / t_half) ** power)


def test_plateau_time_of_noisy_sigmoid() -> None:
    steps = np.arange(0.0, 10001.0)
    clean = sigmoid_loss(steps, 500.0)
    assert plateau_time(steps, clean) == pytest.approx(500.0, rel=0.02)
    noise = np.exp(0.1 * np.random.default_rng(3).standard_normal(steps.size))
    # The default initial loss is the (here noisy) first record: pass the known one instead.
    assert plateau_time(steps, clean * noise, init_loss=1.0) == pytest.approx(500.0, rel=0.05)
    log_steps = np.unique(np.round(np.logspace(0, 4, 60)))
    assert plateau_time(log_steps, sigmoid_loss(log_steps, 500.0)) == pytest.approx(500, rel=0.05)
    tenth = plateau_time(steps, clean, fraction=0.1)
    assert tenth == pytest.approx(500.0 * 9**0.25, rel=0.03)
    assert plateau_time(steps, clean, init_loss=0.4) == pytest.approx(500 * 4**0.25, rel=0.03)


def test_plateau_time_never_or_no_data() -> None:
    steps = np.arange(0.0, 100.0)
    assert plateau_time(steps, np.ones(100)) is None
    assert plateau_time([], []) is None
    assert plateau_time(steps, np.full(100, np.nan)) is None
    blows_up = np.concatenate([np.ones(50), np.full(50, np.inf)])
    assert plateau_time(steps, blows_up) is None


def plateau_runs(budget: float) -> list[RunCurve]:
    """Runs whose plateau lasts 0.7 gamma / eta on log-spaced records up to the budget."""
    steps = np.unique(np.round(np.logspace(0, math.log10(budget), 200)))
    runs = []
    for gamma in 10.0 ** np.arange(0.0, 3.01, 0.5):
        for eta in 10.0 ** np.arange(-4.0, 1.01, 0.25):
            for seed in range(2):
                runs.append(run(gamma, eta, seed, sigmoid_loss(steps, 0.7 * gamma / eta), steps))
    return runs


def test_budget_edge_has_slope_one_from_runs_and_from_grid() -> None:
    budget = 1000.0
    runs = plateau_runs(budget)
    edge = budget_edge(runs, budget)
    assert edge.fit is not None and edge.reason == ""
    assert edge.fit.slope == pytest.approx(1.0, abs=1e-9)
    for point in edge.points:
        assert point.ok and not point.at_edge
        assert point.eta == pytest.approx(point.gamma / budget)
    from_grid = budget_edge(loss_grid(runs, step=budget, window=0.0), budget)
    assert [p.eta for p in from_grid.points] == pytest.approx([p.eta for p in edge.points])


def test_budget_edge_not_enough_data() -> None:
    empty = budget_edge([], 100.0)
    assert empty.fit is None and empty.points == () and empty.reason.startswith(NOT_ENOUGH_DATA)
    stuck = [flat_run(g, 1.0, 0, 1.0) for g in (1.0, 10.0)]
    edge = budget_edge(stuck, 4.0)
    assert edge.fit is None and all(not p.ok for p in edge.points)


# ---------------------------------------------------------------- rescaling and collapse


def test_rescale_time_formulas() -> None:
    t = np.array([1.0, 10.0, 100.0])
    gamma, eta = 4.0, 0.5
    expected = {
        "t": t,
        "eta_t": eta * t,
        "eta_t_over_gamma": eta * t / gamma,
        "t_eta_gamma_k": t * eta / gamma**0.5,
        "t_over_t_half": t / 10.0,
        "t_minus_t_half": t - 10.0,
    }
    assert set(expected) == set(TIME_VARIABLES)
    for variable, values in expected.items():
        got = rescale_time(t, variable, gamma, eta, k=0.5, t_half=10.0)
        np.testing.assert_allclose(got, values)
    assert np.isnan(rescale_time(t, "t_eta_gamma_k", gamma, eta)).all()
    assert np.isnan(rescale_time(t, "t_over_t_half", gamma, eta, t_half=None)).all()
    with pytest.raises(ValueError, match="unknown time variable"):
        rescale_time(t, "eta_over_t", gamma, eta)


def test_collapse_spread_known_values() -> None:
    x = np.logspace(0, 3, 50)
    y = sigmoid_loss(x, 30.0)
    assert collapse_spread([(x, y), (x * 1.0, y.copy())]) == pytest.approx(0.0, abs=1e-20)
    # Two curves 0.1 decade apart in log10 loss: variance (0.05)^2 everywhere.
    assert collapse_spread([(x, y), (x, y * 10**0.1)]) == pytest.approx(0.0025)
    noisy_y = y.copy()
    noisy_y[::7] = np.nan
    assert collapse_spread([(x, noisy_y), (x, y), None]) < 1e-3
    shifted = collapse_spread([(x - 30.0, y), (x - 30.0, y * 10**0.1)])
    assert shifted == pytest.approx(0.0025)  # negative x: compared on a linear axis


def test_collapse_spread_not_enough_data() -> None:
    x = np.logspace(0, 3, 50)
    assert collapse_spread([]) == math.inf
    assert collapse_spread([(x, x)]) == math.inf
    assert collapse_spread([(x, x), (x * 1e4, x)]) == math.inf  # no overlap
    assert collapse_spread([(x, x), (x, np.full(50, np.nan))]) == math.inf


def collapse_runs(k_true: float, noise: float) -> list[RunCurve]:
    """Curves loss = g(t * eta * gamma^(-k_true)) with a staircase-free sigmoid g."""
    rng = np.random.default_rng(7)
    steps = np.logspace(0, 4, 300)
    runs = []
    for gamma in (1.0, 10.0, 100.0, 1000.0):
        for eta in (1.0, 3.0):
            x = steps * eta * gamma ** (-k_true)
            loss = 0.01 + sigmoid_loss(x, 10.0, power=2.0)
            loss = loss * np.exp(noise * rng.standard_normal(steps.size))
            runs.append(run(gamma, eta, 0, loss, steps))
    return runs


def test_fit_collapse_k_recovers_exponent() -> None:
    runs = collapse_runs(k_true=0.5, noise=0.02)
    fit = fit_collapse_k(runs)
    assert fit.ok and fit.reason == "" and fit.n_curves == 8
    assert fit.k == pytest.approx(0.5, abs=0.05)
    assert fit.k_lo <= 0.5 <= fit.k_hi and fit.k_hi - fit.k_lo < 0.3
    assert fit.raw_spread > 10 * fit.spread
    assert 0.9 < fit.score <= 1.0
    raw = collapse_spread([(r.steps, r.loss) for r in runs])
    assert raw == pytest.approx(fit.raw_spread)
    rescaled = [
        (rescale_time(r.steps, "t_eta_gamma_k", r.gamma, r.eta, k=0.5), r.loss) for r in runs
    ]
    assert collapse_spread(rescaled) < raw / 10


def test_fit_collapse_k_not_enough_data() -> None:
    runs = collapse_runs(k_true=0.5, noise=0.0)
    one_gamma = [r for r in runs if r.gamma == 10.0]
    diverged = [run(r.gamma, r.eta, 0, r.loss, r.steps, status="diverged") for r in runs]
    for subset in ([], runs[:1], one_gamma, diverged):
        fit = fit_collapse_k(subset)
        assert not fit.ok and fit.reason.startswith(NOT_ENOUGH_DATA) and math.isnan(fit.k)
    apart = fit_collapse_k(runs, k_range=(20.0, 30.0))
    assert not apart.ok and "overlap" in apart.reason


# ---------------------------------------------------------------- best loss


def test_best_loss_vs_gamma_on_surface(noisy_grid: LossGrid) -> None:
    rows = best_loss_vs_gamma(noisy_grid)
    assert [row.gamma for row in rows] == pytest.approx(GAMMAS.tolist())
    for row in rows:
        assert row.best_loss == pytest.approx(0.01, rel=0.3)
        # Noise may move the best grid cell by one 0.25-decade step, never further.
        assert abs(math.log10(row.eta_at_best) - true_log10_eta_star(row.gamma)) < 0.26


def test_all_functions_survive_nan_only_runs() -> None:
    runs = [run(g, e, 0, [np.nan, np.nan]) for g in (0.1, 10.0) for e in (0.1, 1.0)]
    grid = loss_grid(runs)
    assert grid.diverged.all() and (grid.state == "diverged").all()
    assert all(not p.ok for p in eta_star(grid))
    assert all(not p.ok for p in eta_div(grid))
    assert all(math.isnan(row.best_loss) for row in best_loss_vs_gamma(grid))
    assert fit_regimes(eta_star(grid), depth=3).reason.startswith(NOT_ENOUGH_DATA)
    assert budget_edge(runs, 2.0).fit is None
    assert not fit_collapse_k(runs).ok
