"""Talking to Slurm: which job states mean which run status, and what squeue/sacct say about jobs.

`query_jobs` asks `squeue` (the controller's live view), then `sacct` (accounting) for the ids
the controller has forgotten, and never raises for Slurm being absent or slow; `map_state`
(SLURM_STATE_MAP) maps a Slurm state to an ncbench status (`ncbench.lifecycle`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from ncbench.lifecycle import DONE, FAILED, INTERRUPTED, QUEUED, RUNNING

__all__ = ["SLURM_STATE_MAP", "JobState", "map_state", "query_jobs", "slurm_available"]

#: Slurm job state (first word of squeue/sacct's State) → ncbench run status. A final Slurm
#: state is only a fallback: the run's own `end` event decides when there is one.
SLURM_STATE_MAP: dict[str, str] = {
    # waiting
    "PENDING": QUEUED, "REQUEUED": QUEUED, "REQUEUE_HOLD": QUEUED, "REQUEUE_FED": QUEUED,
    "CONFIGURING": QUEUED, "RESV_DEL_HOLD": QUEUED, "POWER_UP_NODE": QUEUED,
    # holding resources
    "RUNNING": RUNNING, "COMPLETING": RUNNING, "STAGE_OUT": RUNNING, "SIGNALING": RUNNING,
    "RESIZING": RUNNING, "SUSPENDED": RUNNING, "STOPPED": RUNNING, "UPDATE_DB": RUNNING,
    # over
    "COMPLETED": DONE,
    "FAILED": FAILED, "OUT_OF_MEMORY": FAILED, "NODE_FAIL": FAILED, "BOOT_FAIL": FAILED,
    "SPECIAL_EXIT": FAILED,
    "CANCELLED": INTERRUPTED, "TIMEOUT": INTERRUPTED, "PREEMPTED": INTERRUPTED,
    "DEADLINE": INTERRUPTED, "REVOKED": INTERRUPTED,
}


def map_state(slurm_state: str | None) -> str | None:
    """The ncbench status for a Slurm state ("CANCELLED by 0" → "interrupted"); None if unknown."""
    if not slurm_state:
        return None
    word = slurm_state.split()[0].rstrip("+").upper()
    return SLURM_STATE_MAP.get(word)


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
