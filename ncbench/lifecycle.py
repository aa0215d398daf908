"""The run lifecycle: statuses, how events decide them, attempts, and when a run starts again.

Statuses (RUN_STATUSES, in the order a run normally passes through them):

    queued ──start──▶ running ──end──▶ done | failed | diverged | interrupted
      ▲                                           │
      └──────── started again: failed, interrupted (RETRYABLE) ◀──┘

* `queued`: registered and waiting — no event says so; the store and the executors write it;
* `running`: the run's last `start` event has no `end` after it;
* END_STATUSES: what an `end` event says; the last one wins. `done` and `diverged` are
  FINISHED: never started again (training is deterministic: a diverged run diverges again).
  `failed` and `interrupted` are RETRYABLE: `ncbench run` starts them again, resuming from
  their checkpoint.

`event_status(events)` is the one mapping from a run's events to its status: the store's ingest,
the classification of run directories (`status_of` / `classify_run`) and the Slurm verdicts all
call it. A run directory tells the grid manager three more things the store never holds
(`RunState.status`): `new` (no attempt yet), `alive` (started, not ended, its heartbeat fresh:
a worker is on it, here or elsewhere) and `lost` (started, not ended, its worker gone).

Attempts. Attempt N is the one that starts after N − 1 `end` events (`attempt_after`): every
attempt ends with exactly one `end` — written by the worker, or for a worker that could not (killed,
lost) by an executor (`mark_ended`). The worker's `start` event carries that number; the store's
`attempt` column copies it.

Starting again (`why_not_start`, `why_not_retry`, `honours_retry`, `retries_again`,
`status_with_retry`): `ncbench run` starts new, failed, interrupted and lost runs (never finished
ones, nor one a worker is on); the TUI's retry is allowed for failed and interrupted runs and asks
the grid to start the run again; the executors' `retries` start a failed attempt again.

This module is torch-free and imports only `events` and below: views may import it (the
per-status look, STATUS_STYLE, lives here for them).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from ncbench.events import (PHASE_SETUP, PHASE_TRAIN, EventLog, parse_time, read_events,
                            read_heartbeat, utcnow, write_spec)
from ncbench.rundir import run_dir_of
from ncbench.runs import RunSpec

__all__ = [
    "QUEUED", "RUNNING", "DONE", "FAILED", "DIVERGED", "INTERRUPTED", "RUN_STATUSES",
    "END_STATUSES", "ACTIVE", "FINISHED", "RETRYABLE", "CANCELLABLE", "NEW", "ALIVE", "LOST",
    "STALE_AFTER_S", "StatusStyle", "STATUS_STYLE", "RunState", "end_status", "last_attempt_event",
    "event_status", "status_of", "classify_run", "ended_attempts", "attempt_after", "next_attempt",
    "end_attempt", "mark_ended", "end_lost_attempt", "prepare_run_dir", "why_not_start", "why_not_retry",
    "honours_retry", "retries_again", "status_with_retry",
]

# -- statuses ------------------------------------------------------------------------------------
QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
#: Every status a run can have (the store's `runs.status`), in the order a run passes them.
RUN_STATUSES = (QUEUED, RUNNING, DONE, FAILED, DIVERGED, INTERRUPTED)
#: The statuses that end an attempt: the ones an `end` event may carry.
END_STATUSES = (DONE, FAILED, DIVERGED, INTERRUPTED)
#: A run not over yet: waiting for, or holding, resources.
ACTIVE = (QUEUED, RUNNING)
#: Finished for good: never started again.
FINISHED = (DONE, DIVERGED)
#: Started again by `ncbench run` (resuming from the checkpoint); the TUI may retry these.
RETRYABLE = (FAILED, INTERRUPTED)
#: The TUI may cancel these (SIGTERM to the worker: the run ends interrupted).
CANCELLABLE = (RUNNING,)

# What a run directory says besides the statuses above (RunState.status only).
NEW = "new"      # no attempt yet
ALIVE = "alive"  # started, no end, a worker is on it
LOST = "lost"    # started, no end, its worker is gone

#: A started run whose heartbeat is older than this (seconds) is lost: its worker is gone, and a
#: later `ncbench run` resumes it from its checkpoint. Workers beat every ~2 s. Used by the grid
#: manager (resume decisions) and the views (a "stale" marker).
STALE_AFTER_S = 60.0


class StatusStyle(NamedTuple):
    """How the views show a status: a rich `style` and a one-character `glyph`."""

    style: str
    glyph: str


#: The look of each status in `ncbench status`, `ncbench run` and the TUI.
STATUS_STYLE: dict[str, StatusStyle] = {
    QUEUED: StatusStyle("dim", "○"),
    RUNNING: StatusStyle("bold cyan", "▶"),
    DONE: StatusStyle("green", "✓"),
    FAILED: StatusStyle("bold red", "✗"),
    DIVERGED: StatusStyle("magenta", "↯"),
    INTERRUPTED: StatusStyle("yellow", "‖"),
}


# -- status from events --------------------------------------------------------------------------


def end_status(event: dict) -> str:
    """The status an `end` event says (one that says none, or an unknown one: failed)."""
    status = event.get("status")
    return status if status in END_STATUSES else FAILED


def last_attempt_event(events: Iterable[dict]) -> dict | None:
    """The last `start` or `end` event (the one that decides the status), or None."""
    last = None
    for e in events:
        if e.get("type") in ("start", "end"):
            last = e
    return last


def event_status(events: Iterable[dict]) -> str | None:
    """The status `events` (in log order) say: `running` when the last start/end event is a
    `start`, the end's status when it is an `end`, None when there is neither (the events say
    nothing about the status: a run still queued, or — for an incremental read — no change)."""
    last = last_attempt_event(events)
    if last is None:
        return None
    return RUNNING if last.get("type") == "start" else end_status(last)


@dataclass
class RunState:
    """What a run directory says about a run.

    `status`: `new` (no attempt yet), `done` / `diverged` / `failed` / `interrupted` (last `end`),
    `alive` (started, no `end`, heartbeat fresh — a worker is on it, here or elsewhere), or
    `lost` (started, no `end`, heartbeat stale or its pid dead on this host: its manager was
    killed). `note`: a human explanation; `heartbeat`: heartbeat.json or None; `last_epoch`:
    the last evaluated epoch (None if none)."""

    status: str
    note: str = ""
    heartbeat: dict | None = None
    last_epoch: int | None = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def status_of(events: Sequence[dict], heartbeat: dict | None = None, *,
              now: datetime | None = None, stale_after: float = STALE_AFTER_S,
              host: str | None = None) -> RunState:
    """A run's state from its events and heartbeat (`now`: naive UTC, default the clock).

    The events decide (`event_status`); a run whose last `start` has no `end` after it — or
    whose heartbeat shows a worker in setup or training after the last `end` (a newer attempt
    before its `start`) — is `alive` when its heartbeat is fresher than `stale_after` seconds
    and, if the heartbeat is from this `host` (default: this machine), its pid still exists;
    otherwise `lost`. A heartbeat from another host is judged by its age alone."""
    said = event_status(events)
    last_epoch, ended_at = None, None
    for e in events:
        if e.get("type") == "end":
            ended_at = parse_time(e.get("time"))
        elif e.get("type") == "eval" and isinstance(e.get("epoch"), int):
            last_epoch = max(e["epoch"], last_epoch or 0)
    beat = heartbeat
    t = parse_time(beat.get("time")) if beat else None
    newer = (beat is not None and beat.get("phase") in (PHASE_SETUP, PHASE_TRAIN) and t is not None
             and (ended_at is None or t > ended_at))
    if said != RUNNING and not newer:
        return RunState(said or NEW, heartbeat=beat, last_epoch=last_epoch)
    # Started (or still in setup, with a heartbeat) and not ended.
    now = now or utcnow()
    host = host or socket.gethostname()
    age = (now - t).total_seconds() if t is not None else None
    beat_host = beat.get("host") if beat else None
    pid = beat.get("pid") if beat else None
    if age is None:
        return RunState(LOST, "no heartbeat", beat, last_epoch)
    if age > stale_after:
        return RunState(LOST, f"heartbeat {age:.0f} s old (host {beat_host}, pid {pid})", beat,
                        last_epoch)
    if beat_host == host and isinstance(pid, int) and not _pid_alive(pid):
        return RunState(LOST, f"worker pid {pid} is gone", beat, last_epoch)
    where = "this host" if beat_host == host else f"host {beat_host}"
    return RunState(ALIVE, f"running on {where} (pid {pid}, heartbeat {age:.0f} s ago)", beat,
                    last_epoch)


def classify_run(run_dir: str | os.PathLike, *, now: datetime | None = None,
                 stale_after: float = STALE_AFTER_S, host: str | None = None) -> RunState:
    """`status_of` the events.jsonl and heartbeat.json of a run directory."""
    return status_of(read_events(run_dir), read_heartbeat(run_dir), now=now,
                     stale_after=stale_after, host=host)


# -- attempts ------------------------------------------------------------------------------------


def ended_attempts(events: Iterable[dict]) -> int:
    """The number of attempts over: the `end` events among `events`."""
    return sum(1 for e in events if e.get("type") == "end")


def attempt_after(events: Iterable[dict]) -> int:
    """The number of the attempt that starts after `events`: 1 + the attempts over (attempts
    count from 1; every attempt ends with exactly one `end` event)."""
    return ended_attempts(events) + 1


def next_attempt(run_dir: str | os.PathLike) -> int:
    """The number the next attempt of the run in `run_dir` gets (`attempt_after` its log)."""
    return attempt_after(read_events(run_dir))


# -- writing the lifecycle into a run directory --------------------------------------------------


def end_attempt(log: EventLog, status: str, error: str | None = None, **info: Any) -> dict:
    """Append the `end` event of the current attempt: `status` in END_STATUSES (else
    ValueError, nothing written), `error` a one-line reason or None."""
    if status not in END_STATUSES:
        raise ValueError(f"end status must be one of {END_STATUSES}, got {status!r}")
    return log.end(status, error=error, **info)


def mark_ended(run_dir: str | os.PathLike, status: str, error: str | None, *,
               by: str = "executor", **info: Any) -> dict:
    """Append an `end` event for a worker that could not write its own (killed, lost); `by`
    says who wrote it."""
    return end_attempt(EventLog(run_dir), status, error, by=by, **info)


def end_lost_attempt(run_dir: str | os.PathLike, state: RunState) -> dict:
    """Close the attempt of a `lost` run (its worker is gone): `end interrupted`, so that the
    next attempt resumes it from its checkpoint."""
    return mark_ended(run_dir, INTERRUPTED, f"worker lost: {state.note}")


def prepare_run_dir(workdir: str | os.PathLike, spec: RunSpec) -> Path:
    """Create `<workdir>/runs/<run_id>/` and (re)write its spec.json atomically; returns it.
    Existing events, checkpoint and heartbeat are kept (a rerun resumes from them)."""
    d = run_dir_of(workdir, spec.run_id)
    write_spec(d, spec)
    return d


# -- starting a run again ------------------------------------------------------------------------


def why_not_start(state: RunState) -> str | None:
    """Why `ncbench run` must not start a run in `state` now, or None to start it: a finished
    run (done, diverged) is skipped — the reason is its status; one a worker is on (alive) is
    skipped — the reason says where. New, failed, interrupted and lost runs are started (lost
    ones after `end_lost_attempt`), resuming from their checkpoint if they have one."""
    if state.status in FINISHED:
        return state.status
    if state.status == ALIVE:
        return state.note
    return None


def why_not_retry(status: str) -> str | None:
    """Why a run with (stored) `status` cannot be retried by hand (the TUI's retry), or None
    when it can: only failed and interrupted runs (`ncbench run` never reruns the others)."""
    if status in RETRYABLE:
        return None
    why = (" (a diverged run is deterministic: ncbench run does not rerun it)"
           if status == DIVERGED else "")
    return f"only {' or '.join(RETRYABLE)} runs can be retried{why}"


def honours_retry(state: RunState) -> bool:
    """Whether a pending retry request (the TUI's retry, `runs.retry_requested_at`) starts a run
    in `state` again now: when its directory says it ended failed or interrupted — never a
    finished run, nor one a worker is on or that has not ended."""
    return state.status in RETRYABLE


def retries_again(status: str, retries_left: int, *, stopping: bool = False) -> bool:
    """The executors' automatic `retries`: an attempt that ended `status` is started again when
    it failed, the run has retries left and the grid is not stopping."""
    return status == FAILED and retries_left > 0 and not stopping


def status_with_retry(status: str, *, over: bool, retry_requested: bool) -> str:
    """The status to store for a run whose latest attempt says `status`: `queued` when the
    attempt is `over` and a retry was requested meanwhile (the grid starts it again), else
    `status`."""
    return QUEUED if over and retry_requested else status
