"""`ncbench sync` writes the run directories' (and Slurm jobs') state into the database;
`ncbench status` only reads it — even a database file nobody may write, and even when run
directories hold news the database has not seen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _runkit import NOBODY as _NOBODY
from _runkit import env, experiment, ncbench, query, write_config
from _runkit import unprivileged as _unprivileged

from ncbench.errors import StoreError
from ncbench.events import EventLog, write_spec
from ncbench.executors import slurm as sl
from ncbench.lifecycle import DONE, QUEUED, end_attempt
from ncbench.rundir import SLURM_RECORD, run_dir_of, slurm_dir
from ncbench.runs import RunSpec
from ncbench.store import Store


def test_sync_ingests_a_finished_run_of_a_real_workdir(tmp_path):
    """A real `ncbench run` writes its run directory; `ncbench sync` into a new database
    registers the run from it, with its status, attempt and every evaluation."""
    cfg = write_config(tmp_path, experiment("tiny", losses=("ce",), epochs=2))
    out = ncbench("run", "--config", str(cfg), "--db", str(tmp_path / "first.duckdb"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    db = tmp_path / "ncbench.duckdb"
    assert not db.exists()

    out = ncbench("sync", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    ((run_id, status, attempt),) = query(db, "SELECT run_id, status, attempt FROM runs")
    assert (status, attempt) == (DONE, 1)
    assert f"{run_id}  not stored → done" in out.stdout and "1 run directory" in out.stdout
    metrics = "SELECT epoch, name, value FROM metrics ORDER BY ALL"
    assert query(db, metrics) == query(tmp_path / "first.duckdb", metrics) != []

    again = ncbench("sync", "--config", str(cfg), cwd=tmp_path)
    assert again.returncode == 0 and "no run changed status" in again.stdout, again.stdout
    assert query(db, "SELECT count(*) FROM runs") == [(1,)]


def test_sync_of_an_empty_workdir_creates_nothing(tmp_path):
    out = ncbench("sync", "--db", str(tmp_path / "x.duckdb"), "--workdir", str(tmp_path / "w"),
                  cwd=tmp_path)
    assert out.returncode == 0 and "nothing to sync" in out.stdout, out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []


def _slurm_workdir(root: Path) -> tuple[Path, Path, RunSpec]:
    """A database that holds a Slurm run as `queued` while its run directory says it is done
    (what a detached grid leaves): the news `ncbench sync` picks up and `status` must not."""
    db, work = root / "ncbench.duckdb", root / ".ncbench"
    spec = RunSpec(experiment="s", dataset="gaussian", model="mlp", loss="ce", width=1.0,
                   epochs=2, seed=0)
    store = Store(db)
    store.register_runs([spec])
    store.set_status(spec.run_id, QUEUED, executor="slurm", slurm_job_id="4242_0")
    d = run_dir_of(work, spec.run_id)
    write_spec(d, spec)
    slurm_dir(work).mkdir(parents=True)
    (d / SLURM_RECORD).write_text(json.dumps({"job_id": "4242_0", "ends_before": 0,
                                              "submitted_unix": 0.0}))
    log = EventLog(d)
    log.start(1, host="node1", device="cpu", pid=1)
    log.eval(2, {"test_acc": 0.75, "nc1": 0.5})
    end_attempt(log, DONE)
    return db, work, spec


def _no_slurm_env() -> dict[str, str]:
    """The CLI's environment with only this interpreter's folder on PATH: no squeue/sacct (a
    local test cluster may be running), so the Slurm side knows nothing."""
    return {"PATH": str(Path(sys.executable).parent)}


def test_status_never_writes_sync_does(tmp_path):
    db, work, spec = _slurm_workdir(tmp_path)
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    out = ncbench("status", "--db", str(db), "--json", cwd=tmp_path, **_no_slurm_env())
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["status"] == QUEUED and row["slurm_job_id"] == "4242_0"
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before  # read, never written

    out = ncbench("sync", "--db", str(db), "--workdir", str(work), cwd=tmp_path, **_no_slurm_env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{spec.run_id}  queued → done" in out.stdout
    assert query(db, "SELECT status, executor, slurm_job_id, last_epoch FROM runs") == \
        [(DONE, "slurm", "4242_0", 2)]


def test_refresh_reports_a_real_error_instead_of_swallowing_it(tmp_path):
    """A broken database is an error of `ncbench sync`, shown once, not silence."""
    db, work, _ = _slurm_workdir(tmp_path)
    db.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        sl.refresh(db, work)
    out = ncbench("sync", "--db", str(db), "--workdir", str(work), cwd=tmp_path, **_no_slurm_env())
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


# -- status on a database file the user cannot write --------------------------------------------

# the helpers that drop root's privileges live in _runkit (also used by test_paths)


def test_status_reads_a_database_the_user_cannot_write(tmp_path):
    db, _, spec = _slurm_workdir(tmp_path)
    safe = Path(tempfile.mkdtemp(prefix="ncbench-ro-"))  # outside pytest's 0700 tmp folders
    try:
        ro_db = safe / "ncbench.duckdb"
        shutil.copy2(db, ro_db)
        os.chmod(ro_db, 0o444)
        preexec, how = _unprivileged(safe)
        if how == "root-without-capabilities":  # root is then "others" for these two
            os.chown(ro_db, _NOBODY, _NOBODY)
            os.chown(safe, _NOBODY, _NOBODY)
            os.chmod(safe, 0o755)
        else:  # nobody is "others" (0755 root's folder), a user the owner: no write bit at all
            os.chmod(safe, 0o755 if how == "nobody" else 0o555)
        before = (ro_db.read_bytes(), ro_db.stat().st_mtime_ns, sorted(os.listdir(safe)))

        # the protection holds for such a process: it can neither write the file nor add one
        probe = ("import sys\n"
                 "try:\n    open(sys.argv[1], 'r+b')\nexcept PermissionError:\n    pass\n"
                 "else:\n    sys.exit('the database is writable')\n"
                 "try:\n    open(sys.argv[2], 'w')\nexcept PermissionError:\n    pass\n"
                 "else:\n    sys.exit('the folder is writable')\n")
        res = subprocess.run([sys.executable, "-c", probe, str(ro_db), str(safe / "x.wal")],
                             preexec_fn=preexec, capture_output=True, text=True, cwd=safe)
        assert res.returncode == 0, f"{how}: {res.stderr}"

        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "ncbench", "status", "--db", str(ro_db),
                              "--json"], preexec_fn=preexec, capture_output=True, text=True,
                             cwd=safe, env={**env(), "PYTHONDONTWRITEBYTECODE": "1"}, timeout=120)
        assert out.returncode == 0, f"{how}: {out.stderr}"
        (row,) = json.loads(out.stdout)
        assert (row["run_id"], row["status"]) == (spec.run_id, QUEUED)
        table = subprocess.run([sys.executable, "-m", "ncbench", "status", "--db", str(ro_db)],
                               preexec_fn=preexec, capture_output=True, text=True, cwd=safe,
                               env={**env(), "PYTHONDONTWRITEBYTECODE": "1"}, timeout=120)
        assert table.returncode == 0 and spec.run_id in table.stdout, table.stderr
        assert time.monotonic() - t0 < 120
        assert (ro_db.read_bytes(), ro_db.stat().st_mtime_ns, sorted(os.listdir(safe))) == before
    finally:
        os.chmod(safe, 0o755)
        shutil.rmtree(safe, ignore_errors=True)
