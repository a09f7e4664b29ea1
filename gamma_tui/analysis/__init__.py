"""Pure analysis of sweep results: loss grids, eta*(gamma), eta_div(gamma), power-law fits,
plateau times, time rescaling and collapse fits (Atanasov et al., arXiv:2410.04642).

Arrays in, small frozen dataclasses out; numpy, the standard library, the run states of
gamma_tui.states and the predicted exponents of gamma_tui.config (one definition of the laws),
no torch and no I/O. Nothing here raises on thin data: results carry ok=False, None, NaN or a
reason starting "not enough data".

What lives where: grids (RunCurve, LossGrid, loss_grid, cell states), optimum (η*, η_div, the
best loss versus γ), fits (power laws, the lazy/rich fits), dynamics (plateau time, budget
edge), collapse (time rescaling, collapse fits), landscape (η* and its fits at one step, the
part every front end shows). Names starting with "_" are shared inside this package only.
"""

from gamma_tui.analysis.collapse import (
    TIME_VARIABLES,
    CollapseFit,
    collapse_spread,
    fit_collapse_k,
    rescale_time,
)
from gamma_tui.analysis.dynamics import BudgetEdge, budget_edge, plateau_time
from gamma_tui.analysis.fits import (
    PowerFit,
    RegimeFits,
    fit_power_law,
    fit_regimes,
    t_quantile_95,
    theory_slopes,
)
from gamma_tui.analysis.grids import NOT_ENOUGH_DATA, STATES, LossGrid, RunCurve, loss_grid
from gamma_tui.analysis.landscape import EtaLandscape, eta_landscape
from gamma_tui.analysis.optimum import BestLoss, EtaPoint, best_loss_vs_gamma, eta_div, eta_star

__all__ = [
    "EtaLandscape",
    "eta_landscape",
    "BestLoss",
    "BudgetEdge",
    "CollapseFit",
    "EtaPoint",
    "LossGrid",
    "NOT_ENOUGH_DATA",
    "PowerFit",
    "RegimeFits",
    "RunCurve",
    "STATES",
    "TIME_VARIABLES",
    "best_loss_vs_gamma",
    "budget_edge",
    "collapse_spread",
    "eta_div",
    "eta_star",
    "fit_collapse_k",
    "fit_power_law",
    "fit_regimes",
    "loss_grid",
    "plateau_time",
    "rescale_time",
    "t_quantile_95",
    "theory_slopes",
]
