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
from ncbench.tui.rows import format_duration, format_metric

__all__ = ["RunsTable", "StatusBar", "progress_bar", "status_text", "COLUMNS"]

_UNKNOWN = StatusStyle("", "?")  # the look of a status this version does not know

# (column key, label, fixed width or None) in display order: the most useful first, so an
# 80-column terminal shows what matters and the rest scrolls horizontally.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("experiment", "Exp", None),
    ("loss", "Loss", None),
    ("width", "Width", None),
    ("seed", "Seed", None),
    ("status", "Status", 13),
    ("progress", "Progress", 12),
    ("nc1", "NC1", 7),
    ("test_acc", "Test acc", 8),
    ("elapsed", "Elapsed", 7),
    ("eta", "ETA", 7),
    ("dataset", "Dataset", None),
    ("model", "Model", None),
    ("device", "Device", None),
    ("run_id", "Run id", 12),
)

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


def _progress_cell(row: RunRow) -> Text:
    style = STATUS_STYLE.get(row.status, _UNKNOWN).style
    text = Text(progress_bar(row.progress, 6), style=style or "")
    text.append(f" {row.progress_text}", style="")
    return text


def row_cells(row: RunRow, now: datetime) -> tuple:
    """The cell values of one run, in COLUMNS order (strings or rich Text)."""
    return (
        row.experiment,
        row.loss,
        f"{row.width:g}",
        str(row.seed),
        status_text(row.status),
        _progress_cell(row),
        Text(format_metric(row.nc1), justify="right"),
        Text(format_metric(row.test_acc, "%"), justify="right"),
        Text(format_duration(row.elapsed(now)), justify="right"),
        Text(format_duration(row.eta(now)), justify="right"),
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
        self.updates = 0  # cells updated in place (tests and the benchmark read this)
        self.rebuilds = 0

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

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
            cells = row_cells(row, now)
            plain = tuple(_plain(c) for c in cells)
            old = self._cells.get(row.run_id)
            if old == plain:
                continue
            for i, (cell, text) in enumerate(zip(cells, plain)):
                if old is None or old[i] != text:
                    self.update_cell(row.run_id, col_keys[i], cell)
                    self.updates += 1
                    if COLUMNS[i][2] is None and len(text) > self.columns[col_keys[i]].width:
                        refit = True
            self._cells[row.run_id] = plain
        if refit:
            self._fit_columns()

    def _fit_columns(self) -> None:
        """Give the free-width columns a fixed width: the longest of label and cells (at most
        24). Fixed widths do not jump while rows arrive, and do not depend on when the
        table measures its rows (which made auto widths vary from one draw to the next)."""
        for i, (key, label, width) in enumerate(COLUMNS):
            if width is not None:
                continue
            longest = max([len(label), *(len(c[i]) for c in self._cells.values())])
            column = self.columns[key]  # type: ignore[index]
            column.width, column.auto_width = min(24, longest), False
        self._require_update_dimensions = True
        self.refresh()

    def _rebuild(self, rows: Sequence[RunRow], now: datetime) -> None:
        keep = self.current_run_id
        self.clear()
        self._cells = {}
        self._shown = {}
        for row in rows:
            cells = row_cells(row, now)
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
