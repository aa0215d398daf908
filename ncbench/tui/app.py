"""The Textual app: polling, screens, keys and notifications, wired around the controller.

Polling: every `poll_interval` seconds (default 1 s) a thread worker opens the database
read-only (`ncbench.store.read_connection`, which waits out the writer's lock), reads the runs
table (one query) plus whatever the current screen needs (`screen.read(con)`), closes the file,
and hands the results to the UI thread. One poll runs at a time; the UI never waits on the
database. Lock or open problems are shown as a quiet note in the status bar, never as an error.

The runs are the listing's (`ncbench.listing`: the config's declared runs merged with the stored
ones, as `ncbench status` lists them). What the control keys do (queue start/stop, retry,
cancel, and what follows them) is decided by `ncbench.tui.controller.RunController`; the app
runs its blocking parts in thread workers and shows its notices. Screens see the app only as a
`ncbench.tui.ports.ScreenHost`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from rich.text import Text
from textual import work
from textual.app import App, ScreenStackError
from textual.binding import Binding

from ncbench.errors import NcbenchError
from ncbench.events import utcnow
from ncbench.lifecycle import QUEUED
from ncbench.listing import RunRow, merge_rows
from ncbench.paths import workdir_for
from ncbench.tui.control import QueueController
from ncbench.tui.controller import Notice, RunController
from ncbench.selection import keep_row
from ncbench.tui.data import RunsReader, declared_runs
from ncbench.tui.ports import DbScreen
from ncbench.tui.rows import with_status
from ncbench.tui.screens import ConfirmScreen, HelpScreen, RunsScreen

__all__ = ["NcbenchApp"]


class NcbenchApp(App[None]):
    """Runs, run detail and compare views over an ncbench database (and its config).

    `db_path`: the results database (need not exist yet); `config_path`: experiments.toml whose
    declared runs are listed as queued until the database holds them; `experiments`: restrict to
    these (empty: all); `all_stored`: list the stored runs of every experiment even so (what
    `ncbench status` lists when no experiment is named); `selection`: `--only`
    (`ncbench.selection.parse_only`), the runs shown as `ncbench status --only` shows them;
    `workdir`: run directories (worker
    pids, the queue's; default: where `ncbench.paths.workdir_for` puts them); `start_queue`: start `ncbench run` on mount; `now`: clock for elapsed/ETA (tests
    freeze it); `controller`: the queue process (`QueueController`); `control`: the policy over
    it (`RunController`, built here).
    It implements `ncbench.tui.ports.ScreenHost` for its screens.
    """

    CSS_PATH = "ncbench.tcss"
    TITLE = "ncbench"
    ENABLE_COMMAND_PALETTE = False  # every action has a key; the footer needs the room
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("r", "toggle_queue", "Queue"),
    ]

    def __init__(
        self,
        db_path: str | Path,
        *,
        config_path: str | Path | None = None,
        experiments: Sequence[str] = (),
        workdir: str | Path | None = None,
        start_queue: bool = False,
        poll_interval: float = 1.0,
        lock_timeout: float = 5.0,
        now: Callable[[], datetime] | None = None,
        controller: QueueController | None = None,
        all_stored: bool = False,
        selection: dict[str, set] | None = None,
    ) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.config_path = Path(config_path) if config_path else None
        self.experiments = list(experiments)
        self.workdir = Path(workdir) if workdir else workdir_for(self.config_path, self.db_path)
        self.start_queue = start_queue
        self.poll_interval = poll_interval
        self.lock_timeout = lock_timeout
        self.now: Callable[[], datetime] = now or utcnow
        self.controller = controller or QueueController(
            self.config_path, self.db_path, self.experiments, workdir=self.workdir)
        self.control = RunController(self.controller, self.db_path, workdir=self.workdir,
                                     lock_timeout=lock_timeout)
        self.reader = RunsReader(None if all_stored else self.experiments)
        self.runs: dict[str, RunRow] = {}
        self.db_runs: dict[str, RunRow] = {}
        self.declared: list[RunRow] = []
        # `--only` (ncbench.selection.parse_only): the runs shown, as `ncbench status --only`
        self.selection: dict[str, set] = dict(selection or {})
        self.declared_ids: frozenset[str] = frozenset()
        self.db_note = ""
        self.polls = 0  # completed polls (tests wait on this)
        self._polling = False
        self._declared_mtime: float | None = None

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual's notify, but plain text by default: messages carry error texts, paths and
        log lines, whose brackets must show as they are (as markup, `[/]` raised MarkupError and
        ended the app, and `[x=1]` vanished)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _notice(self, notice: Notice) -> None:
        """Show one of the controller's notices."""
        self.notify(notice.message, severity=notice.severity)

    # -- lifecycle ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self._load_declared()
        self.push_screen(RunsScreen())
        self.set_interval(self.poll_interval, self.poll)
        self.poll()
        if self.start_queue:
            self.action_toggle_queue()

    def _load_declared(self) -> None:
        """(Re)read the runs the config declares, when the file changed."""
        if self.config_path is None:
            return
        try:
            mtime = self.config_path.stat().st_mtime
        except OSError:
            return
        if mtime == self._declared_mtime:
            return
        self._declared_mtime = mtime
        try:
            self.declared, self.declared_ids = declared_runs(
                self.config_path, self.experiments, self.selection)
        except NcbenchError as exc:
            self.declared, self.declared_ids = [], frozenset()
            self.notify(str(exc), title="experiments.toml", severity="error", timeout=10)
        self.reader.listed = self.declared_ids
        self._set_runs(self.db_runs)

    # -- polling ----------------------------------------------------------------------------------
    def poll(self) -> None:
        """Start a poll of the database unless one is running (or no screen is up: the timer can
        fire while the app shuts down, after its screens are gone)."""
        if self._polling:
            return
        try:
            screen = self.screen
        except ScreenStackError:
            return
        self._polling = True
        self._load_declared()
        for notice in self.control.check_queue():
            self._notice(notice)
        self._poll_worker(screen)

    @work(thread=True, group="poll", exit_on_error=False)
    def _poll_worker(self, screen: Any) -> None:
        runs: dict[str, RunRow] | None = None
        view: Any = None
        note = ""
        try:
            if not self.db_path.exists():
                note = f"no database yet ({self.db_path.name})"
                runs = {}
            else:
                from ncbench.store import read_connection

                with read_connection(self.db_path, timeout=self.lock_timeout) as con:
                    runs = self.reader.read(con)
                    if isinstance(screen, DbScreen):
                        view = screen.read(con, runs)
        except (NcbenchError, duckdb.Error, OSError) as exc:
            note = f"database busy, retrying ({type(exc).__name__})"
            if "locked" not in str(exc):
                note = f"database: {str(exc).splitlines()[0][:80]}"
        except Exception as exc:  # noqa: BLE001 - keep polling whatever happens
            note = f"poll failed: {type(exc).__name__}: {exc}"[:100]
        try:
            self.call_from_thread(self._apply_poll, screen, runs, view, note)
        except RuntimeError:  # the app is shutting down
            pass

    def _apply_poll(self, screen: Any, runs: dict[str, RunRow] | None, view: Any,
                    note: str) -> None:
        self._polling = False
        self.polls += 1
        self.db_note = note
        if runs is not None:
            self._set_runs(runs, notify=False)
        if view is not None and isinstance(screen, DbScreen) and screen in self.screen_stack:
            screen.apply(view)  # even if a dialog now covers it: its read() will not repeat
        self._runs_changed()

    def _set_runs(self, db_runs: dict[str, RunRow], notify: bool = True) -> None:
        self.db_runs = db_runs
        if self.selection:
            wanted = frozenset(r.run_id for r in self.declared)
            db_runs = {k: r for k, r in db_runs.items()
                       if keep_row(r, self.selection, self.declared_ids, wanted)}
        self.runs = {r.run_id: r for r in merge_rows(self.declared, db_runs)}
        if notify:
            self._runs_changed()

    def _runs_changed(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, DbScreen) and screen.is_mounted:
                screen.runs_changed()

    # -- the queue --------------------------------------------------------------------------------
    def queue_state(self) -> Text:
        """`queue ▶ running (pid N)` / `queue ■ stopped` for the status bar."""
        c = self.controller
        if c.running:
            return Text(f"queue ▶ running (pid {c.pid})", style="bold cyan")
        if c.returncode is not None and not (self.control.stop_asked or c.returncode == 130):
            return Text(f"queue ■ exited ({c.returncode})", style="yellow" if c.returncode else "")
        return Text("queue ■ stopped (r: start)", style="dim")

    def action_toggle_queue(self) -> None:
        self._notice(self.control.toggle_queue())
        self._runs_changed()

    # -- run control ----------------------------------------------------------------------------
    def retry(self, run_id: str) -> None:
        """Queue a failed / interrupted run again, if the controller allows it; what follows
        (the queue takes it, starts, or restarts later) is the controller's decision."""
        row = self.runs.get(run_id)
        if row is None:
            return
        refusal = self.control.retry_refusal(row)
        if refusal is not None:
            self._notice(refusal)
            return
        self._retry_worker(run_id)

    @work(thread=True, group="control", exit_on_error=False)
    def _retry_worker(self, run_id: str) -> None:
        try:
            msg = self.control.request_retry(run_id)
        except (NcbenchError, OSError, duckdb.Error) as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self._after_retry, run_id, msg)

    def _after_retry(self, run_id: str, msg: str) -> None:
        row = self.runs.get(run_id)
        if row is not None:  # show it queued at once, before the next poll
            self.db_runs[run_id] = with_status(row, QUEUED)
            self._set_runs(self.db_runs)
        self._notice(self.control.after_retry(row.experiment if row else None, msg))
        self._runs_changed()

    def ask_cancel(self, run_id: str) -> None:
        """Ask, then cancel a running run (SIGTERM to its worker)."""
        row = self.runs.get(run_id)
        if row is None:
            return
        refusal = self.control.cancel_refusal(row)
        if refusal is not None:
            self._notice(refusal)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.cancel(run_id)

        self.push_screen(ConfirmScreen(self.control.cancel_question(row)), answer)

    def cancel(self, run_id: str) -> None:
        self._cancel_worker(run_id)

    @work(thread=True, group="control", exit_on_error=False)
    def _cancel_worker(self, run_id: str) -> None:
        try:
            msg = self.control.cancel(run_id)
        except (NcbenchError, OSError, duckdb.Error) as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self.notify, msg)

    # -- misc -------------------------------------------------------------------------------------
    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen())
