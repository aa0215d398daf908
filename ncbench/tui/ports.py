"""The interface between the TUI app and its screens, both ways: `ScreenHost` and `DbScreen`.

* `ScreenHost` — the few things a screen may ask of the app that hosts it (the runs snapshot, the
  clock, the queue's state, a poll, retry and cancel, where the database is). The app implements
  it; screens reach it as `self.host` and never import the app, so the app and the screens do
  not depend on each other both ways.
* `DbScreen` — what the app asks of a screen after each poll: `read(con, runs)` in the polling
  thread with the poll's open read-only connection and fresh runs (returns plain data, or None:
  nothing new), `apply(data)` on the UI thread with that data, and `runs_changed()` when the
  runs snapshot changed.

Screens also use Textual's own App API (`push_screen`, `switch_screen`, `notify`,
`call_from_thread`) through `self.app`: that is Textual's interface, not ncbench's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

from rich.text import Text
from textual.screen import Screen

from ncbench.listing import RunRow

__all__ = ["ScreenHost", "DbScreen"]


class ScreenHost(Protocol):
    """What screens may use of the app: read the runs and state, ask for actions."""

    #: The results database (read-only for screens) and how long a read waits for its lock.
    db_path: Path
    lock_timeout: float

    @property
    def runs(self) -> Mapping[str, RunRow]:
        """The latest runs snapshot (the listing's rows), keyed by run id."""
        ...

    @property
    def db_note(self) -> str:
        """A quiet note about the database (busy, missing) for the status bar; "" if none."""
        ...

    def now(self) -> datetime:
        """The clock for elapsed times and ETAs (naive UTC; tests freeze it)."""
        ...

    def queue_state(self) -> Text:
        """The queue's state for the status bar."""
        ...

    def poll(self) -> None:
        """Poll the database now (unless a poll is running)."""
        ...

    def retry(self, run_id: str) -> None:
        """Retry a run (the app's controller decides whether, and what follows)."""
        ...

    def ask_cancel(self, run_id: str) -> None:
        """Ask the user, then cancel a running run."""
        ...


class DbScreen(Screen):
    """A screen that reads from the database in the polling thread (see module docstring)."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    @property
    def host(self) -> ScreenHost:
        """The app, seen through `ScreenHost` only."""
        return cast(ScreenHost, self.app)

    def read(self, con: Any, runs: Mapping[str, RunRow]) -> Any:
        """In the polling thread: read what this screen needs (`runs`: this poll's runs)."""
        return None

    def apply(self, data: Any) -> None:  # pragma: no cover - overridden
        """On the UI thread: show what `read` returned."""

    def runs_changed(self) -> None:
        """The app's runs snapshot changed (called on the UI thread)."""
