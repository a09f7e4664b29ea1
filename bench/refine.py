"""Refined coarse grid against the dense grid: η*(γ) deviations, slopes and run-steps spent.

    python bench/refine.py DENSE_CACHE DENSE_SWEEP REFINED_CACHE REFINED_SWEEP [MAX_RUNS]

Both sweeps are trained beforehand, each into its own cache (so the refined one cannot reuse
the dense one's runs), e.g. for the issue's measurement:

    gamma-tui run presets/paper/mlp-L3.toml --cache /tmp/dense
    gamma-tui run presets/paper/mlp-L3.toml --cache /tmp/refined --set eta.per_decade=1 \\
        --set refine.eta_precision=0.05 --set refine.max_runs=5000 --set name='"mlp-L3-refined"'

Prints per γ the two η* and their difference in decades, the lazy and rich slopes of η* and
η_div with their 95% intervals, whether they agree within the intervals, the runs of each
sweep and the run-steps they trained (a diverged run counts the steps it made, a skipped one
none) with the ratio refined/dense.

    python bench/refine.py --oracle DENSE_CACHE DENSE_SWEEP [KEY=VALUE ...]

simulates instead: the dense sweep's preset with the overrides (e.g. eta.per_decade=1
refine.eta_precision=0.05 refine.max_runs=5000), its grid under the η cut-off and then its
refinement rounds, every run looked up in the dense sweep (so every proposed η must be a
dense-grid point: the refinement lattice of 1 η per decade and precision 0.05 is the dense
grid's 6 per decade). Nothing is trained; a run the dense sweep skipped (its cut-off sits
higher) but the simulated one would train is counted as "missing" and costs the full steps.

With MAX_RUNS, the refinement is replayed with that cap instead of the one it ran with: the
same `propose`/`round_specs` rounds from the grid on, each reading only the runs the capped
sweep would have had, all of which the uncapped sweep trained (a capped round is a prefix of
the uncapped one's). Nothing is trained; the analysis and run-steps are those of that subset.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis import (
    EtaPoint,
    RegimeFits,
    RunCurve,
    eta_div,
    eta_star,
    fit_regimes,
    loss_grid,
)
from gamma_tui.cache import Cache
from gamma_tui.config import Preset, expand, parse_preset
from gamma_tui.refine import propose, round_specs
from gamma_tui.report import analyze
from gamma_tui.results import run_curves


@dataclass(frozen=True)
class Measured:
    """What the comparison needs of one sweep (or replayed subset)."""

    stars: list[EtaPoint]
    edges: list[EtaPoint]  # η_div
    star_fit: RegimeFits
    div_fit: RegimeFits
    runs: int
    run_steps: int


def measured(cache: Cache, sweep: str) -> Measured:
    """A trained sweep as it is."""
    result = analyze(cache, sweep)
    steps = sum(r.steps_done for r in cache.runs(sweep))
    return Measured(
        result.stars, result.edges, result.star_fit, result.div_fit, len(result.runs), steps
    )


def replayed(cache: Cache, sweep: str, max_runs: int) -> Measured:
    """The refined sweep as it would have been with `max_runs` (see the module docstring)."""
    info = cache.sweep(sweep)
    preset = Preset.model_validate(info.config)
    assert preset.refine is not None, f"{sweep} has no [refine] table"
    preset = preset.model_copy(
        update={"refine": preset.refine.model_copy(update={"max_runs": max_runs})}
    )
    infos = cache.runs(sweep)
    by_key = {(f"{r.gamma:.12g}", f"{r.eta:.12g}", r.seed): r for r in infos}
    curves = dict(zip([r.run_id for r in infos], run_curves(cache, infos, info.steps), strict=True))
    chosen = [by_key[(f"{s.gamma:.12g}", f"{s.eta:.12g}", s.seed)] for s in expand(preset)]
    while True:
        proposal = propose(preset, [curves[r.run_id] for r in chosen])
        added = round_specs(preset, proposal, max_runs - len(chosen))
        if not added:
            break
        chosen += [by_key[(f"{s.gamma:.12g}", f"{s.eta:.12g}", s.seed)] for s in added]
    unfinished = [r for r in chosen if r.status not in ("done", "diverged", "skipped")]
    if unfinished:
        print(f"warning: {len(unfinished)} of the replayed runs are not finished yet")
    depth, optimizer = result_law(info.config)
    grid = loss_grid([curves[r.run_id] for r in chosen], float(info.steps), preset.analysis.window)
    stars, edges = eta_star(grid), eta_div(grid)
    return Measured(
        stars,
        edges,
        fit_regimes(stars, depth=depth, optimizer=optimizer),
        fit_regimes(edges, depth=depth, optimizer=optimizer),
        len(chosen),
        sum(r.steps_done for r in chosen),
    )


def oracle(cache: Cache, sweep: str, overrides: list[str]) -> Measured:
    """The coarse-plus-refine sweep simulated on the dense sweep's runs (module docstring)."""
    info = cache.sweep(sweep)
    preset = parse_preset(info.preset_toml, overrides=overrides, default_name=sweep)
    assert preset.refine is not None, "give refine.eta_precision=... among the overrides"
    infos = cache.runs(sweep)
    by_key = {(f"{r.gamma:.12g}", f"{r.eta:.12g}", r.seed): r for r in infos}
    curves = dict(zip([r.run_id for r in infos], run_curves(cache, infos, info.steps), strict=True))
    decades = preset.cutoff.decades
    trained: dict[tuple, object] = {}  # (γ, η, seed) key -> the dense RunInfo, or None: skipped
    missing = 0

    def add(specs) -> None:
        nonlocal missing
        fresh = {(f"{s.gamma:.12g}", f"{s.eta:.12g}", s.seed) for s in specs}
        for spec in specs:
            key = (f"{spec.gamma:.12g}", f"{spec.eta:.12g}", spec.seed)
            if key not in by_key:
                raise SystemExit(f"γ={spec.gamma:g} η={spec.eta:g} is not in {sweep}")
            trained[key] = by_key[key]
        # the cut-off: per γ, skip what lies `decades` below the first stable η
        for gamma in {k[0] for k in trained}:
            column = {k: r for k, r in trained.items() if k[0] == gamma}
            etas = sorted({float(k[1]) for k in column}, reverse=True)
            stable = next(
                (e for e in etas if all(
                    r is not None and r.status == "done" for k, r in column.items()
                    if float(k[1]) == e)),
                None,
            )  # fmt: skip
            if stable is None or decades is None:
                continue
            for k in column:  # only the runs still to train: a trained one stays
                if k in fresh and float(k[1]) < stable * 10.0**-decades * (1 - 1e-9):
                    trained[k] = None
        missing = sum(1 for r in trained.values() if r is not None and r.status == "skipped")

    def curve(key) -> RunCurve:
        run = trained[key]
        if run is None or run.status == "skipped":
            g, e, seed = key
            return RunCurve(float(g), float(e), seed, "skipped", None, np.zeros(0), np.zeros(0))
        return curves[run.run_id]

    def spent() -> int:
        return sum(r.steps_done for r in trained.values() if r is not None)

    add(expand(preset))
    print(f"grid: {len(trained)} runs, {spent():,} run-steps")
    rounds = 0
    while True:
        proposal = propose(preset, [curve(k) for k in trained])
        added = round_specs(preset, proposal, preset.refine.max_runs - len(trained))
        if not added:
            break
        rounds += 1
        before = spent()
        add(added)
        kinds = {
            (f"{g:.12g}", f"{e:.12g}", seed): kind
            for kind, runs in (
                ("γ", proposal.gamma),
                ("η_div", proposal.eta_div),
                ("η*", proposal.eta_star),
                ("seeds", proposal.confirm),
            )
            for g, e, seed in runs
        }
        cost = {"seeds": 0, "η*": 0, "η_div": 0, "γ": 0}
        for spec in added:
            key = (f"{spec.gamma:.12g}", f"{spec.eta:.12g}", spec.seed)
            run = trained[key]
            cost[kinds[key]] += run.steps_done if run is not None else 0
        print(
            f"round {rounds}: {len(added)} runs, {spent() - before:,} run-steps ("
            + ", ".join(f"{k} {v:,}" for k, v in cost.items() if v)
            + ")"
        )
    if missing:
        print(f"{missing} runs the simulated sweep trains were skipped by the dense one")
    depth, optimizer = result_law(info.config)
    grid = loss_grid([curve(k) for k in trained], float(info.steps), preset.analysis.window)
    stars, edges = eta_star(grid), eta_div(grid)
    steps = sum(r.steps_done for r in trained.values() if r is not None and r.status != "skipped")
    return Measured(
        stars,
        edges,
        fit_regimes(stars, depth=depth, optimizer=optimizer),
        fit_regimes(edges, depth=depth, optimizer=optimizer),
        len(trained),
        steps + missing * info.steps,
    )


def result_law(config: dict) -> tuple[int, str]:
    """The sweep's L and optimizer, as `fit` reads them."""
    from gamma_tui.config import sweep_depth_label, sweep_optimizer

    return sweep_depth_label(config), sweep_optimizer(config)


def slope_line(name: str, dense: Measured, refined: Measured) -> str:
    """Lazy and rich slopes of both, and whether each pair agrees within the intervals."""
    parts = []
    for regime in ("lazy", "rich"):
        pair = []
        for result in (dense, refined):
            fits = result.star_fit if name == "η*" else result.div_fit
            pair.append(getattr(fits, regime))
        if None in pair:
            parts.append(f"{regime}: missing")
            continue
        a, b = pair
        agree = abs(a.slope - b.slope) <= math.hypot(a.slope_ci95, b.slope_ci95)
        parts.append(
            f"{regime}: dense {a.slope:.2f} ± {a.slope_ci95:.2f}, refined {b.slope:.2f} ± "
            f"{b.slope_ci95:.2f} ({'agree' if agree else 'DISAGREE'})"
        )
    return f"{name} slopes: " + "; ".join(parts)


def main(
    dense_cache: str,
    dense_sweep: str,
    refined_cache: str | None,
    refined_sweep: str | None,
    max_runs: str | None = None,
    oracle_overrides: list[str] | None = None,
) -> None:
    """Print the comparison."""
    with Cache(dense_cache) as dc:
        dense = measured(dc, dense_sweep)
        if oracle_overrides is not None:
            refined = oracle(dc, dense_sweep, oracle_overrides)
        else:
            with Cache(refined_cache) as rc:
                if max_runs is None:
                    refined = measured(rc, refined_sweep)
                else:
                    refined = replayed(rc, refined_sweep, int(max_runs))
    dense_steps, refined_steps = dense.run_steps, refined.run_steps
    print(f"{'γ':>9} {'η* dense':>10} {'η* refined':>10} {'Δ dec':>7} {'± refined':>9}")
    worst = 0.0
    refined_at = {round(math.log10(p.gamma), 6): p for p in refined.stars}
    for point in dense.stars:
        other = refined_at.get(round(math.log10(point.gamma), 6))
        if other is None or not (point.ok and other.ok):
            print(f"{point.gamma:>9.3g} {'-':>10} {'-':>10}")
            continue
        delta = math.log10(other.eta) - math.log10(point.eta)
        worst = max(worst, abs(delta))
        print(
            f"{point.gamma:>9.3g} {point.eta:>10.3g} {other.eta:>10.3g} {delta:>+7.3f} "
            f"{other.log10_interval:>9.3f}"
        )
    print(f"largest |Δ log10 η*|: {worst:.3f} decades")
    edge_at = {round(math.log10(p.gamma), 6): p for p in refined.edges}
    deltas = [
        abs(math.log10(other.eta / point.eta))
        for point in dense.edges
        if (other := edge_at.get(round(math.log10(point.gamma), 6))) and point.ok and other.ok
    ]
    if deltas:
        print(
            f"η_div: largest |Δ log10| {max(deltas):.3f} decades, equal at "
            f"{sum(d < 1e-9 for d in deltas)} of {len(deltas)} γ"
        )
    print(slope_line("η*", dense, refined))
    print(slope_line("η_div", dense, refined))
    print(
        f"runs: dense {dense.runs}, refined {refined.runs}; run-steps: dense "
        f"{dense_steps:,}, refined {refined_steps:,} (ratio {refined_steps / dense_steps:.3f})"
    )


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--oracle":
        main(*sys.argv[2:4], None, None, oracle_overrides=sys.argv[4:])
    elif len(sys.argv) in (5, 6):
        main(*sys.argv[1:])
    else:
        sys.exit(__doc__)
