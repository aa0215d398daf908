"""The DuckDB store: registration, idempotent ingestion, views, and the one-writer protocol
(tested with a real concurrent writer process)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from ncbench.errors import StoreError
from ncbench.events import EventLog, write_spec
from ncbench.listing import list_runs
from ncbench.rundir import EVENTS_FILE, run_dir_of
from ncbench.runs import RunSpec
from ncbench.store import STATS, Store, query_dicts, query_runs, read_connection, run_sql


def make_specs(n: int = 3, experiment: str = "e") -> list[RunSpec]:
    return [RunSpec(experiment=experiment, dataset="digits", model="mlp", loss=loss, width=0.5,
                    epochs=10, seed=s) for s in range(n) for loss in ("ce",)]


def rows(db: Path, sql: str, params=None) -> list[tuple]:
    with read_connection(db) as con:
        return con.execute(sql, params or []).fetchall()


def fake_run(workdir: Path, spec: RunSpec, evals: dict[int, dict], end: str | None = "done",
             attempt: int = 1) -> Path:
    run_dir = run_dir_of(workdir, spec.run_id)
    write_spec(run_dir, spec)
    log = EventLog(run_dir)
    log.start(attempt, host="hostA", device="cpu", pid=123)
    for epoch, metrics in evals.items():
        log.eval(epoch, metrics)
        log.heartbeat(epoch)
    if end:
        log.end(end, error=None if end == "done" else "boom")
    return run_dir


def test_register_runs_inserts_queued_and_never_clobbers(tmp_path):
    db = tmp_path / "sub" / "ncbench.duckdb"
    store = Store(db)
    specs = make_specs(3)
    assert store.register_runs(specs) == 3
    assert store.register_runs(specs + specs) == 0
    got = rows(db, "SELECT run_id, experiment, dataset, model, loss, width, epochs, seed, status, "
                   "attempt FROM runs ORDER BY seed")
    assert got == [(s.run_id, "e", "digits", "mlp", "ce", 0.5, 10, s.seed, "queued", 0) for s in specs]
    assert store.set_status(specs[0].run_id, "done", host="h", slot=1, attempt=2)
    assert store.register_runs(specs) == 0
    assert rows(db, "SELECT status, host, slot, attempt FROM runs WHERE run_id = ?",
                [specs[0].run_id]) == [("done", "h", "1", 2)]
    with read_connection(db) as con:
        cfg = query_runs(con, run_ids=[specs[1].run_id])[0]["config"]
    assert RunSpec.from_dict(cfg) == specs[1]


def test_set_status_validates(tmp_path):
    store = Store(tmp_path / "db.duckdb")
    store.register_runs(make_specs(1))
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_status(make_specs(1)[0].run_id, "finished")
    with pytest.raises(ValueError, match="unknown runs column"):
        store.set_status(make_specs(1)[0].run_id, "running", colour="red")
    assert store.set_status("nonexistent", "running") is False
    store.set_status(make_specs(1)[0].run_id, "running", heartbeat_at="2024-01-02T03:04:05+02:00",
                     slurm_job_id=77)
    assert rows(tmp_path / "db.duckdb", "SELECT heartbeat_at::VARCHAR, slurm_job_id FROM runs") == \
        [("2024-01-02 01:04:05", "77")]


def test_ingest_metrics_status_and_views(tmp_path):
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    store = Store(db)
    a, b, c = make_specs(3)
    store.register_runs([a, b, c])
    fake_run(work, a, {5: {"train_acc": 0.8, "val_acc": 0.7, "test_acc": 0.65, "nc1": 2.0, "lr": 0.1},
                       10: {"train_acc": 1.0, "val_acc": 0.6, "test_acc": 0.62, "nc1": 0.5,
                            "nc4": float("nan")}})
    fake_run(work, b, {5: {"train_acc": 0.5, "train_loss": float("inf")}}, end=None)
    fake_run(work, c, {5: {"val_acc": 0.1}}, end="diverged")
    res = store.sync(work)
    assert res.runs_seen == 3 and res.metrics_written == 5 + 5 + 2 + 1
    got = dict(rows(db, "SELECT run_id, status FROM runs"))
    assert got == {a.run_id: "done", b.run_id: "running", c.run_id: "diverged"}
    r = query(db, "SELECT * FROM runs WHERE run_id = ?", [a.run_id])[0]
    assert (r["host"], r["device"], r["pid"], r["attempt"], r["last_epoch"]) == ("hostA", "cpu", 123, 1, 10)
    assert r["started_at"] <= r["finished_at"] and r["heartbeat_at"] is not None and r["error"] is None
    assert query(db, "SELECT error FROM runs WHERE run_id = ?", [c.run_id])[0]["error"] == "boom"
    # epochs view: one wide row per (run, epoch); non-finite values kept
    e = query(db, "SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", [a.run_id])
    assert [(x["epoch"], x["train_acc"], x["test_acc"], x["nc1"]) for x in e] == \
        [(5, 0.8, 0.65, 2.0), (10, 1.0, 0.62, 0.5)]
    assert math.isnan(e[1]["nc4"]) and e[0]["lr"] == 0.1
    assert query(db, "SELECT train_loss FROM epochs WHERE run_id = ?", [b.run_id])[0]["train_loss"] == math.inf
    # results view: best validation epoch's test accuracy vs the final one
    res_a = query(db, "SELECT * FROM results WHERE run_id = ?", [a.run_id])[0]
    assert (res_a["best_epoch"], res_a["best_val_acc"], res_a["test_acc_at_best_val"]) == (5, 0.7, 0.65)
    assert (res_a["final_epoch"], res_a["final_test_acc"], res_a["final_nc1"]) == (10, 0.62, 0.5)
    assert query(db, "SELECT count(*) AS n FROM results")[0]["n"] == 3


def query(db, sql, params=None):
    with read_connection(db) as con:
        return query_dicts(con, sql, params)


def test_ingest_is_idempotent_and_incremental(tmp_path):
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    (spec,) = make_specs(1)
    run_dir = fake_run(work, spec, {1: {"a": 1.0}, 2: {"a": 2.0}}, end=None)
    store = Store(db)
    assert store.sync(work).metrics_written == 2
    assert store.sync(work).metrics_written == 0  # nothing new was appended
    log = EventLog(run_dir)
    log.eval(3, {"a": 3.0, "b": 1.0})
    assert store.sync(work, [spec.run_id]).metrics_written == 2
    # a fresh Store (another manager process) re-reads everything: no duplicates
    Store(db).sync(work)
    store.reset_offsets()
    store.sync(work)
    assert rows(db, "SELECT epoch, name, value FROM metrics ORDER BY epoch, name") == \
        [(1, "a", 1.0), (2, "a", 2.0), (3, "a", 3.0), (3, "b", 1.0)]
    assert rows(db, "SELECT count(*) FROM (SELECT DISTINCT run_id, epoch, name FROM metrics)") == \
        rows(db, "SELECT count(*) FROM metrics")
    # a re-logged epoch (e.g. after a resume) replaces the value, never duplicates it
    log.eval(3, {"a": 3.5})
    store.sync(work)
    assert rows(db, "SELECT value FROM metrics WHERE epoch = 3 AND name = 'a'") == [(3.5,)]
    # a half-written line is not ingested until complete
    with open(run_dir / EVENTS_FILE, "ab") as f:
        f.write(b'{"type": "eval", "run_id": "x", "epoch": 4, "metrics": {"a": 4')
    assert store.sync(work).metrics_written == 0
    with open(run_dir / EVENTS_FILE, "ab") as f:
        f.write(b'.0}}\n')
    assert store.sync(work).metrics_written == 1
    assert rows(db, "SELECT max(epoch), count(*) FROM metrics") == [(4, 5)]


def test_resume_start_after_end_is_running_then_done(tmp_path):
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    (spec,) = make_specs(1)
    run_dir = fake_run(work, spec, {5: {"a": 1.0}}, end="interrupted")
    store = Store(db)
    store.sync(work)
    assert rows(db, "SELECT status, attempt, finished_at IS NOT NULL FROM runs") == [("interrupted", 1, True)]
    log = EventLog(run_dir)
    log.start(2, device="cuda:0", resumed_from_epoch=5)
    store.sync(work)
    assert rows(db, "SELECT status, attempt, device, finished_at, error FROM runs") == \
        [("running", 2, "cuda:0", None, None)]
    log.heartbeat(7)
    store.sync(work)
    assert rows(db, "SELECT last_epoch FROM runs") == [(7,)]
    log.eval(10, {"a": 2.0})
    log.end("done")
    store.sync(work)
    assert rows(db, "SELECT status, last_epoch FROM runs") == [("done", 10)]


def test_unregistered_run_dir_is_registered_from_spec(tmp_path):
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    (spec,) = make_specs(1, experiment="other")
    fake_run(work, spec, {1: {"a": 1.0}})
    run_dir_of(work, "junk").mkdir()  # no spec.json: skipped
    Store(db).sync(work)
    assert rows(db, "SELECT run_id, experiment, status FROM runs") == [(spec.run_id, "other", "done")]


def test_failed_session_rolls_back_and_keeps_offsets(tmp_path):
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    (spec,) = make_specs(1)
    fake_run(work, spec, {1: {"a": 1.0}})
    store = Store(db)
    store.register_runs([])  # creates the schema
    with pytest.raises(RuntimeError):
        with store.write() as w:
            w.sync(work)
            raise RuntimeError("crash inside the session")
    assert rows(db, "SELECT count(*) FROM metrics") == [(0,)]
    assert store.sync(work).metrics_written == 1  # not skipped by a remembered offset


def test_readers_never_create_files(tmp_path):
    db = tmp_path / "none.duckdb"
    with pytest.raises(StoreError, match=r"no results yet.*ncbench run"):
        with read_connection(db):
            pass
    with pytest.raises(StoreError, match="no results yet"):
        run_sql(db, "SELECT 1")
    assert list_runs(make_specs(2), db)[0].status == "queued"
    assert list(tmp_path.iterdir()) == []


def test_not_an_ncbench_database(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        with read_connection(junk):
            pass
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(StoreError, match="not an ncbench results database"):
        list_runs([], other)
    newer = tmp_path / "newer.duckdb"
    Store(newer).register_runs([])
    con = duckdb.connect(str(newer))
    con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        Store(newer).register_runs([])


V2_RUNS = """CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO meta VALUES ('schema_version', '2');
CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, experiment VARCHAR NOT NULL, dataset VARCHAR NOT NULL,
    model VARCHAR NOT NULL, loss VARCHAR NOT NULL, width DOUBLE NOT NULL, epochs INTEGER NOT NULL,
    seed INTEGER NOT NULL, status VARCHAR NOT NULL, config JSON NOT NULL, created_at TIMESTAMP,
    started_at TIMESTAMP, finished_at TIMESTAMP, host VARCHAR, device VARCHAR, error VARCHAR,
    executor VARCHAR, slot VARCHAR, attempt INTEGER DEFAULT 0, slurm_job_id VARCHAR,
    heartbeat_at TIMESTAMP, pid INTEGER, last_epoch INTEGER);
CREATE TABLE metrics (run_id VARCHAR NOT NULL, epoch INTEGER NOT NULL, name VARCHAR NOT NULL,
    value DOUBLE, PRIMARY KEY (run_id, epoch, name));
"""


def test_a_version_2_database_is_read_then_upgraded_keeping_its_runs(tmp_path):
    """A database written by schema version 2 (no runs.start_epoch): the TUI's reader reads it
    as it is (read-only), the first write session adds the column; nothing stored is lost."""
    from ncbench import schema
    from ncbench.listing import stored_rows

    db, work = tmp_path / "old.duckdb", tmp_path / ".ncbench"
    (spec,) = make_specs(1)
    con = duckdb.connect(str(db))
    con.execute(V2_RUNS)
    con.execute("INSERT INTO runs (run_id, experiment, dataset, model, loss, width, epochs, seed, "
                "status, config, last_epoch) VALUES (?, 'e', 'digits', 'mlp', 'ce', 0.5, 10, 0, "
                "'done', ?, 10)", [spec.run_id, spec.to_json()])
    con.execute("INSERT INTO metrics VALUES (?, 10, 'nc1', 0.25)", [spec.run_id])
    con.close()
    with read_connection(db) as con:
        (row,) = stored_rows(con).values()
    assert (row.status, row.last_epoch, row.nc1, row.start_epoch) == ("done", 10, 0.25, 0)

    Store(db).register_runs([spec])
    assert rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(schema.SCHEMA_VERSION),)]
    assert rows(db, "SELECT status, last_epoch, start_epoch FROM runs") == [("done", 10, None)]
    assert rows(db, "SELECT epoch, name, value FROM metrics") == [(10, "nc1", 0.25)]
    # a resumed attempt's start event sets it
    run_dir = run_dir_of(work, spec.run_id)
    write_spec(run_dir, spec)
    EventLog(run_dir).start(2, host="h", device="cpu", pid=1, resumed_from_epoch=6)
    Store(db).sync(work)
    assert rows(db, "SELECT status, attempt, start_epoch FROM runs") == [("running", 2, 6)]


def test_a_retry_request_lasts_until_the_next_attempt_starts(tmp_path):
    """`retry_run` (the TUI's R) marks the run; status writes (an executor deciding the job that
    just ended) leave the mark, which `requeued_runs` reads; the next start event clears it."""
    from ncbench.grid import requeued_runs
    from ncbench.tui.control import retry_run

    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    failed, done = make_specs(2)
    store = Store(db)
    store.register_runs([failed, done])
    run_dir = fake_run(work, failed, {1: {"nc1": 1.0}}, end="failed")
    fake_run(work, done, {1: {"nc1": 1.0}}, end="done")
    store.sync(work)
    assert requeued_runs([failed, done], work, store) == []
    retry_run(db, failed.run_id)
    retry_run(db, done.run_id)  # a done run is never rerun, request or not
    store.set_status(failed.run_id, "failed")  # e.g. the Slurm executor's late verdict
    assert requeued_runs([failed, done], work, Store(db)) == [failed]
    with store.write() as w:
        assert w.retry_requests([failed.run_id, done.run_id]) == {failed.run_id, done.run_id}
    EventLog(run_dir).start(2, host="h", device="cpu", pid=1, resumed_from_epoch=1)
    store.sync(work)
    assert requeued_runs([failed, done], work, store) == []
    assert rows(db, "SELECT status, retry_requested_at FROM runs WHERE run_id = ?",
                [failed.run_id]) == [("running", None)]


# ---------------------------------------------------------------------------------------------
# one writer, many readers: a real concurrent writer process
# ---------------------------------------------------------------------------------------------

_WRITER = r"""
import sys, time
from pathlib import Path
from ncbench.events import EventLog, write_spec
from ncbench.rundir import run_dir_of
from ncbench.runs import RunSpec
from ncbench.store import Store

db, work, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
spec = RunSpec(experiment="w", dataset="digits", model="mlp", loss="ce", width=1, epochs=10**6, seed=0)
run_dir = run_dir_of(work, spec.run_id)
write_spec(run_dir, spec)
log = EventLog(run_dir)
log.start(1, device="cpu")
store = Store(db)
store.register_runs([spec])
print("ready", flush=True)
end = time.monotonic() + 120  # a safety net: the test creates `stop` much earlier
epoch = 0
while time.monotonic() < end and not stop.exists():
    epoch += 1
    log.eval(epoch, {"train_acc": 0.5, "nc1": 1.0 / epoch})
    log.heartbeat(epoch)
    store.sync(work)                                  # open, write, close
    store.set_status(spec.run_id, "running", slot=epoch % 2)
print(epoch, flush=True)
"""


def test_concurrent_writer_and_readers(tmp_path):
    """While a writer process opens-writes-closes in a loop, readers (read_connection in this
    process, `ncbench sql` / `ncbench status` subprocesses) always succeed and see fresh data."""
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(work), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clis: list[subprocess.Popen] = []
    try:
        assert writer.stdout.readline().strip() == "ready"
        cli_args = [["sql", "SELECT count(*) AS n FROM epochs", "--format", "csv", "--db", str(db)],
                    ["status", "--db", str(db), "--json"],
                    ["sql", "SELECT status, last_epoch FROM runs", "--format", "json", "--db", str(db)]]
        reads, last = 0, 0
        retries_before = STATS["lock_retries"]
        while writer.poll() is None:
            if reads % 5 == 0 and cli_args:
                clis.append(subprocess.Popen([sys.executable, "-m", "ncbench", *cli_args.pop(0)],
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True, cwd=tmp_path))
            with read_connection(db, timeout=10) as con:
                n = con.execute("SELECT coalesce(max(epoch), 0) FROM metrics").fetchall()[0][0]
            assert n >= last  # monotone: never a torn view
            last, reads = n, reads + 1
            if reads >= 20 and not cli_args and all(p.poll() is not None for p in clis):
                stop.touch()
            time.sleep(0.02)
        out, err = writer.communicate(timeout=60)
        for p in clis:
            cout, cerr = p.communicate(timeout=60)
            assert p.returncode == 0, cerr
            assert "Traceback" not in cerr and "lock" not in cerr.lower()
            assert cout.strip()
    finally:
        for p in [writer, *clis]:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert writer.returncode == 0, err
    written = int(out.strip().splitlines()[-1])
    assert reads >= 20 and len(clis) == 3 and 0 < last <= written and stop.exists()
    print(f"reads {reads}, writer syncs {written}, reader lock retries "
          f"{STATS['lock_retries'] - retries_before}")
    # after the writer's last sync the data is complete
    assert rows(db, "SELECT max(epoch), count(*) FROM metrics") == [(written, 2 * written)]


def test_writer_waits_for_a_reader_of_the_same_process(tmp_path):
    """A read-only connection held by another thread of this process (the TUI's poller) makes
    DuckDB refuse a read-write open with "different configuration": the writer retries until the
    reader closes instead of failing (and a reader waits for an in-process writer the same way)."""
    import threading

    from ncbench.runs import RunSpec
    from ncbench.store import Store, read_connection

    db = tmp_path / "ncbench.duckdb"
    spec = RunSpec(experiment="t", dataset="gaussian", model="mlp", loss="ce", width=1.0,
                   epochs=1, seed=0)
    store = Store(db, lock_timeout=10.0)
    store.register_runs([spec])
    opened, release = threading.Event(), threading.Event()

    def hold_reader():
        with read_connection(db):
            opened.set()
            release.wait(10)

    reader = threading.Thread(target=hold_reader)
    reader.start()
    assert opened.wait(10)
    threading.Timer(0.5, release.set).start()
    assert store.set_status(spec.run_id, "failed", error="boom")  # retried, not raised
    reader.join()
    with read_connection(db) as con:
        assert con.execute("SELECT status, error FROM runs").fetchone() == ("failed", "boom")
