"""The launcher: pick a preset, edit its main knobs with live validation, start the sweep."""

from __future__ import annotations

import time
from pathlib import Path

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, ListItem, ListView, Static
from textual.worker import get_current_worker

from gamma_tui.cache import CacheError
from gamma_tui.config import Preset, PresetError, load_preset, parse_preset
from gamma_tui.costs import flops_per_run, is_huge
from gamma_tui.ui.launch import KNOBS, dump_preset, estimate, knob_value, overrides
from gamma_tui.ui.messages import EstimateReady, StartSweep
from gamma_tui.ui.screens.dialogs import ConfirmScreen
from gamma_tui.ui.state import UiState

ESTIMATE_DEBOUNCE_SECONDS = 0.15
"""Typing pauses this long before the (threaded) work estimate runs."""


class LauncherScreen(Screen[None]):
    """Preset list, knobs, validation and estimate, TOML preview and the start action."""

    BINDINGS = [
        Binding("ctrl+s", "start", "start sweep", priority=True),
        Binding("ctrl+r", "reset", "reset knobs"),
        Binding("f5", "rescan", "rescan presets"),
        Binding("escape", "to_list", "preset list", show=False),
    ]

    def __init__(self, state: UiState) -> None:
        super().__init__(id="launcher")
        self.state = state
        """What the app knows (read only: actions go to the app as messages)."""
        self.paths: list[Path] = []
        """Preset files on the list."""
        self.path: Path | None = None
        """The selected preset file."""
        self.text = ""
        """Its TOML."""
        self.base: Preset | None = None
        """The preset as loaded (knob edits are overrides on it)."""
        self.edited: Preset | None = None
        """The preset with the knobs applied, None while invalid."""
        self.sets: list[str] = []
        """The knob edits as key=value overrides."""
        self._filling = False

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        with Horizontal(id="launch-main"):
            with Vertical(id="preset-side", classes="panel"):
                yield ListView(id="presets")
            with Vertical(id="launch-right"):
                with Grid(id="knobs", classes="panel"):
                    for key, label in KNOBS:
                        yield Label(label, classes="knob-label")
                        yield Input(
                            id="knob-" + key.replace(".", "-"),
                            classes="knob",
                            select_on_focus=False,
                        )
                yield Static(id="validation", classes="panel")
                with Horizontal(id="launch-actions"):
                    yield Button("▶ Start sweep (ctrl+s)", id="start", variant="success")
                    yield Static(id="launch-note")
                with VerticalScroll(id="preview", classes="panel"):
                    yield Static(id="toml")
        yield Footer()

    def on_mount(self) -> None:
        """Set up once the widgets exist."""
        self.query_one("#preset-side").border_title = "presets"
        self.query_one("#knobs").border_title = "main knobs"
        self.query_one("#validation").border_title = "grid and work"
        self.query_one("#preview").border_title = "preset"
        self.query_one("#knobs").set_class(self.app.size.width < 110, "narrow")
        for field in self.query(Input):
            field.cursor_blink = not self.app.is_headless
        self.action_rescan()
        self.query_one("#presets", ListView).focus()

    def on_resize(self) -> None:
        """Two knob columns at narrow widths, three at wide ones."""
        self.query_one("#knobs").set_class(self.size.width < 110, "narrow")

    def action_rescan(self) -> None:
        """Refill the preset list from the preset directories."""
        found = self.state.preset_files()
        self.paths = [path for path, _ in found]
        listing = self.query_one("#presets", ListView)
        listing.clear()
        for path, label in found:
            listing.append(ListItem(Label(label), name=str(path)))
        self.query_one("#preset-side").border_subtitle = f"{len(self.paths)} file(s)"
        if not self.paths:
            self._show_error("no presets found: put *.toml files in presets/ (see README)")
            return
        wanted = self.state.initial_preset
        index = next(
            (
                i
                for i, p in enumerate(self.paths)
                if wanted is not None and p.resolve() == wanted.resolve()
            ),
            0,
        )
        listing.index = index
        self.select(self.paths[index])

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        """Load the highlighted preset."""
        if event.item is not None and event.item.name:
            self.select(Path(event.item.name))

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        """Enter on a preset moves to its knobs."""
        self.query_one(".knob", Input).focus()

    def select(self, path: Path) -> None:
        """Load a preset into the knobs and the preview."""
        if path == self.path:
            return
        self.path = path
        self.query_one("#preview").border_title = str(path)
        try:
            self.text = path.read_text(encoding="utf-8")
            self.base = load_preset(path)
        except (PresetError, OSError) as error:
            self.base = self.edited = None
            self.query_one("#toml", Static).update(Syntax(self.text, "toml", theme="ansi_dark"))
            self._show_error(str(error))
            return
        self._filling = True
        for key, _ in KNOBS:
            self._input(key).value = knob_value(self.base, key)
            self._input(key).remove_class("-invalid")
        self._filling = False
        self.validate_knobs()

    def _input(self, key: str) -> Input:
        """The input of a knob."""
        return self.query_one("#knob-" + key.replace(".", "-"), Input)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Re-filter (browser) or re-validate (launcher) as the user types."""
        if not self._filling:
            self.validate_knobs()

    def validate_knobs(self) -> None:
        """Apply the knobs to the preset with parse_preset; show errors inline or the estimate."""
        if self.base is None or self.path is None:
            return
        values = {key: self._input(key).value for key, _ in KNOBS}
        self.sets = overrides(self.base, values)
        for key, _ in KNOBS:
            self._input(key).remove_class("-invalid")
        try:
            self.edited = parse_preset(
                self.text,
                source=self.path.name,
                overrides=self.sets,
                default_name=self.path.stem,
                folder=self.path.parent,  # where a kind = "module" factory is looked for first
            )
        except PresetError as error:
            self.edited = None
            for key, _ in KNOBS:
                if f"'{key}" in str(error) or f"--set {key}" in str(error):
                    self._input(key).add_class("-invalid")
            self._show_error(str(error))
            return
        preview = dump_preset(self.edited) if self.sets else self.text
        if self.sets:
            preview = (
                f"# edited ({', '.join(self.sets)}); starting writes this to "
                f"CACHE/presets/{self.edited.name}.toml\n" + preview
            )
        self.query_one("#toml", Static).update(
            Syntax(preview, "toml", theme="ansi_dark", word_wrap=True)
        )
        self.query_one("#validation", Static).update(
            Text.from_markup(
                f"[green]✓ valid[/] · [b]{self.edited.name}[/] · "
                f"{self.edited.run_count()} runs · counting cached runs…"
            )
        )
        self.query_one("#start", Button).disabled = False
        self._estimate(self.edited)

    def _show_error(self, message: str) -> None:
        """An inline error instead of the estimate; starting is disabled."""
        text = Text("✗ ", style="bold red")
        text.append(message, style="red")
        self.query_one("#validation", Static).update(text)
        self.query_one("#start", Button).disabled = True

    @work(thread=True, exclusive=True, group="estimate")
    def _estimate(self, preset: Preset) -> None:
        """Count cached runs and estimate the work off the UI thread (after a typing pause)."""
        time.sleep(ESTIMATE_DEBOUNCE_SECONDS)
        if get_current_worker().is_cancelled:
            return
        key = preset.model_dump_json()
        try:
            line = estimate(self.state.cache_dir, preset)
        except CacheError as error:
            line = f"[red]cache: {error}[/]"
        self.post_message(EstimateReady(key, line))

    def on_estimate_ready(self, message: EstimateReady) -> None:
        """Show the estimate if it is for the preset as it is now."""
        if self.edited is None or self.edited.model_dump_json() != message.key:
            return
        self.query_one("#validation", Static).update(
            Text.from_markup(f"[green]✓ valid[/] · [b]{self.edited.name}[/] · {message.text}")
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Buttons do what their keys do."""
        if event.button.id == "start":
            self.action_start()

    def action_start(self) -> None:
        """Start the sweep in a detached worker driver."""
        if self.edited is None or self.path is None:
            self.app.notify("fix the preset first (see the red message)", severity="error")
            return
        preset, path, edited = self.edited, self.path, bool(self.sets)
        if not is_huge(preset):
            self.post_message(StartSweep(path, preset, edited))
            return
        flops = flops_per_run(preset) * preset.run_count()

        def answer(yes: bool | None) -> None:
            """Start only on yes."""
            if yes:
                self.post_message(StartSweep(path, preset, edited))

        self.app.push_screen(
            ConfirmScreen(
                f"[b]{preset.name}[/] is a huge sweep: {preset.run_count():,} runs, about "
                f"{flops:.1e} FLOPs (hours on a CPU; cached runs and the η cut-off reduce it). "
                "Start it?",
                yes="Start",
                no="Back",
            ),
            answer,
        )

    def action_reset(self) -> None:
        """Put the knobs back to the preset's values."""
        if self.path is not None:
            path, self.path = self.path, None
            self.select(path)

    def action_to_list(self) -> None:
        """Leave a knob and go back to the preset list."""
        self.query_one("#presets", ListView).focus()
