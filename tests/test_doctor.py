"""A store that can be rebuilt, refuses foreign files, and decides "done" (issue #17, items 3, 5, 7).

Real DuckDB files damaged as a disk or a user would damage them (truncated, garbage in the
middle or at the head, a foreign DuckDB file, a dropped table), real run directories written
with the event log's own API, and `ncbench` run as a user runs it (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from _runkit import experiment, ncbench, query, write_config
from ncbench.errors import StoreError
from ncbench.events import EventLog, write_spec
from ncbench.rundir import run_dir_of, runs_root
from ncbench.runs import RunSpec
from ncbench.store import Store, read_connection

ROOT = Path(__file__).resolve().parents[1]
HINT = "ncbench doctor --rebuild"


def spec(i: int, experiment: str = "demo") -> RunSpec:
    return RunSpec(experiment=experiment, dataset="gaussian", model="mlp", loss="ce", width=0.125,
                   epochs=4, seed=i, eval_every=2, batch_size=32, device="cpu")


def write_run(work: Path, s: RunSpec, end: str | None = "done") -> Path:
    """A run directory as a worker leaves it: spec, start, two evaluations, end."""
    d = run_dir_of(work, s.run_id)
    write_spec(d, s)
    log = EventLog(d)
    log.start(1, device="cpu", pid=1)
    log.eval(2, {"train_acc": 0.5, "val_acc": 0.25 + s.seed / 100, "test_acc": 0.5})
    log.eval(4, {"train_acc": 1.0, "val_acc": 0.5 + s.seed / 100, "test_acc": 0.75})
    if end:
        log.end(end)
    return d


def project(tmp: Path) -> tuple[Path, Path, list[RunSpec]]:
    """db + workdir: 3 demo runs (2 done, 1 failed) and 1 run of an experiment `gone` that no
    config declares, all stored."""
    db, work = tmp / "ncbench.duckdb", tmp / ".ncbench"
    specs = [spec(0), spec(1), spec(2), spec(0, "gone")]
    for s, end in zip(specs, ("done", "done", "failed", "done")):
        write_run(work, s, end)
    Store(db).sync(work)
    return db, work, specs


def table(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "truncated":
        db.write_bytes(data[: len(data) // 3])
    elif how == "garbage-middle":  # everything after the file's headers
        db.write_bytes(data[:12288] + os.urandom(len(data) - 12288))
    elif how == "garbage-head":
        db.write_bytes(os.urandom(4096) + data[4096:])


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)


# -- item 3: a damaged database, on every command ------------------------------------------------

COMMANDS = {
    "status": ["status"], "sql": ["sql", "SELECT count(*) FROM metrics"], "report": ["report"],
    "tui": ["tui"], "run": ["run"],
}
#: The commands tried on each kind of damage (every command on one, a few on the others: fast).
SHOWN = {"truncated": list(COMMANDS), "garbage-middle": ["sql"], "garbage-head": ["status"],
         "foreign": ["status", "run"]}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """(damage kind, command) -> the finished process, all run in parallel."""
    jobs = {}
    for how in ("truncated", "garbage-middle", "garbage-head", "foreign"):
        tmp = tmp_path_factory.mktemp(how)
        write_config(tmp, experiment("demo", losses=("ce",)))
        db = tmp / "ncbench.duckdb"
        if how == "foreign":
            con = duckdb.connect(str(db))
            con.execute("CREATE TABLE sales (id INTEGER, amount DOUBLE)")
            con.execute("INSERT INTO sales VALUES (1, 2.5)")
            con.close()
        else:
            project(tmp)
            damage(db, how)
        for name in SHOWN[how]:
            jobs[(how, name)] = (COMMANDS[name], tmp)
    with ThreadPoolExecutor(4) as pool:
        futures = {k: pool.submit(cli, *args, cwd=tmp) for k, (args, tmp) in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.mark.parametrize("how", ["truncated", "garbage-middle", "garbage-head", "foreign"])
def test_damaged_or_foreign_db_names_doctor_on_every_command(damaged, how):
    for (kind, name), proc in damaged.items():
        if kind != how:
            continue
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, (name, out)
        assert "Traceback" not in out, (name, out)
        if how == "foreign" and name == "run":  # the writer: never writes into it
            assert "not an ncbench database" in out and "does not write into it" in out, out
        else:
            assert "is not a readable ncbench database" in out and HINT in out, (name, out)


def test_run_never_writes_into_a_foreign_duckdb_file(tmp_path):
    foreign = tmp_path / "other.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE sales (id INTEGER)")
    con.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="not an ncbench database.*sales"):
        Store(foreign).register_runs([spec(0)])
    assert table(foreign, "SELECT table_name FROM duckdb_tables()") == [("sales",)]
    assert foreign.read_bytes() == before
    # an empty new file, a DuckDB file without tables, or no file yet: fine
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    bare = tmp_path / "bare.duckdb"
    duckdb.connect(str(bare)).close()
    for db in (empty, bare, tmp_path / "new.duckdb"):
        assert Store(db).register_runs([spec(0)]) == 1
        assert query(db, "SELECT count(*) FROM runs") == [(1,)]


def test_dropped_metrics_table_is_reported_then_recreated(tmp_path):
    db, work, specs = project(tmp_path)
    n = table(db, "SELECT count(*) FROM metrics")[0][0]
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE metrics")
    con.close()
    from ncbench.listing import list_runs

    with pytest.raises(StoreError, match="lacks its table metrics"):
        list_runs(specs, db)
    write_config(tmp_path, experiment("demo", losses=("ce",)))
    out = cli("status", cwd=tmp_path)
    assert out.returncode == 2 and "lacks its table metrics" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    # the writer re-applies the DDL; a sync (a fresh Store re-reads every event log) refills it
    Store(db).sync(work)
    assert table(db, "SELECT count(*) FROM metrics") == [(n,)]
    assert len(list_runs(specs, db)) == 4


# -- item 3: ncbench doctor ------------------------------------------------------------------------

def test_doctor_finds_what_differs(tmp_path):
    from ncbench.rebuild import diagnose

    db, work, specs = project(tmp_path)
    healthy = diagnose(db, work)
    assert healthy.problems == [] and healthy.dirs == 4
    extra = write_run(work, spec(7))                       # a dir the database does not have
    (run_dir_of(work, specs[1].run_id) / "events.jsonl").unlink()
    import shutil

    shutil.rmtree(run_dir_of(work, specs[0].run_id))      # a stored, done run without its dir
    EventLog(run_dir_of(work, specs[2].run_id)).end("interrupted")  # the dir says interrupted
    (runs_root(work) / "junk").mkdir()                      # no spec.json
    d = diagnose(db, work)
    assert d.only_in_dirs == [extra.name]
    assert d.dir_missing == [specs[0].run_id]
    assert d.mismatched == {specs[1].run_id: ("done", "queued"),
                            specs[2].run_id: ("failed", "interrupted")}
    assert d.unusable == {"junk": "no spec.json"}
    out = cli("doctor", "--db", str(db), "--workdir", str(work), cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert extra.name in out.stdout and "run directory is missing" in out.stdout
    assert "--rebuild" in out.stdout
    ok = cli("doctor", "--db", str(tmp_path / "x.duckdb"), "--workdir", str(tmp_path / "none"),
             cwd=tmp_path)
    assert ok.returncode == 0 and "no problems found" in ok.stdout, ok.stdout + ok.stderr


@pytest.mark.parametrize("how", ["truncated", "garbage-head", "healthy"])
def test_doctor_rebuild_restores_every_run_dir_and_keeps_the_old_file(tmp_path, how):
    db, work, specs = project(tmp_path)
    expected = table(db, "SELECT run_id, status, experiment FROM runs ORDER BY run_id")
    metrics = table(db, "SELECT * FROM metrics ORDER BY ALL")
    queued = spec(9)  # registered, never started: no run directory (kept only from a readable file)
    Store(db).register_runs([queued])
    (runs_root(work) / "junk").mkdir()
    damage(db, how)
    old = db.read_bytes()
    out = cli("doctor", "--rebuild", "--db", str(db), "--workdir", str(work), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 runs restored" in out.stdout and "junk: no spec.json" in out.stdout
    kept = sorted(tmp_path.glob("ncbench.duckdb.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == old
    rows = query(db, "SELECT run_id, status, experiment FROM runs WHERE run_id != ? ORDER BY run_id",
                 [queued.run_id])
    assert rows == expected  # the `gone` experiment's run too: no config is needed
    assert query(db, "SELECT * FROM metrics ORDER BY ALL") == metrics
    carried = query(db, "SELECT status FROM runs WHERE run_id = ?", [queued.run_id])
    assert carried == ([("queued",)] if how == "healthy" else [])
    assert not list(tmp_path.glob("*.rebuild-*"))
    assert cli("doctor", "--db", str(db), "--workdir", str(work), cwd=tmp_path).returncode == 1  # junk


def test_rebuild_carries_done_runs_without_a_dir(tmp_path):
    import shutil

    from ncbench.rebuild import rebuild

    db, work, specs = project(tmp_path)
    before = table(db, f"SELECT * FROM metrics WHERE run_id = '{specs[0].run_id}' ORDER BY ALL")
    shutil.rmtree(run_dir_of(work, specs[0].run_id))
    rep = rebuild(db, work)
    assert rep.carried == [specs[0].run_id] and specs[0].run_id not in rep.restored
    assert query(db, "SELECT status FROM runs WHERE run_id = ?", [specs[0].run_id]) == [("done",)]
    assert query(db, f"SELECT * FROM metrics WHERE run_id = '{specs[0].run_id}' ORDER BY ALL") == before


# -- item 5: "done" is what the store says too; --rerun --------------------------------------------

def test_plan_skips_a_stored_done_run_without_its_dir(tmp_path):
    import shutil

    from ncbench.grid import MISSING_DIR_NOTE, plan_runs

    db, work, specs = project(tmp_path)
    shutil.rmtree(run_dir_of(work, specs[0].run_id))
    stored = dict(query(db, "SELECT run_id, status FROM runs"))
    plan = plan_runs(specs[:3], work, stored=stored, mark_lost=False)
    assert plan.skipped == {specs[0].run_id: MISSING_DIR_NOTE, specs[1].run_id: "done"}
    assert [s.run_id for s in plan.todo] == [specs[2].run_id]  # failed: resumed
    again = plan_runs(specs[:3], work, stored=stored, mark_lost=False, rerun=True)
    assert again.rerun == {specs[0].run_id: "done", specs[1].run_id: "done",
                           specs[2].run_id: "failed"}
    assert again.skipped == {} and len(again.todo) == 3


def test_delete_runs_removes_a_run_whole(tmp_path):
    from ncbench.grid import delete_runs

    db, work, specs = project(tmp_path)
    delete_runs(Store(db), work, specs[:2])
    for s in specs[:2]:
        assert not run_dir_of(work, s.run_id).exists()
        assert query(db, "SELECT status FROM runs WHERE run_id = ?", [s.run_id]) == [("queued",)]
        assert query(db, "SELECT count(*) FROM metrics WHERE run_id = ?", [s.run_id]) == [(0,)]
    assert query(db, "SELECT count(*) FROM metrics WHERE run_id = ?", [specs[2].run_id]) != [(0,)]
    assert list((work / "trash").iterdir()) == []


@pytest.mark.slow
def test_done_run_without_dir_is_not_retrained_unless_rerun(tmp_path):
    import shutil

    write_config(tmp_path, experiment("demo", losses=("ce",), epochs=2))
    first = ncbench("run", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    db = tmp_path / "ncbench.duckdb"
    (run_id,) = [r for (r,) in query(db, "SELECT run_id FROM runs")]
    metrics = query(db, "SELECT * FROM metrics ORDER BY ALL")
    shutil.rmtree(run_dir_of(tmp_path / ".ncbench", run_id))
    again = ncbench("run", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "run dir missing for a done run" in again.stdout + again.stderr
    assert not run_dir_of(tmp_path / ".ncbench", run_id).exists()
    assert query(db, "SELECT * FROM metrics ORDER BY ALL") == metrics
    dry = ncbench("run", "--dry-run", "--rerun", cwd=tmp_path)
    assert "rerun (was done" in dry.stdout and "1 of them rerun from scratch" in dry.stdout, dry.stdout
    rerun = ncbench("run", "--rerun", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "--rerun: 1 run" in rerun.stdout + rerun.stderr
    assert run_dir_of(tmp_path / ".ncbench", run_id).is_dir()
    assert query(db, "SELECT status, attempt FROM runs") == [("done", 1)]
    # deterministic training: trained again from scratch, the same numbers
    same = query(db, "SELECT run_id, epoch, name, value FROM metrics WHERE name NOT LIKE '%seconds' "
                     "ORDER BY ALL")
    assert same == [m for m in metrics if not m[2].endswith("seconds")]


def test_rebuild_refuses_a_workdir_without_run_dirs(tmp_path):
    db, work, specs = project(tmp_path)
    before = db.read_bytes()
    out = cli("doctor", "--rebuild", "--db", str(db), "--workdir", str(tmp_path / "typo"),
              cwd=tmp_path)
    assert out.returncode == 2 and "--workdir: no run directories" in out.stderr, out.stderr
    assert db.read_bytes() == before and not list(tmp_path.glob("*.corrupt-*"))
