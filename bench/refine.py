"""Refined coarse grid against the dense grid: η*(γ) deviations, slopes and run-steps spent.

    python bench/refine.py DENSE_CACHE DENSE_SWEEP REFINED_CACHE REFINED_SWEEP

Both sweeps are trained beforehand, each into its own cache (so the refined one cannot reuse
the dense one's runs), e.g. for the issue's measurement:

    gamma-tui run presets/paper/mlp-L3.toml --cache /tmp/dense
    gamma-tui run presets/paper/mlp-L3.toml --cache /tmp/refined --set eta.per_decade=1 \\
        --set refine.eta_precision=0.05 --set refine.max_runs=5000 --set name='"mlp-L3-refined"'

Prints per γ the two η* and their difference in decades, the lazy and rich slopes of η* and
η_div with their 95% intervals, whether they agree within the intervals, the runs of each
sweep and the run-steps they trained (a diverged run counts the steps it made, a skipped one
none) with the ratio refined/dense.
"""

from __future__ import annotations

import math
import sys

from gamma_tui.cache import Cache
from gamma_tui.report import SweepAnalysis, analyze


def run_steps(cache: Cache, sweep: str) -> int:
    """Steps trained over the sweep's runs."""
    return sum(r.steps_done for r in cache.runs(sweep))


def slope_line(name: str, dense: SweepAnalysis, refined: SweepAnalysis) -> str:
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


def main(dense_cache: str, dense_sweep: str, refined_cache: str, refined_sweep: str) -> None:
    """Print the comparison."""
    with Cache(dense_cache) as dc, Cache(refined_cache) as rc:
        dense, refined = analyze(dc, dense_sweep), analyze(rc, refined_sweep)
        dense_steps, refined_steps = run_steps(dc, dense_sweep), run_steps(rc, refined_sweep)
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
        f"runs: dense {len(dense.runs)}, refined {len(refined.runs)}; run-steps: dense "
        f"{dense_steps:,}, refined {refined_steps:,} (ratio {refined_steps / dense_steps:.3f})"
    )


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
