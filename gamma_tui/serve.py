"""`gamma-tui serve`: the Textual app in a web browser, through textual-serve (extra `[serve]`).

textual-serve runs a small aiohttp server; each browser tab that connects gets its own app,
started as a subprocess from a shell command and drawn by xterm.js over a websocket. The
command is this interpreter running this copy of gamma_tui (PYTHONPATH names the folder it was
imported from, so a worktree serves itself, not an installed copy) with the cache and presets
resolved to absolute paths, so every tab shows the same cache as the server's own options.

There is no authentication: whoever reaches the port gets the app, which can start training
and delete sweeps. The default host is loopback; reach it from a laptop through an SSH tunnel.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import sys
from pathlib import Path

import gamma_tui

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1 or localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to any interface
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for a host other machines can reach (None for loopback)."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: serving on {host}:{port}, which other machines can reach. textual-serve has "
        "no authentication: anyone who connects gets the app and can start training or "
        "delete sweeps in this cache. Prefer the default --host 127.0.0.1 and an SSH tunnel: "
        f"ssh -L {port}:127.0.0.1:{port} THIS_HOST, then open http://127.0.0.1:{port}"
    )


def app_command(cache_dir: Path, preset: Path, preset_dirs: list[Path]) -> str:
    """The shell command textual-serve runs for each browser session: the app on this cache."""
    argv = [sys.executable, "-m", "gamma_tui", "--cache", str(cache_dir.resolve())]
    argv += ["--preset", str(preset.resolve())]
    for folder in preset_dirs:
        argv += ["--presets", str(folder.resolve())]
    return shlex.join(argv)


def package_pythonpath() -> str:
    """PYTHONPATH for the app subprocesses: this gamma_tui's folder first, then the caller's."""
    here = str(Path(gamma_tui.__file__).resolve().parent.parent)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *rest])


def serve(
    cache_dir: Path,
    preset: Path,
    preset_dirs: list[Path],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    public_url: str | None = None,
) -> None:
    """Serve the app until interrupted (Ctrl+C or SIGTERM). Raises ImportError without
    textual-serve and OSError when the address cannot be bound."""
    from textual_serve.server import Server

    os.environ["PYTHONPATH"] = package_pythonpath()  # the sessions inherit the environment
    command = app_command(cache_dir, preset, preset_dirs)
    server = Server(command, host=host, port=port, title="gamma-tui", public_url=public_url)
    server.serve()
