"""The progress display of `ncbench run` (a `ncbench.executors.base.RunUI`).

On a terminal: a live panel (rich) with the whole grid's bar (done / failed / diverged /
interrupted counts) and one line per running run — its slot, an epoch bar (fractional inside
the epoch from the heartbeat), and its latest train accuracy, test accuracy (percent) and NC1.
Until the first worker runs the panel says "starting…" (and `ncbench run` prints a "checking"
line at once, before the grid's checks). Elsewhere (a pipe, a log file, CI): one plain line
when a run starts and when it ends, the latter with its "final test" accuracy (the last
evaluation's; the summary adds the headline "test @ best val"). Notes (a failure, a retry, Ctrl-C) are printed above the panel in both cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ncbench.executors.base import RunView
from ncbench.lifecycle import END_STATUSES, RUN_STATUSES, RUNNING, STATUS_STYLE


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{100 * value:5.1f}%" if pct else f"{value:.3g}"


class RichUI:
    """Live grid display; `skipped` runs (already done, alive elsewhere) are counted in the header."""

    def __init__(self, console: Console | None = None, *, skipped: int = 0, title: str = "ncbench run"):
        self.console = console or Console()
        self.skipped, self.title = skipped, title
        self.live: Live | None = None
        self._seen: dict[str, str] = {}
        self._views: list[RunView] = []
        self.plain = not self.console.is_terminal

    # -- RunUI ---------------------------------------------------------------------------------
    def update(self, views: Sequence[RunView]) -> None:
        if self.plain:
            self._plain_lines(views)
            return
        if self.live is None:
            self.live = Live(console=self.console, auto_refresh=False, transient=False,
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        self._views = list(views)
        self.live.update(self.render(views), refresh=True)

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]•[/] {escape(message)}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self.render(self._views, final=True), refresh=True)  # no "starting…"
            self.live.stop()
            self.live = None

    # -- rendering -----------------------------------------------------------------------------
    def render(self, views: Sequence[RunView], final: bool = False):
        counts = {s: sum(1 for v in views if v.status == s) for s in RUN_STATUSES}
        finished = sum(counts[s] for s in END_STATUSES)
        total = len(views)
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(self.title, style="bold"),
            ProgressBar(total=max(total, 1), completed=finished, width=30),
            Text(f"{finished}/{total}"),
            Text.from_markup("  ".join(f"[{STATUS_STYLE[s].style}]{s} {counts[s]}[/]"
                                       for s in RUN_STATUSES if counts[s])
                             + (f"  [dim]skipped {self.skipped}[/]" if self.skipped else "")),
        )
        running = [v for v in views if v.status == RUNNING]
        if not running:  # workers import torch and load data before their first event
            waiting = finished < total and not final
            return Group(head, Text("starting…", style="dim")) if waiting else head
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
        for col, kw in (("run", {}), ("slot", {}), ("epoch", {}), ("", {"width": 20}),
                        ("train", {"justify": "right"}), ("test", {"justify": "right"}),
                        ("nc1", {"justify": "right"})):
            table.add_column(col, **kw)
        for v in running:
            frac = v.epoch + (v.batch / v.batches if v.batches else 0.0)
            table.add_row(
                Text(v.label, overflow="ellipsis", no_wrap=True), v.slot or "",
                f"{v.epoch}/{v.epochs}", ProgressBar(total=max(v.epochs, 1), completed=frac, width=20),
                _fmt(v.metrics.get("train_acc"), pct=True), _fmt(v.metrics.get("test_acc"), pct=True),
                _fmt(v.metrics.get("nc1")),
            )
        return Group(head, table)

    def _plain_lines(self, views: Sequence[RunView]) -> None:
        for v in views:
            prev = self._seen.get(v.run_id)
            if v.status == prev:
                continue
            self._seen[v.run_id] = v.status
            if v.status == RUNNING:
                self.console.print(f"start  {v.run_id} {v.label} on {v.slot} (attempt {v.attempt})",
                                   highlight=False, soft_wrap=True)
            elif v.status in END_STATUSES:
                extra = (f" final test {_fmt(v.metrics.get('test_acc'), pct=True).strip()}, "
                         f"nc1 {_fmt(v.metrics.get('nc1'))}" if v.metrics else "")
                err = f" — {v.error}" if v.error else ""
                self.console.print(f"{v.status:<6} {v.run_id} {v.label}{extra}{err}",
                                   highlight=False, soft_wrap=True)
