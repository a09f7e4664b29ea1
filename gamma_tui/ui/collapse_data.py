"""The collapse view's data: curves at η*(γ) on a rescaled time axis, with their spread.

Built off the UI thread from a snapshot (and, for another step, its frame); the collapse
screen only draws the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gamma_tui.analysis import (
    CollapseFit,
    EtaPoint,
    collapse_spread,
    fit_collapse_k,
    rescale_time,
)
from gamma_tui.states import DIVERGED
from gamma_tui.ui.data import SweepSnapshot, quiet_nanmean
from gamma_tui.ui.frames import Frame, HeatLayout

DEFAULT_K = 1.0
"""k shown in t·η·γ^-k before a fit exists (until the user sets one)."""


@dataclass(frozen=True, eq=False)
class CollapseCurve:
    """One γ's curve in the collapse view: seed-mean loss against the rescaled time."""

    gamma: float
    eta: float
    x: np.ndarray
    log10_loss: np.ndarray
    t_half: float | None


@dataclass(frozen=True, eq=False)
class CollapseResult:
    """The collapse view's data: curves at η*(γ)·ratio, the fitted k and the spreads."""

    sweep: str
    version: int
    variable: str
    k: float
    eta_offset: int  # grid steps from the η nearest η*(γ)
    curves: tuple[CollapseCurve, ...]
    fit: CollapseFit
    spread: float  # collapse_spread at the shown variable and k
    raw_spread: float  # collapse_spread against raw t
    log_x: bool
    reason: str


def collapse(
    snapshot: SweepSnapshot,
    variable: str,
    k: float | None,
    eta_offset: int,
    large_gamma_only: bool,
    fit: CollapseFit | None = None,
    frame: Frame | None = None,
    smooth: bool = True,
) -> CollapseResult:
    """Curves at η*(γ) (shifted by `eta_offset` grid steps) on a rescaled time axis.

    The fit (analysis.fit_collapse_k over every seed's full curve, x = t·η·γ^-k) is reused
    when given; k=None shows the fitted k. Spreads use the full curves; the drawn curves are
    seed means of the plot reductions. η* comes from `frame` (default: the snapshot's).
    """
    frame, layout = frame or snapshot.frame, snapshot.layout
    members: list[tuple[int, int, list[int]]] = []
    for g, point in enumerate(frame.eta_star):
        if large_gamma_only and point.gamma <= 1.0:
            continue
        h = _nearest_eta(layout, g, point, eta_offset)
        if h is not None:
            members.append((g, h, snapshot.runs_in_cell(g, h)))
    runs = [snapshot.curves[i] for _, _, idx in members for i in idx]
    fit = fit if fit is not None else fit_collapse_k(runs)
    k_used = k if k is not None else fit.k if fit.ok else DEFAULT_K
    k_arg = k_used
    curves, pairs, raw_pairs = [], [], []
    for g, h, indices in members:
        gamma, eta = float(layout.gammas[g]), float(layout.etas[h])
        plateaus = snapshot.plateau[indices]
        t_half = float(np.nanmean(plateaus)) if np.isfinite(plateaus).any() else None
        x = rescale_time(10**snapshot.log10_t, variable, gamma, eta, k=k_arg, t_half=t_half)
        with np.errstate(invalid="ignore", divide="ignore"), quiet_nanmean():
            rows = (snapshot.smooth_log10_loss if smooth else snapshot.log10_loss)[indices]
            mean = np.log10(np.nanmean(10**rows, axis=0))
        curves.append(CollapseCurve(gamma, eta, x, mean, t_half))
        for i in indices:
            run, own_half = snapshot.curves[i], snapshot.plateau[i]
            if run.status == DIVERGED:
                continue
            half = float(own_half) if math.isfinite(own_half) else None
            pairs.append(
                (rescale_time(run.steps, variable, gamma, eta, k=k_arg, t_half=half), run.loss)
            )
            raw_pairs.append((run.steps, run.loss))
    log_x = variable != "t_minus_t_half"
    reason = fit.reason
    if not members:
        reason = "no γ has an η* yet" + (" above γ = 1" if large_gamma_only else "")
    return CollapseResult(
        snapshot.name,
        snapshot.version,
        variable,
        k_used,
        eta_offset,
        tuple(curves),
        fit,
        collapse_spread(pairs, log_x=log_x),
        collapse_spread(raw_pairs, log_x=True),
        log_x,
        reason,
    )


def _nearest_eta(layout: HeatLayout, g: int, point: EtaPoint, offset: int) -> int | None:
    """η index of column g nearest to η*(γ), moved `offset` present cells up or down."""
    if not point.ok:
        return None
    present = np.flatnonzero(layout.present[g])
    if present.size == 0:
        return None
    distance = np.abs(np.log10(layout.etas[present]) - math.log10(point.eta))
    position = int(np.argmin(distance)) + offset
    if not 0 <= position < present.size:
        return None
    return int(present[position])
