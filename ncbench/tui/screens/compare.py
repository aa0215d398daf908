"""The compare view: all losses of one experiment — mean curves over seeds and the report's tables.

The numbers and the tables are `ncbench.report`'s (the same functions `ncbench report` uses:
`configurations`, `curves_many`, `build_report`, `accuracy_rich_table` / `stats_rich_table` /
`nc_rich_table` in their `pane` form: 95 % CIs, paired differences to ce and verdicts under
each accuracy table). They are loaded in this screen's own thread worker (not the app's 1 s poll,
which stays fast) when the experiment's runs change, throttled to the time the queries take.
"""

from __future__ import annotations

import io
import math
import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, ScrollableContainer
from textual.widgets import Footer, Header, Static

from ncbench.tui.chart import SERIES_COLORS, Chart, Series, legend_text
from ncbench.tui.ports import DbScreen

__all__ = ["CompareScreen", "COMPARE_CHARTS"]


# (metric, title, log by default, bounds of the fitted y axis)
COMPARE_CHARTS: tuple[tuple[str, str, bool, Any], ...] = (
    ("nc1", "NC1", True, None),
    ("nc2", "NC2", False, (0.0, math.inf)),
    ("nc3", "NC3", False, (0.0, math.inf)),
    ("nc4", "NC4", False, (0.0, math.inf)),
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
        self.legend: list[Series] = []  # the curves' losses and colours (the title shows them)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="cmp-title")
        # Narrow: one scrolling column (accuracy table, curves, NC table). Wide: the tables
        # on the left, the curves on the right (a 2×2 grid, curves spanning both rows).
        with Container(id="cmp-body"):
            with ScrollableContainer(id="cmp-acc-box", classes="table-box"):
                yield Static(id="cmp-acc", classes="panel")
            with Container(id="cmp-charts", classes="chart-grid"):
                for metric, title, log, bounds in COMPARE_CHARTS:
                    yield Chart(title, log=log, bounds=bounds, legend=False,
                                id=f"cmp-chart-{metric}")
            with ScrollableContainer(id="cmp-nc-box", classes="table-box"):
                yield Static(id="cmp-nc", classes="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"compare {self.experiment}"
        self.query_one("#cmp-chart-nc1", Chart).focus()
        self._title()
        self._load(self._state_key())

    def _state_key(self) -> tuple:
        runs = [r for r in self.host.runs.values() if r.experiment == self.experiment]
        return (self.experiment, self.config_index, self.include_unfinished,
                tuple(sorted((r.run_id, r.status, r.last_epoch or 0, r.attempt) for r in runs)))

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

        host = self.host
        t0 = time.monotonic()
        data: dict[str, Any]
        try:
            if not host.db_path.exists():
                data = {"missing": True}
            else:
                with read_connection(host.db_path, timeout=host.lock_timeout) as con:
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
            self.app.call_from_thread(self._loaded, key, data, time.monotonic() - t0)
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
            self.legend = []
            self._title()
            return
        self._tables()
        self._charts()
        self._title()

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
        if self.legend:  # one legend for all charts (one colour per loss), outside the plots
            text.append("\ncurves: ", style="dim")
            text.append_text(legend_text(self.legend))
        self.query_one("#cmp-title", Static).update(text)

    def _tables(self) -> None:
        """The report's tables of this experiment, in their compare-pane form."""
        from ncbench import report

        d = self.data or {}
        # The statistics and NC tables in their one-line pane form where the box is wide enough
        # for it, else in `ncbench report`'s compact form (values over their ±std or interval),
        # which fits 80 columns: no column is hidden beyond the box's edge on a wide terminal.
        room = self._nc_width()
        acc_parts: list[Any] = []
        for block in d.get("acc", []):
            acc_parts += _unboxed(report.accuracy_rich_table(block, pane=True))
            note = report.excluded_note(block.n_excluded, self.include_unfinished,
                                        hint="u: include them")
            if note:
                acc_parts.append(Text(note, style="italic dim"))
            stats = report.stats_rich_table(block, pane=True)
            if _natural_width(stats) > room:
                stats = report.stats_rich_table(block)
            acc_parts += [Text("")] + _unboxed(stats)
        nc_parts: list[Any] = []
        for block in d.get("nc", []):
            table = report.nc_rich_table(block, pane=True)
            if _natural_width(table) > room:
                table = report.nc_rich_table(block)
            nc_parts += _unboxed(table)
        self._nc_room = room
        _show_wide(self.query_one("#cmp-acc", Static), acc_parts or [
            Text("no finished runs yet (u: include unfinished)", style="italic")])
        _show_wide(self.query_one("#cmp-nc", Static), nc_parts)

    def _nc_width(self) -> int:
        """The columns the NC table's box has: the terminal's width, half of it from 120
        columns (tables left, curves right), less the panel's padding and a scrollbar."""
        width = self.app.size.width
        return (width // 2 if width >= 120 else width) - 4

    def on_resize(self) -> None:
        if self.data and not (self.data.get("missing") or self.data.get("error")):
            if self._nc_width() != getattr(self, "_nc_room", None):
                self._tables()

    def _charts(self) -> None:
        d = self.data or {}
        curves = d.get("curves", {})
        losses = sorted({loss for cs in curves.values() for loss in cs}, key=str)
        colors = {loss: SERIES_COLORS[i % len(SERIES_COLORS)] for i, loss in enumerate(losses)}
        seeds = {loss: max([max(c[loss].n_seeds, default=0) for c in curves.values()
                            if loss in c] or [0]) for loss in losses}
        self.legend = [Series(f"{loss} (n={seeds[loss]})", [], [], colors[loss])
                       for loss in losses]
        for metric, *_ in COMPARE_CHARTS:
            series = []
            for loss, curve in curves.get(metric, {}).items():
                n = max(curve.n_seeds) if curve.n_seeds else 0
                series.append(Series(f"{loss} (n={n})", curve.epochs, curve.mean, colors[loss]))
            self.query_one(f"#cmp-chart-{metric}", Chart).set_series(series)

    def action_experiment(self, step: int) -> None:
        experiments = sorted({r.experiment for r in self.host.runs.values()})
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
        self.legend = []
        self._title()
        if not self._loading:
            self._load(self._state_key())


def _natural_width(renderable: Any) -> int:
    """The width a rich renderable takes when nothing squeezes it."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=1000, file=io.StringIO())
    return Measurement.get(console, console.options, renderable).maximum


def _unboxed(table: Any) -> list[Any]:
    """A rich Table with its title as a line of its own above it (a table wraps its title to
    its own width: a long title became a narrow block); the caption stays under the table."""
    title, table.title = table.title, None
    return [Text(str(title), style="italic"), table] if title else [table]


def _show_wide(static: Static, parts: list[Any]) -> None:
    """Show rich renderables at their natural width (the container scrolls sideways), so wide
    tables are not squeezed into unreadable columns on a narrow terminal."""
    from rich.console import Group

    group = Group(*parts)
    width = _natural_width(group) if parts else 1
    pad = static.styles.padding
    static.styles.width = max(1, width) + pad.left + pad.right
    static.update(group)
