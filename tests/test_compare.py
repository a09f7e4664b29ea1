"""`gamma-tui compare` on synthetic caches: grids that differ, an empty sweep, a bad name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import PRESET, SWEEP, build_fake_sweep
from typer.testing import CliRunner

from gamma_tui.cache import Cache
from gamma_tui.cli import app
from gamma_tui.compare import compare_summary, compare_sweeps, compare_text

# The same planted laws on a coarser η grid over a narrower range: some cells are shared. Each
# copy has its own width so that its runs are its own (equal specs would share cached runs).
COARSE = (
    PRESET.replace(f'name = "{SWEEP}"', 'name = "coarse-L3"')
    .replace("width = 8", "width = 16")
    .replace("min = 1e-4", "min = 1e-3")
    .replace("per_decade = 6", "per_decade = 3")
)
# Nothing shared with the others: the η multipliers sit between theirs.
SHIFTED = (
    PRESET.replace(f'name = "{SWEEP}"', 'name = "shifted-L3"')
    .replace("width = 8", "width = 24")
    .replace("min = 1e-4", "min = 1.5e-4")
)
EMPTY = PRESET.replace(f'name = "{SWEEP}"', 'name = "empty-L3"').replace("width = 8", "width = 32")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache with the fake sweep, the coarse and shifted copies, and one never trained."""
    root = tmp_path_factory.mktemp("compare") / "runs"
    with Cache(root) as cache:
        build_fake_sweep(cache)
        build_fake_sweep(cache, COARSE)
        build_fake_sweep(cache, SHIFTED)
        build_fake_sweep(cache, EMPTY, commit=False)
    return root


def summary_of(cache_dir: Path, *names: str) -> dict:
    with Cache(cache_dir) as cache:
        return compare_summary(compare_sweeps(cache, names))


def test_grids_that_differ_give_the_same_slopes_and_a_marked_difference(cache_dir: Path) -> None:
    summary = summary_of(cache_dir, SWEEP, "coarse-L3")
    json.dumps(summary, allow_nan=False)
    dense, coarse = summary["sweeps"]
    assert (dense["name"], coarse["name"]) == (SWEEP, "coarse-L3")
    for entry in (dense, coarse):
        rich, lazy = entry["eta_star"]["rich"], entry["eta_star"]["lazy"]
        assert rich["slope"] == pytest.approx(2 / 3, abs=0.1)
        assert lazy["slope"] == pytest.approx(2.0, abs=0.15)
        assert rich["interval"][0] < rich["slope"] < rich["interval"][1]
        assert rich["points"] >= 4 and rich["theory"] == pytest.approx(2 / 3)
        assert entry["eta_div"]["rich"]["slope"] == pytest.approx(2 / 3, abs=0.15)
        assert entry["finished"] == entry["runs"] > 0
        assert len(entry["best_loss"]) == 11
    diff = summary["difference"]
    assert diff["a"] == SWEEP and diff["b"] == "coarse-L3"
    # Every coarse η multiplier is on the dense grid; the dense one has twice as many and more.
    assert diff["only_b"] == 0 and diff["only_a"] > diff["shared"] > 0
    only_a = [c for c in diff["cells"] if c["only"] == "a"]
    assert len(only_a) == diff["only_a"] and all(c["diff"] is None for c in only_a)
    # Same planted curves in shared cells: the difference is exactly zero there.
    shared = [c for c in diff["cells"] if c["diff"] is not None]
    assert shared and all(c["diff"] == 0.0 for c in shared)
    text = compare_text(summary)
    assert "coarse-L3" in text and "only in fake-L3" in text and "(0.67)" in text


def test_a_sweep_with_no_finished_runs_has_no_slopes(cache_dir: Path) -> None:
    summary = summary_of(cache_dir, SWEEP, "empty-L3")
    json.dumps(summary, allow_nan=False)
    empty = summary["sweeps"][1]
    assert empty["finished"] == 0 and empty["runs"] > 0
    for kind in ("eta_star", "eta_div"):
        for regime in ("lazy", "rich"):
            fit = empty[kind][regime]
            assert fit["slope"] is None and fit["interval"] is None and fit["points"] == 0
            assert "not enough data" in fit["reason"]
    assert empty["crossover_gamma"] is None
    assert all(row["loss"] is None for row in empty["best_loss"])
    # Queued cells count as cells the empty sweep has, with no loss: no difference anywhere.
    assert summary["difference"]["mean_diff"] is None
    assert "-" in compare_text(summary).splitlines()[3]


def test_sweeps_sharing_no_cell_have_no_difference(cache_dir: Path) -> None:
    summary = summary_of(cache_dir, SWEEP, "shifted-L3", "coarse-L3")
    assert summary["difference"] is None and len(summary["sweeps"]) == 3
    assert "share no (γ, η) cell" in compare_text(summary)


def test_cli_json_and_text(cache_dir: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["compare", SWEEP, "coarse-L3", "--cache", str(cache_dir), "--json"])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert set(payload) == {"sweeps", "difference"}
    assert set(payload["sweeps"][0]["eta_star"]["rich"]) >= {"slope", "interval", "points"}
    text = runner.invoke(app, ["compare", SWEEP, "coarse-L3", "--cache", str(cache_dir)])
    assert text.exit_code == 0 and "slopes of η*(γ)" in text.stdout
    # --step moves the criterion: at step 50 nothing has left the plateau at large γ.
    early = runner.invoke(
        app, ["compare", SWEEP, "coarse-L3", "--cache", str(cache_dir), "--json", "--step", "50"]
    )
    assert early.exit_code == 0
    assert json.loads(early.stdout) != payload


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([SWEEP, "no-such-sweep"], "no sweep named 'no-such-sweep'"),
        ([SWEEP], "compare needs at least two sweeps"),
    ],
)
def test_cli_bad_input_is_one_message_and_exit_2(
    cache_dir: Path, args: list[str], message: str
) -> None:
    done = CliRunner().invoke(app, ["compare", *args, "--cache", str(cache_dir)])
    assert done.exit_code == 2
    assert message in done.stderr and "Traceback" not in done.output
    assert len(done.stderr.strip().splitlines()) == 1


def test_report_of_several_sweeps_writes_the_figure_and_table(
    cache_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    done = CliRunner().invoke(
        app, ["report", SWEEP, "coarse-L3", "empty-L3", "--cache", str(cache_dir), "-o", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in out.iterdir()) == ["compare.md", "compare.png", "compare.svg"]
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (out / "compare.svg").read_bytes()[:2000]
    table = (out / "compare.md").read_text()
    summary = summary_of(cache_dir, SWEEP, "coarse-L3", "empty-L3")
    rich = summary["sweeps"][1]["eta_star"]["rich"]["slope"]
    assert "| coarse-L3 | 3 | sgd |" in table and f"{rich:.2f} ±" in table
    assert "| empty-L3 | 3 | sgd | 0/" in table
