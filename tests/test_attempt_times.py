"""A new attempt's times: the local executor clears the previous attempt's `started_at` when it
marks a run `running`, so elapsed and ETA are per attempt until the worker's start event."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

from ncbench.events import EventLog
from ncbench.executors.local import LocalExecutor, _Spawned, make_slots
from ncbench.rundir import run_dir_of
from ncbench.runs import RunSpec
from ncbench.store import Store, query_dicts, read_connection


def test_launch_clears_the_previous_attempts_started_at(tmp_path):
    spec = RunSpec(experiment="x", dataset="gaussian", model="mlp", loss="ce", width=1.0, epochs=3, seed=0)
    store = Store(tmp_path / "ncbench.duckdb")
    store.register_runs([spec])
    old = datetime(2026, 1, 1, tzinfo=timezone.utc)
    store.set_status(spec.run_id, "interrupted", started_at=old, attempt=1)
    d = run_dir_of(tmp_path / "work", spec.run_id)
    log = EventLog(d, spec.run_id)
    log.start(1, host="here", device="cpu", pid=1)
    log.end("interrupted")
    # a real process that reads its orders and exits: it never writes a start event
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    with open(d / "worker.test.log", "ab") as f:
        active = LocalExecutor(gpus=[])._go(_Spawned(spec, d, proc, f), make_slots([], 1, 1)[0], store)
        proc.wait(timeout=30)
    assert active.attempt == 2
    with read_connection(tmp_path / "ncbench.duckdb") as con:
        (row,) = query_dicts(con, "SELECT status, attempt, started_at FROM runs")
    assert row["status"] == "running" and row["attempt"] == 2
    assert row["started_at"] is None
