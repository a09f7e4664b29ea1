"""Starting and stopping sweeps from the app: preset discovery, edited presets, driver processes.

The app never trains: it starts the same detached driver as `gamma-tui run --detach`
(processes.spawn_driver: `python -m gamma_tui run PRESET ... --quiet` in its own session,
output in CACHE/logs/driver-SWEEP.log), which registers the sweep and starts the engine
workers. The driver and its workers share that process group, so stopping is one SIGTERM to
the group; workers checkpoint on SIGTERM and their runs resume on the next `run`. The work
estimate is planning.plan, the one `run --dry-run` prints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gamma_tui.cache import Cache
from gamma_tui.config import Preset
from gamma_tui.planning import plan
from gamma_tui.processes import driver_log, log_tail, spawn_driver

KNOBS: tuple[tuple[str, str], ...] = (
    ("name", "sweep name"),
    ("network.kind", "model"),
    ("network.width", "width N"),
    ("network.depth", "depth L"),
    ("network.activation", "activation"),
    ("data.kind", "dataset"),
    ("data.input_dim", "input dim"),
    ("gamma.min", "γ min"),
    ("gamma.max", "γ max"),
    ("gamma.per_decade", "γ /decade"),
    ("eta.scale", "η scale"),
    ("eta.min", "η min"),
    ("eta.max", "η max"),
    ("eta.per_decade", "η /decade"),
    ("train.steps", "steps"),
    ("train.batch_size", "batch"),
    ("train.optimizer", "optimizer"),
    ("seeds", "seeds"),
)
"""The main knobs the launcher lets a user edit: (key path in the preset, label)."""


@dataclass
class Driver:
    """A sweep driver process this app started."""

    sweep: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    stopping: bool = False
    log_start: int = 0
    """Where this driver's output begins in its log (earlier drivers of the sweep wrote
    before it)."""

    def alive(self) -> bool:
        """Whether the driver still runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the driver's process group: driver and workers; runs keep checkpoints."""
        self.stopping = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def failure(self) -> str | None:
        """Why the driver exited badly (with the end of its log), None if fine or running."""
        code = self.process.poll()
        if code in (None, 0, -signal.SIGTERM, 130):
            return None
        tail = " | ".join(log_tail(self.log, self.log_start))
        return (
            f"driver of {self.sweep} exited with status {code}: {tail or 'no output'} "
            f"(log: {self.log})"
        )


def find_presets(
    directories: Iterable[Path],
    edited_dir: Path | None = None,
) -> list[tuple[Path, str]]:
    """Every *.toml under the directories (recursively) once, with a short label each.

    The label is the path inside its directory without '.toml' ('paper/mlp-L2'); presets
    written by the launcher (in `edited_dir`) are marked with '✎'.
    """
    seen: dict[Path, tuple[Path, str]] = {}
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*.toml")):
            label = path.relative_to(directory).with_suffix("").as_posix()
            if edited_dir is not None and directory == edited_dir:
                label += " ✎"
            seen.setdefault(path.resolve(), (path, label))
    return sorted(seen.values(), key=lambda item: item[1])


def knob_value(preset: Preset, key: str) -> str:
    """A knob's current value as the text the launcher shows."""
    node: Any = preset.model_dump(mode="json")
    for part in key.split("."):
        node = node[part]
    if key == "seeds":
        return str(len(node)) if node == list(range(len(node))) else json.dumps(node)
    return _toml_value(node).strip('"')


def overrides(preset: Preset, values: dict[str, str]) -> list[str]:
    """`key=value` overrides for the knobs whose text differs from the preset's value."""
    result = []
    for key, text in values.items():
        if text.strip() != knob_value(preset, key):
            value = text.strip()
            quoted = key in (
                "name",
                "network.kind",
                "network.activation",
                "data.kind",
                "eta.scale",
                "train.optimizer",
            )
            if quoted and not value.startswith('"'):
                value = json.dumps(value)
            result.append(f"{key}={value}")
    return result


def dump_preset(preset: Preset) -> str:
    """The preset as TOML (top-level keys first, then one table per section)."""
    data = preset.model_dump(mode="json")
    head, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            lines = [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
            tables.append(f"[{key}]\n" + "\n".join(lines))
        elif value is not None:
            head.append(f"{key} = {_toml_value(value)}")
    return "\n".join(head) + "\n\n" + "\n\n".join(tables) + "\n"


def _toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, number, list or (inline) table."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "nan"
    return str(value)


def write_edited(cache_dir: Path, preset: Preset) -> Path:
    """Write an edited preset to CACHE/presets/<name>.toml and return its path."""
    folder = cache_dir / "presets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{preset.name}.toml"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(dump_preset(preset), encoding="utf-8")
    partial.replace(path)
    return path


def start_driver(
    cache_dir: Path, preset_path: Path, sweep: str, sets: Iterable[str] = ()
) -> Driver:
    """Start a detached headless `gamma-tui run` for the preset, as `run --detach` does."""
    # --yes: the launcher showed the estimate and asked about huge sweeps itself.
    arguments = [str(preset_path), "--yes", "--cache", str(cache_dir)]
    for item in sets:
        arguments += ["--set", item]
    log = driver_log(cache_dir, sweep)
    start = log.stat().st_size if log.exists() else 0
    process = spawn_driver(arguments, cache_dir, sweep)
    return Driver(sweep, process, log, time.time(), log_start=start)


def estimate(cache_dir: Path, preset: Preset) -> str:
    """Grid size, runs already cached and the work left (planning.plan), as rich markup."""
    gammas, etas = len(preset.gamma.values()), len(preset.eta.values())
    with Cache(cache_dir) as cache:
        found = plan(cache, preset)
    finished = found.finished - found.skipped
    partial = found.cached - found.finished
    return (
        f"[b]{found.total}[/] runs = {gammas} γ × {etas} η × {len(preset.grid_seeds)} seeds · "
        f"cached: [b]{finished}[/] finished, {partial} partial"
        + (f", {found.skipped} cut off" if found.skipped else "")
        + f" · to train: ≤{_si(found.steps_left)} run-steps in {found.ensembles} ensemble "
        f"shard(s), ≈{_si(found.flops)}FLOP"
    )


def _si(value: float) -> str:
    """1234567 -> '1.2M'; '?' for an unknown (NaN) amount."""
    if not math.isfinite(value):
        return "? "
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"
