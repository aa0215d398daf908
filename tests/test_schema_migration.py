"""Schema version 4 (issue #17): 64-bit integer columns, and the migration of a database written
by version 3 (the DDL of version 3 is kept here, as it was released)."""

from __future__ import annotations

import json

import duckdb
import pytest
from _runkit import ncbench, query

from ncbench import schema
from ncbench.events import EventLog, write_spec
from ncbench.rundir import run_dir_of
from ncbench.runs import RunSpec
from ncbench.store import Store

#: `ncbench.schema.TABLES` of schema version 3 (ncbench before the 64-bit columns).
V3_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, experiment VARCHAR NOT NULL, dataset VARCHAR NOT NULL,
    model VARCHAR NOT NULL, loss VARCHAR NOT NULL, width DOUBLE NOT NULL,
    epochs INTEGER NOT NULL, seed INTEGER NOT NULL, status VARCHAR NOT NULL, config JSON NOT NULL,
    created_at TIMESTAMP, started_at TIMESTAMP, finished_at TIMESTAMP, host VARCHAR,
    device VARCHAR, error VARCHAR, executor VARCHAR, slot VARCHAR, attempt INTEGER DEFAULT 0,
    slurm_job_id VARCHAR, heartbeat_at TIMESTAMP, pid INTEGER, last_epoch INTEGER,
    start_epoch INTEGER, retry_requested_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR NOT NULL, epoch INTEGER NOT NULL, name VARCHAR NOT NULL, value DOUBLE,
    PRIMARY KEY (run_id, epoch, name)
);
INSERT INTO meta VALUES ('schema_version', '3');
"""
_V4_CAST = "TRY_CAST(json_extract_string(r.config, '$.batch_size') AS BIGINT)"
_V3_CAST = "CAST(json_extract_string(r.config, '$.batch_size') AS INTEGER)"

BIG = 2**31  # the first value a 32-bit INTEGER cannot hold


def old_spec(**kw) -> RunSpec:
    base = dict(experiment="e", dataset="digits", model="mlp", loss="ce", width=0.5, epochs=3,
                seed=7)
    base.update(kw)
    return RunSpec(**base)


def write_v3(db, spec: RunSpec) -> None:
    assert _V4_CAST in schema.VIEWS
    con = duckdb.connect(str(db))
    con.execute(V3_TABLES)
    con.execute(schema.VIEWS.replace(_V4_CAST, _V3_CAST))  # the views of version 3
    con.execute("INSERT INTO runs (run_id, experiment, dataset, model, loss, width, epochs, seed, "
                "status, config, attempt, pid, last_epoch, start_epoch, error) VALUES "
                "(?, 'e', 'digits', 'mlp', 'ce', 0.5, 3, 7, 'done', ?, 1, 4242, 3, 0, NULL)",
                [spec.run_id, json.dumps(spec.to_dict())])
    con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)",
                    [(spec.run_id, e, n, v) for e in (1, 2, 3)
                     for n, v in (("val_acc", 0.1 * e), ("test_acc", 0.2 * e), ("nc1", 1.0 / e))])
    with pytest.raises(duckdb.ConversionException):  # the defect: 2^31 does not fit
        con.execute("INSERT INTO metrics VALUES ('x', ?, 'nc1', 1.0)", [BIG])
    con.close()


def column_types(db) -> dict[tuple[str, str], str]:
    return {(t, c): k for t, c, k in query(db, "SELECT table_name, column_name, data_type FROM "
                                               "information_schema.columns")}


def test_a_version_3_database_is_migrated_keeping_its_rows(tmp_path):
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    spec = old_spec()
    write_v3(db, spec)
    before_runs = query(db, "SELECT * FROM runs")
    before_metrics = query(db, "SELECT * FROM metrics ORDER BY ALL")
    before_results = query(db, "SELECT * FROM results")

    Store(db).register_runs([])  # any write session migrates
    assert query(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(schema.SCHEMA_VERSION),)]
    types = column_types(db)
    for table, columns in schema.WIDENED_COLUMNS.items():
        for column in columns:
            assert types[(table, column)] == "BIGINT", (table, column)
    assert types[("runs", "note")] == "VARCHAR"
    assert [r + (None,) for r in before_runs] == query(db, "SELECT * FROM runs")  # + note
    assert query(db, "SELECT * FROM metrics ORDER BY ALL") == before_metrics
    assert query(db, "SELECT * FROM results") == before_results
    assert ("PRIMARY KEY",) in query(db, "SELECT constraint_type FROM "
                                         "information_schema.table_constraints WHERE "
                                         "table_name = 'metrics'")

    # 2^31 and beyond now fit every integer column, through the store's own ingest
    big = old_spec(seed=BIG, epochs=BIG, batch_size=BIG)
    d = run_dir_of(work, big.run_id)
    write_spec(d, big)
    log = EventLog(d)
    log.start(BIG, host="h", device="cpu", pid=BIG, resumed_from_epoch=BIG - 1)
    log.eval(BIG, {"val_acc": 0.5, "test_acc": 0.25})
    log.end("done")
    store = Store(db)
    store.sync(work)
    store.reset_offsets()
    store.sync(work)  # the upsert on (run_id, epoch, name) still works
    assert query(db, "SELECT seed, epochs, attempt, pid, last_epoch, start_epoch FROM runs "
                     "WHERE run_id = ?", [big.run_id]) == [(BIG, BIG, BIG, BIG, BIG, BIG - 1)]
    assert query(db, "SELECT count(*), max(epoch) FROM metrics WHERE run_id = ?",
                 [big.run_id]) == [(2, BIG)]


def test_results_and_report_work_with_a_batch_size_beyond_32_bits(tmp_path):
    """#17: one finished run with batch_size = 2^31 made `select * from results` and
    `ncbench report` fail for the whole database."""
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    for s in (0, 1):
        spec = old_spec(seed=s, batch_size=BIG if s else 32)
        d = run_dir_of(work, spec.run_id)
        write_spec(d, spec)
        log = EventLog(d)
        log.start(1, host="h", device="cpu", pid=1)
        for e in (1, 2, 3):
            log.eval(e, {"val_acc": 0.1 * e + s / 100, "test_acc": 0.2 * e, "nc1": 1.0 / e})
        log.end("done")
    Store(db).sync(work)
    assert query(db, "SELECT seed, batch_size FROM results ORDER BY seed") == [(0, 32), (1, BIG)]
    assert len(query(db, "SELECT * FROM results")) == 2
    out = ncbench("report", "--db", str(db), "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    sql = ncbench("sql", "--db", str(db), "SELECT max(batch_size) AS b FROM results", cwd=tmp_path)
    assert sql.returncode == 0 and str(BIG) in sql.stdout, sql.stdout + sql.stderr
