"""engine/host_memory.py: malloc keeps freed memory on glibc, and the switch turns it off."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CALL = "from gamma_tui.engine.host_memory import retain_freed_memory as r; print(r(), r())"


def run(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CALL], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_retain_freed_memory_takes_effect_once_and_can_be_switched_off() -> None:
    assert run({}) == "True True"
    assert run({"GAMMA_TUI_RETAIN_MEMORY": "0"}) == "False False"
