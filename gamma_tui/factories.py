"""A `[network] kind = "module"` factory's code: where it lives, its digest, and its import.

`factory = "package.module:function"` names a function that builds the network. Its module is
looked for in `network.path` (default: the preset's folder), then on sys.path, by the same
path finders `import` uses but without executing anything: `locate` and `digest` only read
files, so listing, showing and browsing sweeps never run user code. The digest (SHA-256 of the
module's source file) is part of the run id, so an edited model never reuses runs trained by
the old code. `load` imports the function where training (or a preset check) needs it, from
the folder `locate` found, and refuses a file that changed since its runs were registered.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FACTORY_KEY = "network.factory"
"""The preset key every factory problem names."""

RESERVED_ARGUMENTS = ("input_shape", "outputs", "width")
"""Keyword arguments gamma-tui passes to every factory (network.kwargs may not repeat them)."""


class FactoryError(ValueError):
    """A factory that cannot be found, imported or used; the message says why and the fix."""


@dataclass(frozen=True)
class Located:
    """Where a factory's module was found: the sys.path folder and the module's file."""

    root: Path
    file: Path


def split(factory: str) -> tuple[str, str]:
    """('package.module', 'function') of 'package.module:function'."""
    module, _, function = factory.partition(":")
    return module, function


def locate(factory: str, folders: list[str]) -> Located:
    """The folder (first of `folders`, then sys.path) that holds the factory's top-level
    module or package, and the module's source file; nothing is imported or executed."""
    module, _ = split(factory)
    top, *rest = module.split(".")
    importlib.invalidate_caches()  # a file written a moment ago must be seen
    entries = [str(Path(f).resolve()) for f in folders] + [p or "." for p in sys.path]
    for entry in entries:
        spec = importlib.machinery.PathFinder.find_spec(top, [entry])
        if spec is None:
            continue
        name = top
        for part in rest:
            locations = spec.submodule_search_locations
            if locations is None:
                raise FactoryError(f"'{name}' in {entry} is a module, not a package")
            name = f"{name}.{part}"
            spec = importlib.machinery.PathFinder.find_spec(name, list(locations))
            if spec is None:
                raise FactoryError(f"package '{top}' in {entry} has no module '{name}'")
        if spec.origin is None or not Path(spec.origin).is_file():
            raise FactoryError(f"'{module}' in {entry} is a namespace package, not a file")
        return Located(Path(entry).resolve(), Path(spec.origin).resolve())
    where = " or ".join([*(str(Path(f).resolve()) for f in folders), "sys.path"])
    raise FactoryError(
        f"no module '{module}' in {where}; put {top}.py (or the package {top}/) beside the "
        "preset, set network.path to its folder, or add that folder to PYTHONPATH"
    )


def digest(file: Path) -> str:
    """16 hex digits of the SHA-256 of a source file."""
    try:
        data = file.read_bytes()
    except OSError as error:
        raise FactoryError(f"cannot read {file}: {error.strerror or error}") from None
    return hashlib.sha256(data).hexdigest()[:16]


_IMPORTED: dict[str, str] = {}
"""Module name -> digest of the file it was imported from, in this process (a long-lived Ray
worker must not keep an edited module's old code)."""


def load(factory: str, root: str, expected: str | None) -> Callable[..., Any]:
    """Import the factory's function from `root` (as `locate` found it); `expected` is the
    digest its runs were registered with (None: no check)."""
    module_name, function = split(factory)
    found = locate(factory, [root])
    actual = digest(found.file)
    if expected is not None and actual != expected:
        raise FactoryError(
            f"{found.file} changed since these runs were registered (digest {actual}, runs "
            f"{expected}); run `gamma-tui run` on the preset again to train the new code"
        )
    if str(found.root) not in sys.path:
        sys.path.insert(0, str(found.root))
    try:
        module = importlib.import_module(module_name)
        if _IMPORTED.get(module_name, actual) != actual:
            module = importlib.reload(module)
    except Exception as error:  # the user's code: any failure is a preset problem
        raise FactoryError(f"importing '{module_name}' failed: {one_line(error)}") from None
    _IMPORTED[module_name] = actual
    loaded = Path(getattr(module, "__file__", "") or "").resolve()
    if loaded != found.file:
        raise FactoryError(
            f"'{module_name}' was imported from {loaded}, not {found.file}: another module of "
            "that name comes first; rename the module or its package"
        )
    target = getattr(module, function, None)
    if target is None:
        raise FactoryError(f"module '{module_name}' ({found.file}) has no '{function}'")
    if not callable(target):
        raise FactoryError(
            f"'{function}' in {found.file} is a {type(target).__name__}, not callable"
        )
    return target


def one_line(error: BaseException) -> str:
    """`Type: message` on one line, at most 300 characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 300 else text[:297] + "..."
