"""`gamma-tui serve`: the app through textual-serve, loaded in a real headless chromium
(Debian's, driven by playwright; no browser download, no network beyond loopback)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from support import ROOT, SMOKE, tiny_preset_text

from gamma_tui.cache import Cache
from gamma_tui.config import parse_preset
from gamma_tui.runner import register
from gamma_tui.serve import app_command, exposure_warning, is_loopback, package_pythonpath


def test_loopback_hosts_are_recognised() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))
    assert exposure_warning("127.0.0.1", 8000) is None
    warning = exposure_warning("0.0.0.0", 8123)
    assert warning and "no authentication" in warning and "ssh -L 8123:127.0.0.1:8123" in warning


def test_sessions_run_this_gamma_tui_on_the_same_cache(tmp_path: Path) -> None:
    relative = Path("presets/smoke.toml")  # relative to where serve was started
    command = app_command(tmp_path / "runs", relative, [tmp_path / "more"])
    assert command.startswith(f"{sys.executable} -m gamma_tui --cache {tmp_path / 'runs'}")
    assert f"--preset {relative.resolve()}" in command and relative.resolve().is_absolute()
    assert f"--presets {tmp_path / 'more'}" in command
    assert package_pythonpath().split(os.pathsep)[0] == str(ROOT)


def test_non_loopback_host_warns_and_a_bad_address_is_one_error(tmp_path: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is not this machine's: the warning is printed, then binding
    fails with one line and exit 2 (nothing is exposed)."""
    pytest.importorskip("textual_serve")
    done = subprocess.run(
        [sys.executable, "-m", "gamma_tui", "serve", "--host", "192.0.2.1", "--port", "8765"]
        + ["--cache", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2, done.stderr
    assert "WARNING: serving on 192.0.2.1:8765" in done.stderr
    assert "cannot listen there" in done.stderr and "Traceback" not in done.stderr


def chromium() -> str:
    """Debian's chromium, or skip."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, server: subprocess.Popen, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    pytest.fail(f"gamma-tui serve did not listen on port {port}")


def app_processes(cache: Path) -> list[int]:
    """Pids of processes whose command line names the test's cache (the served apps)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(cache) in (entry / "cmdline").read_bytes().decode():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_browser_shows_the_dashboard(tmp_path: Path) -> None:
    """The page connects, the launcher draws; key 2 opens the dashboard, whose panels' titles
    arrive in the terminal stream; key 4 lists the sweep registered in the server's cache;
    the screens are saved and are not blank."""
    executable = chromium()
    pytest.importorskip("textual_serve")
    sync_api = pytest.importorskip("playwright.sync_api")
    image = pytest.importorskip("PIL.Image")
    port, cache = free_port(), tmp_path / "runs"
    text = 'name = "browser-check"\n' + tiny_preset_text()
    with Cache(cache) as store:
        register(store, parse_preset(text), text)  # queued runs: the run browser lists them
    server = subprocess.Popen(
        [sys.executable, "-m", "gamma_tui", "serve", "--port", str(port)]
        + ["--cache", str(cache), "--preset", str(SMOKE)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    received: list[str] = []
    outside: list[str] = []

    def seen(text: str, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while text not in "".join(received):
            assert time.monotonic() < deadline, f"{text!r} never drawn"
            page.wait_for_timeout(200)

    try:
        wait_listening(port, server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 800})

            def loopback_only(route: object) -> None:
                url = route.request.url  # type: ignore[attr-defined]
                if urlparse(url).hostname == "127.0.0.1":
                    route.continue_()  # type: ignore[attr-defined]
                else:  # the page asks for a web font: refused, the terminal falls back
                    outside.append(url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", loopback_only)

            def on_socket(socket_: object) -> None:
                def frame(payload: str | bytes) -> None:
                    data = payload if isinstance(payload, bytes) else payload.encode()
                    received.append(data.decode("utf-8", errors="replace"))

                socket_.on("framereceived", frame)  # type: ignore[attr-defined]

            page.on("websocket", on_socket)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.body.classList.contains('-first-byte')")
            seen("presets")
            seen("Start sweep")
            page.wait_for_timeout(1000)  # let the terminal paint what arrived
            page.screenshot(path=tmp_path / "launcher.png")
            received.clear()
            page.locator(".xterm-screen").click()
            page.keyboard.press("2")
            seen("phase portrait")
            seen("loss curves")
            page.wait_for_timeout(1000)
            page.screenshot(path=tmp_path / "dashboard.png")
            received.clear()
            page.keyboard.press("4")
            seen("browser-check")
            page.wait_for_timeout(1000)
            page.screenshot(path=tmp_path / "runs.png")
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert all(urlparse(url).hostname != "127.0.0.1" for url in outside)
    for name in ("launcher.png", "dashboard.png", "runs.png"):
        pixels = image.open(tmp_path / name).convert("RGB")
        background = pixels.getpixel((2, 2))
        colours = pixels.getcolors(maxcolors=1 << 20) or []
        drawn = sum(count for count, colour in colours if colour != background)
        assert len(colours) > 8 and drawn > 0.01 * pixels.width * pixels.height, name
    deadline = time.monotonic() + 20
    while app_processes(cache) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert app_processes(cache) == []  # the session's app ended with the browser
