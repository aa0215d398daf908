"""The file formats of a run directory: the event log (crash-safe JSONL), heartbeat and spec.

Where the files are and what they are called is `ncbench.rundir`'s; what the events mean for a
run's status and attempts is `ncbench.lifecycle`'s. A run directory holds:

* `events.jsonl` — one JSON object per line, each with `type`, `run_id`, `time` (ISO-8601 UTC):
  `start` (attempt, host, device, pid, resumed_from_epoch), `eval` (epoch, metrics),
  `end` (status, error). Each line is written with one `write`, flushed and fsync'd before the
  call returns. A crash can leave at most a torn (partial) last line: readers skip lines that do
  not parse, and the next append first terminates a torn line so it cannot swallow a new event.
* `heartbeat.json` — `{"pid", "host", "time", "epoch", "phase", ...}` rewritten atomically
  (temp file + fsync + os.replace): a reader sees the old or the new content, never a mix.
  `phase` (HEARTBEAT_PHASES) says what the worker is doing: `setup` (imports, data, model,
  checkpoint — before its `start` event), `train` (after it), `done` (about to write its `end`).
* `spec.json` — the resolved RunSpec (plus its `run_id`), written atomically before the run.

Non-finite floats: JSON has no NaN/Infinity, so a non-finite metric value is written as the
string "nan", "inf" or "-inf" and read back as the float (the store keeps NaN/±inf as DOUBLE).
`null` means "not measured". The store never needs the worker: it reads these files.
"""

from __future__ import annotations

import json
import math
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ncbench.rundir import EVENTS_FILE, HEARTBEAT_FILE, SPEC_FILE
from ncbench.runs import RunSpec

__all__ = [
    "EventLog", "read_events", "read_events_from", "read_heartbeat", "write_spec", "read_spec",
    "atomic_write_text", "atomic_write_bytes", "utcnow", "utcnow_iso", "parse_time", "encode_value",
    "decode_value", "PHASE_SETUP", "PHASE_TRAIN", "PHASE_DONE", "HEARTBEAT_PHASES",
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
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
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


def _events_path(path: str | Path) -> Path:
    p = Path(path)
    return p / EVENTS_FILE if p.is_dir() else p


def read_events(path: str | Path) -> list[dict]:
    """Events of a run (path: the run dir or its events.jsonl), in order; [] if none. Lines that
    do not parse (a torn write) are skipped; eval metrics are decoded (NaN/inf back to floats)."""
    events, _ = read_events_from(_events_path(path), 0)
    return events


def read_events_from(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """Events in `path` from byte `offset` on, and the offset just past the last complete line
    (a partial last line is left for the next read). For incremental ingestion by the store."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # only complete lines
    events = []
    for raw in data[:end].splitlines():
        event = _parse_line(raw)
        if event is not None:
            events.append(event)
    # A torn line without newline at EOF is skipped, not consumed: a later append terminates it.
    return events, offset + end


def _parse_line(raw: bytes) -> dict | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or "type" not in event:
        return None
    if event.get("type") == "eval" and isinstance(event.get("metrics"), dict):
        event["metrics"] = {k: decode_value(v) for k, v in event["metrics"].items()}
    return event


def read_heartbeat(run_dir: str | Path) -> dict | None:
    """heartbeat.json of a run as a dict, or None if absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / HEARTBEAT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
