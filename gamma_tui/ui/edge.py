"""The dashboard's sharpness mode: step size × λ_max per cell, per run over time, and per cell
in the details panel.

Everything is read from a SweepSnapshot (its runs' `diagnostics` and `step_sizes`), in the
units of the stability condition (sharpness.py): S·λ_max with S = N·η under SGD (η under
SignSGD and Adam); gradient descent on a quadratic is stable below 2. The heatmap shows log10 of
it, so the colour map is centred at log10 2. Pure numpy, cheap enough to redo on every frame
(one pass over the runs' few evaluation steps).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gamma_tui.sharpness import EDGE, SharpnessRun, catapult, progressive
from gamma_tui.states import DIVERGED
from gamma_tui.ui.data import SweepSnapshot

LOG10_EDGE = math.log10(EDGE)
"""The centre of the sharpness colour map: log10 2."""

MIN_SPAN = 0.5
"""The colour map spans at least ±this many decades around the edge."""


def has_sharpness(snapshot: SweepSnapshot) -> bool:
    """Whether any run of the sweep has a λ_max measurement."""
    return any(d is not None and "sharpness" in d.values for d in snapshot.diagnostics)


def run_trace(snapshot: SweepSnapshot, index: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, S·λ_max) of one run where measured and finite, or None."""
    found = snapshot.diagnostics[index] if index < len(snapshot.diagnostics) else None
    if found is None or "sharpness" not in found.values:
        return None
    lam = found.values["sharpness"] * snapshot.step_sizes[index]
    keep = np.isfinite(lam) & (lam > 0)
    if not keep.any():
        return None
    return found.steps[keep], lam[keep]


def run_edge(snapshot: SweepSnapshot, index: int, step: float | None) -> float:
    """S·λ_max of one run at its last measurement at or before `step` (None: its latest);
    NaN without one."""
    trace = run_trace(snapshot, index)
    if trace is None:
        return math.nan
    steps, values = trace
    at = len(steps) - 1 if step is None else int(np.searchsorted(steps, step, side="right")) - 1
    return float(values[at]) if at >= 0 else math.nan


def edge_grid(snapshot: SweepSnapshot, step: float | None) -> np.ndarray:
    """(G, H) log10 of S·λ_max per cell at `step`: the geometric mean over the cell's seeds
    that have a value; NaN where none (no diagnostics, not measured yet, or diverged)."""
    layout = snapshot.layout
    sums = np.zeros((layout.gammas.size, layout.etas.size))
    counts = np.zeros_like(sums)
    for index, (g, h) in enumerate(snapshot.cell_of_run):
        if g < 0 or h < 0 or snapshot.runs[index].status == DIVERGED:
            continue
        value = run_edge(snapshot, index, step)
        if math.isfinite(value) and value > 0:
            sums[g, h] += math.log10(value)
            counts[g, h] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def edge_range(values: np.ndarray) -> tuple[float, float]:
    """Colour range of log10 S·λ_max, symmetric about log10 2 so the edge sits mid-map: the
    farthest finite value, at least MIN_SPAN decades, rounded up to a tenth."""
    finite = values[np.isfinite(values)]
    span = float(np.max(np.abs(finite - LOG10_EDGE))) if finite.size else MIN_SPAN
    span = math.ceil(max(span, MIN_SPAN) * 10 - 1e-9) / 10
    return (LOG10_EDGE - span, LOG10_EDGE + span)


def cell_trace(snapshot: SweepSnapshot, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(log10 step, log10 S·λ_max) of a cell: the seeds' geometric mean at each measured step
    ≥ 1 (a log time axis has no step 0); empty without measurements."""
    values: dict[int, list[float]] = {}
    for index in indices:
        trace = run_trace(snapshot, index)
        if trace is None:
            continue
        for step, value in zip(*trace, strict=True):
            if step >= 1:
                values.setdefault(int(step), []).append(math.log10(value))
    steps = np.array(sorted(values), dtype=np.float64)
    mean = np.array([np.mean(values[int(s)]) for s in steps])
    return (np.log10(steps) if steps.size else steps), mean


@dataclass(frozen=True)
class CellMeasures:
    """What the details panel adds for a cell: seed-averaged predictor and sharpness."""

    ens_loss: float  # held-out loss of the seed-averaged prediction (NaN: none)
    ens_accuracy: float
    ens_seeds: int
    lam: float  # λ_max (geometric mean over seeds) at the step shown
    edge: float  # S·λ_max of the same
    catapult: bool
    progressive: bool


def cell_measures(
    snapshot: SweepSnapshot, indices: Sequence[int], step: float | None
) -> CellMeasures | None:
    """The cell's seed-averaged held-out values and λ_max at the last measurement at or
    before `step`, and its flags; None when it has neither."""
    found = [snapshot.diagnostics[i] for i in indices if i < len(snapshot.diagnostics)]
    ens_loss = ens_accuracy = math.nan
    seeds = 0
    for diagnostics in found:
        if diagnostics is None or "ens_test_loss" not in diagnostics.values:
            continue
        values = diagnostics.values["ens_test_loss"]
        at = _at(diagnostics.steps, values, step)
        if at is None:
            continue
        ens_loss = float(values[at])
        accuracy = diagnostics.values.get("ens_test_accuracy")
        ens_accuracy = float(accuracy[at]) if accuracy is not None else math.nan
        count = diagnostics.values.get("ens_seeds")
        seeds = int(count[at]) if count is not None and math.isfinite(count[at]) else 0
        break  # every member of a cell carries the same seed average
    edges = [run_edge(snapshot, i, step) for i in indices]
    lams = [e / snapshot.step_sizes[i] for e, i in zip(edges, indices, strict=True)]
    finite = [(e, lam) for e, lam in zip(edges, lams, strict=True) if math.isfinite(e) and e > 0]
    runs = [_sharpness_run(snapshot, i) for i in indices]
    runs = [r for r in runs if r is not None]
    if not finite and not math.isfinite(ens_loss) and not runs:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        edge = 10 ** float(np.mean(np.log10([e for e, _ in finite]))) if finite else math.nan
        lam = 10 ** float(np.mean(np.log10([v for _, v in finite]))) if finite else math.nan
    return CellMeasures(
        ens_loss,
        ens_accuracy,
        seeds,
        lam,
        edge,
        any(catapult(r) for r in runs),
        any(progressive(r) for r in runs),
    )


def _at(steps: np.ndarray, values: np.ndarray, step: float | None) -> int | None:
    """Index of the last finite value at or before `step` (None: the last finite one)."""
    keep = np.isfinite(values)
    if step is not None:
        keep &= steps <= step
    hits = np.flatnonzero(keep)
    return int(hits[-1]) if hits.size else None


def _sharpness_run(snapshot: SweepSnapshot, index: int) -> SharpnessRun | None:
    """One run as sharpness.py's flags read it, or None without λ_max."""
    found = snapshot.diagnostics[index] if index < len(snapshot.diagnostics) else None
    if found is None or "sharpness" not in found.values:
        return None
    run, curve = snapshot.runs[index], snapshot.curves[index]
    return SharpnessRun(
        run.gamma,
        run.eta,
        run.seed,
        curve.status,
        float(snapshot.step_sizes[index]),
        found.steps,
        found.values["sharpness"],
        np.asarray(curve.steps),
        np.asarray(curve.loss, dtype=np.float64),
    )
