"""How long one TUI refresh takes with 1 000 runs × 160 evaluations in the store (goal < 100 ms).

A refresh = what the app does once a second: open the database read-only, read the runs table
and the latest NC1 / test accuracy of the runs that changed (`ncbench.tui.data.RunsReader`),
close it (in a worker thread), then update the runs table on screen (only the cells that changed).

Measured, each the median of several repetitions:

* `db read`: what a poll does after a writer session advanced 10 running runs by one evaluation:
  open read-only, `RunsReader.read` (the runs table, then the latest metrics of the 10 changed
  runs), close — the part that holds the file (and could delay a writer);
* `ui apply`: RunsTable.show with those 10 runs changed (100 running runs' clocks tick);
* first poll: `ncbench.listing.stored_rows` of everything and the first display of all 1 000
  rows (once);
* run detail: a run's full history (first open) and one new evaluation (incremental);
* compare view: the `ncbench.report` calls for one experiment (200 runs).

Baselines measured in the same run on the same database:

* `per-run queries`: one latest-metrics query per run (1 000 queries over one connection);
* `listing.list_runs`: the whole listing in one session (what `ncbench status` prints).

Usage: .venv/bin/python benchmarks/tui_refresh.py [--runs 1000] [--evals 160] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_db(path: Path, runs: int, evals: int) -> int:
    """runs × evals evaluations of every metric in schema.EPOCH_METRICS; 10 % of runs running."""
    import duckdb

    from ncbench import schema

    con = duckdb.connect(str(path))
    schema.apply(con)
    con.execute(f"""
        INSERT INTO runs (run_id, experiment, dataset, model, loss, width, epochs, seed, status,
                          config, created_at, started_at, device, attempt, last_epoch)
        SELECT 'r' || lpad(i::VARCHAR, 5, '0'), 'exp' || (i % 5), 'cifar10', 'wrn50',
               ['ce', 'fl', 'ls', 'mse'][1 + i % 4], [0.25, 0.5, 1.0, 2.0][1 + (i // 4) % 4],
               {evals}, (i // 16) % 3,
               CASE WHEN i % 10 = 0 THEN 'running' ELSE 'done' END,
               '{{"dataset": "cifar10", "model": "wrn50"}}',
               TIMESTAMP '2025-01-01 00:00:00', TIMESTAMP '2025-01-01 00:00:00', 'cuda:0', 1,
               {evals}
        FROM range({runs}) t(i)
    """)
    con.execute("CREATE TEMP TABLE names AS SELECT unnest(?) AS name", [list(schema.EPOCH_METRICS)])
    con.execute(f"""
        INSERT INTO metrics
        SELECT r.run_id, e.epoch, n.name,
               CASE WHEN n.name = 'nc1' THEN 10 * exp(-e.epoch / 40.0) ELSE random() END
        FROM runs r, (SELECT range AS epoch FROM range(1, {evals + 1})) e, names n
    """)
    n = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    con.close()
    return n


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--evals", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    import duckdb

    from ncbench import report
    from ncbench.listing import latest_metrics, list_runs, stored_rows
    from ncbench.store import read_connection
    from ncbench.tui.data import RunSeries, RunsReader, fetch_series

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        t = time.perf_counter()
        n_metrics = build_db(db, args.runs, args.evals)
        print(f"database: {args.runs} runs × {args.evals} evaluations = {n_metrics:,} metric rows "
              f"({db.stat().st_size / 1e6:.0f} MB, built in {time.perf_counter() - t:.1f} s)")

        def db_full():
            with read_connection(db) as con:
                return stored_rows(con)

        rows = db_full()
        assert len(rows) == args.runs
        full_db = median_ms(db_full, args.repeat)

        def open_close():
            with read_connection(db):
                pass

        open_ms = median_ms(open_close, args.repeat)

        # The app's poll: RunsReader re-reads the latest metrics of the runs whose row changed.
        # Between polls a writer session (as `ncbench run`'s store.sync) advances 10 running
        # runs by one evaluation.
        reader = RunsReader()
        with read_connection(db) as con:
            reader.read(con)
        running = [rid for rid, r in rows.items() if r.status == "running"][:10]
        step = iter(range(args.evals + 1, args.evals + 1000))

        def write_epoch():
            e = next(step)
            con = duckdb.connect(str(db))
            con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)",
                            [(rid, e, name, 0.5) for rid in running for name in ("nc1", "test_acc")])
            con.execute(f"UPDATE runs SET last_epoch = {e} WHERE run_id IN "
                        f"({', '.join(repr(r) for r in running)})")
            con.close()

        times = []
        for _ in range(args.repeat):
            write_epoch()
            t = time.perf_counter()
            with read_connection(db) as con:
                got = reader.read(con)
            times.append(time.perf_counter() - t)
            assert reader.last_changed == len(running) and got[running[0]].nc1 == 0.5
        ours_db = 1000 * statistics.median(times)

        def per_run_queries():
            with read_connection(db) as con:
                for rid in rows:
                    latest_metrics(con, ("nc1", "test_acc"), [rid])

        naive = median_ms(per_run_queries, max(1, args.repeat // 3))
        status = median_ms(lambda: list_runs([], db), max(1, args.repeat // 2))

        # run detail: the first load of one run, then one new evaluation
        def series_first():
            with read_connection(db) as con:
                fetch_series(con, RunSeries("r00500"), attempt=1)

        detail_first = median_ms(series_first, args.repeat)
        held = RunSeries("r00500")
        with read_connection(db) as con:
            fetch_series(con, held, attempt=1)

        def series_incremental():
            held.last_epoch = args.evals - 1  # as if the last evaluation were new
            for xs, ys in held.metrics.values():
                del xs[-1:], ys[-1:]
            with read_connection(db) as con:
                assert fetch_series(con, held, attempt=1) == 1

        detail_incr = median_ms(series_incremental, args.repeat)

        # compare view: what CompareScreen.read does for one experiment
        def compare():
            with read_connection(db) as con:
                configs = report.configurations(con, "exp0", include_unfinished=True)
                for metric in ("nc1", "nc2", "nc3", "nc4", "test_acc", "train_acc"):
                    report.curves(con, "exp0", metric, select=configs[-1], include_unfinished=True)
                report.accuracy_table(con, ["exp0"])
                report.nc_table(con, ["exp0"])

        compare_ms = median_ms(compare, max(1, args.repeat // 3))

        ui_first, ui_apply = asyncio.run(measure_ui(db, rows, args.repeat))

    total = ours_db + ui_apply
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print()
    print(f"{'one refresh of the runs view (10 runs changed)':<44} {'ms':>9}")
    print(f"{'  db read: open, 2 queries, close':<44} {ours_db:9.1f}   (open + close alone "
          f"{open_ms:.1f})")
    print(f"{'  ui apply':<44} {ui_apply:9.1f}")
    print(f"{'  total':<44} {total:9.1f}   goal < 100 ms: {'met' if total < 100 else 'NOT met'}")
    print(f"{'first poll: db read of everything':<44} {full_db:9.1f}")
    print(f"{'first poll: ui fill of 1 000 rows':<44} {ui_first:9.1f}")
    print(f"{'run detail: first load of 160 evaluations':<44} {detail_first:9.1f}")
    print(f"{'run detail: one new evaluation':<44} {detail_incr:9.1f}")
    print(f"{'compare view: report calls, 200 runs':<44} {compare_ms:9.1f}")
    print()
    print("baselines (same database, same run)")
    print(f"{'  per-run queries (1 000 queries)':<44} {naive:9.1f}   "
          f"{naive / ours_db:6.1f}× the TUI's db read")
    print(f"{'  listing.list_runs (ncbench status)':<44} {status:9.1f}   "
          f"{status / ours_db:6.1f}× the TUI's db read")


async def measure_ui(db: Path, rows: dict, repeat: int) -> tuple[float, float]:
    """(first fill ms, steady apply ms) of the runs table in a headless app."""
    from ncbench.tui.app import NcbenchApp
    from ncbench.tui.screens import RunsScreen

    app = NcbenchApp(db, poll_interval=3600)
    async with app.run_test(size=(160, 48)) as pilot:
        while app.polls < 1:
            await pilot.pause(0.05)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.table
        now = app.now()
        ordered = screen.visible_rows()
        table._order = []  # force a full rebuild
        t = time.perf_counter()
        table.show(ordered, now)
        first = 1000 * (time.perf_counter() - t)
        running = [r.run_id for r in ordered if r.status == "running"][:10]
        times = []
        for k in range(repeat):
            changed = dict(app.runs)
            for rid in running:
                r = changed[rid]
                changed[rid] = replace(r, last_epoch=(r.last_epoch or 0) + 1 + k,
                                       nc1=0.5 / (k + 1))
            app.runs = changed
            t = time.perf_counter()
            screen.runs_changed()
            times.append(time.perf_counter() - t)
            await pilot.pause()
        assert table.updates >= 10
    return first, 1000 * statistics.median(times)


if __name__ == "__main__":
    main()
