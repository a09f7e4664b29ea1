"""The sharpness analysis (slopes, edge units, flags) and its place in `fit` and `export`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gamma_tui.sharpness import SharpnessRun, catapult, progressive, summarize, summary_text
from tests.test_cli import cli

CHAIN = """name = "chain-diag"
seeds = 1
[network]
kind = "chain"
depth = 2
[data]
kind = "scalar"
[train]
batch_size = 1
steps = 200
[gamma]
min = 0.01
max = 100
per_decade = 2
[eta]
scale = "relative"
min = 0.01
max = 10
per_decade = 4
[analysis]
window = 1.0
[diagnostics]
sharpness = true
iterations = 4
"""


def _run(gamma: float, eta: float, lam: list[float], loss: list[float], state: str = "done"):
    steps = np.array([0, 1, 2, 5, 10][: len(lam)])
    return SharpnessRun(
        gamma,
        eta,
        0,
        state,
        eta,
        steps,
        np.array(lam, dtype=float),
        np.arange(len(loss), dtype=float),
        np.array(loss, dtype=float),
    )


def test_slopes_recover_planted_power_laws_and_the_edge_spread() -> None:
    """λ_max = 3 γ^-2 below γ = 1 and 3 γ^-1 above, η* = 1/λ_max: slopes -2 and -1, and
    step × λ_max = 1 at every γ (spread 0)."""
    runs, stars = [], {}
    for gamma in [0.01, 0.03, 0.1, 0.3, 3.0, 10.0, 30.0]:
        lam = 3.0 * gamma ** (-2.0 if gamma < 1 else -1.0)
        stars[gamma] = 1.0 / lam
        for eta in (0.3 / lam, 1.0 / lam, 3.0 / lam):
            runs.append(_run(gamma, eta, [lam * 0.9, lam], [1.0, 0.5]))
    block = summarize(runs, stars, depth=2, optimizer="sgd")
    assert block["lazy"]["slope"] == pytest.approx(-2.0)
    assert block["rich"]["slope"] == pytest.approx(-1.0)
    assert block["theory"] == {"lazy": -2.0, "rich": -1.0}
    assert block["log10_edge"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert block["log10_edge"]["spread"] == pytest.approx(0.0, abs=1e-12)
    assert block["lazy"]["points"] == 4 and block["rich"]["points"] == 3
    assert any("λ_max rich: slope -1.00" in line for line in summary_text(block))


def test_catapult_and_progressive_sharpening_flags() -> None:
    # above the edge at init (step 0.5 × 10 = 5), loss spikes, sharpness falls to 2/0.5 = 4
    spike = _run(1.0, 0.5, [10.0, 12.0, 3.0], [1.0, 5.0, 0.8, 0.3])
    assert catapult(spike) and not progressive(spike)
    assert not catapult(_run(1.0, 0.5, [10.0, 12.0, 3.0], [1.0, 5.0, 0.8], "diverged"))
    assert not catapult(_run(1.0, 0.1, [10.0, 12.0, 3.0], [1.0, 5.0, 0.8]))  # below the edge
    assert not catapult(_run(1.0, 0.5, [10.0, 12.0, 3.0], [1.0, 0.9, 0.8]))  # no spike
    assert progressive(_run(10.0, 0.01, [1.0, 1.2, 2.0], [1.0, 1.0, 0.5]))


@pytest.mark.slow
def test_fit_and_export_show_sharpness_of_a_measured_sweep(tmp_path: Path) -> None:
    preset = tmp_path / "chain.toml"
    preset.write_text(CHAIN)
    cache = tmp_path / "runs"
    cli("run", str(preset), "--yes", cache=cache)
    summary = json.loads(cli("fit", "chain-diag", "--json", cache=cache).stdout)
    block = summary["sharpness"]
    assert set(block) >= {"lazy", "rich", "theory", "points", "log10_edge", "flags"}
    assert block["theory"] == {"lazy": -2.0, "rich": -1.0}
    # λ_max(0) of the L = 2 chain is 4/γ² - 2/γ: the slope at γ <= 0.3 is within 0.1 of -2
    assert block["init"]["slope"] == pytest.approx(-2.0, abs=0.1)
    assert block["lazy"]["interval"][0] < block["lazy"]["slope"] < block["lazy"]["interval"][1]
    text = cli("fit", "chain-diag", cache=cache).stdout
    assert "λ_max lazy: slope" in text and "theory -2" in text
    exported = tmp_path / "out.csv"
    cli("export", "chain-diag", "-o", str(exported), cache=cache)
    rows = [line.split(",") for line in exported.read_text().splitlines()[1:]]
    assert any(row[6] == "sharpness" and float(row[8]) > 0 for row in rows)
    as_json = tmp_path / "out.json"
    cli("export", "chain-diag", "--format", "json", "-o", str(as_json), cache=cache)
    first = json.loads(as_json.read_text())["runs"][0]
    assert first["diagnostics"]["steps"][0] == 0 and first["diagnostics"]["sharpness"][0] > 0


@pytest.mark.parametrize(
    ("diagnostics", "fragment"),
    [
        ("sharpness = true\niterations = 0", "diagnostics.iterations"),
        ("sharpness = true\nprobe_batch = 64", "data.test_size = 10"),
        ("ntk = true\nprobe_batch = 8", "cannot afford"),
    ],
)
def test_bad_diagnostics_exit_2_before_any_worker(
    tmp_path: Path, diagnostics: str, fragment: str
) -> None:
    images = tmp_path / "images.npz"
    np.savez(images, X=np.zeros((60, 3, 12, 12), np.uint8), y=np.arange(60) % 3)
    network = 'kind = "cnn"\nwidth = 2' if "ntk" in diagnostics else "width = 4\ndepth = 2"
    preset = tmp_path / "bad.toml"
    preset.write_text(
        f'[network]\n{network}\n[data]\nkind = "npz"\npath = "{images}"\ntest_size = 10\n'
        "[train]\nbatch_size = 4\nsteps = 5\n[gamma]\nmin = 1\nmax = 1\n[eta]\nmin = 1\n"
        f"max = 1\n[diagnostics]\n{diagnostics}\n"
    )
    done = cli("run", str(preset), cache=tmp_path / "runs", check=False)
    assert done.returncode == 2
    assert fragment in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "runs" / "logs").exists()  # no worker started


def test_report_adds_the_sharpness_figure(tmp_path: Path) -> None:
    """A finished sweep with synthetic λ_max diagnostics gets sharpness.png/.svg (fitted slopes,
    theory guides, the edge line) and its sharpness fit in summary.md; one without gets
    neither."""
    pytest.importorskip("matplotlib")
    from gamma_tui.cache import Cache
    from gamma_tui.figures import FORMATS, write_report
    from gamma_tui.report import fit_summary
    from gamma_tui.sharpness import sweep_block
    from gamma_tui.ui.demo import fake_preset_text, synthetic_diagnostics, write_fake_sweep

    with Cache(tmp_path / "runs") as cache:
        text = fake_preset_text("sharp", gammas=(0.01, 100.0, 2.0))
        write_fake_sweep(cache, text, measure=synthetic_diagnostics)
        write_fake_sweep(cache, fake_preset_text("plain", depth=3))  # runs of its own
        written = write_report(cache, "sharp", tmp_path / "sharp")
        block = sweep_block(cache, "sharp", fit_summary(cache, "sharp"))
        plain = write_report(cache, "plain", tmp_path / "plain")
    assert block is not None and block["lazy"]["slope"] is not None
    assert block["rich"]["slope"] is not None
    names = {p.name for p in written}
    for extension in FORMATS:
        assert f"sharpness.{extension}" in names
        assert (tmp_path / "sharp" / f"sharpness.{extension}").stat().st_size > 10_000
    assert (tmp_path / "sharp" / "sharpness.png").read_bytes().startswith(b"\x89PNG")
    svg = (tmp_path / "sharp" / "sharpness.svg").read_text(encoding="utf-8")
    # matplotlib writes each text as a comment over its glyph paths: the legend's entries
    for label in ("λ_max = 2/(N·η) (edge)", "lazy theory -2", "rich theory -1"):
        assert f"<!-- {label} -->" in svg
    for regime in ("lazy", "rich"):
        assert f"<!-- {regime}: {block[regime]['slope']:.2f}" in svg
    markdown = (tmp_path / "sharp" / "summary.md").read_text(encoding="utf-8")
    assert "\n".join(summary_text(block)) in markdown  # the numbers `fit` prints
    assert "- [sharpness.png](sharpness.png)" in markdown
    assert not any(p.name.startswith("sharpness") for p in plain)
    assert "sharpness (λ_max" not in (tmp_path / "plain" / "summary.md").read_text()


def test_run_prints_the_diagnostics_cost_and_why_cached_runs_have_none(tmp_path: Path) -> None:
    """A sweep first trained without diagnostics, then extended with them on: `run` says in
    one line why the cached runs lack them, and prints the measured cost of those it trained
    (the workers' timings, carried back through their cost files, which are then gone)."""
    preset = tmp_path / "chain.toml"
    small = CHAIN.replace("per_decade = 2", "per_decade = 1").replace("per_decade = 4", "")
    preset.write_text(small.replace("steps = 200", "steps = 20"))
    cache = tmp_path / "runs"
    first = cli("run", str(preset), "--set", "diagnostics.sharpness=false", cache=cache)
    assert "diagnostics took" not in first.stderr and "note:" not in first.stderr
    second = cli("run", str(preset), "--set", "train.steps=40", cache=cache)
    stderr = " ".join(second.stderr.split())  # rich wraps long lines
    assert "cached run(s) were trained without these [diagnostics]" in stderr
    assert "use a fresh cache (--cache DIR)" in stderr
    cost = re.search(r"diagnostics took ([\d.]+) s, ([\d.]+)% on top of ([\d.]+) s", stderr)
    assert cost is not None, stderr
    spent, share, training = (float(v) for v in cost.groups())
    assert spent > 0 and training > 0  # three significant digits each
    assert share == pytest.approx(100 * spent / training, rel=0.01, abs=0.05)
    assert not list((cache / "logs").glob("cost-*.json"))
