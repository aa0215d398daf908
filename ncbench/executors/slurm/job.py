"""What runs inside a Slurm job: `SlurmRunJob`, the callable that starts the worker on the run dir.

`SlurmRunJob.__call__` starts `python -m ncbench.worker RUN_DIR` as a child process (the same
worker as the local executor: events, heartbeat, checkpoints in the run dir), with
`NCBENCH_EXECUTOR=slurm`, `NCBENCH_SLOT` = `gpu<CUDA_VISIBLE_DEVICES>` (the GPUs Slurm's GRES
gave the job) or `cpu`, and `NCBENCH_THREADS` = the job's CPUs. Preemption or a near time limit:
Slurm sends SIGUSR2 (`--signal=USR2@signal_delay_s`), submitit calls `SlurmRunJob.checkpoint`,
which stops the worker gracefully (SIGTERM: it ends `interrupted` before its next batch) and
hands submitit a fresh `SlurmRunJob`; submitit requeues the job (`scontrol requeue`) and the next
start of the job resumes the run from its last checkpoint (at most `max_requeues` times for
time limits; preemptions do not count). The worker ignores SIGUSR2 itself (the signal reaches
every process of the job step).

submitit pickles the `SlurmRunJob` (only its `run_dir` and `stop_timeout`) and the job unpickles
it on the compute node, which imports this module from the installed package; submitit itself is
imported only inside `checkpoint`, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncbench.events import read_events
from ncbench.lifecycle import DONE, FAILED, INTERRUPTED, end_status, last_attempt_event, mark_ended
from ncbench.rundir import WORKER_LOG

__all__ = ["SlurmRunJob", "RunFailedError"]


def _job_slot(env: Mapping[str, str]) -> str:
    """`gpu<ids>` for the GPUs Slurm gave the job (CUDA_VISIBLE_DEVICES), else `cpu`."""
    gpus = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    return f"gpu{gpus}" if gpus else "cpu"


def _job_id_from_env(env: Mapping[str, str]) -> str | None:
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def _ignore_usr2() -> None:  # pragma: no cover - runs in the child between fork and exec
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` s for child `pid` to exit, without reaping it (WNOWAIT)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class RunFailedError(RuntimeError):
    """Raised by the job when its run failed (so Slurm and submitit see a failed job)."""


class SlurmRunJob:
    """The callable a Slurm job runs: the ncbench worker on `run_dir` (see the module doc).

    Implements submitit's checkpointing protocol (`submitit.helpers.Checkpointable`, duck-typed
    so this module imports without submitit): `checkpoint()` stops the worker gracefully and
    returns the submission that the requeued job will run. Holds only `run_dir` when pickled."""

    def __init__(self, run_dir: str | os.PathLike, stop_timeout: float = 60.0):
        self.run_dir = str(run_dir)
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        return {"run_dir": self.run_dir, "stop_timeout": self.stop_timeout}

    def __setstate__(self, state: dict) -> None:
        self.run_dir, self.stop_timeout = state["run_dir"], state.get("stop_timeout", 60.0)
        self._proc = None

    def worker_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The worker's environment inside the job: slot, executor, threads."""
        env = dict(os.environ if base is None else base)
        if not any(env.get(k) for k in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")):
            env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU allocated: never use one by accident
        env["NCBENCH_EXECUTOR"] = "slurm"
        env["NCBENCH_SLOT"] = _job_slot(env)
        env.setdefault("NCBENCH_THREADS", env.get("SLURM_CPUS_PER_TASK") or "1")
        env["NCBENCH_PARENT_PID"] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("NCBENCH_ATTEMPT", None)  # the worker counts attempts from the event log
        return env

    def __call__(self) -> str:
        run_dir = Path(self.run_dir)
        env = self.worker_env()
        jid = _job_id_from_env(env)
        last = last_attempt_event(read_events(run_dir))
        if last is not None and last.get("type") == "start":
            # This job runs again (requeued) and its previous attempt was killed before it could
            # write its end (e.g. SIGKILL after KillWait): close that attempt first.
            mark_ended(run_dir, INTERRUPTED, f"attempt {last.get('attempt')} stopped without an "
                       f"end event (Slurm job {jid} restarted)", by="slurm-job")
        with open(run_dir / WORKER_LOG, "ab") as log:
            log.write(f"--- Slurm job {jid} on {socket.gethostname()}, slot "
                      f"{env['NCBENCH_SLOT']} (restart {env.get('SLURM_RESTART_COUNT', '0')}) ---\n"
                      .encode())
            log.flush()
            self._proc = subprocess.Popen([sys.executable, "-m", "ncbench.worker", str(run_dir)],
                                          env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_ignore_usr2)
            rc = self._proc.wait()
        ends = [e for e in read_events(run_dir) if e.get("type") == "end"]
        status = end_status(ends[-1]) if ends else None
        if status == FAILED or (status is None and rc != 0):
            error = ends[-1].get("error") if ends else f"worker exit code {rc} without an end event"
            raise RunFailedError(f"run {run_dir.name} failed: {error}")
        return status or DONE

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on SIGUSR2 (preemption / time limit near): stop the worker (it
        ends `interrupted`; its last checkpoint stays), then return what the requeued job runs."""
        import submitit

        # This runs in a signal handler, possibly while __call__ sits in `Popen.wait()` holding
        # the Popen's wait lock: so never call Popen.wait/poll here (that would deadlock).
        proc = self._proc
        if proc is not None and not _exited(proc.pid, 0):
            os.kill(proc.pid, signal.SIGTERM)
            if not _exited(proc.pid, self.stop_timeout):
                os.kill(proc.pid, signal.SIGKILL)
                _exited(proc.pid, 10)
        return submitit.helpers.DelayedSubmission(SlurmRunJob(self.run_dir, self.stop_timeout))
