"""Helpers for tests: paths and tiny preset texts."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "presets" / "smoke.toml"


def tiny_preset_text(**sections: dict[str, object]) -> str:
    """TOML of a tiny preset, with sections overridden by keyword (e.g. train={'steps': 50})."""
    base: dict[str, dict[str, object]] = {
        "network": {"width": 16, "depth": 3},
        "data": {"input_dim": 8, "hidden": 3, "outputs": 2, "seed": 1},
        "train": {"batch_size": 8, "steps": 40, "checkpoint_every": 16},
        "gamma": {"min": 0.1, "max": 10, "per_decade": 1},
        "eta": {"scale": "relative", "min": 0.1, "max": 10, "per_decade": 1},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = ["seeds = [0, 1]"]
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
