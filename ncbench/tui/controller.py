"""The TUI's control policy: when the queue starts or restarts, which runs may be retried or cancelled.

The app stays wiring (keys, timers, thread workers, notifications): it asks a `RunController`
and shows the `Notice`s it returns. The controller holds the policy and the state it needs; the
actions themselves are `ncbench.tui.control`'s (the queue process, SIGTERM to a worker, the
store's retry request) and the rules of the lifecycle are `ncbench.lifecycle`'s:

* retry (R): only runs `lifecycle.why_not_retry` allows (failed, interrupted); then, if the queue
  runs the run's experiment, it starts the run at its next free slot; if the queue runs but not
  that experiment, the queue is started again for it when it ends by itself (exit 0 or 1) —
  not when the user stopped it; if no queue runs, one is started with the experiment added;
* the queue (r): start — with the experiments of runs retried meanwhile — or stop (SIGINT); a
  queue the user stopped is never restarted automatically;
* cancel (x): only runs in `lifecycle.CANCELLABLE` (running), after a question.

No Textual here: the decisions are plain method calls, tested without an app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ncbench.errors import NcbenchError
from ncbench.lifecycle import CANCELLABLE, why_not_retry
from ncbench.listing import RunRow
from ncbench.store import query_runs, read_connection
from ncbench.tui.control import QueueController, cancel_run, retry_run

__all__ = ["Notice", "RunController"]

#: Exit codes after which the queue is not explained by its log: 0 (all done), 1 (a run
#: failed: the table shows it), 130 (stopped by SIGINT).
_PLAIN_EXITS = (0, 1, 130)
#: Exit codes of a queue that ended by itself, after which it starts again for retried runs.
_RESTART_AFTER = (0, 1)


@dataclass(frozen=True)
class Notice:
    """A message for the user; `severity`: information, warning or error (Textual's names)."""

    message: str
    severity: str = "information"


class RunController:
    """The TUI's policy for its queue (`queue`, an `ncbench run` child) and its run actions.

    State: `retry_later` — experiments of runs retried while a queue that does not run them was
    running (the queue starts again for them when it ends by itself); `stop_asked` — the user
    stopped the queue (no automatic restart). `db_path`/`workdir`: the database (retry requests,
    worker pids) and the run directories (heartbeats); `lock_timeout`: seconds a database
    access waits for the writer's lock.
    """

    def __init__(self, queue: QueueController, db_path: str | Path, *,
                 workdir: str | Path | None = None, lock_timeout: float = 5.0):
        self.queue = queue
        self.db_path = Path(db_path)
        self.workdir = Path(workdir) if workdir else None
        self.lock_timeout = lock_timeout
        self.retry_later: set[str] = set()
        self.stop_asked = False
        self._was_running = False

    # -- the queue --------------------------------------------------------------------------
    def toggle_queue(self) -> Notice:
        """Stop a running queue (SIGINT), else start one — with the experiments of runs retried
        meanwhile (r)."""
        try:
            if self.queue.running:
                msg = self.queue.stop()
                self.stop_asked = True
            else:
                msg = self.queue.start(also=sorted(self.retry_later))
                self.retry_later = set()
                self._was_running, self.stop_asked = True, False
        except (NcbenchError, OSError) as exc:
            return Notice(str(exc), "error")
        return Notice(msg)

    def check_queue(self) -> list[Notice]:
        """Called on every poll: when the queue has just exited, say so (with the last log line
        when the exit code needs explaining) and — if it ended by itself and runs were retried
        that it did not cover — start it again for them."""
        notices: list[Notice] = []
        running = self.queue.running
        if self._was_running and not running:
            rc = self.queue.returncode
            why = ""
            if rc not in _PLAIN_EXITS:
                last = self.queue.last_log_line()
                why = f": {last}" if last else ""
            if self.stop_asked or rc == 130:  # the user stopped it (r, q or Ctrl-C)
                notices.append(Notice("queue stopped"))
            else:
                notices.append(Notice(f"queue finished (exit code {rc}){why}",
                                      "information" if rc == 0 else "warning"))
            if self.retry_later and rc in _RESTART_AFTER and not self.stop_asked:
                later, self.retry_later = sorted(self.retry_later), set()
                notices.append(self._start(later, f"for the retried runs of {', '.join(later)}"))
            running = self.queue.running
        self._was_running = running
        return notices

    def _start(self, also: Sequence[str], why: str) -> Notice:
        try:
            started = self.queue.start(also=also)
        except (NcbenchError, OSError) as exc:
            return Notice(f"{why}; cannot start the queue: {exc}", "error")
        self._was_running, self.stop_asked = True, False
        return Notice(f"{why}; {started}")

    # -- retry --------------------------------------------------------------------------------
    def retry_refusal(self, row: RunRow) -> Notice | None:
        """Why `row` may not be retried (a warning), or None when it may (`lifecycle`'s rule)."""
        why = why_not_retry(row.status)
        return None if why is None else Notice(f"run {row.run_id} is {row.status}; {why}",
                                               "warning")

    def request_retry(self, run_id: str) -> str:
        """Queue the run again in the store (with a retry request); blocking: call it from a
        thread. ControlError if the database does not hold it."""
        return retry_run(self.db_path, run_id)

    def after_retry(self, experiment: str | None, msg: str) -> Notice:
        """What follows a retry request of a run of `experiment` (None: unknown) — `msg` is the
        request's message: the running queue takes it, or starts again for it when it ends, or
        a queue is started for it."""
        if self.queue.running:
            if experiment is None or self.queue.runs_experiment(experiment):
                return Notice(msg + "; the running queue starts it at its next free slot")
            self.retry_later.add(experiment)
            return Notice(msg + f"; the queue starts again for {experiment} when it ends")
        if self.queue.config_path is None:
            return Notice(msg + "; start `ncbench run` to run it")
        return self._start([experiment] if experiment else [], msg)

    # -- cancel -------------------------------------------------------------------------------
    def cancel_refusal(self, row: RunRow) -> Notice | None:
        """Why `row` may not be cancelled (a warning), or None when it may."""
        if row.status in CANCELLABLE:
            return None
        return Notice(f"run {row.run_id} is {row.status}, not running", "warning")

    @staticmethod
    def cancel_question(row: RunRow) -> str:
        """The question asked before cancelling `row`."""
        return (f"Cancel run {row.run_id} ({row.experiment}/{row.loss}/w{row.width:g}/s{row.seed})?"
                "\nIts worker gets SIGTERM and ends the run as interrupted.")

    def cancel(self, run_id: str) -> str:
        """SIGTERM to the run's worker (its pid from heartbeat.json, else the database); blocking:
        call it from a thread. ControlError when it cannot be done."""
        db_pid = db_host = None
        if self.db_path.exists():
            with read_connection(self.db_path, timeout=self.lock_timeout) as con:
                stored = query_runs(con, run_ids=[run_id])
            if stored:
                db_pid, db_host = stored[0]["pid"], stored[0]["host"]
        return cancel_run(self.workdir, run_id, db_pid=db_pid, db_host=db_host)
