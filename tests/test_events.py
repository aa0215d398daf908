"""The per-run event log: format, non-finite values, torn lines, crash safety, atomic files."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

from ncbench.events import (
    EventLog, parse_time, read_events, read_events_from, read_heartbeat, read_spec, write_spec,
)
from ncbench.rundir import EVENTS_FILE, HEARTBEAT_FILE
from ncbench.runs import RunSpec


def _spec() -> RunSpec:
    return RunSpec(experiment="e", dataset="digits", model="mlp", loss="fl", width=0.5, epochs=4,
                   seed=1, loss_params={"gamma": 3})


def test_events_roundtrip_format(tmp_path):
    log = EventLog(tmp_path / "abc")
    log.start(1, host="h", device="cpu", pid=42, resumed_from_epoch=None)
    log.eval(0, {"train_acc": 0.25, "nc1": 3.5})
    log.eval(5, {"train_acc": 1, "test_acc": 0.5})
    log.end("done")
    lines = (tmp_path / "abc" / EVENTS_FILE).read_text().splitlines()
    assert len(lines) == 4
    raw = [json.loads(x) for x in lines]  # every line is strict JSON
    assert [e["type"] for e in raw] == ["start", "eval", "eval", "end"]
    assert all(e["run_id"] == "abc" for e in raw)
    assert all(parse_time(e["time"]) is not None for e in raw)
    assert raw[0] | {"time": None} == {"type": "start", "run_id": "abc", "time": None, "attempt": 1,
                                       "host": "h", "device": "cpu", "pid": 42,
                                       "resumed_from_epoch": None}
    ev = read_events(tmp_path / "abc")
    assert ev[1]["metrics"] == {"train_acc": 0.25, "nc1": 3.5}
    assert ev[2]["epoch"] == 5 and ev[3]["status"] == "done" and ev[3]["error"] is None
    assert read_events(tmp_path / "abc" / EVENTS_FILE) == ev


def test_nonfinite_metrics_roundtrip_as_strings(tmp_path):
    log = EventLog(tmp_path / "r")
    log.eval(1, {"a": float("nan"), "b": float("inf"), "c": float("-inf"), "d": None, "e": 1e-300})
    line = (tmp_path / "r" / EVENTS_FILE).read_text()
    assert '"a": "nan"' in line and '"b": "inf"' in line and '"c": "-inf"' in line
    json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict JSON
    m = read_events(tmp_path / "r")[0]["metrics"]
    assert math.isnan(m["a"]) and m["b"] == math.inf and m["c"] == -math.inf
    assert m["d"] is None and m["e"] == 1e-300


def test_numpy_scalars_are_written(tmp_path):
    import numpy as np

    log = EventLog(tmp_path / "r")
    log.eval(1, {"a": np.float32(0.5), "b": np.float64("nan"), "c": np.int64(3)})
    m = read_events(tmp_path / "r")[0]["metrics"]
    assert m["a"] == 0.5 and math.isnan(m["b"]) and m["c"] == 3


def test_torn_last_line_ignored_and_terminated_by_next_append(tmp_path):
    log = EventLog(tmp_path / "r")
    log.eval(1, {"a": 1.0})
    with open(log.path, "ab") as f:  # a crash mid-write
        f.write(b'{"type": "eval", "run_id": "r", "epo')
    assert [e["epoch"] for e in read_events(log.path)] == [1]
    events, offset = read_events_from(log.path, 0)
    assert len(events) == 1 and offset < log.path.stat().st_size  # the torn bytes are not consumed
    log.eval(2, {"a": 2.0})  # the resumed worker appends
    assert [e["epoch"] for e in read_events(log.path)] == [1, 2]
    assert log.path.read_bytes().endswith(b"\n")


def test_incremental_read(tmp_path):
    log = EventLog(tmp_path / "r")
    log.eval(1, {"a": 1.0})
    ev, off = read_events_from(log.path, 0)
    assert [e["epoch"] for e in ev] == [1]
    log.eval(2, {"a": 2.0})
    log.end("failed", error="boom")
    ev, off2 = read_events_from(log.path, off)
    assert [e["type"] for e in ev] == ["eval", "end"] and off2 == log.path.stat().st_size
    assert read_events_from(log.path, off2) == ([], off2)
    assert read_events(tmp_path / "missing") == []


def test_heartbeat_atomic_and_readable(tmp_path):
    log = EventLog(tmp_path / "r")
    assert read_heartbeat(tmp_path / "r") is None
    beat = log.heartbeat(3, phase="train")
    got = read_heartbeat(tmp_path / "r")
    assert got == beat and got["epoch"] == 3 and got["pid"] == os.getpid() and got["phase"] == "train"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [HEARTBEAT_FILE]  # no tmp left
    (tmp_path / "r" / HEARTBEAT_FILE).write_text("{not json")
    assert read_heartbeat(tmp_path / "r") is None


def test_spec_file_roundtrip(tmp_path):
    s = _spec()
    path = write_spec(tmp_path / s.run_id, s)
    data = json.loads(path.read_text())
    assert data["run_id"] == s.run_id and data["loss_params"] == {"gamma": 3}
    assert read_spec(tmp_path / s.run_id) == s


_WRITER = r"""
import sys, time
from ncbench.events import EventLog
log = EventLog(sys.argv[1])
log.start(1, device="cpu")
print("ready", flush=True)
e = 0
while True:
    e += 1
    log.eval(e, {f"m{i}": i * 0.5 for i in range(40)})
    log.heartbeat(e)
"""


def test_crash_safety_sigkill_mid_write(tmp_path):
    """A writer killed at a random moment leaves a log whose complete lines all parse, and a
    heartbeat that is old or new but never partial; reading while it writes never fails."""
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(run_dir)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 1.0
        seen = 0
        while time.monotonic() < deadline:
            events = read_events(run_dir)
            epochs = [e["epoch"] for e in events if e["type"] == "eval"]
            assert epochs == list(range(1, len(epochs) + 1))
            assert all(len(e["metrics"]) == 40 for e in events if e["type"] == "eval")
            seen = max(seen, len(epochs))
            beat = read_heartbeat(run_dir)
            assert beat is None or isinstance(beat["epoch"], int)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = read_events(run_dir)
    epochs = [e["epoch"] for e in events if e["type"] == "eval"]
    assert len(epochs) >= seen > 0
    assert epochs == list(range(1, len(epochs) + 1))
    # A new attempt continues the same log cleanly.
    EventLog(run_dir).start(2, device="cpu", resumed_from_epoch=epochs[-1])
    assert read_events(run_dir)[-1]["attempt"] == 2
