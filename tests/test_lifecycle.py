"""The run lifecycle (`ncbench.lifecycle`): the status events say, the state of a run directory,
attempt numbering across a lost worker and its resume, and the rules for starting a run again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from ncbench import lifecycle as lc
from ncbench.events import EventLog, atomic_write_text, read_events
from ncbench.lifecycle import (
    ALIVE, DIVERGED, DONE, FAILED, INTERRUPTED, LOST, NEW, QUEUED, RUNNING, RunState,
    attempt_after, event_status, next_attempt, status_of,
)
from ncbench.rundir import HEARTBEAT_FILE, run_dir_of

NOW = datetime(2025, 1, 31, 12, 0, 0)


def at(seconds_before_now: float) -> str:
    """An event/heartbeat time `seconds_before_now` before NOW (ISO, UTC)."""
    return (NOW - timedelta(seconds=seconds_before_now)).isoformat() + "+00:00"


def start(attempt=1, t=100.0):
    return {"type": "start", "attempt": attempt, "time": at(t)}


def ev(epoch, t=90.0):
    return {"type": "eval", "epoch": epoch, "metrics": {"train_acc": 0.5}, "time": at(t)}


def end(status, t=80.0, **kw):
    return {"type": "end", "status": status, "time": at(t), **kw}


def beat(age_s, *, host="gpu-node-7", pid=12345, phase="train", epoch=1):
    return {"pid": pid, "host": host, "time": at(age_s), "epoch": epoch, "phase": phase}


# -- the status events say -------------------------------------------------------------------------


@pytest.mark.parametrize("events, expected", [
    ([], None),
    ([ev(1)], None),                                          # no start/end: nothing to say
    ([start()], RUNNING),
    ([start(), ev(1), ev(2)], RUNNING),
    ([start(), ev(1), end(DONE)], DONE),
    ([start(), end(DIVERGED)], DIVERGED),
    ([start(), end(FAILED, error="boom")], FAILED),
    ([start(), end(INTERRUPTED), start(2)], RUNNING),         # a resumed attempt
    ([start(), end(INTERRUPTED), start(2), ev(3), end(DONE)], DONE),
    ([start(), end(FAILED), start(2), end(DIVERGED)], DIVERGED),  # the last end wins
    ([start(), end(DONE), ev(3)], DONE),                      # an eval does not reopen it
    ([start(), {"type": "end", "time": at(1)}], FAILED),      # an end that says nothing
    ([start(), end("finished")], FAILED),                     # an unknown end status
    ([end(INTERRUPTED)], INTERRUPTED),                        # closed by an executor, never started
])
def test_event_status_of_hand_written_sequences(events, expected):
    assert event_status(events) == expected


def test_store_ingest_and_classification_agree_with_event_status(tmp_path):
    """The one mapping: what the store writes and what `classify_run` says for the same run
    directory are `event_status` of its events (a run started and not ended is `running` in the
    store, `alive`/`lost` in its directory)."""
    from ncbench.runs import RunSpec
    from ncbench.store import Store, query_dicts, read_connection

    sequences = {
        "a": [("start", 1), ("end", DONE)],
        "b": [("start", 1), ("end", INTERRUPTED), ("start", 2)],
        "c": [("start", 1), ("end", FAILED), ("start", 2), ("end", DIVERGED)],
        "d": [("start", 1), ("eval", 1)],
        "e": [],
    }
    work, db = tmp_path / "work", tmp_path / "db.duckdb"
    store = Store(db)
    expected = {}
    for seed, (name, seq) in enumerate(sequences.items()):
        spec = RunSpec(experiment=name, dataset="gaussian", model="mlp", loss="ce", width=1.0,
                       epochs=3, seed=seed)
        d = lc.prepare_run_dir(work, spec)
        log = EventLog(d)
        for kind, value in seq:
            if kind == "start":
                log.start(value, host="elsewhere", device="cpu", pid=1)
            elif kind == "eval":
                log.eval(value, {"nc1": 1.0})
            else:
                lc.end_attempt(log, value)
        said = event_status(read_events(d))
        expected[spec.run_id] = said or QUEUED
        # started, not ended, no heartbeat: lost in its directory
        assert lc.classify_run(d).status == {None: NEW, RUNNING: LOST}.get(said, said), name
    store.register_runs([])  # only the run dirs say what the runs are
    store.sync(work)
    with read_connection(db) as con:
        stored = {r["run_id"]: r["status"] for r in query_dicts(con, "SELECT run_id, status FROM runs")}
    assert stored == expected


# -- the state of a run directory ------------------------------------------------------------------


def test_status_of_new_finished_and_running_runs():
    assert status_of([], None, now=NOW).status == NEW
    state = status_of([start(), ev(1), ev(2), end(DONE)], None, now=NOW)
    assert (state.status, state.last_epoch) == (DONE, 2)
    state = status_of([start()], beat(5), now=NOW)  # fresh heartbeat, another host
    assert state.status == ALIVE and "host gpu-node-7" in state.note and "5 s ago" in state.note
    assert status_of([start()], beat(5), now=NOW, stale_after=3).status == LOST


def test_status_of_lost_runs():
    state = status_of([start()], None, now=NOW)
    assert (state.status, state.note) == (LOST, "no heartbeat")
    state = status_of([start()], beat(lc.STALE_AFTER_S + 1), now=NOW)
    assert state.status == LOST and "61 s old" in state.note
    # a fresh heartbeat from this host whose pid is gone
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    state = status_of([start()], beat(1, host=socket.gethostname(), pid=p.pid), now=NOW)
    assert state.status == LOST and f"pid {p.pid} is gone" in state.note
    mine = beat(1, host=socket.gethostname(), pid=os.getpid())
    assert status_of([start()], mine, now=NOW).status == ALIVE


def test_a_heartbeat_newer_than_the_last_end_is_a_new_attempt_before_its_start():
    events = [start(t=300), end(INTERRUPTED, t=200)]
    assert status_of(events, beat(5, phase="setup"), now=NOW).status == ALIVE
    assert status_of(events, beat(5, phase="train"), now=NOW).status == ALIVE
    assert status_of(events, beat(100, phase="setup"), now=NOW).status == LOST
    # the heartbeat of the attempt that ended (older than its end, or saying it is done)
    assert status_of(events, beat(250, phase="train"), now=NOW).status == INTERRUPTED
    assert status_of(events, beat(5, phase="done"), now=NOW).status == INTERRUPTED


# -- attempts ------------------------------------------------------------------------------------


def test_attempt_numbers():
    assert attempt_after([]) == 1
    assert attempt_after([start(), ev(1)]) == 1  # attempt 1 is still open
    assert attempt_after([start(), end(FAILED)]) == 2
    assert attempt_after([start(), end(FAILED), start(2), end(INTERRUPTED), start(3)]) == 3
    assert lc.ended_attempts([start(), end(FAILED), end(INTERRUPTED)]) == 2


def test_attempts_across_a_lost_worker_and_its_resume(tmp_path):
    """Attempt 1 loses its worker (started, no end, stale heartbeat); the grid closes it and the
    worker's next start is attempt 2 — computed by the worker itself from the log (no
    NCBENCH_ATTEMPT), as the executors and the store count it."""
    from _runkit import env, tiny_spec

    from ncbench.grid import plan_runs
    from ncbench.store import Store, query_dicts, read_connection

    work = tmp_path / "work"
    spec = tiny_spec(epochs=2)
    d = lc.prepare_run_dir(work, spec)
    assert next_attempt(d) == 1
    log = EventLog(d)
    log.start(next_attempt(d), host="gone-node", device="cpu", pid=1)
    log.eval(1, {"train_acc": 0.5})
    atomic_write_text(d / HEARTBEAT_FILE, '{"pid": 1, "host": "gone-node", "time": '
                      '"2020-01-01T00:00:00+00:00", "epoch": 1, "phase": "train"}')
    assert lc.classify_run(d).status == LOST
    assert next_attempt(d) == 1  # the lost attempt has no end yet
    plan = plan_runs([spec], work)
    assert [s.run_id for s in plan.todo] == [spec.run_id] and spec.run_id in plan.resumed
    last = read_events(d)[-1]
    assert (last["type"], last["status"], last["by"]) == ("end", INTERRUPTED, "executor")
    assert next_attempt(d) == 2

    e = env()
    e.pop("NCBENCH_ATTEMPT", None)
    out = subprocess.run([sys.executable, "-m", "ncbench.worker", str(d)], env=e,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    starts = [x for x in read_events(d) if x["type"] == "start"]
    assert [x["attempt"] for x in starts] == [1, 2]
    assert event_status(read_events(d)) == DONE and next_attempt(d) == 3
    db = tmp_path / "db.duckdb"
    Store(db).sync(work)
    with read_connection(db) as con:
        (row,) = query_dicts(con, "SELECT status, attempt FROM runs")
    assert row == {"status": DONE, "attempt": 2}


def test_end_attempt_checks_the_status_and_mark_ended_says_who(tmp_path):
    log = EventLog(tmp_path / "r")
    with pytest.raises(ValueError, match="end status"):
        lc.end_attempt(log, "finished")
    with pytest.raises(ValueError, match="end status"):
        lc.mark_ended(tmp_path / "r", RUNNING, None)
    assert read_events(tmp_path / "r") == []  # nothing written
    lc.mark_ended(tmp_path / "r", FAILED, "killed by SIGKILL", returncode=-9)
    (e,) = read_events(tmp_path / "r")
    assert (e["status"], e["error"], e["by"], e["returncode"]) == (FAILED, "killed by SIGKILL",
                                                                   "executor", -9)


def test_prepare_run_dir_writes_the_spec_and_keeps_the_log(tmp_path):
    from _runkit import tiny_spec

    from ncbench.events import read_spec

    spec = tiny_spec()
    d = lc.prepare_run_dir(tmp_path, spec)
    assert d == run_dir_of(tmp_path, spec.run_id) and read_spec(d) == spec
    EventLog(d).start(1, device="cpu")
    assert lc.prepare_run_dir(tmp_path, spec) == d and len(read_events(d)) == 1


# -- starting a run again ------------------------------------------------------------------------


def test_which_runs_ncbench_run_starts():
    assert lc.why_not_start(RunState(DONE)) == DONE
    assert lc.why_not_start(RunState(DIVERGED)) == DIVERGED
    assert lc.why_not_start(RunState(ALIVE, "running on host n1")) == "running on host n1"
    for status in (NEW, FAILED, INTERRUPTED, LOST):
        assert lc.why_not_start(RunState(status)) is None, status


def test_the_tuis_retry_rule():
    assert lc.why_not_retry(FAILED) is None and lc.why_not_retry(INTERRUPTED) is None
    assert lc.why_not_retry(DONE) == "only failed or interrupted runs can be retried"
    assert "deterministic" in lc.why_not_retry(DIVERGED)
    assert lc.why_not_retry(RUNNING) and lc.why_not_retry(QUEUED)
    # a pending request starts a run again only when its directory says it ended so
    assert lc.honours_retry(RunState(FAILED)) and lc.honours_retry(RunState(INTERRUPTED))
    for status in (DONE, DIVERGED, ALIVE, LOST, NEW):
        assert not lc.honours_retry(RunState(status)), status
    # a final verdict while a retry is requested shows the run queued (it is started again)
    assert lc.status_with_retry(FAILED, over=True, retry_requested=True) == QUEUED
    assert lc.status_with_retry(FAILED, over=True, retry_requested=False) == FAILED
    assert lc.status_with_retry(RUNNING, over=False, retry_requested=True) == RUNNING


def test_the_executors_automatic_retries():
    assert lc.retries_again(FAILED, 1)
    assert not lc.retries_again(FAILED, 0)
    assert not lc.retries_again(FAILED, 2, stopping=True)
    for status in (DONE, DIVERGED, INTERRUPTED):
        assert not lc.retries_again(status, 5), status


def test_the_status_sets_partition_the_statuses():
    assert lc.RUN_STATUSES == (QUEUED, RUNNING, DONE, FAILED, DIVERGED, INTERRUPTED)
    assert set(lc.END_STATUSES) == set(lc.RUN_STATUSES) - set(lc.ACTIVE)
    assert set(lc.FINISHED) | set(lc.RETRYABLE) == set(lc.END_STATUSES)
    assert not set(lc.FINISHED) & set(lc.RETRYABLE)
    assert set(lc.STATUS_STYLE) == set(lc.RUN_STATUSES)
    assert len({s.glyph for s in lc.STATUS_STYLE.values()}) == len(lc.RUN_STATUSES)


def test_lifecycle_is_torch_free():
    code = "import sys, ncbench.lifecycle, ncbench.rundir; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
