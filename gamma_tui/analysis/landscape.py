"""The η landscape of a sweep at one step: the loss grid, η*(γ), η_div(γ) and their lazy/rich
power-law fits. `gamma-tui fit`, `report` and the app all show these numbers; they all compute
them here, so they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gamma_tui.analysis.fits import RegimeFits, fit_regimes
from gamma_tui.analysis.grids import LossGrid, RunCurve, loss_grid
from gamma_tui.analysis.optimum import EtaPoint, eta_div, eta_star


@dataclass(frozen=True, eq=False)
class EtaLandscape:
    """The loss grid at one step and what is read off it: η*, η_div and their fits."""

    grid: LossGrid
    stars: list[EtaPoint]
    edges: list[EtaPoint]
    star_fit: RegimeFits
    div_fit: RegimeFits


def eta_landscape(
    curves: Sequence[RunCurve],
    step: float | None,
    window: float,
    depth: int,
    optimizer: str = "sgd",
) -> EtaLandscape:
    """The grid of the seed-mean loss over [step·(1−window), step] (each run's last record when
    step is None), η* and η_div per γ, and their lazy/rich fits against depth L and optimizer.
    """
    grid = loss_grid(curves, step=step, window=window)
    stars, edges = eta_star(grid), eta_div(grid)
    return EtaLandscape(
        grid=grid,
        stars=stars,
        edges=edges,
        star_fit=fit_regimes(stars, depth=depth, optimizer=optimizer),
        div_fit=fit_regimes(edges, depth=depth, optimizer=optimizer),
    )
