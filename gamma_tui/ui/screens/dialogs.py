"""Modal dialogs: confirmation, quitting with workers running, and the help screen."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Static

from gamma_tui.ui.text import heat_legend


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y/enter answers yes, n/escape no."""

    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        """The question, rich markup."""
        self.labels = (yes, no)
        """Button labels."""

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.labels[0]} (y)", variant="error", id="yes")
                yield Button(f"{self.labels[1]} (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        """Set up once the widgets exist."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Buttons do what their keys do."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


class QuitScreen(ModalScreen[str | None]):
    """Quit while this app's workers train: stop them, leave them running, or stay."""

    BINDINGS = [
        Binding("s", "choose('stop')", "stop & quit"),
        Binding("l", "choose('leave')", "leave running"),
        Binding("escape,c", "choose(None)", "cancel"),
    ]

    def __init__(self, sweeps: list[str]) -> None:
        super().__init__(classes="dialog-screen")
        self.sweeps = sweeps
        """Sweeps whose drivers this app started and that still run."""

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        names = ", ".join(self.sweeps)
        with Vertical(classes="dialog"):
            yield Static(
                f"Workers started here are still training [b]{names}[/].\n\n"
                "Stop them (they checkpoint; `gamma-tui run` or the launcher resumes them), or "
                "leave them running and reopen the app later to watch?",
                classes="question",
            )
            with Horizontal(classes="buttons"):
                yield Button("Stop & quit (s)", variant="error", id="stop")
                yield Button("Leave running (l)", variant="success", id="leave")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        """Set up once the widgets exist."""
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Buttons do what their keys do."""
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        """Close with the choice."""
        self.dismiss(choice)


SCREEN_NAMES = {
    "launcher": "Launcher (1)",
    "dashboard": "Dashboard (2)",
    "collapse": "Collapse (3)",
    "browser": "Run browser (4)",
}
"""Title of each screen in the help."""


class HelpScreen(ModalScreen[None]):
    """Every key binding of every screen, and what the heatmap's marks mean."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, screens: dict[str, Screen[None]], app_bindings: list[Binding]) -> None:
        super().__init__(classes="dialog-screen")
        self.screens = screens
        """The app's screens, by name."""
        self.app_bindings = app_bindings
        """Bindings that work everywhere."""

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        with VerticalScroll(classes="dialog help"):
            yield Static(Text("gamma-tui: keys", style="bold"), classes="question")
            yield Static(self._text())
            yield Static(heat_legend((-2.0, 0.0), True, 3, False))
            yield Static(
                Text("escape closes this help · ctrl+p opens the command palette", style="dim")
            )

    def _text(self) -> Table:
        """A table of keys per screen."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        table.add_row(Text("everywhere", style="bold underline"), "")
        for app_binding in self.app_bindings:
            table.add_row(_keys(app_binding.key), app_binding.description)
        for name, screen in self.screens.items():
            table.add_row("", "")
            table.add_row(Text(SCREEN_NAMES.get(name, name), style="bold underline"), "")
            for item in screen.BINDINGS:
                if isinstance(item, Binding) and item.description:
                    table.add_row(_keys(item.key), item.description + _extra(item))
        return table


def _keys(key: str) -> str:
    """Readable key names: 'left_square_bracket,less_than_sign' -> '[ <'."""
    names = {
        "left_square_bracket": "[",
        "right_square_bracket": "]",
        "less_than_sign": "<",
        "greater_than_sign": ">",
        "question_mark": "?",
        "slash": "/",
        "plus": "+",
        "minus": "−",
        "equals_sign": "=",
        "underscore": "_",
        "escape": "esc",
    }
    return " ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


def _extra(binding: Binding) -> str:
    """Longer explanations for a few bindings."""
    return {
        "toggle_family": ": curves of the cursor's γ column (colored by η) or η row (by γ)",
        "cycle_map": ": color by log10 loss, or by log10 step size × λ_max (white at the edge"
        " 2; ? = no λ); the curves then show λ(t)",
        "toggle_guides": ": lines η ∝ γ², η ∝ γ^(2/L), η ∝ γ through η* nearest γ = 1",
        "step(-1)": ": the step t the heatmap shows (log-spaced; last = latest record)",
        "stop": ": SIGTERM the workers this app started (runs keep checkpoints)",
        "fit": ": k that best collapses t·η·γ^-k (analysis.fit_collapse_k)",
        "start": ": writes edited knobs to CACHE/presets/NAME.toml and starts a worker driver",
    }.get(binding.action, "")
