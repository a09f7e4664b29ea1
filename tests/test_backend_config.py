"""A preset's [backend] table: validation, flags over it, the executor, dry-run and --detach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import ROOT, tiny_preset_text
from typer.testing import CliRunner

from gamma_tui.backends import (
    LocalExecutor,
    RayExecutor,
    SlurmExecutor,
    executor_for,
    resolve_backend,
)
from gamma_tui.cli import app
from gamma_tui.config import BackendConfig, PresetError, expand, parse_preset

BACKEND = """
[backend]
kind = "slurm"
workers = 3
jobs_dir = "/shared/jobs"
slurm_cluster = "debug"
slurm = { slurm_partition = "gpu", timeout_min = 90, exclusive = true, mem_gb = 1.5 }
"""


def preset_text(backend: str = BACKEND) -> str:
    """The tiny preset with a [backend] table appended."""
    return tiny_preset_text() + backend


def test_no_backend_table_means_local_defaults() -> None:
    assert parse_preset(tiny_preset_text()).backend == BackendConfig()
    assert BackendConfig().kind == "local" and BackendConfig().workers is None


def test_backend_table_keeps_types_of_submitit_parameters() -> None:
    backend = parse_preset(preset_text()).backend
    assert (backend.kind, backend.workers, backend.jobs_dir) == ("slurm", 3, "/shared/jobs")
    assert backend.slurm_cluster == "debug" and backend.ray_address is None
    assert backend.slurm == {
        "slurm_partition": "gpu",
        "timeout_min": 90,
        "exclusive": True,
        "mem_gb": 1.5,
    }
    assert type(backend.slurm["exclusive"]) is bool and type(backend.slurm["timeout_min"]) is int


@pytest.mark.parametrize(
    ("line", "key", "fragment"),
    [
        ('kind = "k8s"', "backend.kind", "'local', 'slurm' or 'ray'"),
        ("workers = 0", "backend.workers", "greater than or equal to 1"),
        ('workers = "4"', "backend.workers", "valid integer"),
        ('slurm_cluster = "aws"', "backend.slurm_cluster", "'slurm', 'local' or 'debug'"),
        ('jobs_dir = ""', "backend.jobs_dir", "at least 1 character"),
        ('slurm = { "slurm partition" = "gpu" }', "backend.slurm", "not an identifier"),
        ("slurm = { timeout_min = [60] }", "backend.slurm", "string, integer, finite number"),
        ("slurm = { timeout_min = nan }", "backend.slurm", "finite number"),
        ("slurm = 3", "backend.slurm", "valid dictionary"),
        ("workres = 2", "backend.workres", "unknown key"),
    ],
)
def test_bad_backend_values_name_file_and_key(line: str, key: str, fragment: str) -> None:
    with pytest.raises(PresetError) as raised:
        parse_preset(preset_text(f"[backend]\n{line}\n"), source="mine.toml")
    message = str(raised.value)
    assert message.startswith(f"mine.toml: key '{key}': ") and fragment in message
    assert "\n" not in message  # one problem, one line


def test_backend_table_changes_no_run_id() -> None:
    plain = expand(parse_preset(tiny_preset_text()))
    with_backend = expand(parse_preset(preset_text()))
    assert [s.run_id for s in with_backend] == [s.run_id for s in plain]
    assert [s.shard_key for s in with_backend] == [s.shard_key for s in plain]


def test_flags_win_and_slurm_pairs_merge_over_the_table() -> None:
    table = parse_preset(preset_text()).backend
    assert resolve_backend(table) == table  # no flag: the preset as it is
    settings = resolve_backend(
        table,
        kind="slurm",
        workers=5,
        jobs_dir=Path("/elsewhere"),
        slurm={"timeout_min": 30, "gpus_per_node": 1},
        slurm_cluster="local",
    )
    assert (settings.workers, settings.jobs_dir, settings.slurm_cluster) == (
        5,
        "/elsewhere",
        "local",
    )
    assert settings.slurm == {
        "slurm_partition": "gpu",
        "timeout_min": 30,
        "exclusive": True,
        "mem_gb": 1.5,
        "gpus_per_node": 1,
    }
    assert resolve_backend(table, kind="local").kind == "local"
    assert resolve_backend(BackendConfig(), ray_address="ray://head:10001").ray_address == (
        "ray://head:10001"
    )


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"kind": "k8s"}, "--backend 'k8s': "),
        ({"slurm_cluster": "aws"}, "--slurm-cluster 'aws': "),
        ({"slurm": {"timeout_min": [1]}}, "--slurm: parameter 'timeout_min'"),
        ({"slurm": {"bad-key": 1}}, "--slurm: parameter name 'bad-key'"),
    ],
)
def test_bad_flag_values_name_the_flag(flags: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PresetError, match=fragment):
        resolve_backend(BackendConfig(), **flags)


def test_executor_follows_the_resolved_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit")
    pytest.importorskip("ray")
    monkeypatch.setenv("GAMMA_TUI_JOBS", str(tmp_path / "env-jobs"))
    table = parse_preset(preset_text()).backend
    slurm = executor_for(resolve_backend(table, slurm={"timeout_min": 5}), tmp_path / "runs")
    assert isinstance(slurm, SlurmExecutor)
    assert (slurm.jobs_root, slurm.cluster, slurm.pieces) == (Path("/shared/jobs"), "debug", 3)
    assert slurm.parameters["timeout_min"] == 5 and slurm.parameters["slurm_partition"] == "gpu"
    # without backend.jobs_dir: $GAMMA_TUI_JOBS, then CACHE/jobs
    bare = executor_for(BackendConfig(kind="slurm"), tmp_path / "runs")
    assert isinstance(bare, SlurmExecutor) and bare.jobs_root == tmp_path / "env-jobs"
    monkeypatch.delenv("GAMMA_TUI_JOBS")
    bare = executor_for(BackendConfig(kind="slurm"), tmp_path / "runs")
    assert isinstance(bare, SlurmExecutor) and bare.jobs_root == tmp_path / "runs" / "jobs"
    ray = executor_for(BackendConfig(kind="ray", workers=2, ray_address="auto"), tmp_path)
    assert isinstance(ray, RayExecutor) and (ray.address, ray.pieces) == ("auto", 2)
    local = executor_for(resolve_backend(table, kind="local", workers=2), tmp_path)
    assert isinstance(local, LocalExecutor) and local.pieces == 2


def invoke(*args: str) -> Any:
    """`gamma-tui ARGS` in this process (no training happens in these tests)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result


def backend_line(stdout: str) -> str:
    """The line of `run --dry-run` that names the backend."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("backend ")]
    return line


def test_dry_run_names_the_backend_and_flags_override_it(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    preset = tmp_path / "remote.toml"
    preset.write_text(preset_text())
    cache = str(tmp_path / "runs")
    line = backend_line(invoke("run", str(preset), "--cache", cache, "--dry-run").stdout)
    assert line.startswith("backend slurm (submitit cluster debug)") and "/shared/jobs" in line
    assert "up to 3 parts" in line and 'slurm_partition="gpu"' in line and "timeout_min=90" in line
    local = invoke("run", str(preset), "--cache", cache, "--dry-run", "--backend", "local")
    assert backend_line(local.stdout) == "backend local: 3 worker processes"
    assert "in 3 shard(s)" in local.stdout  # backend.workers splits the shards too
    one = invoke("run", str(preset), "--cache", cache, "--dry-run", "--workers", "1")
    assert "up to 1 part;" in backend_line(one.stdout) and "in 1 shard(s)" in one.stdout


def test_bad_backend_flag_exits_2_with_one_line(tmp_path: Path) -> None:
    preset = tmp_path / "plain.toml"
    preset.write_text(tiny_preset_text())
    result = CliRunner().invoke(
        app, ["run", str(preset), "--cache", str(tmp_path / "runs"), "--backend", "k8s"]
    )
    assert result.exit_code == 2
    assert "--backend 'k8s'" in result.stderr and "Traceback" not in result.output


def test_detach_forwards_the_effective_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detached driver gets flags that alone reproduce the settings (preset ⊕ flags)."""
    pytest.importorskip("submitit")
    started: list[list[str]] = []

    def fake_detach(arguments: list[str], cache_root: Path, sweep: str) -> int:
        started.append(arguments)
        return 4242

    monkeypatch.setattr("gamma_tui.processes.detach_run", fake_detach)
    preset = tmp_path / "remote.toml"
    preset.write_text(preset_text())
    cache = str(tmp_path / "runs")
    flags = ["--slurm", "timeout_min=30", "--slurm", "comment=60x", "--workers", "2"]
    invoke("run", str(preset), "--cache", cache, "--detach", *flags)
    expected = backend_line(
        invoke("run", str(preset), "--cache", cache, "--dry-run", *flags).stdout
    )
    (arguments,) = started
    assert arguments[0] == str(preset) and "--backend" in arguments
    # the same options on a preset WITHOUT [backend] must give the same backend
    plain = tmp_path / "plain.toml"
    plain.write_text(tiny_preset_text())
    again = invoke("run", str(plain), *arguments[1:], "--dry-run").stdout
    assert backend_line(again) == expected
    assert "timeout_min=30" in expected and 'comment="60x"' in expected
    assert "exclusive=true" in expected  # a boolean still, not the string "True"


def test_readme_backend_example_is_a_valid_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("```toml\n[backend]\n") + len("```toml\n")
    example = readme[start : readme.index("```", start)]
    backend = parse_preset(tiny_preset_text() + example).backend
    assert backend.kind == "slurm" and backend.slurm["slurm_partition"] == "gpu"
