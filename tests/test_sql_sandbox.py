"""User SQL reads the results tables only (issue #17 item 4): `ncbench sql` and `report --where`
cannot write files (COPY, EXPORT), read files (read_csv, read_text, glob, ...), open other
databases (ATTACH), install or load extensions, or switch the sandbox off again from inside the
query. Each is refused with a QueryError / ReportError (exit 2 from the CLI); normal queries and
the report keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from _report_data import make_synthetic_db
from ncbench import report
from ncbench.errors import QueryError, ReportError
from ncbench.store import read_connection, run_sql

ROOT = Path(__file__).resolve().parents[1]

#: A file every Linux machine has, readable by the test user, with a recognisable first field.
SECRET = Path("/etc/passwd")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return make_synthetic_db(tmp_path_factory.mktemp("sandbox") / "ncbench.duckdb")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def _hostile(tmp: Path) -> dict[str, str]:
    out, dump, other = tmp / "out.csv", tmp / "dump", tmp / "other.duckdb"
    return {
        "copy": f"COPY runs TO '{out}'",
        "copy_query": f"COPY (SELECT * FROM results) TO '{out}' (FORMAT csv)",
        "export": f"EXPORT DATABASE '{dump}'",
        "read_csv": f"SELECT * FROM read_csv('{SECRET}', sep = ':', header = false)",
        "file_as_table": f"SELECT * FROM '{SECRET}'",
        "read_text": f"SELECT content FROM read_text('{SECRET}')",
        "read_blob": f"SELECT content FROM read_blob('{SECRET}')",
        "glob": "SELECT * FROM glob('/etc/*')",
        "sniff_csv": f"SELECT * FROM sniff_csv('{SECRET}')",
        "in_subquery": f"SELECT * FROM runs WHERE run_id IN (SELECT content FROM read_text('{SECRET}'))",
        "attach": f"ATTACH '{other}' AS other",
        "attach_memory": "ATTACH ':memory:' AS scratch",
        "install": "INSTALL httpfs",
        "load": "LOAD httpfs",
        "url": "SELECT * FROM read_csv('https://example.com/x.csv')",
        "unlock": "SET enable_external_access = true",
        "reset": "RESET enable_external_access",
        "unlock_then_read": f"SET enable_external_access = true; SELECT * FROM read_text('{SECRET}')",
        "pragma_unlock": "PRAGMA enable_external_access = true",
        "lock_off": "SET lock_configuration = false",
    }


CASES = list(_hostile(Path("/x")))


@pytest.mark.parametrize("case", CASES)
def test_sql_refuses_outside_access(db, tmp_path, case):
    sql = _hostile(tmp_path)[case]
    with pytest.raises(QueryError) as info:
        run_sql(db, sql)
    msg = str(info.value)
    assert "root:" not in msg
    # a file name as a table is simply no table once external access is off
    assert "refused" in msg or "results tables" in msg or "does not exist" in msg, msg
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


def test_sandbox_holds_below_the_statement_check(db, tmp_path):
    """The DuckDB settings refuse what the statement-kind check would let through."""
    from ncbench.usersql import explain, sandbox

    with read_connection(db) as con:
        sandbox(con)
        sandbox(con)  # idempotent
        for sql in (f"COPY runs TO '{tmp_path / 'x.csv'}'", f"SELECT * FROM read_text('{SECRET}')",
                    "SET enable_external_access = true", f"ATTACH '{tmp_path / 'o.duckdb'}'"):
            with pytest.raises(duckdb.Error) as info:
                con.execute(sql).fetchall()
            assert sql.startswith("ATTACH") or explain(info.value), (sql, info.value)
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] > 0
    assert list(tmp_path.iterdir()) == []


def test_normal_queries_still_work(db):
    cols, rows = run_sql(db, "SELECT loss, count(*) AS n FROM results GROUP BY ALL ORDER BY 1")
    assert cols == ["loss", "n"] and [r[0] for r in rows] == ["ce", "fl", "mse"]
    assert run_sql(db, "DESCRIBE results")[1]
    assert run_sql(db, "SELECT json_extract(config, '$.lr') FROM runs LIMIT 1")[1]
    assert run_sql(db, "SELECT 1; SELECT 2") == (["2"], [(2,)])
    with pytest.raises(QueryError, match="read-only"):
        run_sql(db, "DELETE FROM runs")


@pytest.mark.parametrize("case", ["read_text", "glob", "read_csv"])
def test_where_refuses_outside_access(db, case):
    where = {
        "read_text": f"run_id IN (SELECT content FROM read_text('{SECRET}'))",
        "glob": "EXISTS (SELECT 1 FROM glob('/etc/*'))",
        "read_csv": f"loss IN (SELECT column0 FROM read_csv('{SECRET}', sep = ':', header = false))",
    }[case]
    with read_connection(db) as con:
        with pytest.raises(ReportError, match="refused") as info:
            report.accuracy_table(con, where=where)
        assert "root:" not in str(info.value)
        # the same connection, and the report, keep working
        assert report.accuracy_table(con, ["grid"], where="loss <> 'fl'")


def test_cli_sql_and_where_exit_2(db, tmp_path):
    out = tmp_path / "x.csv"
    r = cli("sql", f"COPY runs TO '{out}'", "--db", str(db), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "refused" in r.stderr, r.stderr
    r = cli("sql", f"SELECT * FROM read_text('{SECRET}')", "--db", str(db), cwd=tmp_path)
    assert r.returncode == 2 and "root:" not in r.stdout + r.stderr, r.stdout + r.stderr
    r = cli("report", "--db", str(db), "--format", "json",
            "--where", f"run_id IN (SELECT content FROM read_text('{SECRET}'))", cwd=tmp_path)
    assert r.returncode == 2 and "refused" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()
    r = cli("report", "--db", str(db), "--format", "csv", "--where", "loss <> 'fl'", cwd=tmp_path)
    assert r.returncode == 0 and "ce" in r.stdout, r.stderr


# ------------------------------------------------------------------------------------------
# a query that would run for hours, and one with a million rows
# ------------------------------------------------------------------------------------------

ENDLESS = "SELECT sum(a.value * b.value * c.value) FROM metrics a, metrics b, metrics c"


def test_timeout_stops_an_endless_query(db):
    import time

    t0 = time.monotonic()
    out = cli("sql", ENDLESS, "--db", str(db), "--timeout", "1", cwd=db.parent)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "ran for more than 1 s and was stopped" in out.stderr and "--timeout" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - t0 < 60
    with pytest.raises(QueryError, match="more than 0.5 s"):  # the API, and the file is free after
        run_sql(db, ENDLESS, query_timeout_s=0.5)
    assert run_sql(db, "SELECT count(*) FROM runs")[1][0][0] > 0


def test_ctrl_c_interrupts_a_running_query_without_a_traceback(db):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "ncbench", "sql", ENDLESS, "--db", str(db),
                             "--timeout", "0"], cwd=db.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)  # started (python + duckdb) and inside the query
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_table_rows_are_limited_machine_formats_are_not(db):
    table = cli("sql", "SELECT * FROM range(2500)", "--db", str(db), cwd=db.parent)
    assert table.returncode == 0, table.stderr
    assert "1000 rows (more not shown)" in table.stdout and "only the first 1000 rows" in table.stderr
    shown = [line.strip() for line in table.stdout.splitlines() if line.strip().isdigit()]
    assert shown == [str(i) for i in range(1000)]  # 0..999, in order
    full = cli("sql", "SELECT * FROM range(2500)", "--db", str(db), "-f", "csv", cwd=db.parent)
    assert full.stdout.count("\n") == 2501 and full.stderr == ""
    few = cli("sql", "SELECT * FROM range(2500)", "--db", str(db), "-f", "json", "--limit", "3",
              cwd=db.parent)
    import json

    assert [r["range"] for r in json.loads(few.stdout)] == [0, 1, 2] and "--limit" in few.stderr
    every = cli("sql", "SELECT * FROM range(2500)", "--db", str(db), "--limit", "0", cwd=db.parent)
    assert "2500 rows" in every.stdout and every.stderr == ""
