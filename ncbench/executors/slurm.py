"""The Slurm executor: one Slurm job per run (or one job array), submitted through submitit.

Flow. `SlurmExecutor.run` prepares each run directory, submits a `SlurmRunJob(run_dir)` per run
(all runs as one job array when `array` is on, at most `array_parallelism` at a time), records
the job id in the run dir (`slurm.json`) and in the database (`slurm_job_id`, executor `slurm`,
status `queued`), then — unless `detach` — polls until every job is over: Slurm's view of each
job (`squeue`, then `sacct` for jobs the controller has forgotten) and the run's own event log
(read from the shared filesystem and ingested with `store.sync`) decide the run's status.
`refresh(db_path, workdir)` does one such poll for `ncbench status`, so a detached grid's results
are picked up later without any manager running.

Inside the job. `SlurmRunJob.__call__` starts `python -m ncbench.worker RUN_DIR` as a child
process (the same worker as the local executor: events, heartbeat, checkpoints in the run dir),
with `NCBENCH_EXECUTOR=slurm`, `NCBENCH_SLOT` = `gpu<CUDA_VISIBLE_DEVICES>` (the GPUs Slurm's GRES
gave the job) or `cpu`, and `NCBENCH_THREADS` = the job's CPUs. Preemption or a near time limit:
Slurm sends SIGUSR2 (`--signal=USR2@signal_delay_s`), submitit calls `SlurmRunJob.checkpoint`,
which stops the worker gracefully (SIGTERM: it ends `interrupted` before its next batch) and
hands submitit a fresh `SlurmRunJob`; submitit requeues the job (`scontrol requeue`) and the next
start of the job resumes the run from its last checkpoint (at most `max_requeues` times for
time limits; preemptions do not count). The worker ignores SIGUSR2 itself (the signal reaches
every process of the job step).

States (Slurm → ncbench, `map_state`): PENDING, REQUEUED, CONFIGURING… → `queued`; RUNNING,
COMPLETING… → `running`; COMPLETED → `done` (the run's own `end` event wins: a run that failed
or diverged inside a completed job says so); FAILED, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL →
`failed` (cause from Slurm and the job's stderr); CANCELLED, TIMEOUT, PREEMPTED, DEADLINE →
`interrupted` (a later `ncbench run` resumes it); TIMEOUT/PREEMPTED jobs that were requeued show
PENDING again, hence `queued`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ncbench.errors import ConfigError, NcbenchError, closest
from ncbench.events import EventLog, read_events, utcnow_iso
from ncbench.executors import NullUI, RunUI, RunView, RunWatcher, mark_ended, prepare_run_dir, run_dir_of
from ncbench.runs import RunSpec

__all__ = [
    "SlurmExecutor", "SlurmOptions", "SlurmRunJob", "SlurmUnavailableError", "JobState",
    "check_options", "slurm_options_from_cli", "map_state", "query_jobs", "refresh",
    "SLURM_STATE_MAP", "SLURM_RECORD",
]

#: Per-run record of the Slurm job that runs it: `<run_dir>/slurm.json`.
SLURM_RECORD = "slurm.json"

#: Slurm job state (first word of squeue/sacct's State) → ncbench run status. A final Slurm
#: state is only a fallback: the run's own `end` event decides when there is one.
SLURM_STATE_MAP: dict[str, str] = {
    # waiting
    "PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued", "REQUEUE_FED": "queued",
    "CONFIGURING": "queued", "RESV_DEL_HOLD": "queued", "POWER_UP_NODE": "queued",
    # holding resources
    "RUNNING": "running", "COMPLETING": "running", "STAGE_OUT": "running", "SIGNALING": "running",
    "RESIZING": "running", "SUSPENDED": "running", "STOPPED": "running", "UPDATE_DB": "running",
    # over
    "COMPLETED": "done",
    "FAILED": "failed", "OUT_OF_MEMORY": "failed", "NODE_FAIL": "failed", "BOOT_FAIL": "failed",
    "SPECIAL_EXIT": "failed",
    "CANCELLED": "interrupted", "TIMEOUT": "interrupted", "PREEMPTED": "interrupted",
    "DEADLINE": "interrupted", "REVOKED": "interrupted",
}
_ACTIVE = ("queued", "running")
#: Seconds a job may be unknown to both squeue and sacct before its run is declared lost.
LOST_AFTER_S = 60.0


def map_state(slurm_state: str | None) -> str | None:
    """The ncbench status for a Slurm state ("CANCELLED by 0" → "interrupted"); None if unknown."""
    if not slurm_state:
        return None
    word = slurm_state.split()[0].rstrip("+").upper()
    return SLURM_STATE_MAP.get(word)


class SlurmUnavailableError(NcbenchError):
    """Slurm's commands are missing or do not answer here."""


# ----------------------------------------------------------------------------------------------
# options: [executor.slurm] and the command line
# ----------------------------------------------------------------------------------------------


@dataclass
class SlurmOptions:
    """What a Slurm job asks for, and how the manager behaves. Keys of `[executor.slurm]`.

    `partition`, `account`, `qos`: passed to sbatch as is (None: the cluster's default);
    `gpus_per_run`: GPUs per job (Slurm GRES; 0: none); `cpus_per_run`: CPUs per job (also the
    worker's torch threads); `mem_gb`: memory per job (None: the cluster's default);
    `time_min`: time limit per job in minutes; `array`: submit the runs of one invocation as one
    job array (else one job per run); `array_parallelism`: at most this many array tasks at a
    time (None: no limit); `max_requeues`: times a job is requeued after reaching its time limit
    (it resumes from its checkpoint each time); `signal_delay_s`: seconds before the time limit
    at which the job is told to checkpoint and requeue (None: 90 s, less for short limits);
    `extra`: more sbatch options (`{"constraint": "a100", "exclude": "node3"}`);
    `detach`: return once submitted (`ncbench status` picks the results up later);
    `retries`: times a failed run is submitted again; `poll_interval`: seconds between polls;
    `python`: the command that runs Python in the job (default: this interpreter)."""

    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    account: str | None = None
    qos: str | None = None
    array: bool = True
    array_parallelism: int | None = None
    max_requeues: int = 3
    signal_delay_s: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    detach: bool = False
    retries: int = 0
    poll_interval: float = 1.0
    python: str | None = None

    def effective_signal_delay(self) -> int:
        """The USR2 lead time: `signal_delay_s`, else 90 s — but at most a quarter of the time
        limit (submitit's fixed 90 s would fire before a 1-minute job even starts)."""
        if self.signal_delay_s is not None:
            return self.signal_delay_s
        return int(min(90, max(10, self.time_min * 60 // 4)))

    def sbatch_parameters(self) -> dict[str, Any]:
        """The parameters of `submitit.SlurmExecutor.update_parameters`."""
        p: dict[str, Any] = {"time": self.time_min, "cpus_per_task": self.cpus_per_run,
                             "ntasks_per_node": 1, "signal_delay_s": self.effective_signal_delay()}
        for key in ("partition", "account", "qos"):
            if getattr(self, key) is not None:
                p[key] = getattr(self, key)
        if self.gpus_per_run:
            p["gpus_per_node"] = self.gpus_per_run
        if self.mem_gb is not None:
            p["mem"] = _mem(self.mem_gb)
        if self.array_parallelism is not None:
            p["array_parallelism"] = self.array_parallelism
        if self.extra:
            p["additional_parameters"] = {str(k).replace("_", "-"): v for k, v in self.extra.items()}
        return p


OPTION_KEYS: tuple[str, ...] = tuple(f.name for f in fields(SlurmOptions))
#: Keys of `[executor.slurm]` that `ncbench run` also takes as flags (see `slurm_options_from_cli`).
CLI_FLAGS = {"partition": "--partition", "gpus_per_run": "--slurm-gpus",
             "cpus_per_run": "--slurm-cpus", "mem_gb": "--slurm-mem-gb",
             "time_min": "--slurm-time", "account": "--account", "qos": "--qos",
             "array_parallelism": "--array-parallelism", "detach": "--detach"}


def _mem(gb: float) -> str:
    return f"{int(gb)}G" if float(gb) == int(gb) else f"{int(round(gb * 1024))}M"


def check_options(table: Mapping[str, Any], file: str | os.PathLike | None = None) -> SlurmOptions:
    """Validate a raw `[executor.slurm]` table (plus command-line overrides) into SlurmOptions.
    Unknown keys and bad values are ConfigErrors naming the file and `executor.slurm.<key>`
    (with the closest valid key)."""
    fname = str(file) if file is not None else None

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(fname, reason, key=f"executor.slurm.{key}")

    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in OPTION_KEYS:
            hint = closest(key, OPTION_KEYS)
            raise fail(key, "unknown key" + (f" (did you mean '{hint}'?)" if hint else "")
                       + f"; valid: {', '.join(OPTION_KEYS)}")
        if value is None:
            continue
        if key in ("partition", "account", "qos", "python"):
            if not isinstance(value, str) or not value.strip():
                raise fail(key, f"expected a non-empty string, got {value!r}")
        elif key in ("gpus_per_run", "max_requeues", "retries"):
            value = _int(value, 0, fail, key)
        elif key in ("cpus_per_run", "time_min", "array_parallelism"):
            value = _int(value, 1, fail, key)
        elif key == "signal_delay_s":
            value = _int(value, 1, fail, key)
        elif key in ("mem_gb", "poll_interval"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise fail(key, f"expected a positive number, got {value!r}")
            value = float(value)
        elif key in ("array", "detach"):
            if not isinstance(value, bool):
                raise fail(key, f"expected true or false, got {value!r}")
        elif key == "extra":
            if not isinstance(value, Mapping):
                raise fail(key, f"expected a table of sbatch options, e.g. "
                                f"{{ constraint = \"a100\" }}, got {value!r}")
            value = dict(value)
        out[key] = value
    opts = SlurmOptions(**out)
    if opts.signal_delay_s is not None and opts.signal_delay_s >= opts.time_min * 60:
        raise fail("signal_delay_s", f"{opts.signal_delay_s} s is not shorter than the time limit "
                                     f"({opts.time_min} min): the job would be told to requeue "
                                     "before it starts")
    return opts


def _int(value: Any, minimum: int, fail, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(key, f"expected an integer ≥ {minimum}, got {value!r}")
    return value


def slurm_options_from_cli(**flags: Any) -> dict[str, Any]:
    """The `[executor.slurm]` overrides given on the command line: the non-None values among
    CLI_FLAGS' keys (`detach` only when true). `ncbench run` passes them to `run_grid`."""
    out = {k: v for k, v in flags.items() if k in CLI_FLAGS and v is not None}
    if out.get("detach") is False:
        out.pop("detach")
    return out


# ----------------------------------------------------------------------------------------------
# asking Slurm about jobs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    """What Slurm says about one job: `state` (e.g. "RUNNING", "CANCELLED"), `reason` (squeue's
    pending/failure reason or sacct's), `exit_code` ("0:0"), `source` ("squeue" | "sacct")."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: str = ""
    source: str = "squeue"

    @property
    def status(self) -> str | None:
        return map_state(self.state)


def slurm_available() -> bool:
    """True when squeue is on PATH (the manager's and refresh's cheap check)."""
    return shutil.which("squeue") is not None


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def query_jobs(job_ids: Iterable[str], *, timeout: float = 20.0) -> dict[str, JobState]:
    """The states of `job_ids` ("123", or "123_4" for array tasks): from `squeue` (the
    controller's live view, including jobs finished in the last MinJobAge seconds) and, for the
    ids it does not know, from `sacct` (accounting; absent on clusters without it). Ids neither
    knows are left out. Never raises for Slurm being absent or slow: it just knows less."""
    ids = sorted({str(j) for j in job_ids if j})
    out: dict[str, JobState] = {}
    if not ids:
        return out
    res = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(ids)], timeout)
    if res is not None and res.returncode == 0:
        for line in res.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0] in ids:
                out[parts[0]] = JobState(parts[0], parts[1], parts[2] if len(parts) > 2 else "")
    missing = [j for j in ids if j not in out]
    if missing and shutil.which("sacct"):
        res = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode,Reason",
                    "-j", ",".join(missing)], timeout)
        if res is not None and res.returncode == 0:
            for line in res.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) >= 2 and parts[0] in missing:
                    out[parts[0]] = JobState(parts[0], parts[1].split()[0] if parts[1] else "",
                                             parts[3] if len(parts) > 3 else "",
                                             parts[2] if len(parts) > 2 else "", "sacct")
    return out


# ----------------------------------------------------------------------------------------------
# the job: runs the worker on the allocated node
# ----------------------------------------------------------------------------------------------


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
        last = next((e for e in reversed(read_events(run_dir))
                     if e.get("type") in ("start", "end")), None)
        if last is not None and last.get("type") == "start":
            # This job runs again (requeued) and its previous attempt was killed before it could
            # write its end (e.g. SIGKILL after KillWait): close that attempt first.
            EventLog(run_dir).end("interrupted", error=f"attempt {last.get('attempt')} stopped "
                                  f"without an end event (Slurm job {jid} restarted)", by="slurm-job")
        with open(run_dir / "worker.log", "ab") as log:
            log.write(f"--- Slurm job {jid} on {socket.gethostname()}, slot "
                      f"{env['NCBENCH_SLOT']} (restart {env.get('SLURM_RESTART_COUNT', '0')}) ---\n"
                      .encode())
            log.flush()
            self._proc = subprocess.Popen([sys.executable, "-m", "ncbench.worker", str(run_dir)],
                                          env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_ignore_usr2)
            rc = self._proc.wait()
        ends = [e for e in read_events(run_dir) if e.get("type") == "end"]
        status = ends[-1].get("status") if ends else None
        if status == "failed" or (status is None and rc != 0):
            error = ends[-1].get("error") if ends else f"worker exit code {rc} without an end event"
            raise RunFailedError(f"run {run_dir.name} failed: {error}")
        return status or "done"

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


# ----------------------------------------------------------------------------------------------
# deciding a run's status from its events and its job
# ----------------------------------------------------------------------------------------------


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """`<run_dir>/slurm.json` (job_id, submitted_at, ends_before, stderr), or None."""
    try:
        return json.loads((Path(run_dir) / SLURM_RECORD).read_text())
    except (OSError, ValueError):
        return None


def _write_record(run_dir: Path, record: dict) -> None:
    from ncbench.events import atomic_write_text

    atomic_write_text(run_dir / SLURM_RECORD, json.dumps(record, indent=1))


@dataclass
class Verdict:
    """`decide`'s answer: the run's `status` now, `final` (nothing more will happen in this job),
    `mark` (an `end` event the executor must append: (status, error), for a job that ended
    without its worker writing one), `slot` (from the latest start event), `slurm_state`."""

    status: str
    final: bool
    mark: tuple[str, str] | None = None
    slot: str | None = None
    slurm_state: str | None = None
    attempt: int | None = None


def _tail_error(path: str | None) -> str | None:
    """The last line of a job's stderr that looks like an error."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    except OSError:
        return None
    for ln in reversed(lines):
        if ("Error" in ln or "error" in ln or "Killed" in ln) and not ln.startswith("Traceback"):
            return ln[:300]
    return None


def decide(run_dir: Path, record: dict, job: JobState | None, *,
           now: float | None = None) -> Verdict:
    """The status of a run from the events its job wrote (after `record["ends_before"]` end
    events, i.e. since submission) and Slurm's `job` state (None: unknown to Slurm).

    The events decide while the job is alive (start without end → running; a requeued job's
    worker ended `interrupted` and the job is PENDING → queued) and when it is over (the last
    end wins). A job over without an end after its last start gets one: its cause from Slurm."""
    since = _since_submission(run_dir, record)
    starts = [e for e in since if e.get("type") == "start"]
    slot = starts[-1].get("slot") if starts else None
    attempt = starts[-1].get("attempt") if starts else int(record.get("ends_before") or 0) + 1
    last = next((e for e in reversed(since) if e.get("type") in ("start", "end")), None)
    jid = record.get("job_id")
    live = job.status if job is not None else None
    state = job.state if job is not None else None

    if live in _ACTIVE:
        if last is not None and last.get("type") == "start":
            # (a start left open by an attempt killed before its end is closed by the job's
            # next start, `SlurmRunJob.__call__`: only it knows for sure that attempt is gone)
            return Verdict("running" if live == "running" else "queued", False, slot=slot,
                           slurm_state=state, attempt=attempt)
        if last is not None and last.get("type") == "end" and live == "running":
            # the worker has ended; the job is finishing (or is being requeued)
            return Verdict(str(last.get("status") or "failed"), False, slot=slot,
                           slurm_state=state, attempt=attempt)
        return Verdict(live, False, slot=slot, slurm_state=state, attempt=attempt)

    # The job is over (or unknown to Slurm).
    if last is not None and last.get("type") == "end":
        return Verdict(str(last.get("status") or "failed"), True, slot=slot, slurm_state=state,
                       attempt=attempt)
    if job is None:
        submitted = record.get("submitted_unix") or 0
        if (now or time.time()) - submitted < LOST_AFTER_S:
            return Verdict("queued" if last is None else "running", False, slot=slot)
        err = f"Slurm job {jid} is unknown to squeue and sacct and the run wrote no end event"
        return Verdict("failed", True, ("failed", err), slot, None)
    final = job.status or "failed"
    if final == "done":  # COMPLETED, yet no end event from the worker
        final = "failed"
        cause = f"Slurm job {jid} COMPLETED but the run wrote no end event"
    else:
        cause = f"Slurm job {jid} {state}"
        if job.reason and job.reason != "None":
            cause += f" ({job.reason})"
        if job.exit_code and job.exit_code not in ("0:0", ""):
            cause += f", exit code {job.exit_code}"
    if final == "failed":
        tail = _tail_error(record.get("stderr"))
        if tail:
            cause += f": {tail}"
    return Verdict(final, True, (final, cause), slot, state)


def _since_submission(run_dir: Path, record: dict) -> list[dict]:
    """The events written after the `ends_before` end events present at submission."""
    ends_before = int(record.get("ends_before") or 0)
    seen_ends, since = 0, []
    for e in read_events(run_dir):
        if seen_ends >= ends_before:
            since.append(e)
        if e.get("type") == "end":
            seen_ends += 1
    return since


def _open_attempt(run_dir: Path, record: dict) -> bool:
    """True when, since submission, no `end` follows the last `start` (or nothing started)."""
    last = next((e for e in reversed(_since_submission(run_dir, record))
                 if e.get("type") in ("start", "end")), None)
    return last is None or last.get("type") == "start"


def _apply(w, run_dir: Path, record: dict, verdict: Verdict) -> None:
    """Write a verdict: the missing end event, then the Slurm facts in the database (inside an
    open write session `w`, after `w.sync` of the run)."""
    rid = run_dir.name
    if verdict.mark is not None:
        # re-check: the worker (or another ncbench process) may have just written it
        if _open_attempt(run_dir, record):
            mark_ended(run_dir, verdict.mark[0], verdict.mark[1], slurm_job_id=record.get("job_id"),
                       slurm_state=verdict.slurm_state)
        w.ingest_run_dir(run_dir)
    fields: dict[str, Any] = {"executor": "slurm", "slurm_job_id": record.get("job_id")}
    if verdict.slot:
        fields["slot"] = verdict.slot
    status = verdict.status
    if verdict.final and w.retry_requests([rid]):
        status = "queued"  # retried (the TUI) as its job was ending: it is submitted again
    w.set_status(rid, status, **fields)


# ----------------------------------------------------------------------------------------------
# the executor
# ----------------------------------------------------------------------------------------------


@dataclass
class _Tracked:
    spec: RunSpec
    run_dir: Path
    record: dict
    watcher: RunWatcher
    retries_left: int = 0
    done: bool = False


class SlurmExecutor:
    """`ncbench run --executor slurm`: see the module doc. Options: the keys of SlurmOptions
    (`[executor.slurm]` and the command line); `config_file` names the file in errors."""

    name = "slurm"

    def __init__(self, config_file: str | os.PathLike | None = None, **options: Any):
        self.options = check_options(options, config_file)

    # -- submission ------------------------------------------------------------------------------
    def _submitit(self, workdir: Path):
        import submitit

        folder = workdir / "slurm" / "%j"
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.options.max_requeues,
                                    python=self.options.python)
        ex.update_parameters(**self.options.sbatch_parameters())
        return ex

    def submit(self, specs: Sequence[RunSpec], workdir: Path) -> dict[str, dict]:
        """Submit one job per run (one array when `array` and more than one run); write each
        run's slurm.json; returns run_id -> record."""
        if not specs:
            return {}
        if shutil.which("sbatch") is None:
            raise SlurmUnavailableError(
                "--executor slurm: `sbatch` is not on PATH (no Slurm client here). Run on a login "
                "node of the cluster, or start a local test cluster with scripts/slurm-local.sh start")
        ex = self._submitit(workdir)
        dirs = [prepare_run_dir(workdir, s) for s in specs]
        ends = [sum(1 for e in read_events(d) if e.get("type") == "end") for d in dirs]
        fns = [SlurmRunJob(d) for d in dirs]
        try:
            if self.options.array and len(fns) > 1:
                ex.update_parameters(job_name="ncbench")
                jobs = ex.submit_array(fns)
            else:
                jobs = []
                for spec, fn in zip(specs, fns):
                    ex.update_parameters(job_name=f"ncbench-{spec.run_id}")
                    jobs.append(ex.submit(fn))
        except Exception as exc:  # sbatch refused: show Slurm's own words
            msg = str(exc).strip().splitlines()
            raise SlurmUnavailableError("sbatch refused the job(s): "
                                        + next((m for m in reversed(msg) if "error" in m.lower()),
                                               msg[-1] if msg else type(exc).__name__)) from None
        out = {}
        for spec, d, n_end, job in zip(specs, dirs, ends, jobs):
            record = {"job_id": str(job.job_id), "submitted_at": utcnow_iso(),
                      "submitted_unix": time.time(), "ends_before": n_end,
                      "stderr": str(job.paths.stderr), "stdout": str(job.paths.stdout),
                      "submission": str(job.paths.submission_file)}
            _write_record(d, record)
            out[spec.run_id] = record
        return out

    # -- the manager loop ------------------------------------------------------------------------
    def run(self, specs: Sequence[RunSpec], workdir: Path, store,
            ui: RunUI | None = None, requeued=None) -> dict[str, str]:
        """Submit `specs` (adopting runs whose recorded job is still queued or running), then
        poll until all are over (or return at once with `detach`); returns run_id -> status.
        `requeued` is not used: every run is submitted at once, and Slurm queues them; runs
        retried meanwhile are submitted by `run_grid` when this returns."""
        ui = ui or NullUI()
        workdir = Path(workdir)
        tracked: dict[str, _Tracked] = {}
        to_submit: list[RunSpec] = []
        recorded = {s.run_id: read_record(run_dir_of(workdir, s.run_id)) for s in specs}
        alive = query_jobs([r["job_id"] for r in recorded.values() if r and r.get("job_id")])
        for spec in specs:
            rec = recorded[spec.run_id]
            job = alive.get(rec.get("job_id")) if rec else None
            if rec and job is not None and job.status in _ACTIVE:
                ui.note(f"run {spec.run_id}: Slurm job {rec['job_id']} is still {job.state}; "
                        "following it (not submitted again)")
                tracked[spec.run_id] = self._track(spec, workdir, rec)
            else:
                to_submit.append(spec)
        records = self.submit(to_submit, workdir)
        for spec in to_submit:
            tracked[spec.run_id] = self._track(spec, workdir, records[spec.run_id])
        if records:
            ids = sorted({r["job_id"].split("_")[0] for r in records.values()})
            array = " (array)" if self.options.array and len(records) > 1 else ""
            ui.note(f"submitted {len(records)} run(s) to Slurm: job{'s' if len(ids) > 1 else ''} "
                    f"{', '.join(ids)}{array}")
        with store.write() as w:
            for t in tracked.values():
                w.set_status(t.spec.run_id, "queued", executor="slurm",
                             slurm_job_id=t.record["job_id"], error=None, finished_at=None, slot=None)
        views = {rid: t.watcher.view for rid, t in tracked.items()}
        if self.options.detach:
            ui.update(list(views.values()))
            ui.note(f"detached: {len(tracked)} Slurm job(s) run on; `ncbench status` picks up "
                    "their results")
            return {rid: "queued" for rid in tracked}
        return self._poll(tracked, workdir, store, ui)

    def _track(self, spec: RunSpec, workdir: Path, record: dict) -> _Tracked:
        d = run_dir_of(workdir, spec.run_id)
        view = RunView(spec.run_id, spec.label, spec.epochs)
        watcher = RunWatcher(d, view)
        return _Tracked(spec, d, record, watcher, self.options.retries)

    def _poll(self, tracked: dict[str, _Tracked], workdir: Path, store, ui: RunUI) -> dict[str, str]:
        results: dict[str, str] = {}
        try:
            while True:
                active = [t for t in tracked.values() if not t.done]
                if not active:
                    break
                for t in active:
                    t.watcher.poll()
                jobs = query_jobs([t.record["job_id"] for t in active])
                resubmit: list[_Tracked] = []
                try:
                    with store.write() as w:
                        w.sync(workdir, run_ids=[t.spec.run_id for t in active])
                        for t in active:
                            v = decide(t.run_dir, t.record, jobs.get(t.record["job_id"]))
                            _apply(w, t.run_dir, t.record, v)
                            view = t.watcher.view
                            jid = t.record["job_id"]
                            # a run ended in a job that is still finishing shows as running
                            # until the job is over (it may yet be requeued or retried)
                            view.status = v.status if v.final or v.status in _ACTIVE else "running"
                            view.slot = f"{v.slot} job {jid}" if v.slot else f"job {jid}"
                            view.attempt = v.attempt or view.attempt
                            view.note = f"Slurm {jid} {v.slurm_state or ''}".strip()
                            if v.final:
                                if v.status == "failed" and t.retries_left > 0:
                                    t.retries_left -= 1
                                    resubmit.append(t)
                                    continue
                                t.done = True
                                results[t.spec.run_id] = v.status
                                err = _last_end_error(t.run_dir)
                                view.error = err
                                if v.status == "failed":
                                    ui.note(f"run {t.spec.run_id} ({t.spec.label}) failed: {err}")
                except Exception as exc:  # noqa: BLE001 - a busy database must not stop the loop
                    from ncbench.errors import StoreError

                    if not isinstance(exc, StoreError):
                        raise
                    ui.note(f"database sync failed (will retry): {exc}")
                for t in resubmit:
                    ui.note(f"run {t.spec.run_id} failed; submitting it again "
                            f"({t.retries_left} retries left after this)")
                    t.record = self.submit([t.spec], workdir)[t.spec.run_id]
                    t.watcher.view.status = "queued"
                ui.update([t.watcher.view for t in tracked.values()])
                if any(not t.done for t in tracked.values()):
                    time.sleep(self.options.poll_interval)
        except KeyboardInterrupt:
            left = [t for t in tracked.values() if not t.done]
            ids = " ".join(t.record["job_id"] for t in left)
            ui.note(f"stopped watching: {len(left)} Slurm job(s) run on ({ids}); `ncbench status` "
                    f"picks up their results, `scancel {ids}` stops them")
            for t in left:
                results[t.spec.run_id] = t.watcher.view.status
        ui.update([t.watcher.view for t in tracked.values()])
        return results


def _last_end_error(run_dir: Path) -> str | None:
    ends = [e for e in read_events(run_dir) if e.get("type") == "end"]
    return ends[-1].get("error") if ends else None


# ----------------------------------------------------------------------------------------------
# refresh: one poll for `ncbench status` (no manager needed)
# ----------------------------------------------------------------------------------------------


def refresh(db_path: str | os.PathLike, workdir: str | os.PathLike, *, lock_timeout: float = 3.0) -> int:
    """Bring the database up to date for runs submitted to Slurm that it still shows `queued` or
    `running`: ingest their run dirs and apply Slurm's job states (as the manager would).
    Returns the number of runs looked at. Cheap when there is nothing to do (no
    `<workdir>/slurm` folder: returns at once; no such runs: one read-only query). Never
    raises: without Slurm it only ingests the run dirs; a busy database is left for later."""
    workdir, db_path = Path(workdir), Path(db_path)
    if not (workdir / "slurm").is_dir() or not db_path.exists():
        return 0
    try:
        from ncbench.store import Store, query_dicts, read_connection

        with read_connection(db_path, timeout=lock_timeout) as con:
            rows = query_dicts(con, "SELECT run_id FROM runs WHERE executor = 'slurm' "
                                    "AND status IN ('queued', 'running')")
        todo = []
        for r in rows:
            d = run_dir_of(workdir, r["run_id"])
            rec = read_record(d)
            if rec and rec.get("job_id"):
                todo.append((d, rec))
        if not todo:
            return 0
        jobs = query_jobs([rec["job_id"] for _, rec in todo], timeout=10.0) if slurm_available() else {}
        store = Store(db_path, lock_timeout=lock_timeout)
        with store.write() as w:
            w.sync(workdir, run_ids=[d.name for d, _ in todo])
            for d, rec in todo:
                job = jobs.get(rec["job_id"])
                if job is None and not slurm_available():
                    continue  # cannot tell: leave the run as its events say
                _apply(w, d, rec, decide(d, rec, job))
        return len(todo)
    except Exception:  # noqa: BLE001 - status must work whatever happens here
        return 0
