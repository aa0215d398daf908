"""Reading one run directory into the store: spec, events and heartbeat, checked, and noted.

`ingest_run_dir(writer, run_dir)` is the body of `ncbench.store.StoreWriter.ingest_run_dir`: it
reads what is new in the run's event log (`ncbench.events.scan_events`: every line checked
against `EVENT_SCHEMA`), turns it into the run's `runs` row and `metrics` rows, and writes them
through the writer's open connection. What cannot be used — an event line that does not parse or
does not fit, a spec.json or events.jsonl that cannot be read — is skipped, warned about (logger
`ncbench.store`), listed in `writer.problems` and noted in the run's `runs.note`; so is every
`note` event. Everything written is checked first, so one run directory cannot make DuckDB fail
the writer's transaction (which would lose the whole sync).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ncbench import schema
from ncbench.events import (MAX_INT, NOTE_MAX_CHARS, EventScan, parse_time, read_heartbeat,
                            read_spec, scan_events)
from ncbench.lifecycle import event_status
from ncbench.rundir import EVENTS_FILE, SPEC_FILE
from ncbench.runs import RunSpec

#: `writer` below is the `ncbench.store.StoreWriter` of the session (not imported: the store
#: imports this module): its `con`, `store._offsets`, `_pending_offsets`, `problems` and
#: `register_runs` are used.
StoreWriter = Any

__all__ = ["ingest_run_dir", "record_problem", "join_notes", "spec_problem", "db_value"]


def _one(cursor) -> tuple | None:
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_log = logging.getLogger("ncbench.store")
#: Skipped event lines warned about one by one per run dir and read (then a count).
_WARN_LINES = 3
#: The longest `runs.note`: older notes are dropped first.
_NOTES_MAX_CHARS = 2 * NOTE_MAX_CHARS


def join_notes(previous: str | None, notes: Sequence[str]) -> str | None:
    """`runs.note` with `notes` added to `previous` ("; "-separated, each once, newest kept)."""
    parts = [p for p in (previous or "").split("; ") if p]
    for n in notes:
        if n and n not in parts:
            parts.append(n)
    while len(parts) > 1 and len("; ".join(parts)) > _NOTES_MAX_CHARS:
        parts.pop(0)
    return "; ".join(parts)[:_NOTES_MAX_CHARS] or None


def spec_problem(spec: RunSpec) -> str | None:
    """Why the `runs` columns of a spec read from a run dir cannot be stored, or None."""
    for column in schema.RUN_KEY_COLUMNS:
        value = getattr(spec, column)
        if column in ("epochs", "seed"):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
                return f"{column} {value!r} is not an integer in 0 … 2^63-1"
        elif column == "width":
            try:
                ok = not isinstance(value, bool) and math.isfinite(float(value))
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                return f"width {value!r} is not a finite number"
        elif not isinstance(value, str):
            return f"{column} {value!r} is not a string"
    return None


def ingest_run_dir(writer: StoreWriter, run_dir: str | Path) -> int:
    """Read one run dir's new events and heartbeat into the database: registers the run
    from spec.json if needed, upserts metrics, updates the run's row. Returns the number of
    metric rows written. A dir without spec.json and without a stored row is skipped.

    Event lines that do not parse or do not fit `ncbench.events.EVENT_SCHEMA` (or name an
    epoch beyond the run's epochs) are skipped with a warning naming file and line, and
    noted in the run's `note` (`note` events are added there too); the run's status is
    what its valid events say. A spec.json or events.jsonl that cannot be read is noted
    (`writer.problems`) and the run dir skipped; `sync` also catches anything else raised
    while reading one run dir."""
    run_dir = Path(run_dir)
    run_id = run_dir.name
    known = _one(writer.con.execute("SELECT epochs FROM runs WHERE run_id = ?", [run_id]))
    if known is None:
        try:
            spec = read_spec(run_dir)
            problem = spec_problem(spec)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            problem = _first_line(exc) if not isinstance(exc, OSError) else \
                (exc.strerror or type(exc).__name__)
        if problem is not None:
            record_problem(writer, run_dir, f"{SPEC_FILE} cannot be read, run dir skipped: "
                                            f"{problem}")
            return 0
        writer.register_runs([spec])
        run_id = spec.run_id if spec.run_id == run_id else run_id
        known = (spec.epochs,)
    max_epoch = known[0] if isinstance(known[0], int) else None

    path = run_dir / EVENTS_FILE
    key = str(path)
    ident, offset, line = (writer._pending_offsets.get(key)
                           or writer.store._offsets.get(key, (None, 0, 1)))
    try:
        st = path.stat()
        cur = (st.st_ino, st.st_dev)
        if ident != cur or st.st_size < offset:  # replaced or truncated: read from start
            offset, line = 0, 1
    except OSError:  # absent (or its folder unreadable: scan_events says so)
        cur, offset, line = None, 0, 1
    scan = scan_events(path, offset, line, max_epoch=max_epoch) if cur else \
        EventScan([], 0, 1)
    events = scan.events

    update: dict[str, Any] = {}
    metrics: dict[tuple[int, str], float | None] = {}
    notes: list[str] = []
    started = None  # time of the latest start event read now
    for ev in events:
        kind = ev.get("type")
        t = parse_time(ev.get("time"))
        if kind == "start":
            update.update(started_at=t, finished_at=None, error=None,
                          host=ev.get("host"), device=ev.get("device"), pid=ev.get("pid"),
                          attempt=ev.get("attempt"),
                          start_epoch=ev.get("resumed_from_epoch") or 0)
            started = t
        elif kind == "eval":
            epoch = ev["epoch"]  # an int in range (validated)
            for name, value in (ev.get("metrics") or {}).items():
                metrics[(epoch, str(name))] = value
            update["last_epoch"] = max(epoch, update.get("last_epoch") or 0)
        elif kind == "end":
            update.update(finished_at=t, error=ev.get("error"))
        elif kind == "note":
            notes.append(ev["message"])
    if scan.error is not None:
        notes.append(record_problem(writer, run_dir, scan.error))
    if scan.skipped:
        notes.append(_skipped(writer, path, scan.skipped))
    status = event_status(events)  # None: these events leave the status as it is
    if status is not None:
        update["status"] = status
    beat = read_heartbeat(run_dir)  # None unless it fits events.HEARTBEAT_SCHEMA
    if beat:
        if beat.get("time"):
            update["heartbeat_at"] = parse_time(beat["time"])
        epoch = beat.get("epoch")
        if isinstance(epoch, int) and (max_epoch is None or epoch <= max_epoch):
            update["last_epoch"] = max(epoch, update.get("last_epoch") or 0)

    if metrics:
        app = writer.con.appender("metrics", action="upsert")
        app.append_rows([(run_id, e, n, v) for (e, n), v in metrics.items()])
        app.flush()
    if notes or (cur is not None and offset == 0):  # a read from the start rebuilds it
        prev = None if offset == 0 and cur is not None else _one(writer.con.execute(
            "SELECT note FROM runs WHERE run_id = ?", [run_id]))
        update["note"] = join_notes(prev[0] if prev else None, notes)
    if update:
        if "last_epoch" in update:  # never go backwards (re-reads, resumed runs)
            prev = _one(writer.con.execute("SELECT last_epoch FROM runs WHERE run_id = ?",
                                    [run_id]))
            if prev and prev[0] is not None:
                update["last_epoch"] = max(update["last_epoch"], prev[0])
        cols = list(update)
        writer.con.execute(
            f"UPDATE runs SET {', '.join(f'{c} = ?' for c in cols)} WHERE run_id = ?",
            [*(db_value(c, update[c]) for c in cols), run_id],
        )
    if started is not None:  # an attempt that started after a retry request honours it
        writer.con.execute("UPDATE runs SET retry_requested_at = NULL WHERE run_id = ? "
                           "AND retry_requested_at <= ?", [run_id, db_value("started_at", started)])
    if cur is not None:
        writer._pending_offsets[key] = (cur, scan.offset, scan.line)
    return len(metrics)


def record_problem(writer: StoreWriter, run_dir: Path, message: str) -> str:
    """Record (in `problems`, and as a warning) what went wrong with one run dir."""
    text = f"{run_dir}: {message}"
    writer.problems.append(text)
    _log.warning("%s", text)
    return message


def _skipped(writer: StoreWriter, path: Path, skipped: list[tuple[int, str]]) -> str:
    """Warn about the event lines skipped in `path`; the note for the run."""
    for number, reason in skipped[:_WARN_LINES]:
        record_problem(writer, path.parent, f"{path.name} line {number} skipped: {reason}")
    if len(skipped) > _WARN_LINES:
        record_problem(writer, path.parent, f"{path.name}: {len(skipped) - _WARN_LINES} more "
                                            "lines skipped")
    number, reason = skipped[0]
    if len(skipped) == 1:
        return f"skipped corrupt event log line {number}: {reason}"
    numbers = ", ".join(str(n) for n, _ in skipped[:5]) + (
        f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return f"skipped {len(skipped)} corrupt event log lines ({numbers}; line {number}: {reason})"


def db_value(column: str, value: Any) -> Any:
    """A python value for a runs column: times as naive UTC datetimes (ISO strings accepted)."""
    if column.endswith("_at") and value is not None:
        if isinstance(value, str):
            return parse_time(value)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(timezone.utc).replace(tzinfo=None)
    if column in ("slot", "slurm_job_id") and value is not None:
        return str(value)
    return value
