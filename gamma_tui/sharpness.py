"""The Hessian laws of a sweep: λ_max against γ at η*, edge-of-stability units and cell flags.

docs/science.md §3.1 and §3.5: stability needs step size × λ_max < 2. The top Hessian eigenvalue of
the centered loss is ∝ γ^-2 at initialization (lazy) and ∝ γ^(-2/L) at the learned solution
(rich), so η*·λ_max stays O(1) across γ (the edge-of-stability reading of η* ∝ γ^2, γ^(2/L)).
Everything here reads the `sharpness` diagnostic the workers store (engine/diagnostics.py) and
is pure numpy; the power-law fits are analysis.fit_power_law's.

- Points: per γ, the runs at the grid η closest to η*(γ) that finished; λ_max at their last
  step, the geometric mean over seeds (with the seeds' spread as the error), and the same in
  units of the step size (N·η under SGD, η otherwise).
- Fits: log-log slopes of λ_max(end) over γ < 1 (lazy, theory -2) and γ > 1 (rich, theory
  -2/L), and of λ_max(step 0) (lazy theory -2 exactly, from the 1/γ output scale).
- Spread: the standard deviation over γ of log10(step size × λ_max) at η*; small means the
  product is constant, as the theory says.
- Flags per (γ, η) cell, any seed: catapult (step size × λ_max(0) > 2, the loss rises above
  twice its start, then λ_max falls below 2/step size and the run does not diverge) and
  progressive sharpening (λ_max grows by more than PROGRESSIVE over training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gamma_tui.analysis import PowerFit, fit_power_law
from gamma_tui.cache import Cache
from gamma_tui.config import Preset, expand
from gamma_tui.results import StoredSweep, load_run_curves, stored_sweep
from gamma_tui.states import DIVERGED, DONE

EDGE = 2.0
"""Step size × λ_max at the edge of stability of gradient descent on a quadratic."""

PROGRESSIVE = 1.5
"""λ_max(end) / λ_max(0) above this flags progressive sharpening."""

SPIKE = 2.0
"""A catapult's loss rises above this multiple of its initial loss."""


@dataclass(frozen=True)
class SharpnessRun:
    """One run's sharpness trace and loss curve, with what sets its step size."""

    gamma: float
    eta: float
    seed: int
    state: str
    step_size: float
    steps: np.ndarray  # diagnostic steps
    sharpness: np.ndarray  # λ_max at those steps (NaN where missing)
    loss_steps: np.ndarray
    loss: np.ndarray


def step_size(eta: float, width: int, optimizer: str) -> float:
    """The step size the stability condition is about: N·η for SGD, η for SignSGD/Adam."""
    return width * eta if optimizer == "sgd" else eta


def theory(depth: int, optimizer: str) -> dict[str, float | None]:
    """Predicted λ_max slopes: -2 (lazy) and -2/L (rich) under SGD; none derived otherwise."""
    if optimizer != "sgd":
        return {"lazy": None, "rich": None}
    return {"lazy": -2.0, "rich": -2.0 / depth}


def catapult(run: SharpnessRun) -> bool:
    """Above the edge at init, a loss spike, then λ_max below 2/step size, and no divergence."""
    lam = run.sharpness
    if run.state == DIVERGED or lam.size < 2 or not math.isfinite(lam[0]) or run.loss.size < 2:
        return False
    if run.step_size * lam[0] <= EDGE:
        return False
    start = float(run.loss[0])
    spike = np.flatnonzero(run.loss > SPIKE * start)
    if not spike.size:
        return False
    after = lam[run.steps >= run.loss_steps[spike[0]]]
    return bool(np.any(run.step_size * after[np.isfinite(after)] < EDGE))


def progressive(run: SharpnessRun) -> bool:
    """λ_max at the last measured step over λ_max at step 0 above PROGRESSIVE."""
    lam = run.sharpness[np.isfinite(run.sharpness)]
    if run.state == DIVERGED or lam.size < 2 or lam[0] <= 0:
        return False
    return bool(lam[-1] / lam[0] > PROGRESSIVE)


def summarize(
    runs: list[SharpnessRun], eta_star: dict[float, float], depth: int, optimizer: str
) -> dict[str, Any]:
    """The `sharpness` block of `fit --json` (see the module docstring); `eta_star` maps each
    γ with a usable η* to it."""
    points = [p for gamma, star in sorted(eta_star.items()) if (p := _point(runs, gamma, star))]
    slopes = theory(depth, optimizer)
    lazy = [p for p in points if p["gamma"] < 1.0]
    rich = [p for p in points if p["gamma"] > 1.0]
    edges = np.log10([p["edge"] for p in points if p["edge"] > 0])
    cells = _flags(runs)
    return {
        "lazy": _fit_block(_fit(lazy, "lambda_max"), slopes["lazy"], lazy),
        "rich": _fit_block(_fit(rich, "lambda_max"), slopes["rich"], rich),
        "init": _fit_block(_fit(lazy, "lambda_init"), slopes["lazy"], lazy),
        "theory": slopes,
        "log10_edge": {
            "mean": _num(float(edges.mean())) if edges.size else None,
            "spread": _num(float(edges.std(ddof=1))) if edges.size > 1 else None,
            "points": int(edges.size),
        },
        "edge_line": EDGE,
        "points": points,
        "flags": {
            "catapult": sum(c["catapult"] for c in cells),
            "progressive": sum(c["progressive"] for c in cells),
            "cells": cells,
        },
    }


def sweep_block(cache: Cache, sweep: str, fit_summary: dict[str, Any]) -> dict[str, Any] | None:
    """The sharpness block of a sweep given its `fit` summary (for η*), or None when no run
    of the sweep has a sharpness diagnostic."""
    stored, runs = sweep_runs(cache, sweep)
    if not runs:
        return None
    return summarize(runs, eta_stars(fit_summary), stored.depth, stored.optimizer)


def sweep_runs(cache: Cache, sweep: str) -> tuple[StoredSweep, list[SharpnessRun]]:
    """The sweep's settings and its runs that have a sharpness diagnostic."""
    stored = stored_sweep(cache, sweep)
    infos, curves = load_run_curves(cache, sweep)
    measured = cache.diagnostics([r.run_id for r in infos])
    runs = []
    for run, curve in zip(infos, curves, strict=True):
        found = measured.get(run.run_id)
        if found is None or "sharpness" not in found.values:
            continue
        runs.append(
            SharpnessRun(
                run.gamma,
                run.eta,
                run.seed,
                curve.status,
                step_size(run.eta, stored.width, stored.optimizer),
                found.steps,
                found.values["sharpness"],
                np.asarray(curve.steps),
                np.asarray(curve.loss, dtype=np.float64),
            )
        )
    return stored, runs


def eta_stars(fit_summary: dict[str, Any]) -> dict[float, float]:
    """γ -> η* of a `fit` summary, for the γ whose η* is usable."""
    return {
        p["gamma"]: p["eta"]
        for p in fit_summary.get("eta_star", [])
        if p.get("ok") and p.get("eta") is not None
    }


def unmeasured_runs(cache: Cache, preset: Preset) -> int:
    """Runs of the preset that the cache already trained (some steps) without the
    diagnostics the preset now asks for; 0 when it asks for none."""
    wanted = preset.diagnostics
    if not wanted.enabled:
        return 0
    names = {
        name
        for name, on in (
            ("sharpness", wanted.sharpness),
            ("trace", wanted.trace),
            ("ntk", wanted.ntk),
            ("directional", wanted.directional),
        )
        if on
    }
    runs = cache.runs(run_ids=[spec.run_id for spec in expand(preset)])
    trained = [r.run_id for r in runs if r.steps_done > 0]
    measured = cache.diagnostics(trained)
    return sum(1 for i in trained if i not in measured or not names & set(measured[i].values))


def unmeasured_text(count: int) -> str:
    """Why `count` cached runs lack diagnostics and how to get them, in one line."""
    return (
        f"{count} cached run(s) were trained without these [diagnostics] and get them only "
        "for steps trained from now on: the cache keeps just each run's last checkpoint, so "
        "past λ_max cannot be recomputed; for every step, use a fresh cache (--cache DIR)"
    )


def cost_text(training: float, diagnostics: float) -> str:
    """The diagnostics' cost as a share of training, as `run` prints it."""
    share = f"{100 * diagnostics / training:.1f}%" if training > 0 else "all"
    return (
        f"diagnostics took {diagnostics:.3g} s, {share} on top of {training:.3g} s of training "
        "(worker wall time, summed over workers)"
    )


def _point(runs: list[SharpnessRun], gamma: float, star: float) -> dict[str, Any] | None:
    """λ_max at the end and at init of the finished runs at the grid η nearest η*(γ)."""
    done = [r for r in runs if r.gamma == gamma and r.state == DONE and _finite(r.sharpness).size]
    if not done or not (star > 0):
        return None
    eta = min({r.eta for r in done}, key=lambda e: abs(math.log10(e / star)))
    chosen = [r for r in done if r.eta == eta]
    end = np.log10([_finite(r.sharpness)[-1] for r in chosen if _finite(r.sharpness)[-1] > 0])
    init = [r.sharpness[0] for r in chosen if r.steps.size and r.steps[0] == 0]
    start = np.log10([v for v in init if math.isfinite(v) and v > 0])
    if not end.size:
        return None
    lam = 10.0 ** float(end.mean())
    return {
        "gamma": gamma,
        "eta": eta,
        "seeds": int(end.size),
        "lambda_max": lam,
        "log10_err": _num(float(end.std(ddof=1) / math.sqrt(end.size))) if end.size > 1 else None,
        "lambda_init": 10.0 ** float(start.mean()) if start.size else None,
        "edge": chosen[0].step_size * lam,
    }


def _fit(points: list[dict[str, Any]], key: str) -> PowerFit | None:
    """Power-law fit of points[key] against γ."""
    usable = [p for p in points if p[key] is not None]
    errors = [math.nan if p["log10_err"] is None else p["log10_err"] for p in usable]
    if key != "lambda_max":
        errors = [math.nan] * len(usable)  # the seeds' spread belongs to the end values
    return fit_power_law([p["gamma"] for p in usable], [p[key] for p in usable], errors)


def _fit_block(
    fit: PowerFit | None, predicted: float | None, points: list[dict[str, Any]]
) -> dict[str, Any]:
    """A regime's slope, its 95% interval, the theory and the points, as JSON."""
    if fit is None:
        return {"slope": None, "interval": None, "points": len(points), "theory": predicted}
    half = fit.slope_ci95
    interval = [fit.slope - half, fit.slope + half] if math.isfinite(half) else None
    return {
        "slope": fit.slope,
        "interval": interval,
        "points": fit.n,
        "theory": predicted,
        "r2": _num(fit.r2),
    }


def _flags(runs: list[SharpnessRun]) -> list[dict[str, Any]]:
    """Catapult and progressive-sharpening flags per (γ, η) cell (any of its seeds)."""
    cells: dict[tuple[float, float], dict[str, Any]] = {}
    for run in runs:
        if not run.sharpness.size:
            continue
        cell = cells.setdefault(
            (run.gamma, run.eta),
            {"gamma": run.gamma, "eta": run.eta, "catapult": False, "progressive": False},
        )
        cell["catapult"] = cell["catapult"] or catapult(run)
        cell["progressive"] = cell["progressive"] or progressive(run)
    return [cells[key] for key in sorted(cells)]


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _num(value: float | None) -> float | None:
    """JSON has no NaN/inf: such values become null."""
    return value if value is not None and math.isfinite(value) else None


def summary_text(block: dict[str, Any]) -> list[str]:
    """The sharpness block as text lines for `fit`."""
    lines = ["sharpness (λ_max of the training loss at η*, end of training; edge at 2):"]
    lines.append(f"{'γ':>10} {'η':>10} {'λ_max':>10} {'λ_max(0)':>10} {'step×λ':>8}")
    for p in block["points"]:
        init = "-" if p["lambda_init"] is None else f"{p['lambda_init']:.3g}"
        lines.append(
            f"{p['gamma']:>10.3g} {p['eta']:>10.3g} {p['lambda_max']:>10.3g} {init:>10} "
            f"{p['edge']:>8.3g}"
        )
    for name, label in (("lazy", "λ_max lazy"), ("rich", "λ_max rich"), ("init", "λ_max(0) lazy")):
        fit = block[name]
        predicted = "-" if fit["theory"] is None else f"{fit['theory']:.3g}"
        if fit["slope"] is None:
            lines.append(f"  {label}: no fit ({fit['points']} point(s)); theory {predicted}")
            continue
        interval = fit["interval"]
        bounds = (
            "no interval" if interval is None else f"95% [{interval[0]:.2f}, {interval[1]:.2f}]"
        )
        lines.append(
            f"  {label}: slope {fit['slope']:.2f}, {bounds}, {fit['points']} points; "
            f"theory {predicted}"
        )
    edge = block["log10_edge"]
    if edge["mean"] is not None:
        spread = "-" if edge["spread"] is None else f"{edge['spread']:.2f}"
        lines.append(
            f"  log10(step size × λ_max) at η*: mean {edge['mean']:.2f} (edge log10 2 = 0.30), "
            f"spread {spread} over {edge['points']} γ"
        )
    flags = block["flags"]
    lines.append(
        f"  cells flagged: {flags['catapult']} catapult, {flags['progressive']} progressive "
        "sharpening"
    )
    return lines
