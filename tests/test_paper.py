"""The paper's laws on real training: the toy presets and the depth-2 MLP preset, end to end.

Marked slow (CI runs them after the fast suite): about 10 s for both toys and 15-30 s for the
MLP preset on 2 CPU cores. Windows are the issue's acceptance criteria (docs/science.md §3.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import ROOT, run_preset

from gamma_tui.cache import Cache
from gamma_tui.config import load_preset
from gamma_tui.report import fit_summary

PAPER = ROOT / "presets" / "paper"

pytestmark = pytest.mark.slow


def train(preset: Path, cache: Path, *overrides: str) -> str:
    """Run `gamma-tui run PRESET` headless into `cache`; returns the sweep name."""
    run_preset(preset, cache, *overrides)
    return load_preset(preset, list(overrides)).name


def summary_of(cache: Path, sweep: str, window: float | None = None) -> dict[str, Any]:
    with Cache(cache) as opened:
        return fit_summary(opened, sweep, window=window)


@pytest.mark.parametrize("depth", [2, 3])
def test_toy_model_slopes_two_and_two_over_depth(depth: int, tmp_path: Path) -> None:
    # The toy's criterion is the whole-run mean loss (window 1): see the preset's comments.
    sweep = train(PAPER / f"toy-chain-L{depth}.toml", tmp_path / "runs")
    summary = summary_of(tmp_path / "runs", sweep)  # the preset sets window = 1
    assert summary["lazy"]["slope"] == pytest.approx(2.0, abs=0.15)
    assert summary["rich"]["slope"] == pytest.approx(2.0 / depth, abs=0.15)
    assert summary["init_loss"]["ok"] and summary["init_loss"]["value"] == 1.0


def test_mlp_depth_two_preset_reproduces_the_slopes(tmp_path: Path) -> None:
    sweep = train(PAPER / "mlp-L2.toml", tmp_path / "runs")
    summary = summary_of(tmp_path / "runs", sweep)
    assert 1.8 <= summary["lazy"]["slope"] <= 2.2
    assert 0.85 <= summary["rich"]["slope"] <= 1.15
    assert summary["init_loss"]["ok"]  # centering: every run starts at the batch mean of y^2
    assert summary["counts"].get("failed", 0) == 0


@pytest.mark.parametrize("optimizer", ["signsgd", "adam"])
def test_scale_free_optimizers_follow_gamma_and_gamma_to_one_over_depth(
    optimizer: str, tmp_path: Path
) -> None:
    """SignSGD and Adam: η* ∝ γ (lazy), γ^(1/L) (rich), on the depth-2 toy (docs/science.md §1)."""
    sweep = train(
        PAPER / "toy-chain-L2.toml",
        tmp_path / "runs",
        f'train.optimizer="{optimizer}"',
        f"name=toy-{optimizer}",
    )
    summary = summary_of(tmp_path / "runs", sweep)
    assert summary["lazy"]["slope"] == pytest.approx(1.0, abs=0.1)
    assert summary["rich"]["slope"] == pytest.approx(0.5, abs=0.15)
