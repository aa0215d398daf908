"""The TUI (`ncbench.tui`): its pure helpers, its queries, its control actions, and pilots that
drive the real app (App.run_test) over a database filled by real tiny `ncbench run` runs."""

from __future__ import annotations

import asyncio
import functools
import io
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from tests._tui_data import NOW, RUNS, make_tui_db

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def async_test(fn):
    """Run an async test function with asyncio.run (no pytest-asyncio needed)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def screen_text(app) -> str:
    """The characters on the app's screen (what a user sees), without colours."""
    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=None, record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_for(pilot, condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n"
                                 + screen_text(pilot.app))
        await pilot.pause(0.05)


async def fresh_poll(pilot) -> None:
    """Wait until a poll that started after this call has been applied."""
    app = pilot.app
    await wait_for(pilot, lambda: not app._polling, what="idle poller")
    before = app.polls
    app.poll()
    await wait_for(pilot, lambda: app.polls > before, what="a poll")
    await pilot.pause()


def make_app(db, **kw):
    from ncbench.tui.app import NcbenchApp

    kw.setdefault("now", lambda: NOW)
    kw.setdefault("poll_interval", 0.2)
    return NcbenchApp(db, **kw)


# ------------------------------------------------------------------------------------------
# a database from real tiny runs (once per module)
# ------------------------------------------------------------------------------------------

PILOT_TOML = """\
[experiments.pilot]
dataset = "gaussian"
model = "mlp"
loss = ["ce", "mse"]
width = [0.5]
epochs = 3
seed = [0, 1]
eval_every = 1
batch_size = 32
per_class = 20
"""


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """experiments.toml + ncbench.duckdb after `ncbench run` (started the way the TUI starts it:
    QueueController) trained 4 tiny runs: gaussian/mlp, losses ce and mse, 2 seeds, 3 epochs."""
    from ncbench.tui.control import QueueController

    d = tmp_path_factory.mktemp("tui_real")
    cfg = d / "experiments.toml"
    cfg.write_text(PILOT_TOML)
    db = d / "ncbench.duckdb"
    q = QueueController(cfg, db, workdir=d / ".ncbench", run_args=["--workers", "2"])
    q.start()
    try:
        q.proc.wait(timeout=400)
    finally:
        q.shutdown(timeout=10)
    assert q.returncode == 0, q.log_path.read_text()[-3000:]
    return cfg, db


def copy_db(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / "copy.duckdb"
    shutil.copy(src, dst)
    return dst


# ------------------------------------------------------------------------------------------
# chart sanitiser
# ------------------------------------------------------------------------------------------

def test_sanitize_drops_nan_inf_and_nonpositive_on_log():
    from ncbench.tui.chart import sanitize

    x = [1, 2, 3, 4, 5, 6]
    y = [1.0, 0.0, -2.0, math.nan, math.inf, 100.0]
    xs, ys, dropped = sanitize(x, y, log=True)
    assert xs == [1.0, 6.0]
    assert ys == [0.0, 2.0]  # log10(1), log10(100)
    assert dropped == 4
    xs, ys, dropped = sanitize(x, y, log=False)
    assert xs == [1.0, 2.0, 3.0, 6.0] and ys == [1.0, 0.0, -2.0, 100.0] and dropped == 2


def test_sanitize_edge_cases():
    from ncbench.tui.chart import HUGE, sanitize

    assert sanitize([], [], log=True) == ([], [], 0)
    assert sanitize([3], [0.5], log=False) == ([3.0], [0.5], 0)
    assert sanitize([3], [0.0], log=True) == ([], [], 1)
    # unequal lengths: the extra points count as dropped
    assert sanitize([1, 2, 3], [1.0], log=False) == ([1.0], [1.0], 2)
    # None and non-numbers are dropped, not raised on
    assert sanitize([1, None, 3], [1.0, 2.0, "x"], log=False) == ([1.0], [1.0], 2)
    # values plotext cannot draw on a linear axis
    xs, ys, d = sanitize([1, 2, 3], [10 * HUGE, 1e-40, 2.0], log=False)
    assert (xs, ys, d) == ([2.0, 3.0], [0.0, 2.0], 1)
    # a log axis takes them: log10 is finite
    xs, ys, d = sanitize([1, 2], [1e300, 1e-300], log=True)
    assert ys == [300.0, -300.0] and d == 0


def test_ticks():
    from ncbench.tui.chart import int_ticks, log_ticks

    ticks, labels = log_ticks(-4.2, 0.5, 6)
    assert ticks == [-4.0, -3.0, -2.0, -1.0, 0.0]
    assert labels == ["1e-4", "1e-3", "0.01", "0.1", "1"]
    ticks, labels = log_ticks(-300, 1, 5)  # never more than asked
    assert len(ticks) <= 5 and labels[0] == "1e-300"
    ticks, labels = log_ticks(0.2, 0.2, 5)  # one value
    assert len(ticks) == 1 and labels == [f"{10 ** 0.2:.2g}"]
    assert int_ticks(1, 3, 6) == [1.0, 2.0, 3.0]
    assert int_ticks(5, 5, 6) == [5.0]
    t = int_ticks(1, 160, 6)
    assert len(t) <= 6 and all(v == int(v) for v in t) and 1 <= t[0] and t[-1] <= 160


@async_test
async def test_chart_widget_draws_any_data():
    """Zeros, NaN, ±inf, a single point, an empty series and huge values, on log and linear
    axes, in real Chart widgets: nothing raises, nothing falls back to the error text."""
    from textual.app import App, ComposeResult

    from ncbench.tui.chart import Chart, Series

    nasty = {
        "zeros": [0.0, 0.0, 0.0], "nan": [math.nan] * 3, "mixed": [1.0, 0.0, -1.0],
        "inf": [math.inf, 1.0, -math.inf], "huge": [1e300, 1e-300, 1.0],
    }

    class ChartApp(App):
        def compose(self) -> ComposeResult:
            for log in (True, False):
                for name in nasty:
                    yield Chart(f"{name}-{log}", log=log, id=f"c-{name}-{log}")
                yield Chart(f"single-{log}", log=log, id=f"c-single-{log}")
                yield Chart(f"empty-{log}", log=log, id=f"c-empty-{log}")

    app = ChartApp()
    async with app.run_test(size=(120, 200)) as pilot:
        for log in (True, False):
            for name, ys in nasty.items():
                app.query_one(f"#c-{name}-{log}", Chart).set_series(
                    [Series(name, [1, 2, 3], ys), Series("ok", [1, 2, 3], [1.0, 2.0, 3.0])])
            app.query_one(f"#c-single-{log}", Chart).set_series([Series("one", [5], [0.5])])
            app.query_one(f"#c-empty-{log}", Chart).set_series([Series("none", [], [])])
        await pilot.pause()
        for chart in app.query(Chart):
            chart.render()
            assert chart.error is None, (chart.id, chart.error)
        assert app.query_one("#c-mixed-True", Chart).dropped == 2
        assert app.query_one("#c-zeros-True", Chart).dropped == 3
        assert app.query_one("#c-inf-False", Chart).dropped == 2


# ------------------------------------------------------------------------------------------
# data layer of the TUI
# ------------------------------------------------------------------------------------------

def test_import_does_not_import_torch():
    code = ("import sys, ncbench.tui, ncbench.tui.app, ncbench.tui.screens, ncbench.cli.cmd_tui;"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('ncbench.train')"
            " or m in ('ncbench.models', 'ncbench.data', 'ncbench.losses')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_stored_rows_latest_metrics(tmp_path):
    from ncbench.listing import stored_rows
    from ncbench.store import read_connection

    metrics = make_tui_db(tmp_path / "t.duckdb")
    with read_connection(tmp_path / "t.duckdb") as con:
        rows = stored_rows(con)
    assert set(rows) == {r[0] for r in RUNS}
    for rid, by_epoch in metrics.items():
        row = rows[rid]
        if not by_epoch:
            assert row.nc1 is None and row.test_acc is None and row.last_epoch is None
            continue
        last = max(by_epoch)
        assert row.last_epoch == last
        for name, got in (("nc1", row.nc1), ("test_acc", row.test_acc)):
            want = by_epoch[last][name]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
    with read_connection(tmp_path / "t.duckdb") as con:
        assert set(stored_rows(con, ["wide"])) == {"wide-ce-s0"}


def test_fetch_series_is_incremental(tmp_path):
    from ncbench.store import read_connection
    from ncbench.tui.data import RunSeries, fetch_series

    db = tmp_path / "t.duckdb"
    metrics = make_tui_db(db)
    s = RunSeries("demo-fl-s0")
    with read_connection(db) as con:
        assert fetch_series(con, s, attempt=1) == 4
        assert fetch_series(con, s, attempt=1) == 0
    xs, ys = s.get("nc2")
    assert xs == [1, 2, 3, 4] and ys == pytest.approx([metrics["demo-fl-s0"][e]["nc2"]
                                                      for e in xs])
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO metrics VALUES ('demo-fl-s0', 5, 'nc2', 0.123)")
    con.close()
    with read_connection(db) as con:
        assert fetch_series(con, s, attempt=1) == 1
        assert s.get("nc2")[0] == [1, 2, 3, 4, 5] and s.get("nc2")[1][-1] == 0.123
        # a new attempt (retried run) refetches from the start
        assert fetch_series(con, s, attempt=2) == 5
        assert s.get("nc2")[0] == [1, 2, 3, 4, 5]


def test_filter_and_sort():
    from ncbench.listing import RunRow
    from ncbench.tui.rows import RunFilter, sort_rows

    def row(rid, loss, status, width=1.0, nc1=None, exp="demo"):
        return RunRow(rid, exp, "digits", "mlp", loss, width, 10, 0, status, nc1=nc1)

    rows = [row("a", "ce", "done", nc1=0.5), row("b", "fl", "running", 2.0, nc1=0.1),
            row("c", "mse", "failed"), row("d", "ce", "queued", exp="other")]
    keep = lambda text: [r.run_id for r in rows if RunFilter.parse(text)(r)]  # noqa: E731
    assert keep("") == ["a", "b", "c", "d"]
    assert keep("loss:ce") == ["a", "d"]
    assert keep("loss:ce,fl status:done,running") == ["a", "b"]
    assert keep("!status:done") == ["b", "c", "d"]
    assert keep("width:2") == ["b"]
    assert keep("exp:other") == ["d"]
    assert keep("MSE") == ["c"]  # a bare word matches any text column, case-insensitively
    f = RunFilter.parse("colour:red")
    assert "unknown filter key 'colour'" in f.error
    assert [r.run_id for r in sort_rows(rows, "nc1")] == ["b", "a", "c", "d"]  # None last
    assert [r.run_id for r in sort_rows(rows, "nc1", reverse=True)] == ["a", "b", "c", "d"]
    assert [r.run_id for r in sort_rows(rows, "status")] == ["b", "d", "c", "a"]


def test_formatting():
    from ncbench.listing import RunRow
    from ncbench.tui.rows import format_duration, format_metric
    from ncbench.tui.widgets import progress_bar

    assert [format_duration(s) for s in (None, 5, 65, 3600 + 120, 86400 * 2 + 3600)] == \
        ["–", "5s", "1m05s", "1h02m", "2d01h"]
    assert format_metric(None) == "–" and format_metric(math.nan) == "nan"
    assert format_metric(0.8766, "%") == "87.7%" and format_metric(math.inf) == "inf"
    assert progress_bar(0, 8) == " " * 8 and progress_bar(1, 8) == "█" * 8
    assert progress_bar(0.5, 8) == "████    " and len(progress_bar(0.33, 8)) == 8
    r = RunRow("x", "e", "d", "m", "ce", 1.0, 10, 0, "running", started_at=NOW, last_epoch=4)
    later = NOW.replace(minute=NOW.minute + 4)
    assert r.elapsed(later) == 240 and r.eta(later) == pytest.approx(240 / 4 * 6)
    assert r.progress == 0.4
    # resumed from epoch 3's checkpoint: 240 s for 1 epoch since, 6 left
    resumed = RunRow("x", "e", "d", "m", "ce", 1.0, 10, 0, "running", started_at=NOW, last_epoch=4,
                     start_epoch=3)
    assert resumed.eta(later) == pytest.approx(240 * 6) and resumed.progress == 0.4
    assert RunRow("x", "e", "d", "m", "ce", 1.0, 10, 0, "running", started_at=NOW, last_epoch=3,
                  start_epoch=3).eta(later) is None  # no epoch finished yet in this attempt


# ------------------------------------------------------------------------------------------
# control: real processes, real signals, the real store
# ------------------------------------------------------------------------------------------

SIGNAL_CATCHER = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    def got(sig, frame):
        out.write_text(signal.Signals(sig).name)
        sys.exit(0)
    signal.signal(signal.SIGINT, got)
    signal.signal(signal.SIGTERM, got)
    if len(sys.argv) > 2:  # act as a worker: write heartbeat.json with our pid
        from ncbench.events import EventLog
        EventLog(sys.argv[2]).heartbeat(epoch=1)
    out.with_suffix(".ready").write_text("ok")
    time.sleep(60)
""")


def _wait_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def test_queue_controller_start_stop_sends_sigint(tmp_path):
    from ncbench.tui.control import QueueController

    script = tmp_path / "catch.py"
    script.write_text(SIGNAL_CATCHER)
    out = tmp_path / "sig.txt"
    q = QueueController(tmp_path / "experiments.toml", tmp_path / "db.duckdb",
                        workdir=tmp_path / ".ncbench", command=[sys.executable, str(script), str(out)])
    assert "started" in q.start()
    try:
        assert q.running
        _wait_file(out.with_suffix(".ready"))
        assert "already running" in q.start()
        assert "SIGINT" in q.stop()
        q.proc.wait(timeout=20)
        assert out.read_text() == "SIGINT" and not q.running and q.returncode == 0
    finally:
        q.shutdown(timeout=5)


def test_queue_controller_default_command(tmp_path):
    from ncbench.tui.control import QueueController

    cfg = tmp_path / "experiments.toml"
    cfg.write_text('default = "a"\n' + PILOT_TOML.replace("pilot", "a")
                   + PILOT_TOML.replace("pilot", "b"))
    q = QueueController(cfg, tmp_path / "r.duckdb", workdir=tmp_path / "w",
                        run_args=["--workers", "2"])
    cmd = q.command
    assert cmd[1:4] == ["-m", "ncbench", "run"]
    assert cmd[cmd.index("--config") + 1] == str(cfg) and cmd[-2:] == ["--workers", "2"]
    assert cmd[cmd.index("--workdir") + 1] == str(tmp_path / "w")
    assert q.log_path == tmp_path / "w" / "tui-queue.log"  # in the workdir it runs
    assert q.default_experiments() == ["a"]
    assert q.command_for(["a", "b"])[4:6] == ["a", "b"]


def test_the_app_places_the_workdir_as_the_commands_do(tmp_path):
    """An app given no workdir uses `ncbench.paths`' default (beside the config, else beside the
    database), for its queue and for finding worker pids alike."""
    from ncbench.tui.app import NcbenchApp

    cfg = tmp_path / "exp" / "experiments.toml"
    app = NcbenchApp(tmp_path / "r.duckdb", config_path=cfg)
    assert app.workdir == app.controller.workdir == app.control.workdir == tmp_path / "exp" / ".ncbench"
    alone = NcbenchApp(tmp_path / "db" / "r.duckdb")
    assert alone.workdir == alone.controller.workdir == tmp_path / "db" / ".ncbench"


def test_cancel_run_sends_sigterm_to_heartbeat_pid(tmp_path):
    from ncbench.errors import ControlError
    from ncbench.tui.control import cancel_run

    script = tmp_path / "catch.py"
    script.write_text(SIGNAL_CATCHER)
    from ncbench.rundir import run_dir_of

    run_dir = run_dir_of(tmp_path / "work", "abc123")
    out = tmp_path / "sig.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(run_dir)], cwd=ROOT)
    try:
        _wait_file(out.with_suffix(".ready"))
        msg = cancel_run(tmp_path / "work", "abc123")
        assert f"pid {proc.pid}" in msg
        proc.wait(timeout=20)
        assert out.read_text() == "SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(ControlError, match="no worker pid"):
        cancel_run(tmp_path / "work", "other")
    with pytest.raises(ControlError, match="not running"):
        cancel_run(tmp_path / "work", "abc123")  # the worker is gone now


def test_retry_run_requeues_in_the_store(tmp_path):
    from ncbench.store import read_connection
    from ncbench.errors import ControlError
    from ncbench.tui.control import retry_run

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    assert "queued again" in retry_run(db, "demo-fl-s1")
    with read_connection(db) as con:
        assert con.execute("SELECT status, error FROM runs WHERE run_id = 'demo-fl-s1'"
                           ).fetchone() == ("queued", None)
    with pytest.raises(ControlError):
        retry_run(db, "nope")


# ------------------------------------------------------------------------------------------
# pilots over the fixed database
# ------------------------------------------------------------------------------------------

@async_test
async def test_notifications_show_brackets_as_they_are(tmp_path):
    """Notifications carry error texts, paths and log lines: shown as plain text. As Textual
    markup, "[/]" raised MarkupError while rendering the toast (the app ended) and "[x=1]" vanished."""
    from textual.widgets._toast import Toast

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await fresh_poll(pilot)
        app.notify("error in [/data/cifar] near [x=1] and [b]this[/b]", severity="error")
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 1, what="the toast")
        await pilot.pause()
        shown = [str(t.render()) for t in app.screen.query(Toast)]
        assert any("error in [/data/cifar] near [x=1] and [b]this[/b]" in t for t in shown), shown
        assert app.is_running


def test_a_poll_with_no_screen_up_does_nothing(tmp_path):
    """The poll timer can fire while the app shuts down, after its screens are gone: the poll
    must not raise (it did: Textual's ScreenStackError ended the app with a traceback)."""
    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)  # not running: no screen on the stack
    app.poll()
    assert not app._polling and app.polls == 0


@async_test
async def test_runs_view_counts_filter_and_sort(tmp_path):
    from ncbench.tui.widgets import RunsTable

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        table = app.screen.query_one(RunsTable)
        assert len(table.run_ids) == len(RUNS)
        text = screen_text(app)
        for status, n in (("done", 4), ("running", 1), ("failed", 1), ("diverged", 1),
                          ("queued", 1)):
            assert f"{status} {n}" in text
        assert "CUDA out of memory" not in text  # errors live in the detail view
        await pilot.press("slash", *"loss:ce", "enter")
        assert sorted(table.run_ids) == ["demo-ce-s0", "demo-ce-s1", "wide-ce-s0"]
        assert "filter: loss:ce (3/8)" in screen_text(app)
        await pilot.press("slash")
        app.screen.query_one("#filter").value = "status:done,failed !exp:wide"
        await pilot.press("enter")
        assert sorted(table.run_ids) == ["demo-ce-s0", "demo-ce-s1", "demo-fl-s1", "demo-mse-s0"]
        await pilot.press("escape")
        assert len(table.run_ids) == len(RUNS)
        await pilot.press("s")  # sort by status: running first, done last
        assert app.screen.sort_key == "status" and table.run_ids[0] == "demo-fl-s0"
        await pilot.press("S")
        assert table.run_ids[-1] == "demo-fl-s0"


@async_test
async def test_detail_view_survives_zero_nan_inf(tmp_path):
    """demo-mse-s0 has NC1 0 or NaN at every epoch, demo-mse-s1 inf loss and NaN NC metrics:
    the charts draw, say how many points they hide, and the app keeps running."""
    from ncbench.tui.chart import Chart
    from ncbench.tui.screens import RunDetailScreen
    from ncbench.tui.widgets import RunsTable

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await fresh_poll(pilot)
        for rid in ("demo-mse-s0", "demo-mse-s1", "wide-ce-s0", "demo-ls-s0"):
            if rid == "demo-mse-s0":  # through the keys once
                table = app.screen.query_one(RunsTable)
                table.move_cursor(row=table.run_ids.index(rid))
                await pilot.press("enter")
            else:
                app.push_screen(RunDetailScreen(rid))
            assert isinstance(app.screen, RunDetailScreen) and app.screen.run_id == rid
            await fresh_poll(pilot)
            for chart in app.screen.query(Chart):
                chart.render()
                assert chart.error is None, (rid, chart.id, chart.error)
            nc1 = app.screen.query_one("#chart-nc1", Chart)
            if rid == "demo-mse-s0":
                assert nc1.dropped == 10 and "10 pts hidden" in screen_text(app)
            if rid == "wide-ce-s0":  # a single evaluation
                assert [len(s.x) for s in nc1.series] == [1, 1]
            if rid == "demo-mse-s0":
                await pilot.press("l")  # NC1 on a linear axis: the zeros show, NaNs hidden
                assert not nc1.log and nc1.dropped == 5 and nc1.error is None
            await pilot.press("escape")
        assert app.is_running


@async_test
async def test_detail_shows_error_and_config(tmp_path):
    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        from ncbench.tui.screens import RunDetailScreen

        app.push_screen(RunDetailScreen("demo-fl-s1"))
        await fresh_poll(pilot)
        text = screen_text(app)
        assert "error: RuntimeError: CUDA out of memory" in text
        assert "batch_size = 128" in text and "failed" in text


@async_test
async def test_retry_and_cancel_from_the_runs_view(tmp_path):
    """R on the failed run requeues it in the store and starts the queue (a stand-in command
    that records the signal it gets); r stops the queue with SIGINT; x + y on the running run
    sends SIGTERM to the pid in its heartbeat.json."""
    from ncbench.store import read_connection
    from ncbench.tui.control import QueueController
    from ncbench.tui.widgets import RunsTable

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    script = tmp_path / "catch.py"
    script.write_text(SIGNAL_CATCHER)
    queue_out, worker_out = tmp_path / "queue.txt", tmp_path / "worker.txt"
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(PILOT_TOML)
    workdir = tmp_path / "work"
    from ncbench.rundir import run_dir_of

    worker = subprocess.Popen([sys.executable, str(script), str(worker_out),
                               str(run_dir_of(workdir, "demo-fl-s0"))], cwd=ROOT)
    controller = QueueController(cfg, db, workdir=workdir,
                                 command=[sys.executable, str(script), str(queue_out)])
    app = make_app(db, workdir=workdir, controller=controller)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await fresh_poll(pilot)
            table = app.screen.query_one(RunsTable)
            table.move_cursor(row=table.run_ids.index("demo-fl-s1"))
            await pilot.press("R")
            await wait_for(pilot, lambda: controller.running, what="queue start")
            with read_connection(db) as con:
                assert con.execute("SELECT status FROM runs WHERE run_id='demo-fl-s1'"
                                   ).fetchone()[0] == "queued"
            _wait_file(queue_out.with_suffix(".ready"))
            await pilot.press("r")
            await wait_for(pilot, lambda: not controller.running, what="queue stop")
            assert queue_out.read_text() == "SIGINT"

            _wait_file(worker_out.with_suffix(".ready"))
            table.move_cursor(row=table.run_ids.index("demo-fl-s0"))
            await pilot.press("x")
            await pilot.press("y")
            await wait_for(pilot, lambda: worker.poll() is not None, what="worker exit")
            assert worker_out.read_text() == "SIGTERM"
    finally:
        for p in (worker, controller.proc):
            if p is not None and p.poll() is None:
                p.kill()


QUEUE_STANDIN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    with Path(sys.argv[1]).open("a") as f:
        f.write("started\\n")
    time.sleep(float(sys.argv[2]))
""")


@async_test
async def test_retry_outside_the_running_queue_restarts_it_for_that_experiment(tmp_path):
    """The queue runs the config's experiment ("pilot"); R on a failed run of another one
    ("demo") requeues it and, when the queue ends by itself, starts it again with "demo" added.
    A queue the user stops (r) is not restarted; the next r includes the pending experiment."""
    from ncbench.store import read_connection
    from ncbench.tui.control import QueueController
    from ncbench.tui.widgets import RunsTable

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    script, starts = tmp_path / "queue.py", tmp_path / "starts.txt"
    script.write_text(QUEUE_STANDIN)
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(PILOT_TOML)
    controller = QueueController(cfg, db, workdir=tmp_path / ".ncbench",
                                 command=[sys.executable, str(script), str(starts), "3"])
    app = make_app(db, controller=controller)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await fresh_poll(pilot)
            await pilot.press("r")
            await wait_for(pilot, lambda: controller.running, what="queue start")
            assert controller.running_experiments == ["pilot"]
            assert not controller.runs_experiment("demo")
            table = app.screen.query_one(RunsTable)
            table.move_cursor(row=table.run_ids.index("demo-fl-s1"))
            await pilot.press("R")
            await wait_for(pilot, lambda: app.control.retry_later == {"demo"}, what="the pending retry")
            with read_connection(db) as con:
                assert con.execute("SELECT status FROM runs WHERE run_id='demo-fl-s1'"
                                   ).fetchone()[0] == "queued"
            assert _wait_file(starts) == "started\n"
            # the stand-in ends (exit 0) → the TUI starts the queue again, "demo" included
            await wait_for(pilot, lambda: starts.read_text().count("started") == 2, timeout=30,
                           what="the queue's second start")
            assert controller.running_experiments == ["pilot", "demo"]
            assert app.control.retry_later == set()

            # a user stop: no automatic restart, the pending experiment waits for the next r
            await wait_for(pilot, lambda: controller.running, what="the queue running")
            app.control.retry_later.add("other")
            await pilot.press("r")
            await wait_for(pilot, lambda: not controller.running, what="queue stop")
            await pilot.pause(1.5)
            assert starts.read_text().count("started") == 2 and not controller.running
            assert app.control.retry_later == {"other"}
    finally:
        if controller.proc is not None and controller.proc.poll() is None:
            controller.proc.kill()


def test_queue_controller_reports_why_the_queue_exited(tmp_path):
    """A queue that cannot run (here: a bad config) exits 2; its last log line is the reason."""
    from ncbench.tui.control import QueueController

    cfg = tmp_path / "experiments.toml"
    cfg.write_text("[experiments.x]\ndataset = 3\n")
    q = QueueController(cfg, tmp_path / "t.duckdb", workdir=tmp_path / ".ncbench")
    q.start()
    assert q.running_experiments == []  # the config cannot be read: nothing known
    q.proc.wait(timeout=120)
    assert q.returncode == 2
    assert "experiments.toml" in q.last_log_line() and "dataset" in q.last_log_line()


# ------------------------------------------------------------------------------------------
# pilots over real runs
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
@async_test
async def test_real_runs_table_detail_compare(real_runs):
    from ncbench.store import read_connection
    from ncbench.tui.chart import Chart
    from ncbench.tui.screens import CompareScreen, RunDetailScreen
    from ncbench.tui.widgets import RunsTable

    cfg, db = real_runs
    with read_connection(db) as con:
        stored = dict(con.execute("SELECT run_id, loss FROM runs").fetchall())
    assert len(stored) == 4
    app = make_app(db, config_path=cfg, workdir=cfg.parent / ".ncbench")
    async with app.run_test(size=(120, 40)) as pilot:
        await fresh_poll(pilot)
        table = app.screen.query_one(RunsTable)
        assert sorted(table.run_ids) == sorted(stored)
        assert "done 4" in screen_text(app)
        assert all(r.status == "done" and r.last_epoch == 3 for r in app.runs.values())

        # the filter narrows the rows
        await pilot.press("slash")
        app.screen.query_one("#filter").value = "loss:mse"
        await pilot.press("enter")
        assert sorted(table.run_ids) == sorted(r for r, loss in stored.items() if loss == "mse")
        await pilot.press("escape")

        # a run's charts
        table.move_cursor(row=0)
        rid = table.current_run_id
        await pilot.press("enter")
        assert isinstance(app.screen, RunDetailScreen)
        await fresh_poll(pilot)
        nc1 = app.screen.query_one("#chart-nc1", Chart)
        acc = app.screen.query_one("#chart-acc", Chart)
        assert [s.label for s in nc1.series] == ["train", "test"]
        assert [s.label for s in acc.series] == ["train", "val", "test"]
        with read_connection(db) as con:
            want = con.execute("SELECT epoch, nc1 FROM epochs WHERE run_id = ? ORDER BY epoch",
                               [rid]).fetchall()
        assert list(nc1.series[0].x) == [e for e, _ in want]
        assert list(nc1.series[0].y) == pytest.approx([v for _, v in want])

        # the compare view: every loss, from ncbench.report
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        await fresh_poll(pilot)
        await wait_for(pilot, lambda: app.screen.loads >= 1, what="compare data")
        await pilot.pause()
        await pilot.pause()  # let the new table widths lay out before reading the screen
        for chart in app.screen.query(Chart):
            assert sorted(s.label for s in chart.series) == ["ce (n=2)", "mse (n=2)"], chart.id
        text = screen_text(app)
        for loss in ("ce", "mse"):
            assert f"{loss} (n=2)" in text
        from ncbench import report

        with read_connection(db) as con:
            block = report.accuracy_table(con, ["pilot"])[0]
        assert app.screen.data["acc"][0].cells == block.cells  # the report's numbers, not a copy
        assert report.fmt_pct(block.cells["ce"][0][0]) in text


@pytest.mark.slow
@async_test
async def test_real_runs_with_zero_and_nan_metrics(real_runs, tmp_path):
    """The same real database with NC1 set to 0 at one epoch and NaN at another."""
    from ncbench.tui.chart import Chart
    from ncbench.tui.screens import RunDetailScreen

    cfg, db = real_runs
    db2 = copy_db(db, tmp_path)
    con = duckdb.connect(str(db2))
    rid = con.execute("SELECT run_id FROM runs ORDER BY run_id LIMIT 1").fetchone()[0]
    con.execute("UPDATE metrics SET value = 0 WHERE run_id = ? AND name = 'nc1' AND epoch = 1",
                [rid])
    con.execute("UPDATE metrics SET value = 'nan' WHERE run_id = ? AND name = 'nc1' AND "
                "epoch = 3", [rid])
    con.close()
    app = make_app(db2)
    async with app.run_test(size=(80, 24)) as pilot:
        await fresh_poll(pilot)
        assert math.isnan(app.runs[rid].nc1)
        assert "nan" in screen_text(app)
        app.push_screen(RunDetailScreen(rid))
        await fresh_poll(pilot)
        nc1 = app.screen.query_one("#chart-nc1", Chart)
        nc1.render()
        assert nc1.error is None and nc1.dropped == 2
        await pilot.press("c")
        await wait_for(pilot, lambda: getattr(app.screen, "loads", 0) >= 1, what="compare data")
        assert sum(len(c.series) for c in app.screen.query(Chart)) > 0
        for chart in app.screen.query(Chart):
            chart.render()
            assert chart.error is None


# ------------------------------------------------------------------------------------------
# live: another process writes while the app is open
# ------------------------------------------------------------------------------------------

LIVE_WRITER = textwrap.dedent("""
    # Appends evaluations to a run the way `ncbench run` does: event log, then Store.sync
    # (open, write, close). Prints the longest write session (lock wait included).
    import sys, time
    from pathlib import Path
    from ncbench.events import EventLog, write_spec
    from ncbench.rundir import run_dir_of
    from ncbench.runs import RunSpec
    from ncbench.store import Store

    db, workdir, epochs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    spec = RunSpec(experiment="live", dataset="gaussian", model="mlp", loss="ce", width=1.0,
                   epochs=epochs, seed=0)
    run_dir = run_dir_of(workdir, spec.run_id)
    write_spec(run_dir, spec)
    log = EventLog(run_dir)
    store = Store(db, lock_timeout=30)
    store.register_runs([spec])
    log.start(attempt=1, device="cpu")
    worst = 0.0
    for epoch in range(1, epochs + 1):
        time.sleep(0.3)
        log.eval(epoch, {"nc1": 1.0 / epoch, "test_acc": 0.5 + epoch / 100, "train_acc": 0.9,
                         "nc2": 0.1, "train_loss": 1.0 / epoch})
        log.heartbeat(epoch=epoch)
        t = time.monotonic()
        store.sync(workdir, [spec.run_id])
        worst = max(worst, time.monotonic() - t)
        print(spec.run_id, epoch, flush=True)
    log.end("done")
    store.sync(workdir, [spec.run_id])
    print("worst_write_s", worst, flush=True)
""")


@async_test
async def test_live_updates_from_another_process(tmp_path):
    """The app stays open while a separate process appends evaluations (through the store,
    like `ncbench run`); the runs table and the open detail view show them as they come, and
    no lock error reaches the screen."""
    from ncbench.tui.chart import Chart
    from ncbench.tui.screens import RunDetailScreen

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    script = tmp_path / "writer.py"
    script.write_text(LIVE_WRITER)
    epochs = 12
    app = make_app(db, poll_interval=0.2)
    notes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await fresh_poll(pilot)
        writer = subprocess.Popen([sys.executable, str(script), str(db), str(tmp_path / "w"),
                                   str(epochs)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            first = writer.stdout.readline().split()
            assert len(first) == 2, first
            rid = first[0]
            await wait_for(pilot, lambda: rid in app.runs, what="the new run")
            app.push_screen(RunDetailScreen(rid))
            seen_epochs: set[int] = set()
            seen_points: set[int] = set()

            def progress() -> bool:
                row = app.runs.get(rid)
                if row and row.last_epoch:
                    seen_epochs.add(row.last_epoch)
                if app.db_note:
                    notes.append(app.db_note)
                charts = app.screen.query("#chart-nc1")  # empty until the screen is composed
                if isinstance(app.screen, RunDetailScreen) and charts:
                    s = charts.first(Chart).series
                    if s:
                        seen_points.add(len(s[0].x))
                return bool(row and row.status == "done" and epochs in seen_points)

            await wait_for(pilot, progress, timeout=60, what="all epochs")
            out, _ = writer.communicate(timeout=30)
        finally:
            if writer.poll() is None:
                writer.kill()
        assert writer.returncode == 0
        # seen while it was being written: intermediate states, not only the final one
        assert len(seen_epochs) >= 3 and len(seen_points) >= 3, (seen_epochs, seen_points)
        assert f"{epochs}/{epochs}" in screen_text(app) or "done" in screen_text(app)
    assert not notes, notes  # no lock error (nor any other) was shown
    worst = float(out.split("worst_write_s")[1])
    assert worst < 10.0  # the writer was never held up for long by the reader


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------

def test_cli_errors_without_database_or_config(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "ncbench", "tui", *args], cwd=tmp_path,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})

    out = run()
    assert out.returncode == 2 and "no experiments.toml here" in out.stderr
    out = run("--db", "missing.duckdb")
    assert out.returncode == 2 and "does not exist" in out.stderr
    (tmp_path / "bad.toml").write_text("[experiments.x]\ndataset = 'digits'\nmodle = 'mlp'\n")
    out = run("--config", "bad.toml")
    assert out.returncode == 2 and "bad.toml" in out.stderr and "Traceback" not in out.stderr
    out = run("--help")
    assert out.returncode == 0 and "--run" in out.stdout



def test_runs_reader_incremental(tmp_path):
    """RunsReader re-reads only changed runs, keeps unchanged RunRow objects, follows a new
    evaluation at last_epoch at once, and settles a heartbeat that ran ahead of the
    evaluations by a full read within `stale_every` polls."""
    from ncbench.listing import stored_rows
    from ncbench.store import read_connection
    from ncbench.tui.data import RunsReader

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    reader = RunsReader(stale_every=2)

    def poll():
        with read_connection(db) as con:
            return reader.read(con), stored_rows(con)

    def same(a, b):  # RunRow equality with NaN == NaN
        return a.keys() == b.keys() and all(repr(a[k]) == repr(b[k]) for k in a)

    first, truth = poll()
    assert same(first, truth) and reader.last_full
    second, _ = poll()
    assert reader.last_changed == 0 and not reader.last_full
    assert all(second[r] is first[r] for r in first)

    def write(sql, params=()):
        con = duckdb.connect(str(db))
        con.execute(sql, list(params))
        con.close()

    # a new evaluation (epoch 5) of the running run, as store.sync writes it
    write("INSERT INTO metrics VALUES ('demo-fl-s0', 5, 'nc1', 0.25), ('demo-fl-s0', 5, "
          "'test_acc', 0.81)")
    write("UPDATE runs SET last_epoch = 5 WHERE run_id = 'demo-fl-s0'")
    rows, truth = poll()
    assert reader.last_changed == 1 and not reader.last_full
    assert repr(rows["demo-fl-s0"]) == repr(truth["demo-fl-s0"])
    assert (rows["demo-fl-s0"].last_epoch, rows["demo-fl-s0"].nc1) == (5, 0.25)
    assert rows["demo-ce-s0"] is first["demo-ce-s0"]

    # the heartbeat runs ahead (epoch 7) of an evaluation at epoch 6 ingested in the same sync
    write("INSERT INTO metrics VALUES ('demo-fl-s0', 6, 'nc1', 0.125)")
    write("UPDATE runs SET last_epoch = 7 WHERE run_id = 'demo-fl-s0'")
    rows, truth = poll()
    assert rows["demo-fl-s0"].last_epoch == 7 and rows["demo-fl-s0"].nc1 == 0.25  # not yet seen
    for _ in range(3):
        rows, truth = poll()
        if reader.last_full:
            break
    assert reader.last_full and same(rows, truth) and rows["demo-fl-s0"].nc1 == 0.125

    write("DELETE FROM runs WHERE run_id = 'wide-ce-s0'")
    rows, _ = poll()
    assert "wide-ce-s0" not in rows


@async_test
async def test_start_queue_on_mount_and_toggle(tmp_path):
    """`ncbench tui --run` = start_queue: the queue process runs as soon as the app is up; the
    status bar says so; r stops it with SIGINT."""
    from ncbench.tui.control import QueueController

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    script = tmp_path / "catch.py"
    script.write_text(SIGNAL_CATCHER)
    out = tmp_path / "queue.txt"
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(PILOT_TOML)
    controller = QueueController(cfg, db, workdir=tmp_path / ".ncbench",
                                 command=[sys.executable, str(script), str(out)])
    app = make_app(db, start_queue=True, controller=controller)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await fresh_poll(pilot)
            assert controller.running
            assert f"queue ▶ running (pid {controller.pid})" in screen_text(app)
            _wait_file(out.with_suffix(".ready"))
            await pilot.press("r")
            await wait_for(pilot, lambda: not controller.running, what="queue stop")
            await fresh_poll(pilot)
            # the user stopped it: "stopped", not "exited (0)" nor "finished (exit code 130)"
            assert out.read_text() == "SIGINT" and "queue ■ stopped" in screen_text(app)
    finally:
        controller.shutdown(timeout=5)


@async_test
async def test_tab_and_log_toggle_in_detail(tmp_path):
    from ncbench.tui.chart import Chart
    from ncbench.tui.screens import RunDetailScreen

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        app.push_screen(RunDetailScreen("demo-ce-s0"))
        await fresh_poll(pilot)
        nc1, nc2 = app.screen.query_one("#chart-nc1", Chart), app.screen.query_one("#chart-nc2", Chart)
        assert app.focused is nc1 and nc1.log and not nc2.log
        await pilot.press("tab", "l")
        assert app.focused is nc2 and nc2.log and nc1.log
        assert "NC2 (log)" in screen_text(app)


def test_default_selection_is_default_plus_stored_experiments(tmp_path):
    """Unnamed, the TUI shows the config's default experiment and those with stored runs (as
    `ncbench status`), not the untouched grids of the file."""
    from ncbench.cli.cmd_tui import resolve_paths
    from ncbench.config import expand, load_config
    from ncbench.store import Store

    cfg_path = tmp_path / "experiments.toml"
    cfg_path.write_text(
        'default = "small"\n'
        '[experiments.big]\ndataset = "gaussian"\nmodel = "mlp"\nloss = "ce"\nepochs = 3\n'
        '[experiments.small]\ndataset = "gaussian"\nmodel = "mlp"\nloss = "mse"\nepochs = 2\n'
        '[experiments.other]\ndataset = "gaussian"\nmodel = "mlp"\nloss = "fl"\nepochs = 2\n')
    assert resolve_paths(cfg_path, None, None, None)[3] == ["small"]
    Store(tmp_path / "ncbench.duckdb").register_runs(expand(load_config(cfg_path), ["other"]))
    assert resolve_paths(cfg_path, None, None, None)[3] == ["small", "other"]
    assert resolve_paths(cfg_path, None, None, ["big"])[3] == ["big"]


# ------------------------------------------------------------------------------------------
# issue 14: what a researcher hits in the first hour (progress, axes, legends, clipping,
# start-up states, queue stop, sort order)
# ------------------------------------------------------------------------------------------

def _edit_db(db: Path, *sql: str) -> None:
    con = duckdb.connect(str(db))
    try:
        for statement in sql:
            con.execute(statement)
    finally:
        con.close()


def _paper_epochs_db(tmp_path) -> Path:
    """The fixed database with paper-length runs: 85/200, 170/400, 17/800 epochs."""
    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    _edit_db(db, "UPDATE runs SET epochs = 200, last_epoch = 85 WHERE run_id = 'demo-fl-s0'",
             "UPDATE runs SET epochs = 400, last_epoch = 170 WHERE run_id = 'demo-fl-s1'",
             "UPDATE runs SET epochs = 800, last_epoch = 17 WHERE run_id = 'demo-mse-s1'")
    return db


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@async_test
async def test_progress_shows_whole_epoch_totals_and_elapsed_fits(tmp_path, size):
    """200-, 400- and 800-epoch runs show `85/200`, not `85/20`; at 80 columns every column up
    to Elapsed is whole (the header read `Elap`)."""
    db = _paper_epochs_db(tmp_path)
    app = make_app(db)
    async with app.run_test(size=size) as pilot:
        await fresh_poll(pilot)
        text = screen_text(app)
        for progress in ("85/200", "170/400", "17/800", "10/10"):
            assert progress in text, text
        header = next(line for line in text.splitlines() if "Progress" in line)
        assert "Elapsed" in header, header
        await pilot.resize_terminal(240 - size[0], 72 - size[1])  # the other size
        await pilot.pause()
        text = screen_text(app)
        header = next(line for line in text.splitlines() if "Progress" in line)
        assert "Elapsed" in header and "85/200" in text, text


def test_y_range_fits_the_data_within_bounds():
    from ncbench.tui.chart import y_range

    lo, hi = y_range(0.96, 0.98, (0.0, 1.0))
    assert 0.95 < lo < 0.96 and 0.98 < hi < 0.99  # not 0–1
    assert y_range(0.97, 1.0, (0.0, 1.0))[1] == 1.0  # never above an accuracy's bound
    assert y_range(0.0, 0.5, (0.0, math.inf))[0] == 0.0  # NC metrics: never below 0
    lo, hi = y_range(0.5, 0.5)
    assert lo < 0.5 < hi  # a flat series gets an axis around it


def _y_labels(text: str, title: str) -> list[float]:
    """The y tick labels of the chart titled `title` (first chart with that title)."""
    import re

    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    col = lines[start].index(title)
    left = lines[start].rfind("│", 0, col)
    labels = []
    for line in lines[start + 1:start + 30]:
        cell = line[left:left + 12]
        if "└" in cell:
            break
        m = re.search(r"(-?[\d.]+)┤", cell)
        if m:
            labels.append(float(m.group(1)))
    return labels


@async_test
async def test_accuracy_charts_fit_the_data_and_nc2_is_one_line(tmp_path):
    """Accuracy axes fit 96–98 % curves (not 0–1); NC2 in the run detail is one line (it
    depends on W only), and legends sit in the chart borders, not on the curves."""
    from ncbench.tui.chart import Chart
    from ncbench.tui.screens import RunDetailScreen

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    high = ", ".join(f"('demo-ce-s0', {e}, '{m}', {0.96 + 0.002 * e})"
                     for e in range(1, 11) for m in ("train_acc", "val_acc", "test_acc"))
    _edit_db(db, "DELETE FROM metrics WHERE run_id = 'demo-ce-s0' AND name LIKE '%_acc'",
             f"INSERT INTO metrics VALUES {high}",
             "INSERT INTO metrics SELECT run_id, epoch, 'test_nc2', value FROM metrics "
             "WHERE run_id = 'demo-ce-s0' AND name = 'nc2'")
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        app.push_screen(RunDetailScreen("demo-ce-s0"))
        await fresh_poll(pilot)
        await wait_for(pilot, lambda: app.screen.series.last_epoch == 10)
        await pilot.pause()
        text = screen_text(app)
        labels = _y_labels(text, "Accuracy")
        assert labels and min(labels) >= 0.95 and max(labels) <= 0.99, (labels, text)
        nc2 = app.screen.query_one("#chart-nc2", Chart)
        assert [s.label for s in nc2.series] == ["train = test (W only)"]
        assert "━ train  ━ val  ━ test" in text  # the accuracy legend, in the border


@async_test
async def test_compare_legend_outside_plots_and_tables_not_clipped(tmp_path):
    """160×48: one legend above the charts (not over the curves), the accuracy table's title
    on one line, every NC column (NC3, NC4, test NC1) visible."""
    from ncbench import report
    from ncbench.tui.screens import CompareScreen

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        app.push_screen(CompareScreen("demo"))
        await wait_for(pilot, lambda: app.screen.loads >= 1 and not app.screen._loading)
        await pilot.pause()
        text = screen_text(app)
        assert text.count("ce (n=2)") == 1, text  # once, in the title: not in each plot
        title = report.accuracy_title(app.screen.data["acc"][0])
        assert any(title in line for line in text.splitlines()), text
        header = next(line for line in text.splitlines()
                      if "epochs" in line and "NC1" in line and "NC2" in line)
        for column in ("NC3", "NC4", "test NC1"):
            assert column in header, text


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@async_test
async def test_help_is_whole_and_config_panel_scrolls(tmp_path, size):
    """The `?` help is not cut on the right; the detail's config panel scrolls (Tab reaches
    it), so `loss_params` at its end can be read."""
    from rich.text import Text

    from ncbench.tui.screens import RunDetailScreen
    from ncbench.tui.screens.dialogs import HELP

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=size) as pilot:
        await fresh_poll(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        for line in Text.from_markup(HELP).plain.splitlines():
            if line.strip() and line[:16] in text:
                assert line.rstrip() in text, (line, text)
        await pilot.press("escape")
        app.push_screen(RunDetailScreen("demo-fl-s0"))
        await fresh_poll(pilot)
        box = app.screen.query_one("#run-config-box")
        while app.focused is not box:  # Tab through the charts to the panel
            await pilot.press("tab")
        box.scroll_end(animate=False)
        await pilot.pause()
        assert 'loss_params = {"gamma":2.0}' in screen_text(app)


@async_test
async def test_starting_runs_and_per_attempt_times(tmp_path):
    """A run launched but not started yet says `starting…` with no elapsed time; a resumed run
    does not show the previous attempt's elapsed time and ETA while its worker starts."""
    from ncbench.tui.widgets import RunsTable

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    _edit_db(db, "UPDATE runs SET status = 'running', started_at = NULL, last_epoch = NULL, "
                 "attempt = 1 WHERE run_id = 'demo-ls-s0'")
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        table = app.screen.query_one(RunsTable)

        def cells(rid):
            row = table.get_row(rid)
            return [c.plain if hasattr(c, "plain") else str(c) for c in row]

        ls = cells("demo-ls-s0")
        assert ls[4] == "▶ starting…" and ls[8] == "–" and ls[9] == "–", ls
        fl = cells("demo-fl-s0")
        assert fl[4] == "▶ running" and fl[8] == "9m00s" and fl[9] != "–", fl
        # demo-fl-s0 is launched again (attempt 2): the executor's row keeps attempt 1's start
        _edit_db(db, "UPDATE runs SET attempt = 2 WHERE run_id = 'demo-fl-s0'")
        await fresh_poll(pilot)
        fl = cells("demo-fl-s0")
        assert fl[4] == "▶ starting…" and fl[8] == "–" and fl[9] == "–", fl
        # its start event arrives: the attempt's own times
        _edit_db(db, "UPDATE runs SET started_at = TIMESTAMP '2025-01-01 12:09:00', "
                     "start_epoch = 4 WHERE run_id = 'demo-fl-s0'")
        await fresh_poll(pilot)
        fl = cells("demo-fl-s0")
        assert fl[4] == "▶ running" and fl[8] == "1m00s" and fl[9] == "–", fl


def test_config_sort_is_the_config_order():
    from ncbench.listing import RunRow
    from ncbench.tui.rows import sort_rows

    def row(rid, loss, seed):
        return RunRow(rid, "demo", "digits", "mlp", loss, 1.0, 10, seed, "queued")

    rows = [row("a", "mse", 0), row("b", "ce", 0), row("c", "mse", 1)]  # as the config lists
    assert [r.run_id for r in sort_rows(rows, "config")] == ["a", "b", "c"]
    assert [r.run_id for r in sort_rows(rows, "config", reverse=True)] == ["c", "b", "a"]


@async_test
async def test_sort_direction_arrows(tmp_path):
    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        assert "sort: config ↑" in screen_text(app)
        await pilot.press("S")
        assert "sort: config ↓" in screen_text(app)


@async_test
async def test_only_filters_the_shown_runs_as_status_does(tmp_path):
    """`ncbench tui --only loss=ce` shows the ce runs only — declared (queued) and stored,
    including a stored run the config no longer declares — as `ncbench status --only` lists
    them, not every run with only the queue filtered."""
    from ncbench.cli.cmd_status import load_status
    from ncbench.config import expand, load_config
    from ncbench.selection import parse_only
    from ncbench.store import Store

    cfg_path = tmp_path / "experiments.toml"
    cfg_path.write_text('[experiments.a]\ndataset = "gaussian"\nmodel = "mlp"\n'
                        'loss = ["ce", "mse"]\nepochs = 2\nseed = [0, 1]\n')
    db = tmp_path / "ncbench.duckdb"
    specs = expand(load_config(cfg_path), ["a"])
    old = [s for s in expand(load_config(cfg_path), ["a"]) if s.seed == 0]
    import dataclasses
    gone = [dataclasses.replace(s, epochs=9) for s in old]  # stored, no longer declared
    Store(db).register_runs([specs[0], *gone])
    app = make_app(db, config_path=cfg_path, experiments=["a"],
                   selection=parse_only(["loss=ce"]))
    async with app.run_test(size=(120, 30)) as pilot:
        await fresh_poll(pilot)
        shown = {r.run_id: r for r in app.runs.values()}
    want = {r.run_id for r in load_status(cfg_path, db, ["a"], select_only=["loss=ce"])}
    assert set(shown) == want
    assert {r.loss for r in shown.values()} == {"ce"} and len(shown) == 3  # 2 declared + 1 gone
    everything = make_app(db, config_path=cfg_path, experiments=["a"])
    async with everything.run_test(size=(120, 30)) as pilot:
        await fresh_poll(pilot)
        assert len(everything.runs) == 6


@async_test
async def test_detail_header_labels_the_test_accuracy(tmp_path):
    """The run detail's header says which test accuracy it shows: the latest evaluation's for a
    running run, the final one for a finished run (not a bare "test")."""
    from ncbench.tui.screens.detail import RunDetailScreen

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    for run_id, word in (("demo-fl-s0", "latest test"), ("demo-ce-s0", "final test")):
        app = make_app(db)
        async with app.run_test(size=(160, 48)) as pilot:
            await fresh_poll(pilot)
            app.push_screen(RunDetailScreen(run_id))
            await pilot.pause(0.5)
            header = str(app.screen.query_one("#run-title").render())
            assert f"{word} " in header and "%" in header.split(word)[1], header
