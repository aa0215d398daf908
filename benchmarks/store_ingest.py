"""Ingest speed of `ncbench.store`: metric rows upserted per second with the DuckDB appender
(action="upsert", what Store uses) against `executemany("INSERT OR REPLACE ...")`, the obvious
alternative, on the same rows in the same process. Also the cost of one empty sync session
(open, check, commit, close) — the fixed price of each ~1 s sync of `ncbench run`.

Usage: .venv/bin/python benchmarks/store_ingest.py [runs] [evals] [metrics]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from ncbench import schema
from ncbench.events import EventLog, write_spec
from ncbench.rundir import run_dir_of
from ncbench.runs import RunSpec
from ncbench.store import Store


def rows(runs: int, evals: int, metrics: int) -> list[tuple]:
    return [(f"run{r:04d}", e * 5, f"m{m:02d}", r + e * 1e-3 + m * 1e-6)
            for r in range(runs) for e in range(evals) for m in range(metrics)]


def fresh(path: Path) -> duckdb.DuckDBPyConnection:
    if path.exists():
        path.unlink()
    con = duckdb.connect(str(path))
    schema.apply(con)
    return con


def time_appender(path: Path, data: list[tuple]) -> float:
    con = fresh(path)
    t = time.perf_counter()
    app = con.appender("metrics", action="upsert")
    app.append_rows(data)
    app.flush()
    dt = time.perf_counter() - t
    assert con.execute("SELECT count(*) FROM metrics").fetchall()[0][0] == len(data)
    con.close()
    return dt


def time_executemany(path: Path, data: list[tuple]) -> float:
    con = fresh(path)
    t = time.perf_counter()
    con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)", data)
    dt = time.perf_counter() - t
    assert con.execute("SELECT count(*) FROM metrics").fetchall()[0][0] == len(data)
    con.close()
    return dt


def time_sync_session(tmp: Path, n: int = 10) -> float:
    work = tmp / "work"
    spec = RunSpec(experiment="b", dataset="digits", model="mlp", loss="ce", width=1, epochs=10, seed=0)
    write_spec(run_dir_of(work, spec.run_id), spec)
    EventLog(run_dir_of(work, spec.run_id)).eval(1, {"a": 1.0})
    store = Store(tmp / "s.duckdb")
    store.sync(work)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        store.sync(work)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    runs, evals, metrics = (int(a) for a in (sys.argv[1:] + ["24", "160", "25"][len(sys.argv[1:]):]))
    data = rows(runs, evals, metrics)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        a = min(time_appender(tmp / "a.duckdb", data) for _ in range(3))
        # executemany is so slow that it runs on a slice only; rates (rows/s) are compared.
        sub = data[:2000]
        b = time_executemany(tmp / "b.duckdb", sub)
        s = time_sync_session(tmp)
    print(f"rows: {len(data)} ({runs} runs x {evals} evals x {metrics} metrics)")
    print(f"appender upsert      : {a:.3f} s  ({len(data) / a:,.0f} rows/s)")
    print(f"executemany replace  : {b:.3f} s for {len(sub)} rows ({len(sub) / b:,.0f} rows/s)")
    print(f"speed-up (appender)  : {(len(data) / a) / (len(sub) / b):.0f}x rows/s")
    print(f"one sync session (open, ingest nothing new, commit, close): {1000 * s:.0f} ms median")


if __name__ == "__main__":
    main()
