"""How long the TUI compare view's `ncbench.report` queries take on a 1 000-run store (goal: the
whole load < 1 s, each report call well under 200 ms), against the old way in the same run.

Store: benchmarks/tui_refresh.py's (1 000 runs × 160 evaluations × 21 metrics, 5 experiments of
200 runs, 10 % running). The compare view of one experiment (`exp0`) needs the experiment list,
its configurations, six curves (NC1–NC4, test and train accuracy) of one configuration, the
accuracy table and the NC table.

* baseline, "views": the way before `schema.results_sql` — every call reads the global `results`
  / `epochs` views (forced here by making `report.query._restricted_ok` answer False, the path
  an older database's views take), with the old compare view's pattern: one read-only session
  per call, one `curves` call per chart (10 sessions, 9 evaluations of `results`);
* "per-experiment": this version — `results_sql` restricted to the experiment's runs, the
  curves from `metrics` rows of the configuration's runs — with the new compare view's pattern:
  one session for `list_experiments`, `configurations`, `curves_many` (six metrics) and
  `build_report`;
* the per-experiment queries in the old pattern too (10 sessions), which separates the two gains.

Each timing opens and closes the database like the TUI does (the first query in a session reads
from a cold DuckDB cache) and is the median of --repeat. Results of both ways are checked equal.
A last line loads the real compare view (headless Textual app) and reports its worker's time.

Usage: .venv/bin/python benchmarks/report_speed.py [--runs 1000] [--evals 160] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

EXPERIMENT = "exp0"
CHARTS = ("nc1", "nc2", "nc3", "nc4", "test_acc", "train_acc")


def median_ms(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--evals", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from tui_refresh import build_db

    from ncbench import report
    from ncbench.report import query
    from ncbench.store import read_connection

    fast_ok = query._restricted_ok

    def views(on: bool) -> None:
        """Read through the global views (the old way) or not."""
        query._restricted_ok = (lambda con: False) if on else fast_ok

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        t = time.perf_counter()
        n_metrics = build_db(db, args.runs, args.evals)
        print(f"database: {args.runs} runs × {args.evals} evaluations = {n_metrics:,} metric rows "
              f"({db.stat().st_size / 1e6:.0f} MB, built in {time.perf_counter() - t:.1f} s); "
              f"compare view of {EXPERIMENT}")

        def session(fn):
            with read_connection(db) as con:
                return fn(con)

        def old_pattern():
            """The compare view before: one session per call, one curves call per chart."""
            assert EXPERIMENT in session(report.list_experiments)
            configs = session(lambda con: report.configurations(con, EXPERIMENT,
                                                                include_unfinished=True))
            select = configs[-1]
            curves = {m: session(lambda con, m=m: report.curves(con, EXPERIMENT, m, select=select,
                                                                 include_unfinished=True))
                      for m in CHARTS}
            acc = session(lambda con: report.accuracy_table(con, [EXPERIMENT]))
            nc = session(lambda con: report.nc_table(con, [EXPERIMENT]))
            return configs, curves, acc, nc

        def new_pattern():
            """The compare view now: one session."""
            with read_connection(db) as con:
                assert EXPERIMENT in report.list_experiments(con)
                configs = report.configurations(con, EXPERIMENT, include_unfinished=True)
                select = configs[-1]
                curves = report.curves_many(con, EXPERIMENT, CHARTS, select=select,
                                            include_unfinished=True)
                rep = report.build_report(con, [EXPERIMENT])
            return configs, curves, rep.accuracy, rep.nc

        with read_connection(db) as con:
            select = report.configurations(con, EXPERIMENT, include_unfinished=True)[-1]
        calls = {
            "open + close alone": lambda con: None,
            "configurations": lambda con: report.configurations(con, EXPERIMENT,
                                                                include_unfinished=True),
            "curves (one metric)": lambda con: report.curves(con, EXPERIMENT, "nc1", select=select,
                                                             include_unfinished=True),
            "curves_many (6 metrics)": lambda con: report.curves_many(
                con, EXPERIMENT, CHARTS, select=select, include_unfinished=True),
            "accuracy_table": lambda con: report.accuracy_table(con, [EXPERIMENT]),
            "nc_table": lambda con: report.nc_table(con, [EXPERIMENT]),
            "build_report (both tables)": lambda con: report.build_report(con, [EXPERIMENT]),
            "select_runs, all experiments": lambda con: report.select_runs(con),
        }
        per_call: dict[str, dict[str, float]] = {}
        outputs: dict[str, dict[str, object]] = {}
        for mode in ("views", "ours"):
            views(mode == "views")
            per_call[mode], outputs[mode] = {}, {}
            for name, fn in calls.items():
                per_call[mode][name], outputs[mode][name] = median_ms(lambda fn=fn: session(fn),
                                                                      args.repeat)
        views(True)
        base_ms, base_out = median_ms(old_pattern, args.repeat)
        views(False)
        old_pat_ms, old_pat_out = median_ms(old_pattern, args.repeat)
        new_ms, new_out = median_ms(new_pattern, args.repeat)

        # identical results, both ways
        assert outputs["views"] == outputs["ours"], "per-call results differ"
        assert base_out == old_pat_out == new_out, "compare view data differ"
        configs, curves, acc, nc = new_out
        assert len(curves) == len(CHARTS) and all(len(c) == 4 for c in curves.values())
        assert acc[0].n_runs == args.runs // 5

        tui_ms = asyncio.run(measure_tui(db, args.repeat))

    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print()
    print(f"{'one call, own session (median ms)':<34} {'views':>9} {'per-exp':>9} {'ratio':>7}")
    for name in calls:
        a, b = per_call["views"][name], per_call["ours"][name]
        print(f"{name:<34} {a:9.1f} {b:9.1f} {a / b:6.1f}×")
    print()
    print(f"{'compare view load of ' + EXPERIMENT:<34} {'ms':>9} {'ratio':>9}")
    print(f"{'  baseline: views, 10 sessions':<34} {base_ms:9.1f} {1.0:8.1f}×")
    print(f"{'  per-exp queries, 10 sessions':<34} {old_pat_ms:9.1f} {base_ms / old_pat_ms:8.1f}×")
    print(f"{'  per-exp queries, 1 session':<34} {new_ms:9.1f} {base_ms / new_ms:8.1f}×   "
          f"goal < 1000 ms: {'met' if new_ms < 1000 else 'NOT met'}")
    print(f"{'  TUI compare view worker':<34} {tui_ms:9.1f}")
    print("results identical (configurations, curves, accuracy and NC tables)")


async def measure_tui(db: Path, repeat: int) -> float:
    """Median seconds of the compare view's load worker (headless app), in ms."""
    from ncbench.tui.app import NcbenchApp
    from ncbench.tui.screens import CompareScreen

    seconds: list[float] = []

    class Timed(CompareScreen):
        def _loaded(self, key, data, took):  # noqa: ANN001 - the screen's own signature
            assert "error" not in data and "missing" not in data, data
            seconds.append(took)
            super()._loaded(key, data, took)

    app = NcbenchApp(db, poll_interval=3600)
    async with app.run_test(size=(160, 48)) as pilot:
        while app.polls < 1:
            await pilot.pause(0.05)
        for k in range(repeat):
            app.push_screen(Timed(EXPERIMENT))
            deadline = time.monotonic() + 60
            while len(seconds) <= k:
                assert time.monotonic() < deadline, "compare view did not load"
                await pilot.pause(0.02)
            app.pop_screen()
            await pilot.pause()
    return 1000 * statistics.median(seconds)


if __name__ == "__main__":
    main()
