"""The file formats of a run directory: the event log (crash-safe JSONL), heartbeat and spec.

Where the files are and what they are called is `ncbench.rundir`'s; what the events mean for a
run's status and attempts is `ncbench.lifecycle`'s. A run directory holds:

* `events.jsonl` — one JSON object per line, each with `type`, `run_id`, `time` (ISO-8601 UTC):
  `start` (attempt, host, device, pid, resumed_from_epoch), `eval` (epoch, metrics),
  `end` (status, error), `note` (message: a one-line remark on the run, e.g. that it resumed
  from an older checkpoint; the store keeps the notes in `runs.note`). Each line is written with one `write`, flushed and fsync'd before the
  call returns. A crash can leave at most a torn (partial) last line: readers skip lines that do
  not parse, and the next append first terminates a torn line so it cannot swallow a new event.
* `heartbeat.json` — `{"pid", "host", "time", "epoch", "phase", ...}` rewritten atomically
  (temp file + fsync + os.replace): a reader sees the old or the new content, never a mix.
  `phase` (HEARTBEAT_PHASES) says what the worker is doing: `setup` (imports, data, model,
  checkpoint — before its `start` event), `train` (after it), `done` (about to write its `end`).
* `spec.json` — the resolved RunSpec (plus its `run_id`), written atomically before the run.

Every event is checked against `EVENT_SCHEMA` (field types and ranges, `validate_event`) when
read: one that does not fit (an epoch beyond 64 bits, an attempt that is not an integer, metrics
that are not an object, a time that is not a time, ...) is skipped like a line that does not
parse; `scan_events` also says which lines were skipped and why (the store notes them on the run).

Non-finite floats: JSON has no NaN/Infinity, so a non-finite metric value is written as the
string "nan", "inf" or "-inf" and read back as the float (the store keeps NaN/±inf as DOUBLE).
`null` means "not measured". The store never needs the worker: it reads these files.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ncbench.rundir import EVENTS_FILE, HEARTBEAT_FILE, SPEC_FILE
from ncbench.runs import RunSpec

__all__ = [
    "EventLog", "read_events", "read_events_from", "read_heartbeat", "write_spec", "read_spec",
    "atomic_write_text", "atomic_write_bytes", "fsync_dir", "utcnow", "utcnow_iso", "parse_time", "encode_value",
    "decode_value", "scan_events", "EventScan", "validate_event", "validate_heartbeat",
    "EVENT_SCHEMA", "MAX_INT", "NOTE_MAX_CHARS", "PHASE_SETUP", "PHASE_TRAIN", "PHASE_DONE", "HEARTBEAT_PHASES",
]

# -- the heartbeat's `phase` (see the module doc) ----------------------------------------------
PHASE_SETUP = "setup"
PHASE_TRAIN = "train"
PHASE_DONE = "done"
#: Every value of a heartbeat's `phase`, in the order a worker passes them.
HEARTBEAT_PHASES = (PHASE_SETUP, PHASE_TRAIN, PHASE_DONE)

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# -- the clock --------------------------------------------------------------------------------
# Run files write times as ISO-8601 UTC strings (`utcnow_iso`); the store keeps TIMESTAMPs as
# naive UTC datetimes (`utcnow`, and `parse_time` turns the former into the latter). Every module
# that needs "now" asks one of these two.


def utcnow() -> datetime:
    """Now as the store keeps it: a naive UTC datetime (comparable with `parse_time`'s)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def utcnow_iso() -> str:
    """Now as the run files write it: ISO-8601 UTC with milliseconds, e.g.
    `2025-01-31T12:00:00.123+00:00`."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(value: str | None) -> datetime | None:
    """An event/heartbeat time as a naive UTC datetime (how the store keeps TIMESTAMPs), or None
    when absent or not a time."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t


def encode_value(value: Any) -> Any:
    """A metric value as JSON: finite numbers as themselves, NaN/±inf as "nan"/"inf"/"-inf"."""
    if value is None or isinstance(value, bool):
        return value
    try:
        x = float(value)  # also numpy / 0-d torch scalars
    except (TypeError, ValueError):
        return value
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return int(value) if isinstance(value, int) else x


def decode_value(value: Any) -> float | None:
    """Inverse of `encode_value` (for metric values): a float, or None if not measured."""
    if value is None:
        return None
    if isinstance(value, str):  # "nan"/"inf"/"-inf"; any other text is not a measurement
        return _NONFINITE.get(value.strip().lower())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _encode_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _encode_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_tree(v) for v in value]
    if isinstance(value, float):
        return encode_value(value)
    return value


def _dumps(obj: dict) -> str:
    return json.dumps(_encode_tree(obj), allow_nan=False, default=_default, ensure_ascii=False)


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return encode_value(obj.item())
    if isinstance(obj, (Path, datetime)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def atomic_write_bytes(path: str | Path, data: bytes, *, sync_dir: bool = False) -> None:
    """Write `data` to `path` atomically: temp file in the same folder, fsync, os.replace (and,
    with `sync_dir`, fsync the folder, so that the rename itself survives a power loss)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """fsync a folder, so that a rename inside it survives a power loss (no-op where a folder
    cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


class EventLog:
    """Appends events to `<run_dir>/events.jsonl` and rewrites `<run_dir>/heartbeat.json`.

    `run_id` defaults to the directory's name. Every method returns after the data is on disk
    (write + flush + fsync), so a crash loses nothing already reported. Safe to create anew on
    resume: appends continue the same file.
    """

    def __init__(self, run_dir: str | Path, run_id: str | None = None):
        self.run_dir = Path(run_dir)
        self.run_id = run_id or self.run_dir.name
        self.path = self.run_dir / EVENTS_FILE
        self.heartbeat_path = self.run_dir / HEARTBEAT_FILE
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # -- events ------------------------------------------------------------------------------
    def append(self, type: str, **fields: Any) -> dict:
        """Append one event `{"type", "run_id", "time", **fields}`; returns it."""
        event = {"type": type, "run_id": self.run_id, "time": utcnow_iso(), **fields}
        line = (_dumps(event) + "\n").encode("utf-8")
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # terminate a torn last line left by a crash
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
                f.seek(0, os.SEEK_END)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return event

    def start(self, attempt: int, host: str | None = None, device: str | None = None,
              pid: int | None = None, resumed_from_epoch: int | None = None, **info: Any) -> dict:
        """The worker began an attempt (1-based); `resumed_from_epoch`: the checkpoint's epoch."""
        return self.append("start", attempt=int(attempt), host=host or socket.gethostname(),
                           device=device, pid=os.getpid() if pid is None else int(pid),
                           resumed_from_epoch=resumed_from_epoch, **info)

    def eval(self, epoch: int, metrics: dict[str, Any]) -> dict:
        """Metrics measured after `epoch` (1-based count of completed epochs; 0 = before
        training). Accuracies as fractions; NaN/inf allowed (encoded, see module doc)."""
        return self.append("eval", epoch=int(epoch),
                           metrics={str(k): encode_value(v) for k, v in metrics.items()})

    def note(self, message: str) -> dict:
        """A one-line remark on the run (e.g. "resumed from the previous checkpoint: ..."): the
        store adds it to `runs.note`, which `ncbench status` shows. Newlines become spaces; the
        message is cut at NOTE_MAX_CHARS."""
        return self.append("note", message=_one_line(message))

    def end(self, status: str, error: str | None = None, **info: Any) -> dict:
        """The attempt ended with `status`; `error` a one-line reason or None. Which statuses
        may end an attempt is the lifecycle's rule: write ends through
        `ncbench.lifecycle.end_attempt`, which checks it."""
        return self.append("end", status=status, error=error, **info)

    # -- heartbeat ---------------------------------------------------------------------------
    def heartbeat(self, epoch: int | None = None, **info: Any) -> dict:
        """Rewrite heartbeat.json atomically: pid, host, time, epoch (last completed), **info
        (the worker's: batch, batches, `phase` — one of HEARTBEAT_PHASES —, attempt)."""
        beat = {"pid": os.getpid(), "host": socket.gethostname(), "time": utcnow_iso(),
                "epoch": None if epoch is None else int(epoch), **info}
        atomic_write_text(self.heartbeat_path, _dumps(beat) + "\n")
        return beat


# -- the event schema (one definition; the readers below and the store's ingest use it) -------

#: The largest integer a run file may hold: what fits the store's 64-bit (BIGINT) columns.
MAX_INT = 2**63 - 1
#: A note (`EventLog.note`) is cut to this many characters.
NOTE_MAX_CHARS = 500

_INT = "int"          # an integer (not a bool) in [0, MAX_INT]
_STR = "str"          # a string
_TIME = "time"        # an ISO-8601 time string (`parse_time` reads it)
_METRICS = "metrics"  # {name: number | null | "nan" | "inf" | "-inf"}

#: The fields each event type may hold, with their kind, and whether they are required (the
#: others may be absent or null). Fields not listed (a newer writer's) are allowed; event types
#: not listed are passed through unchecked (the store ignores them).
EVENT_SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "*": {"type": (_STR, True), "run_id": (_STR, False), "time": (_TIME, False)},
    "start": {"attempt": (_INT, False), "host": (_STR, False), "device": (_STR, False),
              "pid": (_INT, False), "resumed_from_epoch": (_INT, False)},
    "eval": {"epoch": (_INT, True), "metrics": (_METRICS, False)},
    "end": {"status": (_STR, True), "error": (_STR, False)},
    "note": {"message": (_STR, True)},
}
#: The heartbeat's fields the store reads (same kinds as EVENT_SCHEMA).
HEARTBEAT_SCHEMA: dict[str, tuple[str, bool]] = {
    "time": (_TIME, False), "epoch": (_INT, False), "pid": (_INT, False), "host": (_STR, False),
    "phase": (_STR, False),
}


def _one_line(text: Any) -> str:
    text = " ".join(str(text).encode("utf-8", "replace").decode("utf-8").split())
    return text if len(text) <= NOTE_MAX_CHARS else text[:NOTE_MAX_CHARS - 1] + "…"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field_problem(name: str, kind: str, value: Any) -> str | None:
    if kind == _INT:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} {_short(value)} is not an integer"
        if not 0 <= value <= MAX_INT:
            return f"{name} {_short(value)} is out of range (0 to 2^63-1)"
    elif kind == _STR:
        if not isinstance(value, str):
            return f"{name} {_short(value)} is not a string"
        if not _utf8(value):
            return f"{name} is not valid text (a lone surrogate)"
    elif kind == _TIME:
        if not isinstance(value, str) or parse_time(value) is None:
            return f"{name} {_short(value)} is not an ISO-8601 time"
    elif kind == _METRICS:
        if not isinstance(value, dict):
            return f"metrics {_short(value)} is not an object"
        for key, v in value.items():
            if not _utf8(key):
                return "a metric name is not valid text (a lone surrogate)"
            if v is None or (isinstance(v, str) and v.strip().lower() in _NONFINITE):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return f"metric {key!r} value {_short(v)} is not a number"
            try:
                float(v)
            except OverflowError:
                return f"metric {key!r} value {_short(v)} is out of range"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_fields(obj: dict, fields: dict[str, tuple[str, bool]]) -> str | None:
    for name, (kind, required) in fields.items():
        value = obj.get(name)
        if value is None:
            if required:
                return f"{name} is missing"
            continue
        problem = _field_problem(name, kind, value)
        if problem:
            return problem
    return None


def validate_event(event: Any, max_epoch: int | None = None) -> str | None:
    """Why `event` (a parsed line) does not fit EVENT_SCHEMA, or None when it does;
    `max_epoch` (the run's epochs, when known) bounds the epochs an event may name."""
    if not isinstance(event, dict):
        return "not a JSON object"
    problem = _check_fields(event, EVENT_SCHEMA["*"])
    if problem is not None:
        return problem
    if event["type"] in EVENT_SCHEMA:
        problem = _check_fields(event, EVENT_SCHEMA[event["type"]])
    if problem is None and max_epoch is not None:
        for name in ("epoch", "resumed_from_epoch"):
            if event["type"] in ("eval", "start") and (event.get(name) or 0) > max_epoch:
                problem = f"{name} {event[name]} is beyond the run's {max_epoch} epochs"
    return None if problem is None else f"{event['type']} event: {problem}"


def validate_heartbeat(beat: Any) -> str | None:
    """Why a parsed heartbeat.json does not fit HEARTBEAT_SCHEMA, or None when it does."""
    if not isinstance(beat, dict):
        return "not a JSON object"
    return _check_fields(beat, HEARTBEAT_SCHEMA)


def _events_path(path: str | Path) -> Path:
    p = Path(path)
    return p / EVENTS_FILE if p.is_dir() else p


def read_events(path: str | Path) -> list[dict]:
    """Events of a run (path: the run dir or its events.jsonl), in order; [] if none. Lines that
    do not parse (a torn write) or do not fit EVENT_SCHEMA are skipped; eval metrics are decoded
    (NaN/inf back to floats)."""
    events, _ = read_events_from(_events_path(path), 0)
    return events


def read_events_from(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """Events in `path` from byte `offset` on, and the offset just past the last complete line
    (a partial last line is left for the next read). For incremental reading; an unreadable
    file reads as no events (`scan_events` says why)."""
    scan = scan_events(path, offset)
    return scan.events, scan.offset


@dataclass
class EventScan:
    """What `scan_events` read: the valid `events`, the byte `offset` and the number of the
    next line (`line`, 1-based) to read from next time, the `skipped` lines as (line number,
    reason), and `error`: why the file could not be read at all (None if it could, or is
    absent)."""

    events: list[dict]
    offset: int
    line: int
    skipped: list[tuple[int, str]] = field(default_factory=list)
    error: str | None = None


def scan_events(path: str | Path, offset: int = 0, line: int = 1, *,
                max_epoch: int | None = None) -> EventScan:
    """Read `path` from byte `offset` on (`line`: the number of the line starting there), like
    `read_events_from`, and say which complete lines were skipped and why (not JSON, not an
    event, or not fitting EVENT_SCHEMA). A missing file is no events; a file that cannot be
    read (a directory, no permission) is no events with `error` set. `max_epoch`: see
    `validate_event`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return EventScan([], offset, line)
    except OSError as exc:
        return EventScan([], offset, line, error=f"cannot read {path.name}: "
                         f"{exc.strerror or type(exc).__name__}")
    end = data.rfind(b"\n") + 1  # only complete lines
    scan = EventScan([], offset + end, line)
    for raw in data[:end].split(b"\n")[:-1] if end else []:
        event, problem = _parse_line(raw, max_epoch)
        if event is not None:
            scan.events.append(event)
        elif problem is not None:
            scan.skipped.append((scan.line, problem))
        scan.line += 1
    # A torn line without newline at EOF is skipped, not consumed: a later append terminates it.
    return scan


def _parse_line(raw: bytes, max_epoch: int | None = None) -> tuple[dict | None, str | None]:
    """(the event, None), or (None, why the line is skipped); (None, None) for a blank line."""
    raw = raw.strip()
    if not raw:
        return None, None
    try:
        event = json.loads(raw)
    except RecursionError:
        return None, "nested too deeply"
    except (ValueError, UnicodeDecodeError):
        return None, "not valid JSON (a torn or garbled line)"
    if not isinstance(event, dict) or "type" not in event:
        return None, "not an event (no `type`)"
    problem = validate_event(event, max_epoch)
    if problem is not None:
        return None, problem
    if event.get("type") == "eval" and isinstance(event.get("metrics"), dict):
        event["metrics"] = {k: decode_value(v) for k, v in event["metrics"].items()}
    return event, None


def read_heartbeat(run_dir: str | Path) -> dict | None:
    """heartbeat.json of a run as a dict, or None if absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / HEARTBEAT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if validate_heartbeat(data) is None else None


def write_spec(run_dir: str | Path, spec: RunSpec) -> Path:
    """Write `<run_dir>/spec.json` (the spec and its run_id) atomically; returns the path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SPEC_FILE
    atomic_write_text(path, json.dumps({"run_id": spec.run_id, **spec.to_dict()}, indent=2) + "\n")
    return path


def read_spec(run_dir: str | Path) -> RunSpec:
    """The RunSpec in `<run_dir>/spec.json` (unknown keys from a newer version are ignored).
    Raises FileNotFoundError if absent, ValueError if it is not a valid spec."""
    data = json.loads((Path(run_dir) / SPEC_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{Path(run_dir) / SPEC_FILE}: not a JSON object")
    return RunSpec.from_dict(data, strict=False)
