"""How the TUI acts on runs: through processes and the store only, never by training itself.

* The queue is an `ncbench run` child process (`QueueController`): start = spawn it (in its own
  session, output to `<workdir>/tui-queue.log`, so it never draws over the TUI), stop = SIGINT,
  exactly what Ctrl-C in a terminal does to `ncbench run`.
* Cancel a running run = SIGTERM to its worker, whose pid is in the run's heartbeat.json (or
  the `runs.pid` column); the worker ends the run as `interrupted`.
* Retry a failed or interrupted run = set it back to `queued` in the store with a retry request
  (`retry_run`); `ncbench run` reruns it, resuming from its checkpoint.

These are the actions; when the TUI takes them (may this run be retried, start or restart the
queue for it) is decided by `ncbench.tui.controller`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ncbench.errors import ControlError, NcbenchError
from ncbench.events import utcnow
from ncbench.lifecycle import QUEUED
from ncbench.rundir import QUEUE_LOG, run_dir_of

__all__ = ["QueueController", "cancel_run", "retry_run", "worker_pid"]


class QueueController:
    """Starts and stops one `ncbench run` child process for a config (the TUI's queue).

    `workdir`: the queue's run directories (`ncbench.paths` resolves it, as for every command);
    `command` replaces the whole argv (by default `python -m ncbench run [EXPERIMENT…] --config C
    --db D --workdir W` + `run_args`, e.g. `["--workers", "2"]`); `log_path` receives its stdout
    and stderr (default `<workdir>/tui-queue.log`).
    """

    def __init__(self, config_path: str | Path | None, db_path: str | Path,
                 experiments: Sequence[str] = (), *, workdir: str | Path,
                 log_path: str | Path | None = None, command: Sequence[str] | None = None,
                 run_args: Sequence[str] = ()):
        self.config_path = Path(config_path) if config_path else None
        self.db_path = Path(db_path)
        self.experiments = list(experiments)
        self.workdir = Path(workdir)
        self.log_path = Path(log_path) if log_path else self.workdir / QUEUE_LOG
        self._command = list(command) if command else None
        self.run_args = list(run_args)
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        #: The experiments the queue process was started with (the config's default if none).
        self.running_experiments: list[str] = []

    @property
    def command(self) -> list[str]:
        return self.command_for(self.experiments)

    def command_for(self, experiments: Sequence[str]) -> list[str]:
        """The argv that runs `experiments` (empty: the config's default ones)."""
        if self._command:
            return list(self._command)
        cmd = [sys.executable, "-m", "ncbench", "run", *experiments]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += ["--db", str(self.db_path), "--workdir", str(self.workdir)]
        return cmd + self.run_args

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def default_experiments(self) -> list[str]:
        """What `ncbench run` runs without names: the config's `default` (else all)."""
        from ncbench.config import load_config

        cfg = load_config(self.config_path) if self.config_path else None
        return list(cfg.default or cfg.names) if cfg else []

    def start(self, also: Sequence[str] = ()) -> str:
        """Spawn the queue unless it runs already; `also`: experiments to run besides the
        TUI's own (e.g. the experiment of a retried run). Returns a message for the user."""
        if self.config_path is None:
            raise ControlError("no experiments.toml given: cannot start the queue "
                               "(pass --config)")
        if self.running:
            return f"queue already running (pid {self.pid})"
        experiments = list(self.experiments)
        if also:
            base = experiments or self.default_experiments()
            extra = [e for e in also if e not in base]
            if extra:
                experiments = base + extra
        argv = self.command_for(experiments)
        if not experiments:
            try:
                experiments = self.default_experiments()
            except NcbenchError:  # a bad config: `ncbench run` itself says why (in the log)
                experiments = []
        self.running_experiments = experiments
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        finally:
            log.close()
        self.started_at = time.monotonic()
        return f"queue started (pid {self.proc.pid}; log {self.log_path.name})"

    def runs_experiment(self, experiment: str) -> bool:
        """Whether the running queue covers `experiment`: it then reruns a run of it that is
        queued again (a retry): the local queue at its next free slot, a Slurm grid once its
        jobs are over (`ncbench.grid.run_grid`)."""
        return self.running and experiment in self.running_experiments

    def last_log_line(self) -> str | None:
        """The queue log's last non-empty line (why it exited), if any."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        return next((line.strip() for line in reversed(lines) if line.strip()), None)

    def stop(self) -> str:
        """Send SIGINT (Ctrl-C) to the queue: it stops its workers and exits."""
        if not self.running:
            return "queue is not running"
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return f"stopping queue (SIGINT to pid {self.proc.pid})"

    def shutdown(self, timeout: float = 30.0) -> int | None:
        """Stop the queue and wait for it: SIGINT, then SIGTERM, then SIGKILL after `timeout`
        seconds each. Returns its exit code (None if it was never started)."""
        if self.proc is None:
            return None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()


def worker_pid(workdir: str | Path | None, run_id: str, db_pid: int | None = None,
               db_host: str | None = None) -> tuple[int, str | None]:
    """The pid (and host) of a run's worker: heartbeat.json in `<workdir>/runs/<run_id>/`,
    else the pid stored in the database. ControlError if neither is known."""
    if workdir is not None:
        from ncbench.events import read_heartbeat

        beat = read_heartbeat(run_dir_of(workdir, run_id))
        if beat and isinstance(beat.get("pid"), int):
            return beat["pid"], beat.get("host")
    if db_pid:
        return int(db_pid), db_host
    raise ControlError(f"run {run_id}: no worker pid known (no heartbeat.json yet)")


def _looks_like_worker(pid: int) -> bool:
    """On Linux, check that `pid` is a Python/ncbench process (guards against a reused pid)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # not Linux, or already gone (os.kill will tell)
    try:
        text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True
    return "python" in text or "ncbench" in text


def cancel_run(workdir: str | Path | None, run_id: str, *, db_pid: int | None = None,
               db_host: str | None = None) -> str:
    """Send SIGTERM to a running run's worker (it ends the run `interrupted`)."""
    pid, host = worker_pid(workdir, run_id, db_pid, db_host)
    here = socket.gethostname()
    if host and host not in (here, here.split(".")[0]) and host.split(".")[0] != here.split(".")[0]:
        raise ControlError(f"run {run_id} runs on host {host}, not here ({here}); "
                           "cancel it there (or with scancel for a Slurm job)")
    if not _looks_like_worker(pid):
        raise ControlError(f"run {run_id}: pid {pid} is not an ncbench worker any more")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise ControlError(f"run {run_id}: worker pid {pid} is not running") from None
    except PermissionError:
        raise ControlError(f"run {run_id}: not allowed to signal pid {pid}") from None
    return f"cancelling run {run_id} (SIGTERM to worker pid {pid})"


def retry_run(db_path: str | Path, run_id: str) -> str:
    """Set a failed / interrupted run back to `queued` with a retry request
    (`runs.retry_requested_at`, cleared when its next attempt starts): a running `ncbench run`
    of its experiment reruns it (resuming from its checkpoint), and so does the next one.
    Diverged runs are not rerun by `ncbench run` (they are deterministic)."""
    from ncbench.store import Store

    now = utcnow()
    if not Store(db_path, lock_timeout=10.0).set_status(run_id, QUEUED, error=None,
                                                         finished_at=None, retry_requested_at=now):
        raise ControlError(f"run {run_id} is not in the database")
    return f"run {run_id} queued again"
