"""The fit summary and the figure report on a fake sweep with known laws, no training.

The fake cache is built with the real Cache API (register_sweep, claim, commit). Every run's
curve is L0 on a plateau of length tau = 0.5 gamma^a / eta (a = 2 below gamma = 1, the lazy
time scale, and 1 above it, the rich one), then a drop to a floor
1e-3 * 10^(2 (log10 eta - log10 eta*)^2), capped at 0.01 L0, with eta* = 0.2 gamma^2 (gamma < 1)
and 0.2 gamma^(2/3) (gamma > 1, depth 3). So the summary must find slopes 2 and 2/3, plateau
times ~ gamma^(1/3) at eta*, a budget edge of slope 2 (lazy) and 1 (rich), collapse at k = 1,
and loss L0 at step 0 in every run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gamma_tui.cache import Cache, Progress
from gamma_tui.config import expand, parse_preset
from gamma_tui.report import analyze, fit_summary, fit_text, heatmap_text
from gamma_tui.schedule import reduce_losses

INIT_LOSS = 0.5
STEPS = 1000
SWEEP = "fake-L3"
PRESET = f"""
name = "{SWEEP}"
seeds = 2
[network]
width = 8
depth = 3
[train]
steps = {STEPS}
[gamma]
min = 0.01
max = 1000
per_decade = 2
[eta]
scale = "relative"
min = 1e-4
max = 10
per_decade = 6
"""


def log10_eta_star(gamma: float) -> float:
    """The known optimum: 0.2 gamma^2 (lazy), 0.2 gamma^(2/3) (rich)."""
    return math.log10(0.2) + (2.0 if gamma < 1 else 2.0 / 3.0) * math.log10(gamma)


def fake_curve(gamma: float, eta: float, seed: int) -> tuple[np.ndarray, int | None]:
    """Per-step losses of one run and its divergence step (None when it stays finite)."""
    offset = math.log10(eta) - log10_eta_star(gamma)
    if offset > 0.7:  # far above eta*: blows up at step 3
        return np.array([INIT_LOSS, 2 * INIT_LOSS, 1e3, np.inf]), 3
    noise = math.exp(0.02 * np.random.default_rng([seed, round(1e6 * eta)]).standard_normal())
    # Capped far from eta* so that whether a run leaves the plateau depends on tau alone.
    floor = min(1e-3 * 10 ** (2.0 * offset**2), 0.01 * INIT_LOSS) * noise
    tau = 0.5 * gamma ** (2.0 if gamma < 1 else 1.0) / eta
    t = np.arange(STEPS, dtype=np.float64)
    return floor + (INIT_LOSS - floor) * np.exp(-((t / tau) ** 2)), None


def build_fake_sweep(cache: Cache, preset_text: str = PRESET, commit: bool = True) -> str:
    """Register the preset's sweep and commit a fake curve for every run in one transaction."""
    preset = parse_preset(preset_text)
    specs = expand(preset)
    cache.register_sweep(preset.name, preset_text, preset.model_dump(mode="json"), specs, STEPS)
    if not commit:
        return preset.name
    claimed = cache.claim([s.run_id for s in specs], "fake-worker")
    assert len(claimed) == len(specs)
    updates = []
    for spec in specs:
        losses, diverged_step = fake_curve(spec.gamma, spec.eta, spec.seed)
        updates.append(
            Progress(
                spec.run_id,
                losses.size,
                reduce_losses(0, losses.astype(np.float32), cap=spec.curve_cap),
                None,
                "diverged" if diverged_step is not None else "done",
                INIT_LOSS,
                float(losses[-1]),
                diverged_step,
            )
        )
    assert not cache.commit("fake-worker", updates)
    return preset.name


@pytest.fixture(scope="module")
def fake_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding the fake depth-3 sweep."""
    root = tmp_path_factory.mktemp("report") / "runs"
    with Cache(root) as cache:
        build_fake_sweep(cache)
    return root


@pytest.fixture(scope="module")
def summary(fake_cache: Path) -> dict[str, Any]:
    """fit_summary of the fake sweep at its last step."""
    with Cache(fake_cache) as cache:
        return fit_summary(cache, SWEEP)


def test_eta_star_slopes_match_the_planted_laws(summary: dict[str, Any]) -> None:
    assert summary["lazy"]["slope"] == pytest.approx(2.0, abs=0.05)
    assert summary["rich"]["slope"] == pytest.approx(2.0 / 3.0, abs=0.05)
    assert summary["lazy"]["theory"] == 2.0
    assert summary["rich"]["theory"] == pytest.approx(2.0 / 3.0)
    assert summary["crossover_gamma"] == pytest.approx(1.0, rel=0.3)
    for point in summary["eta_star"]:
        if point["ok"] and not point["at_edge"]:
            expected = log10_eta_star(point["gamma"])
            assert math.log10(point["eta"]) == pytest.approx(expected, abs=0.1)


def test_eta_div_follows_the_same_laws(summary: dict[str, Any]) -> None:
    assert summary["eta_div_fit"]["lazy"]["slope"] == pytest.approx(2.0, abs=0.1)
    assert summary["eta_div_fit"]["rich"]["slope"] == pytest.approx(2.0 / 3.0, abs=0.1)


def test_plateau_time_scales_as_gamma_to_one_third(summary: dict[str, Any]) -> None:
    fit = summary["plateau"]["fit"]
    assert fit["slope"] == pytest.approx(1.0 / 3.0, abs=0.05)
    assert fit["theory"] == pytest.approx(1.0 / 3.0)
    rich = [p for p in summary["plateau"]["points"] if p["gamma"] > 1]
    for point in rich:  # t_half = tau sqrt(ln 2) with tau = 0.5 gamma / eta at the best cell
        assert point["t_half"] == pytest.approx(
            0.5 * point["gamma"] / point["eta"] * math.sqrt(math.log(2)), rel=0.1
        )


def test_budget_edge_lazy_slope_two(summary: dict[str, Any]) -> None:
    edge = summary["budget_edge"]
    assert edge["budget_steps"] == STEPS
    assert edge["lazy"]["slope"] == pytest.approx(2.0, abs=0.1)  # tau ~ gamma^2 / eta


def test_budget_edge_rich_slope_one(summary: dict[str, Any]) -> None:
    edge = summary["budget_edge"]
    assert edge["rich"]["slope"] == pytest.approx(1.0, abs=0.1)  # tau ~ gamma / eta
    assert edge["rich"]["theory"] == 1.0


def test_collapse_finds_k_one_with_a_good_score(summary: dict[str, Any]) -> None:
    collapse = summary["collapse"]
    assert collapse["n_curves"] == 6  # gamma = 3.16 .. 1000
    assert collapse["k"] == pytest.approx(1.0, abs=0.05)
    assert collapse["k_lo"] <= collapse["k"] <= collapse["k_hi"]
    assert collapse["score"] > 0.9


def test_best_loss_per_budget(summary: dict[str, Any]) -> None:
    tables = summary["best_loss"]
    assert list(tables) == ["100", "300", "1000"]
    final = tables["1000"]
    assert len(final) == 11
    assert all(row["loss"] == pytest.approx(1e-3, rel=0.5) for row in final)
    # A shorter budget cannot reach a lower loss at the richest gamma.
    assert tables["100"][-1]["loss"] >= final[-1]["loss"]


def test_centering_check_passes_and_is_stated(summary: dict[str, Any]) -> None:
    init = summary["init_loss"]
    assert init["ok"] is True
    assert init["value"] == INIT_LOSS and init["max_relative_spread"] == 0.0
    assert init["runs"] == summary["runs"]
    text = fit_text(summary)
    assert "centering check PASS" in text and "mean of y²" in text


def test_text_and_json_forms(summary: dict[str, Any]) -> None:
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN or inf anywhere
    text = fit_text(summary)
    for fragment in (
        "lazy slope of η*: 2.0",
        "rich slope of η*: 0.6",
        "plateau t_half vs γ",
        "budget edge",
        "collapse of 6 rich curves",
        "best loss over η per γ",
    ):
        assert fragment in text


def test_whole_run_window_changes_the_criterion(fake_cache: Path) -> None:
    with Cache(fake_cache) as cache:
        whole = fit_summary(cache, SWEEP, window=1.0)
        early = fit_summary(cache, SWEEP, step=500)
    assert whole["criterion"]["text"].startswith("mean loss over steps 0..")
    assert whole["criterion"]["window"] == 1.0
    assert early["criterion"]["step"] == 500
    assert early["budget_edge"]["budget_steps"] == 500
    assert list(early["best_loss"]) == ["50", "150", "500"]


def test_heatmap_marks_divergence_and_eta_star(fake_cache: Path) -> None:
    with Cache(fake_cache) as cache:
        text = heatmap_text(cache, SWEEP)
    assert "DIV" in text and "*" in text
    assert max(len(line) for line in text.splitlines()) < 140


def test_empty_sweep_reports_not_enough_data(tmp_path: Path) -> None:
    with Cache(tmp_path / "runs") as cache:
        name = build_fake_sweep(cache, commit=False)
        empty = fit_summary(cache, name)
        result = analyze(cache, name)
    assert empty["lazy"]["slope"] is None and "not enough data" in empty["lazy"]["reason"]
    assert empty["collapse"]["k"] is None
    assert empty["init_loss"]["runs"] == 0
    assert not result.plateaus
    json.dumps(empty, allow_nan=False)
    text = fit_text(empty)
    assert "not enough data" in text and "no run has recorded it yet" in text


def test_write_report_writes_figures_and_summary(fake_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from gamma_tui.figures import FORMATS, write_report

    out = tmp_path / "report"
    with Cache(fake_cache) as cache:
        written = write_report(cache, SWEEP, out)
        numbers = fit_summary(cache, SWEEP)
    names = {p.name for p in written}
    for figure in ("phase_portrait", "eta_star", "loss_curves", "collapse", "best_loss"):
        for extension in FORMATS:
            assert f"{figure}.{extension}" in names
    assert "summary.md" in names
    for path in written:
        assert path.parent == out and path.stat().st_size > 0
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written if p.suffix == ".png")
    assert all(b"<svg" in p.read_bytes()[:2000] for p in written if p.suffix == ".svg")
    markdown = (out / "summary.md").read_text(encoding="utf-8")
    assert f"| η* rich slope | {numbers['rich']['slope']:.3f} |" in markdown
    assert fit_text(numbers) in markdown  # the same numbers as `gamma-tui fit`
    assert not list(out.glob(".*"))  # no temporary file left behind
