"""Reading a preset: TOML text or file, `--set` overrides, validation, one clear error.

`load_preset` parses and validates a file and turns every problem into one `PresetError` whose
message names the file, the key path and a fix, so the CLI can print it and exit 2 instead of
showing a traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gamma_tui.config.errors import PresetError
from gamma_tui.config.preset import Preset


def load_preset(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Preset:
    """Read, override and validate a preset file; every failure is one PresetError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file; list presets with `ls presets/`") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PresetError(f"{path}: cannot read the preset ({error})") from None
    return parse_preset(
        text, source=str(path), overrides=overrides, default_name=path.stem, folder=path.parent
    )


def parse_preset(
    text: str,
    source: str = "<preset>",
    overrides: list[str] | tuple[str, ...] = (),
    default_name: str = "preset",
    folder: Path | None = None,
) -> Preset:
    """Validate preset TOML text; `source` is the file name used in error messages, `folder`
    the preset's folder (where a kind = "module" factory is looked for first)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PresetError(
            f"{source}: invalid TOML: {error}. Fix the syntax at that line."
        ) from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise PresetError(f"{source}: invalid TOML: nested too deeply") from None
    for override in overrides:
        _apply_override(raw, override, source)
    raw.setdefault("name", _safe_name(default_name))
    try:
        preset = Preset.model_validate(raw)
    except ValidationError as error:
        raise PresetError(_describe(error, source)) from None
    except (ValueError, OverflowError) as error:
        raise PresetError(f"{source}: {error}") from None
    return _with_factory_folder(preset, source, folder)


def _with_factory_folder(preset: Preset, source: str, folder: Path | None) -> Preset:
    """A kind = "module" preset with network.path set to the absolute folder its factory's
    module was found in (the file is read, never imported), so a copy of the preset elsewhere
    (CACHE/presets, a SLURM node) finds the same code; other presets as they are."""
    network = preset.network
    if network.factory is None:
        return preset
    from gamma_tui.factories import FactoryError, locate

    base = folder if folder is not None else Path.cwd()
    folders = [str(base / network.path)] if network.path else [str(base)]
    try:
        found = locate(network.factory, folders)
    except FactoryError as error:
        raise PresetError(f"{source}: key 'network.factory': {error}") from None
    update = {"network": network.model_copy(update={"path": str(found.root)})}
    resolved = preset.model_copy(update=update)
    resolved.module_digest  # noqa: B018 -- read the file now: a problem is a preset error
    return resolved


def _apply_override(raw: dict[str, Any], override: str, source: str) -> None:
    """Apply one `key.path=value` override; the value is read as TOML, else as a string."""
    key, sep, value_text = override.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(k.strip() for k in keys):
        raise PresetError(f"--set {override!r}: expected KEY.PATH=VALUE, e.g. train.steps=2000")
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    except RecursionError:
        raise PresetError(f"--set {key}: the value is nested too deeply") from None
    node = raw
    for part in keys[:-1]:
        child = node.setdefault(part.strip(), {})
        if not isinstance(child, dict):
            raise PresetError(f"{source}: --set {key}: '{part}' is a value, not a table")
        node = child
    node[keys[-1].strip()] = value


def _describe(error: ValidationError, source: str) -> str:
    """One readable message for a pydantic error: file, key path, problem and a fix."""
    lines = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: key '{loc}': {_hint(item)}")
    return "\n".join(lines)


def _hint(item: Any) -> str:
    """The problem and a fix for one pydantic error item."""
    kind, message = item["type"], item["msg"]
    value = item.get("input")
    if kind == "extra_forbidden":
        key = item["loc"][-1]
        if len(item["loc"]) > 1 and key in Preset.model_fields:
            annotation = Preset.model_fields[key].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                return f"unknown key here; '{key}' is a table of its own: start it with [{key}]"
            return (
                f"unknown key here; '{key}' is a top-level key: move it above "
                "the first [table] header"
            )
        return "unknown key; remove it or check its spelling against presets/quickstart.toml"
    if kind == "missing":
        return "required key is missing; add it (see presets/quickstart.toml)"
    if kind == "literal_error":
        return f"{message} (got {value!r})"
    if kind == "value_error":
        return str(message).removeprefix("Value error, ")
    return f"{message} (got {value!r})"


def _safe_name(stem: str) -> str:
    """A valid preset name derived from a file stem."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).lstrip("._-")
    return (cleaned or "preset")[:64]
