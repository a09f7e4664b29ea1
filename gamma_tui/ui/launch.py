"""Starting and stopping sweeps from the app: preset discovery, edited presets, driver processes.

The app never trains: it spawns `python -m gamma_tui run PRESET --quiet --cache DIR` in its
own session (process group), which registers the sweep and starts the engine workers. The
driver and its workers share that group, so stopping is one SIGTERM to the group; workers
checkpoint on SIGTERM and their runs resume on the next `run`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gamma_tui.cache import FINAL_STATES, Cache
from gamma_tui.config import Preset, expand
from gamma_tui.states import DIVERGED, SKIPPED

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
        tail = ""
        if self.log.exists():
            lines = self.log.read_text(errors="replace").strip().splitlines()
            tail = " | ".join(lines[-3:])
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
    """Spawn a detached headless `gamma-tui run` for the preset; its output goes to a log."""
    logs = cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"driver-{sweep}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    # --yes: the launcher showed the estimate and asked about huge sweeps itself.
    command = [
        sys.executable,
        "-m",
        "gamma_tui",
        "run",
        str(preset_path),
        "--quiet",
        "--yes",
        "--cache",
        str(cache_dir),
    ]
    for item in sets:
        command += ["--set", item]
    with log.open("wb") as handle:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Driver(sweep, process, log, time.time())


def estimate(cache_dir: Path, preset: Preset) -> str:
    """Grid size, runs already cached and the work left, as one line of rich markup."""
    specs = expand(preset)
    gammas, etas = len(preset.gamma.values()), len(preset.eta.values())
    with Cache(cache_dir) as cache:
        wanted = {s.run_id for s in specs}
        cached = [r for r in cache.runs(run_ids=list(wanted))]
    finished = sum(
        1
        for r in cached
        if r.status in FINAL_STATES and (r.steps_done >= preset.train.steps or r.status == DIVERGED)
    )
    skipped = sum(1 for r in cached if r.status == SKIPPED)
    partial = len(cached) - finished - skipped
    steps_left = (
        sum(
            max(0, preset.train.steps - r.steps_done)
            for r in cached
            if r.status not in (DIVERGED, SKIPPED)
        )
        + (len(specs) - len(cached)) * preset.train.steps
    )
    shards = len({s.shard_key for s in specs})
    flops = preset.flops_per_run() / preset.train.steps * steps_left
    return (
        f"[b]{len(specs)}[/] runs = {gammas} γ × {etas} η × {len(preset.seeds)} seeds · "
        f"cached: [b]{finished}[/] finished, {partial} partial"
        + (f", {skipped} cut off" if skipped else "")
        + f" · to train: ≤{_si(steps_left)} run-steps in {shards} ensemble shard(s), "
        f"≈{_si(flops)}FLOP"
    )


def _si(value: float) -> str:
    """1234567 -> '1.2M'; '?' for an unknown (NaN) amount."""
    if not math.isfinite(value):
        return "? "
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"
