"""The ncbench Textual app: polls the results database and hosts the views.

Polling: every `poll_interval` seconds (default 1 s) a thread worker opens the database
read-only (`ncbench.store.read_connection`, which waits out the writer's lock), reads the runs
table (one query) plus whatever the current screen needs (`screen.read(con)`), closes the file,
and hands the results to the UI thread. One poll runs at a time; the UI never waits on the
database. Lock or open problems are shown as a quiet note in the status bar, never as an error.
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
from ncbench.tui.control import QueueController, cancel_run, retry_run
from ncbench.tui.data import (
    CANCELLABLE, RETRYABLE, RunRow, RunsReader, config_runs, merge_runs, utcnow, with_status,
)
from ncbench.tui.screens import ConfirmScreen, DbScreen, HelpScreen, RunsScreen

__all__ = ["NcbenchApp"]


class NcbenchApp(App[None]):
    """Runs, run detail and compare views over an ncbench database (and its config).

    `db_path`: the results database (need not exist yet); `config_path`: experiments.toml whose
    declared runs are listed as queued until the database holds them; `experiments`: restrict to
    these; `workdir`: run directories (for worker pids); `start_queue`: start `ncbench run` on
    mount; `now`: clock for elapsed/ETA (tests freeze it); `controller`: the queue controller.
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
    ) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.config_path = Path(config_path) if config_path else None
        self.experiments = list(experiments)
        self.workdir = Path(workdir) if workdir else None
        self.start_queue = start_queue
        self.poll_interval = poll_interval
        self.lock_timeout = lock_timeout
        self.now: Callable[[], datetime] = now or utcnow
        self.controller = controller or QueueController(
            self.config_path, self.db_path, self.experiments, workdir=self.workdir)
        self.reader = RunsReader(self.experiments)
        self.runs: dict[str, RunRow] = {}
        self.db_runs: dict[str, RunRow] = {}
        self.declared: list[RunRow] = []
        self.db_note = ""
        self.polls = 0  # completed polls (tests wait on this)
        self._polling = False
        self._queue_was_running = False
        self._retry_later: set[str] = set()  # experiments of runs retried outside the running queue
        self._stop_asked = False  # the user stopped the queue (r): no automatic restart
        self._declared_mtime: float | None = None

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual's notify, but plain text by default: messages carry error texts, paths and
        log lines, whose brackets must show as they are (as markup, `[/]` raised MarkupError and
        ended the app, and `[x=1]` vanished)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

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
            self.declared = config_runs(self.config_path, self.experiments)
        except NcbenchError as exc:
            self.declared = []
            self.notify(str(exc), title="experiments.toml", severity="error", timeout=10)
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
        self._check_queue()
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
        self.runs = merge_runs(db_runs, self.declared)
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
        if c.returncode is not None:
            return Text(f"queue ■ exited ({c.returncode})", style="yellow" if c.returncode else "")
        return Text("queue ■ stopped (r: start)", style="dim")

    def _check_queue(self) -> None:
        running = self.controller.running
        if self._queue_was_running and not running:
            rc = self.controller.returncode
            why = ""
            if rc not in (0, 1, 130):  # 1: a run failed (the table shows it); 130: stopped
                last = self.controller.last_log_line()
                why = f": {last}" if last else ""
            self.notify(f"queue finished (exit code {rc}){why}",
                        severity="information" if rc == 0 else "warning")
            if self._retry_later and rc in (0, 1) and not self._stop_asked:
                later, self._retry_later = sorted(self._retry_later), set()
                self._start_queue(also=later, why=f"for the retried runs of {', '.join(later)}")
            running = self.controller.running
        self._queue_was_running = running

    def action_toggle_queue(self) -> None:
        try:
            if self.controller.running:
                msg = self.controller.stop()
                self._stop_asked = True
            else:
                msg = self.controller.start(also=sorted(self._retry_later))
                self._retry_later = set()
                self._queue_was_running, self._stop_asked = True, False
        except (NcbenchError, OSError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(msg)
        self._runs_changed()

    # -- run control ----------------------------------------------------------------------------
    def retry(self, run_id: str) -> None:
        """Queue a failed / diverged / interrupted run again and (re)start the queue."""
        row = self.runs.get(run_id)
        if row is None:
            return
        if row.status not in RETRYABLE:
            why = (" (a diverged run is deterministic: ncbench run does not rerun it)"
                   if row.status == "diverged" else "")
            self.notify(f"run {run_id} is {row.status}; only {' or '.join(RETRYABLE)} runs can "
                        f"be retried{why}", severity="warning")
            return
        self._retry_worker(run_id)

    @work(thread=True, group="control", exit_on_error=False)
    def _retry_worker(self, run_id: str) -> None:
        try:
            msg = retry_run(self.db_path, run_id)
        except (NcbenchError, OSError, duckdb.Error) as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self._after_retry, run_id, msg)

    def _after_retry(self, run_id: str, msg: str) -> None:
        row = self.runs.get(run_id)
        if row is not None:
            self.db_runs[run_id] = with_status(row, "queued")
            self._set_runs(self.db_runs)
        if self.controller.running:
            if row is None or self.controller.runs_experiment(row.experiment):
                self.notify(msg + "; the running queue starts it at its next free slot")
            else:  # not among the queue's experiments: start the queue again for it afterwards
                self._retry_later.add(row.experiment)
                self.notify(msg + f"; the queue starts again for {row.experiment} when it ends")
            return
        if self.controller.config_path is None:
            self.notify(msg + "; start `ncbench run` to run it")
            return
        self._start_queue(also=[row.experiment] if row else [], why=msg)

    def _start_queue(self, also: list[str], why: str) -> None:
        try:
            started = self.controller.start(also=also)
        except (NcbenchError, OSError) as exc:
            self.notify(f"{why}; cannot start the queue: {exc}", severity="error")
            return
        self._queue_was_running, self._stop_asked = True, False
        self.notify(f"{why}; {started}")
        self._runs_changed()

    def ask_cancel(self, run_id: str) -> None:
        """Ask, then cancel a running run (SIGTERM to its worker)."""
        row = self.runs.get(run_id)
        if row is None:
            return
        if row.status not in CANCELLABLE:
            self.notify(f"run {run_id} is {row.status}, not running", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.cancel(run_id)

        self.push_screen(ConfirmScreen(
            f"Cancel run {run_id} ({row.experiment}/{row.loss}/w{row.width:g}/s{row.seed})?\n"
            "Its worker gets SIGTERM and ends the run as interrupted."), answer)

    def cancel(self, run_id: str) -> None:
        self._cancel_worker(run_id)

    @work(thread=True, group="control", exit_on_error=False)
    def _cancel_worker(self, run_id: str) -> None:
        db_pid = db_host = None
        try:
            if self.db_path.exists():
                from ncbench.store import read_connection

                with read_connection(self.db_path, timeout=self.lock_timeout) as con:
                    got = con.execute("SELECT pid, host FROM runs WHERE run_id = ?",
                                      [run_id]).fetchone()
                    if got:
                        db_pid, db_host = got
            msg = cancel_run(self.workdir, run_id, db_pid=db_pid, db_host=db_host)
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
