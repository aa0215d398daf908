"""The runs view: every run of the listing, filterable and sortable, with a status bar.

Keys open a run's detail (Enter), the compare view (c), retry (R) and cancel (x) — the last two
are the app's (`ScreenHost.retry` / `ask_cancel`), which asks its controller.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input

from ncbench.listing import RunRow, status_counts
from ncbench.tui.ports import DbScreen
from ncbench.tui.rows import SORT_KEYS, RunFilter, sort_rows
from ncbench.tui.screens.compare import CompareScreen
from ncbench.tui.screens.detail import RunDetailScreen
from ncbench.tui.widgets import RunsTable, StatusBar

__all__ = ["RunsScreen"]


class RunsScreen(DbScreen):
    """Every run of the config and the database, filterable and sortable."""

    BINDINGS = [
        Binding("c", "compare", "Compare"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("R", "retry", "Retry"),
        Binding("x", "cancel", "Cancel"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = RunFilter()
        self.sort_key = "config"
        self.reverse = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusBar(id="status-bar")
        yield Input(placeholder="filter: loss:ce status:running,failed exp:demo width:2 "
                    "!status:done  word", id="filter")
        yield RunsTable(id="runs")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "runs"
        self.query_one("#filter", Input).display = False
        self.query_one(RunsTable).focus()
        self.runs_changed()

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def visible_rows(self) -> list[RunRow]:
        rows = [r for r in self.host.runs.values() if self.filter(r)]
        return sort_rows(rows, self.sort_key, self.reverse)

    def runs_changed(self) -> None:
        host = self.host
        rows = self.visible_rows()
        self.table.show(rows, host.now())
        info: list[str | Text] = [host.queue_state()]
        total = len(host.runs)
        if self.filter.text.strip():
            style = "bold red" if self.filter.error else "bold"
            info.append(Text(f"filter: {self.filter.text.strip()} ({len(rows)}/{total})",
                             style=style))
        else:
            info.append(f"{total} runs")
        info.append(f"sort: {self.sort_key} {'↓' if self.reverse else '↑'}")
        if host.db_note:
            info.append(Text(host.db_note, style="italic"))
        self.query_one(StatusBar).update_state(status_counts(host.runs.values(), zeros=True), info)

    # -- actions ----------------------------------------------------------------------------
    def action_open_run(self) -> None:
        run_id = self.table.current_run_id
        if run_id:
            self.app.push_screen(RunDetailScreen(run_id))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_run()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = {"experiment": "config", "loss": "loss", "status": "status",
               "progress": "progress", "nc1": "nc1", "test_acc": "test_acc",
               "elapsed": "started"}.get(str(event.column_key.value))
        if key is None:
            return
        if key == self.sort_key:
            self.reverse = not self.reverse
        else:
            self.sort_key, self.reverse = key, False
        self.runs_changed()

    def action_compare(self) -> None:
        run_id = self.table.current_run_id
        row = self.host.runs.get(run_id) if run_id else None
        experiments = sorted({r.experiment for r in self.host.runs.values()})
        if not experiments:
            self.app.notify("no runs to compare yet", severity="warning")
            return
        self.app.push_screen(CompareScreen(row.experiment if row else experiments[0]))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if self.filter.error:
                self.app.notify(self.filter.error, severity="error")
            event.input.display = bool(event.value.strip())
            self.table.focus()

    def set_filter(self, text: str) -> None:
        """Apply a filter (see RunFilter for the syntax)."""
        self.filter = RunFilter.parse(text)
        self.runs_changed()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.set_filter("")
        self.table.focus()

    def action_sort(self) -> None:
        keys = list(SORT_KEYS)
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self.runs_changed()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.runs_changed()

    def action_retry(self) -> None:
        run_id = self.table.current_run_id
        if run_id:
            self.host.retry(run_id)

    def action_cancel(self) -> None:
        run_id = self.table.current_run_id
        if run_id:
            self.host.ask_cancel(run_id)
