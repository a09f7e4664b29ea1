"""The `report` figure of a sweep measured with `[diagnostics] sharpness = true`.

Two panels from the numbers `fit` prints (sharpness.summarize): λ_max at the end of training
against γ at each γ's η*, with the fitted lazy (γ < 1) and rich (γ > 1) power laws and the theory
guides (slope −2 and −2/L under SGD, anchored on the measured points); and step size × λ_max
over training for the runs at η*, one line per γ, with the edge of stability at 2 (λ_max =
2/(N·η) under SGD). Needs matplotlib (the `report` extra), like figures.py, which calls it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gamma_tui.sharpness import EDGE, SharpnessRun


def draw_sharpness(
    figure: Figure, block: dict[str, Any], runs: list[SharpnessRun], title: str, step: str
) -> None:
    """λ_max vs γ at η* (left) and step × λ_max(t) at η* (right); `step` names the step size."""
    left, right = figure.subplots(1, 2)
    points = block["points"]
    gammas = np.array([p["gamma"] for p in points], dtype=np.float64)
    lam = np.array([p["lambda_max"] for p in points], dtype=np.float64)
    errors = np.array([p["log10_err"] or 0.0 for p in points], dtype=np.float64)
    if gammas.size:
        low, high = lam * (1 - 10**-errors), lam * (10**errors - 1)
        left.errorbar(
            gammas, lam, yerr=[low, high], fmt="o", color="tab:blue", ms=4, label="λ_max at η*, end"
        )
        init = [(p["gamma"], p["lambda_init"]) for p in points if p["lambda_init"] is not None]
        if init:
            x, y = zip(*init, strict=True)
            left.plot(x, y, "x", color="0.5", ms=4, label="λ_max at step 0")
    for name, color, side in (
        ("lazy", "tab:green", gammas < 1),
        ("rich", "tab:purple", gammas > 1),
    ):
        _fit_line(left, block[name], gammas[side], lam[side], color, name)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("γ")
    left.set_ylabel("λ_max of the training loss")
    left.set_title(f"{title}: λ_max at η*")
    left.legend(fontsize=7)
    _edge_panel(right, block, runs, step)
    figure.suptitle(_spread_label(block), fontsize=8)


def _fit_line(
    ax: Any, fit: dict[str, Any], gammas: np.ndarray, lam: np.ndarray, color: str, name: str
) -> None:
    """A regime's fitted line through its points and, dotted, the theory slope through their
    geometric centre."""
    if gammas.size < 2:
        return
    x = np.geomspace(gammas.min(), gammas.max(), 20)
    centre_x, centre_y = np.mean(np.log10(gammas)), np.mean(np.log10(lam))
    if fit["slope"] is not None:
        interval = fit["interval"]
        bounds = "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"
        fitted = 10 ** (centre_y + fit["slope"] * (np.log10(x) - centre_x))
        ax.plot(x, fitted, "-", color=color, lw=1, label=f"{name}: {fit['slope']:.2f}{bounds}")
    if fit["theory"] is not None:
        guide = 10 ** (centre_y + fit["theory"] * (np.log10(x) - centre_x))
        ax.plot(x, guide, ":", color=color, lw=1.2, label=f"{name} theory {fit['theory']:.2g}")


def _edge_panel(ax: Any, block: dict[str, Any], runs: list[SharpnessRun], step: str) -> None:
    """step × λ_max over training for each γ's runs at η* (seed geometric mean), the edge at 2."""
    chosen = {p["gamma"]: p["eta"] for p in block["points"]}
    colors = _viridis(len(chosen))
    for (gamma, eta), color in zip(sorted(chosen.items()), colors, strict=True):
        members = [r for r in runs if r.gamma == gamma and r.eta == eta]
        steps, values = _mean_trace(members)
        if steps.size:
            ax.plot(steps, values, color=color, lw=1, label=f"γ = {gamma:.3g}")
    ax.axhline(EDGE, color="tab:red", ls="--", lw=1, label=f"λ_max = 2/({step}) (edge)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step t (from 1)")
    ax.set_ylabel(f"{step} × λ_max")
    ax.set_title("λ(t) at η*")
    ax.legend(fontsize=6, ncol=2)


def _mean_trace(members: list[SharpnessRun]) -> tuple[np.ndarray, np.ndarray]:
    """(steps ≥ 1, geometric mean of step × λ_max over the members measured there)."""
    logs: dict[int, list[float]] = {}
    for run in members:
        for step, value in zip(run.steps.tolist(), run.sharpness.tolist(), strict=True):
            product = run.step_size * value
            if step >= 1 and math.isfinite(product) and product > 0:
                logs.setdefault(int(step), []).append(math.log10(product))
    steps = np.array(sorted(logs), dtype=np.float64)
    return steps, np.array([10 ** np.mean(logs[int(s)]) for s in steps])


def _viridis(count: int) -> list[Any]:
    """`count` colors along viridis (small γ dark)."""
    from matplotlib import colormaps

    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.9, max(count, 1))][:count]


def _spread_label(block: dict[str, Any]) -> str:
    """The figure's subtitle: log10(step × λ_max) at η* over γ and the cells flagged."""
    edge, flags = block["log10_edge"], block["flags"]
    spread = "" if edge["spread"] is None else f", spread {edge['spread']:.2f}"
    mean = "" if edge["mean"] is None else f"log10(step × λ_max) at η*: mean {edge['mean']:.2f}"
    return (
        f"{mean}{spread} (edge log10 2 = 0.30); {flags['catapult']} catapult, "
        f"{flags['progressive']} progressive-sharpening cells"
    )
