"""The TUI's views: runs, run detail, compare, plus the help and confirm dialogs.

The app polls the database about once a second (see ncbench.tui.app). A screen that needs
more than the runs list from each poll implements `read(con, runs)` — called in the polling
thread with the poll's open read-only connection and fresh runs, returns plain data (or None:
nothing new) — and `apply(data)`, called on the UI thread with that data (the run detail does
this). The compare
view's report queries are slower, so it loads them in its own thread worker when its
experiment's runs change (`runs_changed`, called after every poll).
"""

from __future__ import annotations

import io
import json
import time
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, ScrollableContainer, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from ncbench.tui.chart import SERIES_COLORS, Chart, Series
from ncbench.tui.data import (
    SORT_KEYS, RunFilter, RunRow, RunSeries, fetch_run_detail,
    fetch_series, format_duration, format_metric, sort_rows, status_counts,
)
from ncbench.tui.widgets import RunsTable, StatusBar, progress_bar, status_text

if TYPE_CHECKING:
    from ncbench.tui.app import NcbenchApp

__all__ = ["RunsScreen", "RunDetailScreen", "CompareScreen", "HelpScreen", "ConfirmScreen"]


class DbScreen(Screen):
    """A screen that reads from the database in the polling thread (see module docstring)."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    @property
    def nc_app(self) -> "NcbenchApp":
        return self.app  # type: ignore[return-value]

    def read(self, con: Any, runs: dict[str, RunRow]) -> Any:
        """In the polling thread: read what this screen needs (`runs`: this poll's runs)."""
        return None

    def apply(self, data: Any) -> None:  # pragma: no cover - overridden
        pass

    def runs_changed(self) -> None:
        """The app's runs snapshot changed (called on the UI thread)."""


# ------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------

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
        rows = [r for r in self.nc_app.runs.values() if self.filter(r)]
        return sort_rows(rows, self.sort_key, self.reverse)

    def runs_changed(self) -> None:
        app = self.nc_app
        rows = self.visible_rows()
        self.table.show(rows, app.now())
        info: list[str | Text] = [app.queue_state()]
        total = len(app.runs)
        if self.filter.text.strip():
            style = "bold red" if self.filter.error else "bold"
            info.append(Text(f"filter: {self.filter.text.strip()} ({len(rows)}/{total})",
                             style=style))
        else:
            info.append(f"{total} runs")
        info.append(f"sort: {self.sort_key}{' ↑' if self.reverse else ''}")
        if app.db_note:
            info.append(Text(app.db_note, style="italic"))
        self.query_one(StatusBar).update_state(status_counts(app.runs.values()), info)

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
        row = self.nc_app.runs.get(run_id) if run_id else None
        experiments = sorted({r.experiment for r in self.nc_app.runs.values()})
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
            self.nc_app.retry(run_id)

    def action_cancel(self) -> None:
        run_id = self.table.current_run_id
        if run_id:
            self.nc_app.ask_cancel(run_id)


# ------------------------------------------------------------------------------------------
# run detail
# ------------------------------------------------------------------------------------------

# Charts of the run detail: (id, title, [(metric, legend label)], log by default, y limits).
DETAIL_CHARTS: tuple[tuple[str, str, tuple[tuple[str, str], ...], bool, Any], ...] = (
    ("nc1", "NC1", (("nc1", "train"), ("test_nc1", "test")), True, None),
    ("nc2", "NC2", (("nc2", "train"), ("test_nc2", "test")), False, None),
    ("nc3", "NC3", (("nc3", "train"), ("test_nc3", "test")), False, None),
    ("nc4", "NC4", (("nc4", "train"), ("test_nc4", "test")), False, None),
    ("acc", "Accuracy", (("train_acc", "train"), ("val_acc", "val"), ("test_acc", "test")),
     False, (0.0, 1.0)),
    ("loss", "Loss", (("train_loss", "train"), ("test_loss", "test")), False, None),
    ("lr", "Learning rate", (("lr", ""),), True, None),
)


class RunDetailScreen(DbScreen):
    """One run: live charts of its metrics against epoch, its config and any error."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("l", "toggle_log", "Log scale"),
        Binding("c", "compare", "Compare"),
        Binding("R", "retry", "Retry"),
        Binding("x", "cancel", "Cancel"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.series = RunSeries(run_id)
        self.detail: dict[str, Any] | None = None
        self._detail_key: tuple | None = None
        self._read_row: RunRow | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="run-title")
        with VerticalScroll(id="charts", classes="chart-grid"):
            for cid, title, _, log, ylim in DETAIL_CHARTS:
                yield Chart(title, log=log, ylim=ylim, id=f"chart-{cid}")
            yield Static(id="run-config", classes="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"run {self.run_id}"
        self.query_one("#chart-nc1", Chart).focus()
        self.runs_changed()
        self.nc_app.poll()

    @property
    def row(self) -> RunRow | None:
        return self.nc_app.runs.get(self.run_id)

    def read(self, con: Any, runs: dict[str, RunRow]) -> Any:
        row = runs.get(self.run_id)
        if row is not None and row is self._read_row and self.detail is not None:
            return None  # the run's row did not change since the last read: nothing new
        self._read_row = row
        attempt = row.attempt if row else None
        added = fetch_series(con, self.series, attempt)
        key = (row.status, row.attempt, row.error) if row else None
        detail = None
        if self.detail is None or key != self._detail_key:
            detail = fetch_run_detail(con, self.run_id)
        return added, detail, key

    def apply(self, data: Any) -> None:
        added, detail, key = data
        if detail is not None:
            self.detail, self._detail_key = detail, key
            self._show_config()
        if added or detail is not None or not getattr(self, "_drawn", False):
            self._drawn = True
            self._draw_charts()
        self.runs_changed()

    def _draw_charts(self) -> None:
        for cid, _title, metrics, _log, _ylim in DETAIL_CHARTS:
            series = []
            for i, (name, label) in enumerate(metrics):
                xs, ys = self.series.get(name)
                if xs:
                    series.append(Series(label, list(xs), list(ys), SERIES_COLORS[i]))
            self.query_one(f"#chart-{cid}", Chart).set_series(series)

    def runs_changed(self) -> None:
        row = self.row
        title = Text()
        if row is None:
            title.append(f"run {self.run_id} is not in the database or the config", style="bold")
        else:
            now = self.nc_app.now()
            title.append(f"{row.experiment} · {row.dataset}/{row.model}/{row.loss} "
                         f"w={row.width:g} seed={row.seed}  ", style="bold")
            title.append_text(status_text(row.status))
            done = row.epochs if row.status == "done" else (row.epoch or 0)
            title.append(f"  {progress_bar(row.progress, 10)} {done}/{row.epochs}  ")
            title.append(f"elapsed {format_duration(row.elapsed(now))}")
            if row.status == "running":
                title.append(f"  ETA {format_duration(row.eta(now))}")
            title.append(f"  NC1 {format_metric(row.nc1)}  test {format_metric(row.test_acc, '%')}")
            if row.error:
                title.append("\n")
                title.append(f"error: {row.error.strip().splitlines()[-1]}", style="bold red")
        self.query_one("#run-title", Static).update(title)

    def _show_config(self) -> None:
        d = self.detail or {}
        lines = Text()
        lines.append(f"run {self.run_id}\n", style="bold")
        for key in ("status", "attempt", "host", "device", "executor", "slurm_job_id",
                    "started_at", "finished_at"):
            value = d.get(key)
            if value not in (None, ""):
                if hasattr(value, "strftime"):
                    value = value.strftime("%Y-%m-%d %H:%M:%S")
                lines.append(f"{key}: ", style="dim")
                lines.append(f"{value}\n")
        cfg = d.get("config")
        if isinstance(cfg, dict):
            lines.append("config\n", style="bold")
            for key, value in cfg.items():
                if isinstance(value, (dict, list)):
                    value = json.dumps(value, separators=(",", ":"))
                lines.append(f"  {key} = ", style="dim")
                lines.append(f"{value}\n")
        if d.get("error"):
            lines.append("error\n", style="bold red")
            lines.append(str(d["error"]).rstrip() + "\n", style="red")
        self.query_one("#run-config", Static).update(lines)

    def action_toggle_log(self) -> None:
        focused = self.focused
        chart = focused if isinstance(focused, Chart) else self.query_one("#chart-nc1", Chart)
        chart.log = not chart.log

    def action_compare(self) -> None:
        row = self.row
        if row:
            self.app.switch_screen(CompareScreen(row.experiment))

    def action_retry(self) -> None:
        self.nc_app.retry(self.run_id)

    def action_cancel(self) -> None:
        self.nc_app.ask_cancel(self.run_id)


# ------------------------------------------------------------------------------------------
# compare
# ------------------------------------------------------------------------------------------

COMPARE_CHARTS: tuple[tuple[str, str, bool, Any], ...] = (
    ("nc1", "NC1", True, None),
    ("nc2", "NC2", False, None),
    ("nc3", "NC3", False, None),
    ("nc4", "NC4", False, None),
    ("test_acc", "Test accuracy", False, (0.0, 1.0)),
    ("train_acc", "Train accuracy", False, (0.0, 1.0)),
)


class CompareScreen(DbScreen):
    """All losses of one experiment: mean curves over seeds and the report's tables.

    The numbers come from `ncbench.report` (`accuracy_table`, `nc_table`, `curves`,
    `configurations`) — the same functions `ncbench report` prints. They are loaded by this
    screen's own thread worker (not the app's 1 s poll, which stays fast) when the experiment's
    runs change, throttled to the time the report's queries take.
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("left_square_bracket", "experiment(-1)", "Prev", key_display="["),
        Binding("right_square_bracket", "experiment(1)", "Next", key_display="]"),
        Binding("w", "configuration", "Config"),
        Binding("u", "unfinished", "Unfinished"),
        Binding("l", "toggle_log", "Log scale"),
    ]

    def __init__(self, experiment: str) -> None:
        super().__init__()
        self.experiment = experiment
        self.config_index = -1  # into report.configurations(); -1 = the report's default
        self.include_unfinished = False
        self.data: dict[str, Any] | None = None
        self.loads = 0  # completed loads (tests wait on this)
        self._key: tuple | None = None
        self._loading = False
        self._loaded_at = -1e9
        self._min_gap = 2.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="cmp-title")
        # Narrow: one scrolling column (accuracy table, curves, NC table). Wide: the tables
        # on the left, the curves on the right (a 2×2 grid, curves spanning both rows).
        with Container(id="cmp-body"):
            with ScrollableContainer(id="cmp-acc-box", classes="table-box"):
                yield Static(id="cmp-acc", classes="panel")
            with Container(id="cmp-charts", classes="chart-grid"):
                for metric, title, log, ylim in COMPARE_CHARTS:
                    yield Chart(title, log=log, ylim=ylim, id=f"cmp-chart-{metric}")
            with ScrollableContainer(id="cmp-nc-box", classes="table-box"):
                yield Static(id="cmp-nc", classes="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"compare {self.experiment}"
        self.query_one("#cmp-chart-nc1", Chart).focus()
        self._title()
        self._load(self._state_key())

    def _state_key(self) -> tuple:
        runs = [r for r in self.nc_app.runs.values() if r.experiment == self.experiment]
        return (self.experiment, self.config_index, self.include_unfinished,
                tuple(sorted((r.run_id, r.status, r.epoch or 0, r.attempt) for r in runs)))

    def runs_changed(self) -> None:
        """Reload when this experiment's runs changed, at most every `_min_gap` seconds (three
        times the last load's duration, at least 2 s: the report's queries grow with the
        database, and each holds the file open for a moment)."""
        key = self._state_key()
        if (key != self._key and not self._loading
                and time.monotonic() - self._loaded_at >= self._min_gap):
            self._load(key)

    def _load(self, key: tuple) -> None:
        self._loading = True
        self._load_worker(key, self.experiment, self.config_index, self.include_unfinished)

    @work(thread=True, group="compare", exit_on_error=False)
    def _load_worker(self, key: tuple, experiment: str, config_index: int,
                     include_unfinished: bool) -> None:
        """The report's computations in one short read-only session (each `ncbench.report` call
        reads only this experiment's runs, so together they hold the file for a fraction of a
        second; the first one warms DuckDB's cache for the others)."""
        from ncbench import report
        from ncbench.store import read_connection

        app = self.nc_app
        t0 = time.monotonic()
        data: dict[str, Any]
        try:
            if not app.db_path.exists():
                data = {"missing": True}
            else:
                with read_connection(app.db_path, timeout=app.lock_timeout) as con:
                    if experiment not in report.list_experiments(con):
                        data = {"missing": True}
                    else:
                        configs = report.configurations(con, experiment, include_unfinished=True)
                        select = configs[config_index % len(configs)] if configs else None
                        curves = report.curves_many(
                            con, experiment, [metric for metric, *_ in COMPARE_CHARTS],
                            select=select, include_unfinished=True)
                        tables = report.build_report(con, [experiment],
                                                     include_unfinished=include_unfinished)
                        data = {"configs": configs, "select": select, "curves": curves,
                                "acc": tables.accuracy, "nc": tables.nc}
        except Exception as exc:  # noqa: BLE001 - shown in the view, never a crash
            data = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            app.call_from_thread(self._loaded, key, data, time.monotonic() - t0)
        except RuntimeError:  # the app is shutting down
            pass

    def _loaded(self, key: tuple, data: dict[str, Any], seconds: float) -> None:
        self._loading = False
        self._loaded_at = time.monotonic()
        self._min_gap = max(2.0, 3 * seconds)
        if key[:3] != (self.experiment, self.config_index, self.include_unfinished):
            self._load(self._state_key())  # the user switched while this was loading
            return
        self._key, self.data = key, data
        self.loads += 1
        self._title()
        message = ("experiment has no runs in the database yet" if data.get("missing")
                   else data.get("error"))
        if message:
            self.query_one("#cmp-acc", Static).update(Text(f"{self.experiment}: {message}",
                                                           style="italic"))
            self.query_one("#cmp-nc", Static).update("")
            for metric, *_ in COMPARE_CHARTS:
                self.query_one(f"#cmp-chart-{metric}", Chart).set_series([])
            return
        self._tables()
        self._charts()

    def _title(self) -> None:
        text = Text()
        text.append(f"compare · {self.experiment}", style="bold")
        d = self.data or {}
        select = d.get("select")
        configs = d.get("configs") or []
        if select:
            from ncbench.report import fmt_key

            text.append("  curves at " + ", ".join(f"{k}={fmt_key(v)}" for k, v in select.items()))
            if len(configs) > 1:
                text.append(f" ({configs.index(select) + 1}/{len(configs)}, w: next)", style="dim")
        text.append("  tables: " + ("all runs" if self.include_unfinished else "done runs only"),
                    style="dim")
        self.query_one("#cmp-title", Static).update(text)

    def _tables(self) -> None:
        from ncbench import report

        d = self.data or {}
        acc_parts: list[Any] = []
        for block in d.get("acc", []):
            header, lines = report.accuracy_grid(block)
            t = Table(title=report.accuracy_title(block), title_justify="left", expand=False,
                      caption="mean ± std over seeds (n); spread = max − min of loss means, pp",
                      caption_justify="left")
            for k, h in enumerate(header):
                t.add_column(h, justify="left" if k < 2 else "right", no_wrap=True)
            n_loss = len(block.losses) * len(block.row_values)
            for idx, line in enumerate(lines):
                t.add_row(*line, style="bold" if idx >= n_loss else None,
                          end_section=idx == n_loss - 1)
            acc_parts.append(t)
            if block.n_excluded and not self.include_unfinished:
                acc_parts.append(Text(f"{block.n_excluded} unfinished run(s) not counted "
                                      "(only status 'done'; u: include them)",
                                      style="italic dim"))
        nc_parts: list[Any] = []
        for block in d.get("nc", []):
            header, lines = report.nc_grid(block)
            t = Table(title=report.nc_title(block), title_justify="left", expand=False)
            for k, h in enumerate(header):
                t.add_column(h, justify="left" if k < 3 else "right", no_wrap=True)
            for line in lines:
                t.add_row(*line)
            nc_parts.append(t)
        _show_wide(self.query_one("#cmp-acc", Static), acc_parts or [
            Text("no finished runs yet (u: include unfinished)", style="italic")])
        _show_wide(self.query_one("#cmp-nc", Static), nc_parts)

    def _charts(self) -> None:
        d = self.data or {}
        curves = d.get("curves", {})
        losses = sorted({loss for cs in curves.values() for loss in cs}, key=str)
        colors = {loss: SERIES_COLORS[i % len(SERIES_COLORS)] for i, loss in enumerate(losses)}
        for metric, *_ in COMPARE_CHARTS:
            series = []
            for loss, curve in curves.get(metric, {}).items():
                n = max(curve.n_seeds) if curve.n_seeds else 0
                series.append(Series(f"{loss} (n={n})", curve.epochs, curve.mean, colors[loss]))
            self.query_one(f"#cmp-chart-{metric}", Chart).set_series(series)

    def action_experiment(self, step: int) -> None:
        experiments = sorted({r.experiment for r in self.nc_app.runs.values()})
        if not experiments:
            return
        i = experiments.index(self.experiment) if self.experiment in experiments else 0
        self.experiment = experiments[(i + step) % len(experiments)]
        self.config_index = -1
        self.sub_title = f"compare {self.experiment}"
        self._refetch()

    def action_configuration(self) -> None:
        data = self.data or {}
        configs = data.get("configs") or []
        if len(configs) > 1:
            select = data.get("select")
            cur = configs.index(select) if select in configs else -1
            self.config_index = (cur + 1) % len(configs)
            self._refetch()

    def action_unfinished(self) -> None:
        self.include_unfinished = not self.include_unfinished
        self._refetch()

    def action_toggle_log(self) -> None:
        focused = self.focused
        chart = focused if isinstance(focused, Chart) else self.query_one("#cmp-chart-nc1", Chart)
        chart.log = not chart.log

    def _refetch(self) -> None:
        self._key = None
        self.data = None
        self._title()
        if not self._loading:
            self._load(self._state_key())


# ------------------------------------------------------------------------------------------
# dialogs
# ------------------------------------------------------------------------------------------

HELP = """\
[b]Runs view[/b]
  ↑ ↓ PgUp PgDn   move              Enter   run detail
  /               filter            Esc     clear filter
  s / S           next sort / reverse (or click a column header)
  c               compare the experiment of the selected run
  R               retry the selected failed / interrupted run (starts the queue)
  x               cancel the selected running run (SIGTERM to its worker)

[b]Filter syntax[/b]  terms separated by spaces, all must hold
  loss:ce,fl  status:running  exp:demo  width:2  seed:0  dataset:digits  model:mlp
  !status:done (negation)   plain words match any text column

[b]Run detail[/b]
  Tab             move between charts    l   log scale of the focused chart
  c               compare view           R / x   retry / cancel this run
  Esc             back

[b]Compare view[/b]
  [ / ]           previous / next experiment
  w               next configuration (width, epochs …) of the curves
  u               tables: include unfinished runs    l   log scale    Esc   back

[b]Everywhere[/b]
  r               start / stop the queue (ncbench run; stop = Ctrl-C to it)
  ?               this help              q   quit (stops a queue started here)
"""


class HelpScreen(ModalScreen[None]):
    """Key bindings of every view."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question (y / n, Enter = yes, Esc = no)."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question), id="confirm-text")  # plain: labels, ids
            yield Static("[b]y[/b] yes    [b]n[/b] no", id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def _show_wide(static: Static, parts: list[Any]) -> None:
    """Show rich renderables at their natural width (the container scrolls sideways), so wide
    tables are not squeezed into unreadable columns on a narrow terminal."""
    from rich.console import Console, Group
    from rich.measure import Measurement

    group = Group(*parts)
    console = Console(width=1000, file=io.StringIO())
    width = Measurement.get(console, console.options, group).maximum if parts else 1
    pad = static.styles.padding
    static.styles.width = max(1, width) + pad.left + pad.right
    static.update(group)
