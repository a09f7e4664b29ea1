"""The run browser: every sweep and run in the cache; filter, sort, open, delete, export."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from gamma_tui.cache import Cache, CacheError, RunInfo, SweepInfo
from gamma_tui.results import StoredSweep
from gamma_tui.states import DIVERGED, DONE, FAILED, QUEUED, RUNNING
from gamma_tui.ui.canvas import short_number
from gamma_tui.ui.compare_view import color_style
from gamma_tui.ui.data import Catalog
from gamma_tui.ui.messages import DeleteSweep, ExportSweep, OpenSweep, RunsLoaded, ToggleMark
from gamma_tui.ui.screens.dialogs import ConfirmScreen
from gamma_tui.ui.state import UiState
from gamma_tui.ui.text import loss_text, sweep_state

SORT_KEYS = ("updated", "sweep", "state", "runs", "model", "dataset")
"""Columns the sweep table can be sorted by, in the order `s` cycles through them."""


def sweep_row(sweep: SweepInfo) -> dict[str, str]:
    """The table cells of one sweep."""
    stored = StoredSweep.of(sweep)
    counts = sweep.counts
    return {
        "sweep": sweep.name,
        "state": sweep_state(counts),
        "runs": str(sweep.total),
        "done": str(counts.get(DONE, 0)),
        "div": str(counts.get(DIVERGED, 0)),
        "run": str(counts.get(RUNNING, 0)),
        "queued": str(counts.get(QUEUED, 0)),
        "fail": str(counts.get(FAILED, 0)),
        "model": stored.model,
        "dataset": stored.dataset,
        "steps": str(sweep.steps),
        "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(sweep.updated)),
    }


class BrowserScreen(Screen[None]):
    """Sweeps above, the highlighted sweep's runs below."""

    BINDINGS = [
        Binding("slash", "filter", "filter"),
        Binding("enter", "open", "open", priority=False),
        Binding("s", "sort", "sort"),
        Binding("S", "reverse", "reverse", show=False),
        Binding("d", "delete", "delete"),
        Binding("e", "export", "export CSV"),
        Binding("space", "mark", "mark (compare: 5)"),
        Binding("escape", "leave_filter", show=False),
    ]

    def __init__(self, state: UiState) -> None:
        super().__init__(id="browser")
        self.state = state
        """What the app knows (read only: actions go to the app as messages)."""
        self.sort_key = "updated"
        """Column the sweeps are sorted by."""
        self.descending = True
        """Sort order."""
        self.filter_text = ""
        """Only sweeps whose cells contain this text (case-insensitive)."""
        self._shown: list[str] = []
        self._runs_for: str | None = None

    def compose(self) -> ComposeResult:
        """The screen's widgets."""
        yield Input(
            placeholder="filter sweeps: name, model, dataset or state  (/ to focus)", id="filter"
        )
        yield DataTable(id="sweeps", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        """Set up once the widgets exist."""
        sweeps = self.query_one("#sweeps", DataTable)
        for column in sweep_row(_EMPTY):
            sweeps.add_column(column, key=column)
        runs = self.query_one("#runs", DataTable)
        for column in ("run", "γ", "η", "seed", "state", "steps", "last loss", "error"):
            runs.add_column(column, key=column)
        sweeps.border_title = "sweeps"
        runs.border_title = "runs"
        sweeps.focus()

    def on_screen_resume(self) -> None:
        """Catch up with data that arrived while another screen was shown."""
        self.apply_catalog(self.state.catalog)
        self.query_one("#sweeps", DataTable).focus()

    def apply_catalog(self, catalog: Catalog | None) -> None:
        """Refill the sweep table, keeping the highlighted sweep."""
        table = self.query_one("#sweeps", DataTable)
        current = self.highlighted()
        table.clear()
        rows = [sweep_row(s) for s in (catalog.sweeps if catalog else ())]
        needle = self.filter_text.lower()
        rows = [r for r in rows if not needle or any(needle in v.lower() for v in r.values())]
        rows.sort(key=self._sort_value, reverse=self.descending)
        self._shown = [r["sweep"] for r in rows]
        marked = self.state.marked
        for row in rows:
            cells: list[str | Text] = list(row.values())
            color = marked.get(row["sweep"])
            if color is not None:  # a marked sweep shows its compare colour
                cells[0] = Text("● " + row["sweep"], style="bold " + color_style(color))
            table.add_row(*cells, key=row["sweep"])
        if current in self._shown:
            table.move_cursor(row=self._shown.index(current))
        table.border_subtitle = f"{len(rows)} sweep(s) · sorted by {self.sort_key}" + (
            " ↓" if self.descending else " ↑"
        )
        if marked:
            table.border_subtitle = f"{len(marked)} marked (5 compares) · " + table.border_subtitle
        if catalog is not None:
            table.border_title = f"sweeps in {catalog.cache_root}"
        self._load_runs(self.highlighted())

    def _sort_value(self, row: dict[str, str]) -> tuple[int, object]:
        """Sort key of a row for the chosen column (numbers as numbers)."""
        value = row[self.sort_key]
        return (0, int(value)) if value.isdigit() else (1, value)

    def highlighted(self) -> str | None:
        """The sweep under the table cursor."""
        table = self.query_one("#sweeps", DataTable)
        if not self._shown or table.cursor_row < 0 or table.cursor_row >= len(self._shown):
            return None
        return self._shown[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show the runs of the highlighted sweep."""
        if event.data_table.id == "sweeps":
            self._load_runs(self.highlighted())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter opens the sweep."""
        if event.data_table.id == "sweeps":
            self.action_open()

    def _load_runs(self, sweep: str | None) -> None:
        """Fetch the highlighted sweep's runs off the UI thread."""
        self._runs_for = sweep
        if sweep is None:
            self.query_one("#runs", DataTable).clear()
            return
        self._fetch_runs(sweep)

    @work(thread=True, exclusive=True, group="runs")
    def _fetch_runs(self, sweep: str) -> None:
        """Read the runs of one sweep with a connection of this thread."""
        try:
            with Cache(self.state.cache_dir) as cache:
                runs = cache.runs(sweep)
        except CacheError:
            runs = []
        self.post_message(RunsLoaded(sweep, runs))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        """Fill the run table (if the sweep is still the highlighted one)."""
        if message.sweep != self._runs_for:
            return
        table = self.query_one("#runs", DataTable)
        table.clear()
        for run in message.runs:
            table.add_row(*_run_cells(run), key=run.run_id)
        table.border_title = f"runs of {message.sweep}"
        table.border_subtitle = f"{len(message.runs)} run(s)"

    def on_input_changed(self, event: Input.Changed) -> None:
        """Re-filter (browser) or re-validate (launcher) as the user types."""
        self.filter_text = event.value.strip()
        self.apply_catalog(self.state.catalog)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the filter goes back to the table."""
        self.query_one("#sweeps", DataTable).focus()

    def action_filter(self) -> None:
        """Focus the filter box."""
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        """Back from the filter box to the table."""
        self.query_one("#sweeps", DataTable).focus()

    def action_sort(self) -> None:
        """Sort by the next column."""
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.descending = self.sort_key in ("updated", "runs")
        self.apply_catalog(self.state.catalog)

    def action_reverse(self) -> None:
        """Reverse the sort order."""
        self.descending = not self.descending
        self.apply_catalog(self.state.catalog)

    def action_open(self) -> None:
        """Open the highlighted sweep in the dashboard."""
        sweep = self.highlighted()
        if sweep is not None:
            self.post_message(OpenSweep(sweep))

    def action_mark(self) -> None:
        """Mark the highlighted sweep for the compare screen (space again unmarks it)."""
        sweep = self.highlighted()
        if sweep is None:
            return
        self.post_message(ToggleMark(sweep))  # the app redraws this table with the new mark

    def action_export(self) -> None:
        """Export the highlighted sweep to CSV."""
        sweep = self.highlighted()
        if sweep is not None:
            self.post_message(ExportSweep(sweep))

    def action_delete(self) -> None:
        """Delete the highlighted sweep after a confirmation."""
        sweep = self.highlighted()
        if sweep is None:
            return
        info = self.state.catalog.find(sweep) if self.state.catalog else None
        warning = ""
        if info is not None and info.counts.get(RUNNING):
            warning = (
                "\n\nIt has running runs: stop its workers first (x on the dashboard), "
                "or they will keep writing to the cache."
            )

        def answer(yes: bool | None) -> None:
            """Delete only on yes."""
            if yes:
                self.post_message(DeleteSweep(sweep))

        self.app.push_screen(
            ConfirmScreen(
                f"Delete sweep [b]{sweep}[/] and the runs no other sweep uses? "
                f"Their curves and checkpoints are removed for good.{warning}",
                yes="Delete",
                no="Keep",
            ),
            answer,
        )


def _run_cells(run: RunInfo) -> tuple[str, ...]:
    """The table cells of one run."""
    return (
        run.run_id,
        short_number(run.gamma),
        short_number(run.eta),
        str(run.seed),
        run.state,
        f"{run.steps_done}/{run.steps_target}",
        loss_text(run.last_loss) if run.last_loss is not None else "–",
        (run.error or "")[:60],
    )


_EMPTY = SweepInfo("", None, "", {}, 0, 0.0, 0.0, {})
