"""The executor side of the grid: the `Executor` protocol, the progress types and `RunWatcher`.

`Executor` is what `ncbench.grid.run_grid` hands the runs to (see `ncbench.executors` for the
contract); `RunView` is one run as the progress display shows it, `RunUI` what an executor
reports to (`NullUI`: nothing), and `RunWatcher` reads a run directory incrementally to keep a
`RunView` current.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ncbench.events import read_events_from, read_heartbeat
from ncbench.lifecycle import QUEUED
from ncbench.rundir import EVENTS_FILE, HEARTBEAT_FILE
from ncbench.runs import RunSpec

if TYPE_CHECKING:  # pragma: no cover
    from ncbench.store import Store

__all__ = ["Executor", "RunUI", "NullUI", "RunView", "RunWatcher"]


class Executor(Protocol):
    """See the docstring of `ncbench.executors`."""

    name: str

    def run(self, specs: Sequence[RunSpec], workdir: Path, store: "Store", ui: "RunUI",
            requeued: Callable[[set[str]], list[RunSpec]] | None = None) -> dict[str, str]:
        ...


@dataclass
class RunView:
    """One run as the progress display shows it.

    `status` one of `ncbench.lifecycle.RUN_STATUSES`; `epoch` epochs completed (from the
    heartbeat), `batch`/`batches` progress inside the current epoch, `metrics` the latest
    evaluation (name -> value), `slot` e.g. "gpu1" / "cpu0", `error` one line or None."""

    run_id: str
    label: str
    epochs: int
    status: str = QUEUED
    slot: str | None = None
    attempt: int = 0
    epoch: int = 0
    batch: int = 0
    batches: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None


class RunUI(Protocol):
    """What an executor reports to (the rich display of `ncbench run`, or nothing)."""

    def update(self, views: Sequence[RunView]) -> None:
        """All runs of this invocation, current state (called about once a second)."""

    def note(self, message: str) -> None:
        """A one-line message (a run failed and is retried, Ctrl-C received, …)."""


class NullUI:
    """A RunUI that shows nothing (tests, `--quiet`)."""

    def update(self, views: Sequence[RunView]) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class RunWatcher:
    """Incremental reader of one run directory for the UI: `poll()` reads new event lines and the
    heartbeat and updates `view` (epoch, batch, metrics); `ended` holds the last `end` event
    read (None while the attempt runs)."""

    def __init__(self, run_dir: str | os.PathLike, view: RunView):
        self.run_dir = Path(run_dir)
        self.view = view
        self.ended: dict | None = None
        self._offset = 0

    def skip_existing(self) -> None:
        """Ignore events already in the log (a new attempt's `end` is then the only one seen)."""
        try:
            self._offset = (self.run_dir / EVENTS_FILE).stat().st_size
        except FileNotFoundError:
            self._offset = 0

    def poll(self) -> list[dict]:
        """Read what is new; returns the new events."""
        events, self._offset = read_events_from(self.run_dir / EVENTS_FILE, self._offset)
        for e in events:
            if e.get("type") == "eval" and isinstance(e.get("metrics"), dict):
                self.view.metrics = dict(e["metrics"])
                self.view.epoch = max(self.view.epoch, int(e.get("epoch") or 0))
            elif e.get("type") == "start":
                self.view.epoch = int(e.get("resumed_from_epoch") or 0)
            elif e.get("type") == "end":
                self.ended = e
        if (self.run_dir / HEARTBEAT_FILE).exists():
            beat = read_heartbeat(self.run_dir)
            if beat and isinstance(beat.get("epoch"), int):
                self.view.epoch = max(self.view.epoch, beat["epoch"])
                self.view.batch = int(beat.get("batch") or 0)
                self.view.batches = int(beat.get("batches") or 0)
        return events
