"""The commands that open the app: in this terminal (no command) or to web browsers (`serve`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from gamma_tui.cli.common import (
    DEFAULT_PRESET,
    CacheOption,
    PresetOption,
    PresetsOption,
    err,
    user_errors,
)


def main_callback(
    ctx: typer.Context,
    cache: CacheOption = None,
    preset: PresetOption = DEFAULT_PRESET,
    presets: PresetsOption = None,
) -> None:
    """Open the app when no command is given."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from gamma_tui.cache import default_cache_dir
        from gamma_tui.ui.app import run_app

        run_app(cache_dir=cache or default_cache_dir(), preset=preset, preset_dirs=presets or [])


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; loopback by default.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    public_url: Annotated[
        str | None,
        typer.Option(help="The URL browsers use, if not http://HOST:PORT (a tunnel's port)."),
    ] = None,
    cache: CacheOption = None,
    preset: PresetOption = DEFAULT_PRESET,
    presets: PresetsOption = None,
) -> None:
    """Serve the app to a web browser (textual-serve); one app per browser tab, on this cache."""
    from gamma_tui.config import PresetError
    from gamma_tui.serve import exposure_warning
    from gamma_tui.serve import serve as serve_app

    with user_errors():
        warning = exposure_warning(host, port)
        if warning:
            err.print(f"[bold red]{escape(warning)}[/]")
        try:
            from gamma_tui.cache import default_cache_dir

            serve_app(cache or default_cache_dir(), preset, presets or [], host, port, public_url)
        except ImportError as error:
            raise PresetError(
                f"`serve` needs textual-serve ({error}); install it with: pip install -e '.[serve]'"
            ) from None
        except OSError as error:
            raise PresetError(
                f"--host {host} --port {port}: cannot listen there ({error})"
            ) from None
