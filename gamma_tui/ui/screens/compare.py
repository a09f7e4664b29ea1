"""The compare screen (key 5): the sweeps marked in the run browser, side by side.

η*(γ) (solid) and η_div(γ) (dashed) of every marked sweep in its colour with its fitted lazy
and rich lines (dim) and the theory guides (grey, dashed), the slope table below, and the
difference heatmap when the first two marked sweeps share (γ, η) cells. Live: the screen
re-reads the cache while it is shown and the data has changed.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from gamma_tui.cache import Cache, CacheError
from gamma_tui.ui.canvas import RGB
from gamma_tui.ui.compare_view import (
    Comparison,
    draw_difference,
    draw_eta_plot,
    eta_plot_model,
    load_comparison,
    slope_table,
)
from gamma_tui.ui.messages import ClearMarks
from gamma_tui.ui.state import UiState
from gamma_tui.ui.widgets import CanvasView, show_text

REFRESH_SECONDS = 1.0
"""How often the screen checks the cache for new data while it is shown."""


class EtaPlot(CanvasView):
    """η*(γ) and η_div(γ) of the marked sweeps on log-log axes."""

    draw = staticmethod(draw_eta_plot)


class DifferenceView(CanvasView):
    """Δ log10 loss of the first two marked sweeps per (γ, η) cell."""

    draw = staticmethod(draw_difference)


class ComparisonReady(Message):
    """A comparison read off the UI thread."""

    def __init__(self, comparison: Comparison, key: tuple[object, ...]) -> None:
        super().__init__()
        self.comparison = comparison
        """What to show."""
        self.key = key
        """The marked sweeps and data version it was built for."""


class CompareScreen(Screen[None]):
    """The marked sweeps' η*(γ), η_div(γ), slopes and cell differences."""

    BINDINGS = [
        Binding("c", "clear", "unmark all"),
        Binding("r", "reload", "reload"),
    ]

    def __init__(self, state: UiState) -> None:
        super().__init__(id="compare")
        self.state = state
        """What the app knows (read only: actions go to the app as messages)."""
        self.comparison: Comparison | None = None
        """What is on screen."""
        self._key: tuple[object, ...] | None = None
        self._loading = False

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        with Horizontal(id="compare-top"):
            with Vertical(id="compare-plot-panel", classes="panel") as plot:
                plot.border_title = "η*(γ) solid · η_div(γ) dashed · fits dim · theory grey"
                yield EtaPlot(id="compare-plot")
            with Vertical(id="compare-diff-panel", classes="panel") as diff:
                diff.border_title = "Δ log10 loss"
                yield DifferenceView(id="compare-diff")
        yield Static(id="compare-table", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        """Poll while shown."""
        self.set_interval(REFRESH_SECONDS, self._refresh)

    def on_screen_resume(self) -> None:
        """Read the marked sweeps again when the screen is shown."""
        self._refresh()

    def _marked(self) -> list[tuple[str, RGB]]:
        """The marked sweeps with their colours, in marking order."""
        return list(self.state.marked.items())

    def _refresh(self) -> None:
        """Start a read if the marks changed or the cache may have (one read at a time)."""
        if not self.is_current or self._loading:
            return
        self._loading = True
        self._load(self._marked())

    def action_reload(self) -> None:
        """Read the cache again now."""
        self._key = None
        self._refresh()

    def action_clear(self) -> None:
        """Unmark every sweep (the app clears the marks, then calls marks_changed)."""
        self.post_message(ClearMarks())

    def marks_changed(self) -> None:
        """The marks changed: read the marked sweeps again."""
        self._key = None
        self._refresh()

    @work(thread=True, exclusive=True, group="compare")
    def _load(self, marked: list[tuple[str, RGB]]) -> None:
        """Analyse the marked sweeps with this thread's cache connection if their runs changed."""
        try:
            with Cache(self.state.cache_dir) as cache:
                key = (tuple(marked), _progress_key(cache, [name for name, _ in marked]))
                if key == self._key:
                    self._loading = False
                    return
                comparison = load_comparison(cache, marked)
        except CacheError:
            self._loading = False
            return
        self.post_message(ComparisonReady(comparison, key))

    def on_comparison_ready(self, message: ComparisonReady) -> None:
        """Show a new comparison."""
        self._loading = False
        self._key = message.key
        self.apply(message.comparison)

    def apply(self, comparison: Comparison) -> None:
        """Draw a comparison."""
        self.comparison = comparison
        plot = self.query_one("#compare-plot", EtaPlot)
        plot.show(eta_plot_model(comparison, *plot.rgb_colors()))
        self.query_one("#compare-diff", DifferenceView).show(comparison)
        self.query_one("#compare-diff-panel").display = (
            comparison.summary.get("difference") is not None
        )
        table = self.query_one("#compare-table", Static)
        names = ", ".join(s.name for s in comparison.sweeps) or "none marked"
        table.border_title = f"slopes, 95% intervals (theory) · {names}"
        show_text(table, slope_table(comparison, self.size.width - 4), layout=True)


def _progress_key(cache: Cache, names: list[str]) -> tuple[object, ...]:
    """What changes whenever a marked sweep gains steps, a run changes state or a sweep goes.

    (SQLite's data_version is per connection, and this thread opens a new one per read.)
    """
    known = {info.name for info in cache.sweeps()}
    key: list[object] = []
    for name in names:
        if name not in known:
            key.append((name, None))
            continue
        runs = cache.runs(name)
        key.append(
            (name, len(runs), sum(r.steps_done for r in runs), sorted(r.state for r in runs))
        )
    return tuple(key)
