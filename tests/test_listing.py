"""The one listing of runs (`ncbench.listing`): the merge of declared and stored runs, the one
definition of "latest metrics", and `ncbench status` and the TUI showing the same rows over the
same database (written the way `ncbench run` writes it: event logs ingested by the store)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ncbench.events import EventLog, write_spec
from ncbench.rundir import run_dir_of
from ncbench.listing import (
    STATUS_METRICS, RunRow, declared_rows, latest_metrics, list_runs, merge_rows, metrics_at,
    shown_experiments, status_counts,
)
from ncbench.runs import RunSpec
from ncbench.store import Store, read_connection
from tests.test_tui import async_test, fresh_poll

ROOT = Path(__file__).resolve().parents[1]


def make_specs(n: int = 3, experiment: str = "e") -> list[RunSpec]:
    return [RunSpec(experiment=experiment, dataset="digits", model="mlp", loss="ce", width=0.5,
                    epochs=10, seed=s) for s in range(n)]


def fake_run(workdir: Path, spec: RunSpec, evals: dict[int, dict], end: str | None = "done",
             attempt: int = 1, beat: int | None = None) -> Path:
    """A run directory as a worker leaves it: start, evaluations (each with a heartbeat), end."""
    run_dir = run_dir_of(workdir, spec.run_id)
    write_spec(run_dir, spec)
    log = EventLog(run_dir)
    log.start(attempt, host="hostA", device="cpu", pid=123)
    for epoch, metrics in evals.items():
        log.eval(epoch, metrics)
        log.heartbeat(epoch)
    if beat is not None:
        log.heartbeat(beat)
    if end:
        log.end(end, error=None if end == "done" else "boom")
    return run_dir


def same(a: RunRow, b: RunRow) -> bool:
    """RunRow equality with NaN == NaN."""
    return repr(a) == repr(b)


# ------------------------------------------------------------------------------------------
# the merge and the latest metrics
# ------------------------------------------------------------------------------------------

def test_list_runs_merges_config_and_db(tmp_path):
    db, work = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    a, b = make_specs(2)
    (other,) = make_specs(1, experiment="old")
    store = Store(db)
    store.register_runs([a, other])
    fake_run(work, a, {5: {"test_acc": 0.5, "nc1": 2.0}, 10: {"nc1": 1.0}}, end=None)
    store.sync(work)
    got = list_runs([a, b, a], db)  # a run listed twice is shown once
    assert [(r.run_id, r.status, r.listed, r.stored) for r in got] == \
        [(a.run_id, "running", True, True), (b.run_id, "queued", True, False),
         (other.run_id, "queued", False, True)]
    assert got[0].progress_text == "10/10" and got[0].test_acc == 0.5 and got[0].nc1 == 1.0
    assert got[0].attempt == 1 and got[0].host == "hostA" and got[0].pid == 123
    assert [r.run_id for r in list_runs([a, b], db, ["e"])] == [a.run_id, b.run_id]
    assert [r.run_id for r in list_runs([a, b], db, include_unlisted=False)] == [a.run_id, b.run_id]
    with read_connection(db) as con:
        assert latest_metrics(con, ["nc1"]) == {a.run_id: {"nc1": 1.0}}
    # no database: every declared run queued, nothing created
    assert [r.status for r in list_runs([a, b], tmp_path / "none.duckdb")] == ["queued", "queued"]
    assert not (tmp_path / "none.duckdb").exists()


def test_latest_metrics_definition(tmp_path):
    """Per metric, the value at the highest epoch that recorded it: NaN is a value, NULL (not
    measured) is skipped; `metrics_at` reads the values at one epoch only."""
    db = tmp_path / "m.duckdb"
    Store(db).register_runs([])
    con = duckdb.connect(str(db))
    con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", [
        ("r1", 1, "nc1", 4.0), ("r1", 1, "test_acc", 0.5),
        ("r1", 2, "nc1", 2.0), ("r1", 2, "test_acc", None),  # not measured at epoch 2
        ("r1", 3, "nc1", math.nan),                          # measured: NaN
        ("r1", 3, "train_acc", 0.9),                          # not a listing metric
        ("r2", 7, "test_acc", 0.25),
    ])
    con.close()
    with read_connection(db) as con:
        latest = latest_metrics(con)
        assert set(latest) == {"r1", "r2"}
        assert math.isnan(latest["r1"]["nc1"]) and latest["r1"]["test_acc"] == 0.5
        assert latest["r2"] == {"test_acc": 0.25}
        assert latest_metrics(con, STATUS_METRICS, ["r2"]) == {"r2": {"test_acc": 0.25}}
        assert latest_metrics(con, STATUS_METRICS, []) == {}
        assert metrics_at(con, {"r1": 2, "r2": 7}) == {"r1": {"nc1": 2.0},
                                                       "r2": {"test_acc": 0.25}}
        assert metrics_at(con, {"r1": 9}) == {}


def test_merge_rows_keeps_objects_whose_flags_are_right():
    """The TUI skips unchanged rows by identity: the merge must not copy them."""
    declared = declared_rows(make_specs(2))
    stored_listed = RunRow(declared[0].run_id, "e", "digits", "mlp", "ce", 0.5, 10, 0, "done",
                           listed=True)
    stray = RunRow("zzz", "old", "digits", "mlp", "ce", 0.5, 10, 0, "failed")
    wrongly_listed = RunRow("yyy", "old", "digits", "mlp", "ce", 0.5, 10, 1, "done", listed=True)
    got = merge_rows(declared, {"zzz": stray, declared[0].run_id: stored_listed,
                                "yyy": wrongly_listed})
    assert [r.run_id for r in got] == [declared[0].run_id, declared[1].run_id, "zzz", "yyy"]
    assert got[0] is stored_listed and got[1] is declared[1] and got[2] is stray
    assert got[3] == RunRow("yyy", "old", "digits", "mlp", "ce", 0.5, 10, 1, "done", listed=False)
    assert (got[1].status, got[1].stored, got[1].listed) == ("queued", False, True)
    unlisted = RunRow(declared[0].run_id, "e", "digits", "mlp", "ce", 0.5, 10, 0, "done")
    assert merge_rows(declared, {unlisted.run_id: unlisted})[0] == stored_listed  # flag set


def test_status_counts_and_row_properties():
    rows = [RunRow(str(i), "e", "d", "m", "ce", 1.0, 10, 0, s, last_epoch=e)
            for i, (s, e) in enumerate([("done", 7), ("running", 4), ("running", None),
                                        ("weird", 1)])]
    assert status_counts(rows) == {"running": 2, "done": 1, "weird": 1}
    assert status_counts(rows, zeros=True) == {"queued": 0, "running": 2, "done": 1, "failed": 0,
                                               "diverged": 0, "interrupted": 0, "weird": 1}
    # a done run has done all its epochs; the others their last epoch
    assert [r.progress_text for r in rows] == ["10/10", "4/10", "0/10", "1/10"]
    assert [r.progress for r in rows] == [1.0, 0.4, 0.0, 0.1]


def test_shown_experiments_default_and_stored(tmp_path):
    from ncbench.config import expand, load_config

    cfg_path = tmp_path / "experiments.toml"
    cfg_path.write_text(
        'default = "small"\n'
        '[experiments.big]\ndataset = "gaussian"\nmodel = "mlp"\nloss = "ce"\nepochs = 3\n'
        '[experiments.small]\ndataset = "gaussian"\nmodel = "mlp"\nloss = "mse"\nepochs = 2\n'
        '[experiments.other]\ndataset = "gaussian"\nmodel = "mlp"\nloss = "fl"\nepochs = 2\n')
    cfg, db = load_config(cfg_path), tmp_path / "ncbench.duckdb"
    assert shown_experiments(cfg, db) == ["small"] and not db.exists()
    Store(db).register_runs(expand(cfg, ["other"]))
    assert shown_experiments(cfg, db) == ["small", "other"]  # file order


# ------------------------------------------------------------------------------------------
# ncbench status and the TUI agree
# ------------------------------------------------------------------------------------------

CONFIG = '''default = "demo"

[experiments.demo]
dataset = "digits"
model = "mlp"
loss = ["ce", "fl"]
epochs = 10
seed = [0, 1, 2]

[experiments.big]
dataset = "digits"
model = "mlp"
loss = "mse"
epochs = 10
'''


@pytest.fixture
def shared_db(tmp_path):
    """experiments.toml + a database as `ncbench run` leaves it: of the 6 demo runs one done
    (NaN NC1 at its last evaluation), one running with a heartbeat past its last evaluation, one
    failed, three not stored; plus a stored run of an experiment the config no longer has."""
    from ncbench.config import expand, load_config

    cfg_path = tmp_path / "experiments.toml"
    cfg_path.write_text(CONFIG)
    specs = expand(load_config(cfg_path), ["demo"])
    (gone,) = make_specs(1, experiment="gone")
    work = tmp_path / ".ncbench"
    store = Store(tmp_path / "ncbench.duckdb")
    store.register_runs(specs[:3] + [gone])
    fake_run(work, specs[0], {5: {"test_acc": 0.75, "nc1": 1.5},
                              10: {"test_acc": 0.8125, "nc1": math.nan}})
    fake_run(work, specs[1], {1: {"test_acc": 0.5, "nc1": 3.0}, 2: {"test_acc": 0.55}},
             end=None, beat=3)
    fake_run(work, specs[2], {1: {"test_acc": 0.4, "nc1": 5.0}}, end="failed")
    fake_run(work, gone, {10: {"test_acc": 0.9, "nc1": 0.5}})
    store.sync(work)
    return cfg_path, store, work, specs


def _status_rows(cfg_path: Path) -> dict[str, RunRow]:
    from ncbench.cli.cmd_status import load_status

    return {r.run_id: r for r in load_status(cfg_path, None, None)}


def _tui_app(cfg_path: Path):
    from ncbench.cli.cmd_tui import resolve_paths
    from ncbench.tui.app import NcbenchApp

    config_path, db, work, names = resolve_paths(cfg_path, None, None, None)
    return NcbenchApp(db, config_path=config_path, experiments=names, workdir=work,
                      poll_interval=3600, all_stored=True)


@async_test
async def test_status_and_tui_show_the_same_rows(shared_db):
    """Same runs, statuses, epochs and latest metrics in `ncbench status` and the TUI's runs
    snapshot — on the first poll (a full read) and after new evaluations arrive (the TUI's
    incremental reads), including a heartbeat ahead of the evaluations."""
    cfg_path, store, work, specs = shared_db
    want = _status_rows(cfg_path)
    assert len(want) == 7 and want[specs[0].run_id].listed and not want[specs[5].run_id].stored
    assert math.isnan(want[specs[0].run_id].nc1) and want[specs[0].run_id].test_acc == 0.8125
    assert (want[specs[1].run_id].last_epoch, want[specs[1].run_id].test_acc,
            want[specs[1].run_id].nc1) == (3, 0.55, 3.0)  # each metric's own latest epoch
    gone = next(r for r in want.values() if r.experiment == "gone")
    assert not gone.listed and gone.stored

    app = _tui_app(cfg_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await fresh_poll(pilot)
        assert app.runs.keys() == want.keys()
        assert all(same(app.runs[rid], want[rid]) for rid in want), (app.runs, want)

        # the running run evaluates epochs 3 and 4; the failed one is retried and starts again
        log = EventLog(run_dir_of(work, specs[1].run_id))
        log.eval(3, {"test_acc": 0.6, "nc1": 2.5})
        log.eval(4, {"test_acc": 0.65, "nc1": 2.0})
        log.heartbeat(4)
        EventLog(run_dir_of(work, specs[2].run_id)).start(2, host="hostA", device="cpu", pid=124)
        store.sync(work)
        await fresh_poll(pilot)
        assert not app.reader.last_full and app.reader.last_changed == 2  # incremental
        want = _status_rows(cfg_path)
        assert (want[specs[1].run_id].last_epoch, want[specs[1].run_id].nc1) == (4, 2.0)
        assert (want[specs[2].run_id].status, want[specs[2].run_id].attempt) == ("running", 2)
        assert all(same(app.runs[rid], want[rid]) for rid in want), (app.runs, want)

        # its heartbeat runs ahead of the evaluations (epoch 5), then epoch 5's arrives together
        # with a heartbeat at 6: the reader keeps the last values, then settles by a full read
        log.heartbeat(5)
        store.sync(work)
        await fresh_poll(pilot)
        want = _status_rows(cfg_path)
        assert all(same(app.runs[rid], want[rid]) for rid in want), (app.runs, want)
        log.eval(5, {"test_acc": 0.7, "nc1": 1.0})
        log.heartbeat(6)
        store.sync(work)
        for _ in range(app.reader.stale_every + 2):
            await fresh_poll(pilot)
            if app.reader.last_full:
                break
        assert app.reader.last_full
        want = _status_rows(cfg_path)
        assert (want[specs[1].run_id].last_epoch, want[specs[1].run_id].nc1) == (6, 1.0)
        assert all(same(app.runs[rid], want[rid]) for rid in want), (app.runs, want)


def test_status_json_keys_and_values(shared_db):
    """`ncbench status --json` prints the listing's rows with the documented keys."""
    cfg_path, _, _, specs = shared_db
    out = subprocess.run([sys.executable, "-m", "ncbench", "status", "--json"],
                         capture_output=True, text=True, cwd=cfg_path.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert list(rows[0]) == [
        "experiment", "run_id", "dataset", "model", "loss", "width", "epochs", "seed", "status",
        "last_epoch", "executor", "slot", "device", "host", "attempt", "slurm_job_id", "pid",
        "heartbeat_at", "started_at", "finished_at", "error", "note", "progress", "heartbeat_age_s",
        "test_acc", "nc1", "stored", "listed"]
    by_id = {r["run_id"]: r for r in rows}
    want = _status_rows(cfg_path)
    assert by_id.keys() == want.keys()
    done = by_id[specs[0].run_id]
    assert (done["status"], done["progress"], done["test_acc"], done["nc1"]) == \
        ("done", "10/10", 0.8125, None)  # NaN is null in JSON
    running = by_id[specs[1].run_id]
    assert running["heartbeat_age_s"] is not None and running["heartbeat_age_s"] < 600


def test_status_flag_error_names_the_option(tmp_path):
    (tmp_path / "experiments.toml").write_text(CONFIG)
    out = subprocess.run([sys.executable, "-m", "ncbench", "status", "--status", "donne"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: --status: unknown status 'donne' (did you mean 'done'?)")
    assert "Traceback" not in out.stderr
