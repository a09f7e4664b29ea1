"""The layering of gamma_tui, checked from the source (docs/architecture.md, "Layers").

Every import statement counts: at module level, inside functions (deferred) and under
`if TYPE_CHECKING:`, because a deferred import is still a dependency and a cycle hidden by one
is still a cycle. The checker is tested on small synthetic packages first, so a contract that
silently stopped checking anything would fail here too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "gamma_tui"
MAX_MODULE_LINES = 500
TORCH_OWNERS = ("gamma_tui.engine", "gamma_tui.nn")
"""Only the engine imports torch (gamma_tui.nn holds the public building blocks of users'
models, which run inside the engine's workers)."""
UI_MUST_NOT_IMPORT = ("gamma_tui.engine", "gamma_tui.runner", "gamma_tui.backends")
PURE_MODULES = ("gamma_tui.analysis", "gamma_tui.schedule", "gamma_tui.states")
"""Arrays in, results out: no files, databases, processes or sockets."""
IO_MODULES = (
    "os", "io", "pathlib", "sqlite3", "json", "shutil", "subprocess", "socket", "tomllib",
    "zipfile", "gamma_tui.cache", "gamma_tui.results", "gamma_tui.datasets",
    "gamma_tui.processes", "gamma_tui.runner", "gamma_tui.backends",
)  # fmt: skip


@dataclass(frozen=True)
class Imports:
    """What one module imports: every module name it names, and the gamma_tui ones."""

    external: frozenset[str]
    internal: frozenset[str]


def module_sources(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> Imports:
    """Every import of a module, module-level, deferred and TYPE_CHECKING alike."""
    known = set(known)
    is_package = path.name == "__init__.py"
    external, internal = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            # `from package import submodule` depends on the submodule, not the package
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = submodules if len(submodules) == len(node.names) else [base, *submodules]
        else:
            continue
        external.update(targets)
        internal.update(t for t in targets if t in known and t != name)
    return Imports(frozenset(external), frozenset(internal))


def import_graph(package: Path) -> dict[str, Imports]:
    """The imports of every module of the package."""
    sources = module_sources(package)
    return {name: imports_of(name, path, sources) for name, path in sources.items()}


def cycles(graph: dict[str, Imports]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node].internal):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def within(name: str, prefixes: Iterable[str]) -> bool:
    """Whether a dotted name is one of the prefixes or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(graph: dict[str, Imports]) -> list[str]:
    """Every broken contract, one line each."""
    broken = []
    for name, imports in sorted(graph.items()):
        if not within(name, TORCH_OWNERS) and any(within(m, ["torch"]) for m in imports.external):
            broken.append(f"{name} imports torch (only {', '.join(TORCH_OWNERS)} may)")
        if within(name, ["gamma_tui.ui"]):
            for target in sorted(imports.internal):
                if within(target, UI_MUST_NOT_IMPORT):
                    broken.append(f"{name} imports {target} (the ui reads the cache only)")
        if within(name, PURE_MODULES):
            for target in sorted(imports.external):
                if within(target, IO_MODULES):
                    broken.append(f"{name} imports {target} (analysis does no I/O)")
    broken += [f"import cycle: {' <-> '.join(group)}" for group in cycles(graph)]
    return broken


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A synthetic gamma_tui package under root from {relative path: source}."""
    for relative, source in files.items():
        path = root / "gamma_tui" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "gamma_tui"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # a cycle hidden by a deferred import
            {"__init__.py": "", "a.py": "import gamma_tui.b\n",
             "b.py": "def f():\n    from gamma_tui import a\n"},
            "import cycle: gamma_tui.a <-> gamma_tui.b",
        ),
        (  # a cycle hidden under TYPE_CHECKING, with a relative import
            {"__init__.py": "", "ui/__init__.py": "", "ui/app.py": "from . import screen\n",
             "ui/screen.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
             "    from .app import App\n"},
            "import cycle: gamma_tui.ui.app <-> gamma_tui.ui.screen",
        ),
        (
            {"__init__.py": "", "runner.py": "", "ui/__init__.py": "",
             "ui/view.py": "def f():\n    from gamma_tui.runner import x\n"},
            "gamma_tui.ui.view imports gamma_tui.runner (the ui reads the cache only)",
        ),
        (
            {"__init__.py": "", "report.py": "import torch.nn\n"},
            "gamma_tui.report imports torch (only gamma_tui.engine, gamma_tui.nn may)",
        ),
        (
            {"__init__.py": "", "analysis.py": "from pathlib import Path\n"},
            "gamma_tui.analysis imports pathlib (analysis does no I/O)",
        ),
    ],
)  # fmt: skip
def test_the_checker_finds_each_kind_of_violation(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    assert violations(import_graph(write_package(tmp_path, files))) == [expected]


def test_the_checker_accepts_a_clean_package(tmp_path: Path) -> None:
    files = {
        "__init__.py": "",
        "engine/__init__.py": "import torch\nfrom gamma_tui import analysis\n",
        "analysis.py": "import math\nimport numpy\n",
        "ui/__init__.py": "",
        "ui/app.py": "from gamma_tui import cache, analysis\n",
        "cache.py": "import sqlite3\n",
    }
    graph = import_graph(write_package(tmp_path, files))
    assert graph["gamma_tui.ui.app"].internal == {"gamma_tui.cache", "gamma_tui.analysis"}
    assert violations(graph) == []


def test_gamma_tui_keeps_its_layers() -> None:
    graph = import_graph(PACKAGE_ROOT)
    assert len(graph) > 40  # the real package was found
    assert violations(graph) == []


def test_no_module_is_over_500_lines() -> None:
    lengths = {
        name: len(path.read_text().splitlines())
        for name, path in module_sources(PACKAGE_ROOT).items()
    }
    assert max(lengths.values()) > 100  # the real package was measured
    assert {n: k for n, k in lengths.items() if k > MAX_MODULE_LINES} == {}
