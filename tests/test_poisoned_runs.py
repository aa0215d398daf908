"""A poisoned run cannot block a grid (issues #15, #17): event lines holding impossible values
are skipped and noted on their run, and no run directory can make a sync (or `ncbench run`) fail
for the others."""

from __future__ import annotations

import json
import logging

import pytest
from _runkit import experiment, ncbench, query, write_config

from ncbench.events import EventLog, read_events, scan_events, validate_event, write_spec
from ncbench.listing import list_runs
from ncbench.rundir import EVENTS_FILE, HEARTBEAT_FILE, SPEC_FILE, run_dir_of
from ncbench.runs import RunSpec
from ncbench.store import Store, read_connection

T = "2026-01-01T00:00:00.000+00:00"

#: (label, a complete event line that parses as JSON but must not be ingested)
POISON = [
    ("epoch beyond 64 bits", {"type": "eval", "epoch": 99999999999999999999999, "metrics": {}}),
    ("epoch beyond the run", {"type": "eval", "epoch": 99999999999, "metrics": {"nc1": 1.0}}),
    ("negative epoch", {"type": "eval", "epoch": -1, "metrics": {}}),
    ("epoch as text", {"type": "eval", "epoch": "3", "metrics": {}}),
    ("epoch a bool", {"type": "eval", "epoch": True, "metrics": {}}),
    ("metrics as a list", {"type": "eval", "epoch": 1, "metrics": [1, 2]}),
    ("metric value a dict", {"type": "eval", "epoch": 1, "metrics": {"nc1": {"x": 1}}}),
    ("metric value text", {"type": "eval", "epoch": 1, "metrics": {"nc1": "high"}}),
    ("metric value huge int", {"type": "eval", "epoch": 1, "metrics": {"nc1": 10**400}}),
    ("attempt not an integer", {"type": "start", "attempt": "x", "pid": 1}),
    ("attempt a float", {"type": "start", "attempt": 1.5}),
    ("pid beyond 64 bits", {"type": "start", "attempt": 1, "pid": 2**64}),
    ("time not a time", {"type": "end", "status": "done", "time": "yesterday"}),
    ("time a number", {"type": "eval", "epoch": 1, "metrics": {}, "time": 12}),
    ("status a number", {"type": "end", "status": 5}),
    ("error an object", {"type": "end", "status": "failed", "error": {"a": 1}}),
    ("host a list", {"type": "start", "attempt": 1, "host": ["a"]}),
    ("note without message", {"type": "note"}),
    ("run_id a number", {"type": "eval", "epoch": 1, "metrics": {}, "run_id": 7}),
]


def spec(seed: int = 0, **kw) -> RunSpec:
    base = dict(experiment="e", dataset="digits", model="mlp", loss="ce", width=0.5, epochs=3,
                seed=seed)
    base.update(kw)
    return RunSpec(**base)


def good_run(workdir, s: RunSpec, epochs: int = 3):
    d = run_dir_of(workdir, s.run_id)
    write_spec(d, s)
    log = EventLog(d)
    log.start(1, host="h", device="cpu", pid=1)
    for e in range(1, epochs + 1):
        log.eval(e, {"nc1": 1.0 / e, "test_acc": 0.5})
    log.end("done")
    return d


def insert_line(run_dir, index: int, line: str) -> None:
    """Put `line` as line `index` (0-based) of the event log."""
    path = run_dir / EVENTS_FILE
    lines = path.read_text().splitlines()
    lines.insert(index, line)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("label,event", POISON, ids=[p[0] for p in POISON])
def test_an_impossible_event_does_not_fit_the_schema(label, event):
    event = {"run_id": "r", "time": T, **event}
    assert validate_event(event, max_epoch=10) is not None


def test_the_events_the_writer_writes_fit_the_schema(tmp_path):
    log = EventLog(tmp_path / "r")
    log.start(1, host="h", device="cpu", pid=12, resumed_from_epoch=2, slot="cpu0")
    log.eval(0, {"nc1": float("nan"), "a": float("inf"), "b": None, "c": 3})
    log.note("resumed from the previous checkpoint:\nepoch 2")
    log.end("failed", error="boom")
    scan = scan_events(log.path)
    assert [e["type"] for e in scan.events] == ["start", "eval", "note", "end"]
    assert scan.skipped == [] and scan.line == 5
    assert scan.events[2]["message"] == "resumed from the previous checkpoint: epoch 2"


def test_skipped_lines_are_numbered_across_incremental_reads(tmp_path):
    log = EventLog(tmp_path / "r")
    log.start(1)
    with open(log.path, "a") as f:
        f.write(json.dumps({"type": "eval", "epoch": [1], "metrics": {}}) + "\n")
    first = scan_events(log.path)
    assert first.skipped == [(2, "eval event: epoch [1] is not an integer")]
    log.eval(1, {"x": 1.0})
    with open(log.path, "a") as f:
        f.write("{not json\n")
    more = scan_events(log.path, first.offset, first.line)
    assert [e["type"] for e in more.events] == ["eval"]
    assert [n for n, _ in more.skipped] == [4]
    assert len(read_events(log.path)) == 2  # every reader skips what does not fit


def test_a_poisoned_run_is_noted_and_the_others_ingest(tmp_path, caplog):
    """Every class of impossible value in one run's log: the sync goes on, the run keeps its
    status (`done`) and its valid epochs, and `note` names the lines; other runs are intact.
    (Before: a DuckDB ConversionException or AttributeError for the whole sync.)"""
    work, db = tmp_path / ".ncbench", tmp_path / "ncbench.duckdb"
    poisoned, clean = spec(0), spec(1)
    d = good_run(work, poisoned)
    good_run(work, clean)
    for label, event in POISON:  # after the start event (line 1), before the end
        insert_line(d, 2, json.dumps({"run_id": poisoned.run_id, "time": T, **event}))
    store = Store(db)
    with caplog.at_level(logging.WARNING, logger="ncbench.store"):
        result = store.sync(work)
    assert result.runs_seen == 2 and len(result.problems) >= 3
    warned = [r.getMessage() for r in caplog.records]
    assert any(f"{EVENTS_FILE} line 3 skipped" in w and poisoned.run_id in w for w in warned)

    rows = {r[0]: r[1:] for r in query(db, "SELECT run_id, status, last_epoch, attempt, note "
                                           "FROM runs")}
    status, last_epoch, attempt, note = rows[poisoned.run_id]
    assert (status, last_epoch, attempt) == ("done", 3, 1)
    assert note.startswith(f"skipped {len(POISON)} corrupt event log lines (3, 4, 5, 6, 7 and")
    assert rows[clean.run_id] == ("done", 3, 1, None)
    for run in (poisoned, clean):
        assert query(db, "SELECT epoch, value FROM metrics WHERE run_id = ? AND name = 'nc1' "
                         "ORDER BY epoch", [run.run_id]) == [(1, 1.0), (2, 0.5), (3, 1 / 3)]

    # syncing again, or re-reading from the start, notes the same thing once
    store.sync(work)
    store.reset_offsets()
    store.sync(work)
    assert query(db, "SELECT note FROM runs WHERE run_id = ?", [poisoned.run_id]) == [(note,)]


def test_a_garbled_eval_line_of_a_done_run_is_reported(tmp_path):
    """#17: a garbled evaluation line used to drop its epoch silently from a `done` run."""
    work, db = tmp_path / ".ncbench", tmp_path / "ncbench.duckdb"
    d = good_run(work, spec(0))
    lines = (d / EVENTS_FILE).read_text().splitlines()
    lines[2] = lines[2][:25] + "#garbage#" + lines[2][25:]  # the eval of epoch 2
    (d / EVENTS_FILE).write_text("\n".join(lines) + "\n")
    Store(db).sync(work)
    (row,) = [r for r in list_runs([], db) if r.stored]
    assert row.status == "done"
    assert row.note == "skipped corrupt event log line 3: not valid JSON (a torn or garbled line)"
    assert query(db, "SELECT DISTINCT epoch FROM metrics ORDER BY epoch") == [(1,), (3,)]


def test_run_dirs_whose_files_cannot_be_read_do_not_stop_the_sync(tmp_path):
    """spec.json garbage, spec.json a directory, a spec whose seed is beyond 64 bits,
    events.jsonl a directory, heartbeat.json a directory, a deeply nested line: each run dir is
    skipped or noted, the good one is ingested."""
    work, db = tmp_path / ".ncbench", tmp_path / "ncbench.duckdb"
    ok = good_run(work, spec(0))
    garbage = run_dir_of(work, "garbage-spec")
    garbage.mkdir(parents=True)
    (garbage / SPEC_FILE).write_bytes(b"\x00\xff{{{")
    dir_spec = run_dir_of(work, "dir-spec")
    (dir_spec / SPEC_FILE).mkdir(parents=True)
    huge = run_dir_of(work, "huge-seed")
    huge.mkdir(parents=True)
    data = {"run_id": "huge-seed", **spec(0).to_dict()}
    data["seed"] = 2**70
    (huge / SPEC_FILE).write_text(json.dumps(data))
    null = run_dir_of(work, "null-experiment")
    null.mkdir(parents=True)
    (null / SPEC_FILE).write_text(json.dumps({**data, "seed": 0, "experiment": None}))
    events_dir = good_run(work, spec(1))
    (events_dir / EVENTS_FILE).unlink()
    (events_dir / EVENTS_FILE).mkdir()
    beat_dir = good_run(work, spec(2))
    (beat_dir / HEARTBEAT_FILE).unlink(missing_ok=True)
    (beat_dir / HEARTBEAT_FILE).mkdir()
    deep = good_run(work, spec(3))
    insert_line(deep, 1, '{"type": "eval", "epoch": 1, "metrics": ' + "[" * 100000 + "]" * 100000 + "}")

    result = Store(db).sync(work)
    text = "\n".join(result.problems)
    assert "garbage-spec" in text and "dir-spec" in text and "huge-seed: spec.json" in text
    assert "2^63" in text and "Is a directory" in text
    assert "null-experiment: spec.json cannot be read, run dir skipped: experiment None" in text
    rows = {r[0]: r[1:] for r in query(db, "SELECT run_id, status, note FROM runs")}
    assert set(rows) == {spec(i).run_id for i in range(4)}  # the unreadable specs: not stored
    assert rows[ok.name] == ("done", None)
    assert rows[events_dir.name][0] == "queued" and "cannot read events.jsonl" in rows[events_dir.name][1]
    assert rows[beat_dir.name] == ("done", None)
    assert rows[deep.name][0] == "done" and "line 2" in rows[deep.name][1]


def test_a_note_event_reaches_runs_note_and_status(tmp_path):
    """`EventLog(run_dir).note(message)`: the one way to say something about a run that is not
    its status; notes accumulate in `runs.note`, `ncbench status` prints them."""
    work, db = tmp_path / ".ncbench", tmp_path / "ncbench.duckdb"
    d = good_run(work, spec(0))
    EventLog(d).note("resumed from the previous checkpoint: epoch 2")
    store = Store(db)
    store.sync(work)
    EventLog(d).note("second note")
    store.sync(work)
    with read_connection(db) as con:
        (note,) = con.execute("SELECT note FROM runs").fetchone()
    assert note == "resumed from the previous checkpoint: epoch 2; second note"
    out = ncbench("status", "--db", str(db), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{d.name} note: resumed from the previous checkpoint: epoch 2; second note" in out.stdout
    js = ncbench("status", "--db", str(db), "--json", cwd=tmp_path)
    assert json.loads(js.stdout)[0]["note"] == note


def test_ncbench_run_completes_a_grid_with_a_poisoned_run_dir(tmp_path):
    """The whole story through the CLI: a finished run's log gets impossible lines (the
    harness's epoch 99999999999, metrics as a list); every later `ncbench run` used to die with a
    ConversionException. Now it trains the other runs, the poisoned one stays done and `status`
    says why."""
    cfg = write_config(tmp_path, experiment("tiny", losses=("ce",), epochs=2))
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    first = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    ((run_id,),) = query(db, "SELECT run_id FROM runs")
    d = run_dir_of(work, run_id)
    insert_line(d, 1, json.dumps({"type": "eval", "run_id": run_id, "time": T,
                                  "epoch": 99999999999, "metrics": {"nc1": 1.0}}))
    insert_line(d, 2, json.dumps({"type": "eval", "run_id": run_id, "time": T, "epoch": 1,
                                  "metrics": [1, 2]}))
    db.unlink()  # the next run re-reads every log from the start

    cfg = write_config(tmp_path, experiment("tiny", losses=("ce", "mse"), epochs=2))
    again = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    assert "line 2 skipped" in again.stderr
    assert query(db, "SELECT loss, status FROM runs ORDER BY loss") == [("ce", "done"), ("mse", "done")]
    assert query(db, "SELECT max(epoch) FROM metrics WHERE run_id = ?", [run_id]) == [(2,)]
    status = ncbench("status", "--config", str(cfg), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"{run_id} note: skipped 2 corrupt event log lines (2, 3;" in status.stdout
