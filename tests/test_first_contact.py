"""What a new user meets first: --help stays light, the report's missing extra is named."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_help_imports_neither_numpy_nor_pydantic() -> None:
    """--help's budget (0.3 s in the design) leaves no room for numpy or pydantic."""
    code = (
        "import sys; from typer.testing import CliRunner; from gamma_tui.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('numpy', 'pydantic', 'torch') if m in sys.modules))"
    )
    done = run_python(code)
    assert done.stdout.strip() == "[]", done.stderr


def test_report_without_matplotlib_names_the_extra(tmp_path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.argv = ['gamma-tui', 'report', "
        f"'some-sweep', '-o', {str(tmp_path / 'out')!r}, '--cache', {str(tmp_path / 'runs')!r}]; "
        "from gamma_tui.cli import app; app()"
    )
    done = run_python(code)
    assert done.returncode == 2, done.stderr
    assert "pip install -e '.[report]'" in " ".join(done.stderr.split()), done.stderr
