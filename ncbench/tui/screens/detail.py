"""The run detail view: live charts of one run's metrics against epoch, its config and any error.

Below the charts, a compact table of the latest values of the extra NC measures
(`MEASURE_LABELS`, docs/metrics.md), train and test, when the run stored them. Each poll, `read`
(in the polling thread) fetches only the run's new evaluations (`ncbench.tui.data.fetch_series`)
and, when its status, attempt or error changed, its stored row; `apply` redraws what changed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ncbench.lifecycle import END_STATUSES, RUNNING
from ncbench.listing import RunRow
from ncbench.schema import EXTRA_NC_METRICS
from ncbench.tui.chart import SERIES_COLORS, Chart, Series
from ncbench.tui.data import RunSeries, fetch_run_detail, fetch_series
from ncbench.tui.ports import DbScreen
from ncbench.tui.rows import attempt_elapsed, attempt_eta, format_duration, format_metric
from ncbench.tui.screens.compare import CompareScreen
from ncbench.tui.widgets import progress_bar, row_status_text

__all__ = ["RunDetailScreen", "DETAIL_CHARTS", "MEASURE_LABELS", "measures_table"]


# Charts of the run detail: (id, title, [(metric, legend label)], log by default, bounds of the
# fitted y axis). NC2 measures the classifier W only, so its test value equals the train value
# by definition: one line.
DETAIL_CHARTS: tuple[tuple[str, str, tuple[tuple[str, str], ...], bool, Any], ...] = (
    ("nc1", "NC1", (("nc1", "train"), ("test_nc1", "test")), True, None),
    ("nc2", "NC2", (("nc2", "train = test (W only)"),), False, (0.0, math.inf)),
    ("nc3", "NC3", (("nc3", "train"), ("test_nc3", "test")), False, (0.0, math.inf)),
    ("nc4", "NC4", (("nc4", "train"), ("test_nc4", "test")), False, (0.0, math.inf)),
    ("acc", "Accuracy", (("train_acc", "train"), ("val_acc", "val"), ("test_acc", "test")),
     False, (0.0, 1.0)),
    ("loss", "Loss", (("train_loss", "train"), ("test_loss", "test")), False, (0.0, math.inf)),
    ("lr", "Learning rate", (("lr", ""),), True, None),
)


# Rows of the measures table: metric (train; `test_` + it on test) -> label. The classifier
# ("W") measures do not depend on the features: their test value equals the train value.
MEASURE_LABELS: dict[str, str] = {
    "equinorm_means": "equinorm (means)", "equinorm_classifier": "equinorm (W)",
    "equiangular_means": "equiangularity (means)", "equiangular_classifier": "equiangularity (W)",
    "maxangle_means": "max-angle (means)", "maxangle_classifier": "max-angle (W)",
    "self_duality": "self-duality", "cdnv": "CDNV", "nc1_trace": "NC1 tr(ΣW)/tr(ΣB)",
}


def measures_table(series: RunSeries) -> Text | None:
    """The latest value of each extra NC measure, train and test, as a small fixed-width table
    (None when the run stored none of them: older runs, `nc_extra = false`)."""
    latest: dict[str, float] = {}
    epoch = None
    for metric in EXTRA_NC_METRICS:
        for name in (metric, "test_" + metric):
            xs, ys = series.get(name)
            if xs:
                latest[name] = ys[-1]
                epoch = xs[-1] if epoch is None else max(epoch, xs[-1])
    if not latest:
        return None
    text = Text()
    text.append(f"NC measures, epoch {epoch}\n", style="bold")
    text.append(f"{'':24}{'train':>10}{'test':>10}\n", style="dim")
    for metric, label in MEASURE_LABELS.items():
        cells = [format_metric(latest.get(name)) for name in (metric, "test_" + metric)]
        text.append(f"{label:24}{cells[0]:>10}{cells[1]:>10}\n")
    return text


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
            for cid, title, _, log, bounds in DETAIL_CHARTS:
                yield Chart(title, log=log, bounds=bounds, id=f"chart-{cid}")
            measures = Static(id="run-measures", classes="panel")
            measures.display = False  # until a run with extra NC measures is drawn
            yield measures
            # focusable (Tab) and scrollable: a long config (loss_params …) is never cut off
            with VerticalScroll(id="run-config-box"):
                yield Static(id="run-config", classes="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"run {self.run_id}"
        self.query_one("#chart-nc1", Chart).focus()
        self.runs_changed()
        self.host.poll()

    @property
    def row(self) -> RunRow | None:
        return self.host.runs.get(self.run_id)

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
        for cid, _title, metrics, _log, _bounds in DETAIL_CHARTS:
            series = []
            for i, (name, label) in enumerate(metrics):
                xs, ys = self.series.get(name)
                if xs:
                    series.append(Series(label, list(xs), list(ys), SERIES_COLORS[i]))
            self.query_one(f"#chart-{cid}", Chart).set_series(series)
        table = measures_table(self.series)
        measures = self.query_one("#run-measures", Static)
        measures.display = table is not None
        if table is not None:
            measures.update(table)

    def runs_changed(self) -> None:
        row = self.row
        title = Text()
        if row is None:
            title.append(f"run {self.run_id} is not in the database or the config", style="bold")
        else:
            now = self.host.now()
            title.append(f"{row.experiment} · {row.dataset}/{row.model}/{row.loss} "
                         f"w={row.width:g} seed={row.seed}  ", style="bold")
            title.append_text(row_status_text(row))
            title.append(f"  {progress_bar(row.progress, 10)} {row.progress_text}  ")
            title.append(f"elapsed {format_duration(attempt_elapsed(row, now))}")
            if row.status == RUNNING:
                title.append(f"  ETA {format_duration(attempt_eta(row, now))}")
            # the latest evaluation's: the final one once the run has ended
            which = "final" if row.status in END_STATUSES else "latest"
            title.append(f"  NC1 {format_metric(row.nc1)}  {which} test "
                         f"{format_metric(row.test_acc, '%')}")
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
        self.host.retry(self.run_id)

    def action_cancel(self) -> None:
        self.host.ask_cancel(self.run_id)
