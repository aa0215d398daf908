"""Widgets of the runs view: the runs table (updated cell by cell) and the status bar.

`RunsTable.show(rows, now)` takes the rows to display (already filtered and sorted) and changes
only what differs from what is on screen: when the order of run ids is unchanged it skips the
runs whose `RunRow` is the very object shown last time (the reader keeps unchanged runs' objects)
unless they are running, and updates only the cells whose text changed (progress, elapsed, NC1 …)
of the others; when the order changed it rebuilds the rows and keeps the cursor on the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Static

from ncbench.lifecycle import RUNNING, STATUS_STYLE, StatusStyle
from ncbench.listing import RunRow
from ncbench.tui.rows import (
    attempt_elapsed, attempt_eta, format_duration, format_metric, is_starting,
)

__all__ = ["RunsTable", "StatusBar", "progress_bar", "status_text", "row_status_text",
           "COLUMNS"]

_UNKNOWN = StatusStyle("", "?")  # the look of a status this version does not know

# (column key, label) in display order: the most useful first, so an 80-column terminal shows
# what matters and the rest scrolls horizontally. Every column is as wide as its widest cell or
# its label (at most MAX_WIDTH): a 400-epoch run's `170/400` is never cut.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("experiment", "Exp"),
    ("loss", "Loss"),
    ("width", "Width"),
    ("seed", "Seed"),
    ("status", "Status"),
    ("progress", "Progress"),
    ("nc1", "NC1"),
    ("test_acc", "Final test"),  # the last evaluation's, percent (the CLI's "final test")
    ("elapsed", "Elapsed"),
    ("eta", "ETA"),
    ("dataset", "Dataset"),
    ("model", "Model"),
    ("device", "Device"),
    ("run_id", "Run id"),
)
MAX_WIDTH = 24
#: The columns that must fit the table's width (up to and including Elapsed): the progress
#: bar shrinks (from BAR_WIDTH cells down to none) until they do.
MUST_FIT = 9
BAR_WIDTH = 6

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def progress_bar(fraction: float, width: int = 8) -> str:
    """A bar of `width` cells filled to `fraction` (eighth-cell resolution), e.g. `███▌    `."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_EIGHTHS[part] if part and full < width else "")
    return bar + " " * (width - len(bar))


def status_text(status: str) -> Text:
    """`▶ running` in the status's style (`ncbench.lifecycle.STATUS_STYLE`)."""
    look = STATUS_STYLE.get(status, _UNKNOWN)
    return Text(f"{look.glyph} {status}", style=look.style)


def row_status_text(row: RunRow) -> Text:
    """`status_text` of the row's status, `▶ starting…` for a running run whose worker has not
    started its attempt yet (`ncbench.tui.rows.is_starting`)."""
    text = status_text(row.status)
    if is_starting(row):
        text = Text(f"{STATUS_STYLE[RUNNING].glyph} starting…", style=text.style)
    return text


def _progress_cell(row: RunRow, bar: int = BAR_WIDTH) -> Text:
    style = STATUS_STYLE.get(row.status, _UNKNOWN).style
    text = Text(progress_bar(row.progress, bar) + " " if bar > 0 else "", style=style or "")
    text.append(row.progress_text, style="")
    return text


def row_cells(row: RunRow, now: datetime, bar: int = BAR_WIDTH) -> tuple:
    """The cell values of one run, in COLUMNS order (strings or rich Text); `bar`: cells of
    the progress bar (0: none). Elapsed and ETA are the latest attempt's (`ncbench.tui.rows`)."""
    return (
        row.experiment,
        row.loss,
        f"{row.width:g}",
        str(row.seed),
        row_status_text(row),
        _progress_cell(row, bar),
        Text(format_metric(row.nc1), justify="right"),
        Text(format_metric(row.test_acc, "%"), justify="right"),
        Text(format_duration(attempt_elapsed(row, now)), justify="right"),
        Text(format_duration(attempt_eta(row, now)), justify="right"),
        row.dataset,
        row.model,
        row.device or "–",
        row.run_id,
    )


def _plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class RunsTable(DataTable):
    """All runs, one row per run keyed by run id; see the module docstring for updates."""

    BINDINGS = [Binding("enter", "select_cursor", "Detail", key_display="⏎")]

    DEFAULT_CSS = """
    RunsTable { height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._order: list[str] = []
        self._cells: dict[str, tuple[str, ...]] = {}
        self._shown: dict[str, RunRow] = {}
        self._rows: Sequence[RunRow] = ()
        self._now: datetime | None = None
        self.bar = BAR_WIDTH  # cells of the progress bars (fewer on a narrow terminal)
        self.updates = 0  # cells updated in place (tests and the benchmark read this)
        self.rebuilds = 0

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key, width=len(label))

    def on_resize(self) -> None:
        if self._now is not None and self._bar_that_fits() != self.bar:
            self._rebuild(self._rows, self._now)

    @property
    def run_ids(self) -> list[str]:
        """Run ids in display order."""
        return list(self._order)

    @property
    def current_run_id(self) -> str | None:
        """The run id under the cursor (None when the table is empty)."""
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def show(self, rows: Sequence[RunRow], now: datetime) -> None:
        """Display exactly `rows`, in this order, changing only what differs."""
        self._rows, self._now = rows, now
        order = [r.run_id for r in rows]
        if order != self._order:
            self._rebuild(rows, now)
            return
        col_keys = [c[0] for c in COLUMNS]
        refit = False
        for row in rows:
            # The same RunRow object as last time and not running (no clock-driven cells):
            # nothing on this line can have changed.
            if self._shown.get(row.run_id) is row and row.status != RUNNING:
                continue
            self._shown[row.run_id] = row
            cells = row_cells(row, now, self.bar)
            plain = tuple(_plain(c) for c in cells)
            old = self._cells.get(row.run_id)
            if old == plain:
                continue
            for i, (cell, text) in enumerate(zip(cells, plain)):
                if old is None or old[i] != text:
                    self.update_cell(row.run_id, col_keys[i], cell)
                    self.updates += 1
                    if len(text) > self.columns[col_keys[i]].width:  # type: ignore[index]
                        refit = True
            self._cells[row.run_id] = plain
        if refit:
            if self._bar_that_fits() != self.bar:
                self._rebuild(rows, now)
            else:
                self._fit_columns()

    def _widths(self, bar: int) -> list[int]:
        """Each column's width with progress bars of `bar` cells: its longest cell or label."""
        widths = []
        p = [k for k, _ in COLUMNS].index("progress")
        for i, (_key, label) in enumerate(COLUMNS):
            cells = [c[i] for c in self._cells.values()]
            if i == p:  # the cells as drawn with self.bar, measured as they would be with bar
                cut = self.bar + 1 if self.bar > 0 else 0
                cells = [(" " * (bar + 1) if bar > 0 else "") + c[cut:] for c in cells]
            widths.append(min(MAX_WIDTH, max([len(label), *(len(c) for c in cells)])))
        return widths

    def _bar_that_fits(self) -> int:
        """The widest progress bar (BAR_WIDTH … 0 cells) with which the first MUST_FIT
        columns fit the table's width (BAR_WIDTH before the table has a size)."""
        room = self.size.width
        if room <= 0:
            return BAR_WIDTH
        if len(self._cells) > max(0, self.size.height - 1):  # a vertical scrollbar
            room -= self.styles.scrollbar_size_vertical
        pad = 2 * self.cell_padding
        for bar in range(BAR_WIDTH, 0, -1):
            if sum(w + pad for w in self._widths(bar)[:MUST_FIT]) <= room:
                return bar
        return 0

    def _fit_columns(self) -> None:
        """Give every column a fixed width: the longest of label and cells (at most
        MAX_WIDTH). Fixed widths do not jump while rows arrive, and do not depend on when the
        table measures its rows (which made auto widths vary from one draw to the next)."""
        for key, width in zip((k for k, _ in COLUMNS), self._widths(self.bar)):
            column = self.columns[key]  # type: ignore[index]
            column.width, column.auto_width = width, False
        self._require_update_dimensions = True
        self.refresh()

    def _rebuild(self, rows: Sequence[RunRow], now: datetime) -> None:
        keep = self.current_run_id
        self.clear()
        self._cells = {}
        self._shown = {}
        for row in rows:  # measured with full bars, then drawn with the bars that fit
            self._cells[row.run_id] = tuple(_plain(c) for c in row_cells(row, now, BAR_WIDTH))
        self.bar = BAR_WIDTH
        self.bar = self._bar_that_fits()
        self._cells = {}
        for row in rows:
            cells = row_cells(row, now, self.bar)
            self.add_row(*cells, key=row.run_id)
            self._cells[row.run_id] = tuple(_plain(c) for c in cells)
            self._shown[row.run_id] = row
        self._order = [r.run_id for r in rows]
        self._fit_columns()
        self.rebuilds += 1
        if keep in self._cells:
            self.move_cursor(row=self._order.index(keep), animate=False)


class StatusBar(Static):
    """Counts per status (first line) and queue / filter / sort / database state (second)."""

    def update_state(self, counts: dict[str, int], info: Sequence[str | Text]) -> None:
        line = Text()
        for status, n in counts.items():
            if line:
                line.append("  ")
            look = STATUS_STYLE.get(status, _UNKNOWN)
            line.append(f"{look.glyph} {status} {n}", style=look.style if n else "dim")
        second = Text(" · ", style="dim").join(
            [i if isinstance(i, Text) else Text(i) for i in info if i]
        )
        self.update(Text("\n").join([line, second]))
