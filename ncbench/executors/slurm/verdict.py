"""Deciding a Slurm run's outcome: from its job record, Slurm's job state and its own events.

The job record (`<run_dir>/slurm.json`, `read_record` / `write_record`) says which job runs the
run and how many `end` events the run had when it was submitted, so only the events written
since count. `decide` turns the record, the events (`lifecycle.event_status`) and Slurm's
`JobState` into a `Verdict`: while the job lives the events decide (`running`, or `queued` for a
requeued job); once it is over the run's own last `end` wins (a run that failed or diverged
inside a COMPLETED job says so), and a job over without one gets an `end` whose cause comes
from Slurm and the job's stderr. `apply_verdict` writes a verdict: that missing `end` event
(`lifecycle.mark_ended`) and the Slurm facts in the database.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncbench.events import atomic_write_text, read_events
from ncbench.executors.slurm.scheduler import JobState
from ncbench.lifecycle import (
    ACTIVE, DONE, FAILED, QUEUED, RUNNING, attempt_after, event_status, last_attempt_event,
    mark_ended, status_with_retry,
)
from ncbench.rundir import SLURM_RECORD

__all__ = ["LOST_AFTER_S", "Verdict", "read_record", "write_record", "decide", "apply_verdict",
           "last_end_error"]

#: Seconds a job may be unknown to both squeue and sacct before its run is declared lost.
LOST_AFTER_S = 60.0


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """`<run_dir>/slurm.json` (job_id, submitted_at, ends_before, stderr), or None."""
    try:
        return json.loads((Path(run_dir) / SLURM_RECORD).read_text())
    except (OSError, ValueError):
        return None


def write_record(run_dir: Path, record: dict) -> None:
    """Write `<run_dir>/slurm.json` atomically (the submission's job record)."""
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
    end wins). A job over without an end after its last start gets one: its cause from Slurm.
    What the events say is `lifecycle.event_status`; the attempt is the last start's, else the
    one after the attempts ended before submission (`lifecycle.attempt_after`)."""
    before, since = _split_at_submission(run_dir, record)
    starts = [e for e in since if e.get("type") == "start"]
    slot = starts[-1].get("slot") if starts else None
    attempt = starts[-1].get("attempt") if starts else attempt_after(before)
    said = event_status(since)  # None (nothing since submission), running, or the last end's
    ended = said not in (None, RUNNING)
    jid = record.get("job_id")
    live = job.status if job is not None else None
    state = job.state if job is not None else None

    if live in ACTIVE:
        if said == RUNNING:
            # (a start left open by an attempt killed before its end is closed by the job's
            # next start, `SlurmRunJob.__call__`: only it knows for sure that attempt is gone)
            return Verdict(live, False, slot=slot, slurm_state=state, attempt=attempt)
        if ended and live == RUNNING:
            # the worker has ended; the job is finishing (or is being requeued)
            return Verdict(said, False, slot=slot, slurm_state=state, attempt=attempt)
        return Verdict(live, False, slot=slot, slurm_state=state, attempt=attempt)

    # The job is over (or unknown to Slurm).
    if ended:
        return Verdict(said, True, slot=slot, slurm_state=state, attempt=attempt)
    if job is None:
        submitted = record.get("submitted_unix") or 0
        if (now or time.time()) - submitted < LOST_AFTER_S:
            return Verdict(said or QUEUED, False, slot=slot)
        err = f"Slurm job {jid} is unknown to squeue and sacct and the run wrote no end event"
        return Verdict(FAILED, True, (FAILED, err), slot, None)
    final = job.status or FAILED
    if final == DONE:  # COMPLETED, yet no end event from the worker
        final = FAILED
        cause = f"Slurm job {jid} COMPLETED but the run wrote no end event"
    else:
        cause = f"Slurm job {jid} {state}"
        if job.reason and job.reason != "None":
            cause += f" ({job.reason})"
        if job.exit_code and job.exit_code not in ("0:0", ""):
            cause += f", exit code {job.exit_code}"
    if final == FAILED:
        tail = _tail_error(record.get("stderr"))
        if tail:
            cause += f": {tail}"
    return Verdict(final, True, (final, cause), slot, state)


def _split_at_submission(run_dir: Path, record: dict) -> tuple[list[dict], list[dict]]:
    """The run's events up to the `ends_before` end events present at submission, and those
    written after them (by the job)."""
    ends_before = int(record.get("ends_before") or 0)
    before: list[dict] = []
    since: list[dict] = []
    seen_ends = 0
    for e in read_events(run_dir):
        if seen_ends >= ends_before:
            since.append(e)
        else:
            before.append(e)
            seen_ends += e.get("type") == "end"
    return before, since


def _open_attempt(run_dir: Path, record: dict) -> bool:
    """True when, since submission, no `end` follows the last `start` (or nothing started)."""
    last = last_attempt_event(_split_at_submission(run_dir, record)[1])
    return last is None or last.get("type") == "start"


def apply_verdict(w, run_dir: Path, record: dict, verdict: Verdict) -> None:
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
    # retried (the TUI) as its job was ending: it is submitted again, so it shows queued
    status = status_with_retry(verdict.status, over=verdict.final,
                               retry_requested=verdict.final and bool(w.retry_requests([rid])))
    w.set_status(rid, status, **fields)


def last_end_error(run_dir: Path) -> str | None:
    """The `error` of the run's last `end` event (None: no end, or one without an error)."""
    ends = [e for e in read_events(run_dir) if e.get("type") == "end"]
    return ends[-1].get("error") if ends else None
