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

With MAX_RUNS, the refinement is replayed with that cap instead of the one it ran with: the
same `propose`/`round_specs` rounds from the grid on, each reading only the runs the capped
sweep would have had, all of which the uncapped sweep trained (a capped round is a prefix of
the uncapped one's). Nothing is trained; the analysis and run-steps are those of that subset.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from gamma_tui.analysis import EtaPoint, RegimeFits, eta_div, eta_star, fit_regimes, loss_grid
from gamma_tui.cache import Cache
from gamma_tui.config import Preset, expand
from gamma_tui.refine import propose, round_specs
from gamma_tui.report import analyze
from gamma_tui.results import run_curves


@dataclass(frozen=True)
class Measured:
    """What the comparison needs of one sweep (or replayed subset)."""

    stars: list[EtaPoint]
    star_fit: RegimeFits
    div_fit: RegimeFits
    runs: int
    run_steps: int


def measured(cache: Cache, sweep: str) -> Measured:
    """A trained sweep as it is."""
    result = analyze(cache, sweep)
    steps = sum(r.steps_done for r in cache.runs(sweep))
    return Measured(result.stars, result.star_fit, result.div_fit, len(result.runs), steps)


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
        fit_regimes(stars, depth=depth, optimizer=optimizer),
        fit_regimes(edges, depth=depth, optimizer=optimizer),
        len(chosen),
        sum(r.steps_done for r in chosen),
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
    refined_cache: str,
    refined_sweep: str,
    max_runs: str | None = None,
) -> None:
    """Print the comparison."""
    with Cache(dense_cache) as dc, Cache(refined_cache) as rc:
        dense = measured(dc, dense_sweep)
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
    print(slope_line("η*", dense, refined))
    print(slope_line("η_div", dense, refined))
    print(
        f"runs: dense {dense.runs}, refined {refined.runs}; run-steps: dense "
        f"{dense_steps:,}, refined {refined_steps:,} (ratio {refined_steps / dense_steps:.3f})"
    )


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    main(*sys.argv[1:])
