"""The Slurm executor: options, state mapping and verdicts (everywhere), and real Slurm runs
(a single-node cluster with 4 fake GPUs started by scripts/slurm-local.sh; marked `slurm`).

The cluster fixture starts the cluster if it is not running (installing Debian's packages the
first time, ~20 s; starting ~4 s) and stops it at the end of the session if it started it. It skips only where
Slurm cannot be started at all (not root, no apt, no network to the Debian mirrors, or a Slurm
config of someone else's on this machine) and says which.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

import _runkit as rk
from ncbench.cli.cmd_status import load_status
from ncbench.errors import ConfigError, SlurmUnavailableError, UsageError
from ncbench.events import EventLog
from ncbench.executors import slurm as sl
from ncbench.grid import executor_options, run_grid, sync_workdir
from ncbench.rundir import WORKER_LOG, run_dir_of

ROOT = Path(__file__).resolve().parents[1]

# One local cluster per test session: under pytest-xdist every test of this file runs in the
# same worker (`--dist loadgroup`), which starts the cluster and stops it at its end.
pytestmark = pytest.mark.xdist_group("slurm")
SCRIPT = ROOT / "scripts" / "slurm-local.sh"


# ----------------------------------------------------------------------------------------------
# without Slurm: options, states, verdicts
# ----------------------------------------------------------------------------------------------


def test_map_state_covers_queue_run_and_every_ending():
    assert sl.map_state("PENDING") == "queued"
    assert sl.map_state("REQUEUED") == "queued"
    assert sl.map_state("RUNNING") == "running"
    assert sl.map_state("COMPLETING") == "running"
    assert sl.map_state("COMPLETED") == "done"
    for s in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"):
        assert sl.map_state(s) == "failed", s
    for s in ("CANCELLED by 0", "TIMEOUT", "PREEMPTED", "DEADLINE"):
        assert sl.map_state(s) == "interrupted", s
    assert sl.map_state("") is None and sl.map_state("NO_SUCH_STATE") is None


def test_options_unknown_key_names_file_and_closest(tmp_path):
    from ncbench.config import load_config

    cfg = rk.write_config(tmp_path, rk.experiment("e"), '[executor.slurm]\npartiton = "gpu"\n')
    with pytest.raises(ConfigError) as info:
        executor_options(load_config(cfg), "slurm", {})
    msg = str(info.value)
    assert "experiments.toml" in msg and "executor.slurm.partiton" in msg and "'partition'" in msg


@pytest.mark.parametrize("table, key", [
    ({"gpus_per_run": -1}, "gpus_per_run"), ({"time_min": 0}, "time_min"),
    ({"mem_gb": "4G"}, "mem_gb"), ({"array": "yes"}, "array"), ({"extra": "x"}, "extra"),
    ({"partition": ""}, "partition"), ({"time_min": 2, "signal_delay_s": 120}, "signal_delay_s"),
])
def test_options_bad_values_are_config_errors(table, key):
    with pytest.raises(ConfigError) as info:
        sl.check_options(table, "exp.toml")
    assert f"executor.slurm.{key}" in str(info.value) and "exp.toml" in str(info.value)


def test_cli_flags_override_the_table(tmp_path):
    from ncbench.config import load_config

    cfg = rk.write_config(tmp_path, rk.experiment("e"),
                          '[executor.slurm]\npartition = "a"\ngpus_per_run = 2\ntime_min = 30\n')
    cli = {"workers": None, "gpus": None, "partition": "b", "gpus_per_run": None, "time_min": 7,
           "detach": None, "retries": 1}
    opts = executor_options(load_config(cfg), "slurm", cli)
    assert opts == {"partition": "b", "gpus_per_run": 2, "time_min": 7, "retries": 1}
    # a Slurm flag with the local executor is a mistake, said so
    with pytest.raises(UsageError, match="^--partition: a Slurm option"):
        executor_options(load_config(cfg), "local", cli)
    assert sl.slurm_options_from_cli(partition="x", qos=None, detach=False,
                                     workers=3) == {"partition": "x"}


def test_sbatch_parameters_and_signal_delay():
    o = sl.check_options({"partition": "gpu", "gpus_per_run": 1, "cpus_per_run": 4, "mem_gb": 1.5,
                          "time_min": 120, "account": "lab", "qos": "high", "array_parallelism": 3,
                          "extra": {"constraint": "a100", "mail_type": "END"}})
    p = o.sbatch_parameters()
    assert p["partition"] == "gpu" and p["gpus_per_node"] == 1 and p["cpus_per_task"] == 4
    assert p["mem"] == "1536M" and p["time"] == 120 and p["account"] == "lab" and p["qos"] == "high"
    assert p["array_parallelism"] == 3 and p["signal_delay_s"] == 90
    assert p["additional_parameters"] == {"constraint": "a100", "mail-type": "END"}
    assert "gpus_per_node" not in sl.SlurmOptions().sbatch_parameters()
    # submitit's fixed 90 s would fire before a short job starts: at most a quarter of the limit
    assert sl.SlurmOptions(time_min=1).effective_signal_delay() == 15
    assert sl.SlurmOptions(time_min=1, signal_delay_s=5).effective_signal_delay() == 5


def test_job_env_slot_from_slurm_gres():
    job = sl.SlurmRunJob("/x")
    env = job.worker_env({"SLURM_JOB_GPUS": "2", "CUDA_VISIBLE_DEVICES": "2", "SLURM_CPUS_PER_TASK": "3",
                          "NCBENCH_ATTEMPT": "7"})
    assert env["NCBENCH_SLOT"] == "gpu2" and env["NCBENCH_EXECUTOR"] == "slurm"
    assert env["NCBENCH_THREADS"] == "3" and "NCBENCH_ATTEMPT" not in env
    env = job.worker_env({"CUDA_VISIBLE_DEVICES": "0,1"})  # inherited, no GPU allocated
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["NCBENCH_SLOT"] == "cpu"


def test_job_pickles_only_its_run_dir_and_checkpoint_resubmits_itself():
    job = sl.SlurmRunJob("/some/run", stop_timeout=5)
    job._proc = object()  # a live Popen is never pickled
    back = pickle.loads(pickle.dumps(job))
    assert back.run_dir == "/some/run" and back._proc is None
    job._proc = None
    delayed = job.checkpoint()
    assert isinstance(delayed.function, sl.SlurmRunJob) and delayed.function.run_dir == "/some/run"


def _run_dir(tmp_path: Path, *events: tuple) -> Path:
    d = run_dir_of(tmp_path, "r1")
    log = EventLog(d, "r1")
    for kind, kw in events:
        if kind == "start":
            log.start(kw.get("attempt", 1), host="n1", device="cpu", pid=1, slot=kw.get("slot"))
        elif kind == "eval":
            log.eval(kw["epoch"], {"train_acc": 0.5})
        elif kind == "end":
            log.end(kw["status"], error=kw.get("error"))
    return d


def J(state, reason="", exit_code="", source="squeue"):
    return sl.JobState("5_1", state, reason, exit_code, source)


REC = {"job_id": "5_1", "ends_before": 0, "submitted_unix": 0.0}


def test_decide_while_the_job_lives(tmp_path):
    d = _run_dir(tmp_path)
    v = sl.decide(d, REC, J("PENDING", "Resources"))
    assert (v.status, v.final, v.mark) == ("queued", False, None)
    v = sl.decide(d, REC, J("RUNNING"))  # the worker has not written its start yet
    assert (v.status, v.final) == ("running", False)
    d = _run_dir(tmp_path, ("start", {"slot": "gpu3"}), ("eval", {"epoch": 1}))
    v = sl.decide(d, REC, J("RUNNING"))
    assert (v.status, v.final, v.slot, v.attempt) == ("running", False, "gpu3", 1)


def test_decide_requeued_job_is_queued_again(tmp_path):
    d = _run_dir(tmp_path, ("start", {"slot": "gpu0"}), ("eval", {"epoch": 1}),
                 ("end", {"status": "interrupted"}))
    v = sl.decide(d, REC, J("PENDING", "BeginTime"))
    assert (v.status, v.final, v.mark) == ("queued", False, None)


def test_decide_over_the_events_win(tmp_path):
    d = _run_dir(tmp_path, ("start", {}), ("end", {"status": "diverged"}))
    v = sl.decide(d, REC, J("COMPLETED"))
    assert (v.status, v.final, v.mark) == ("diverged", True, None)
    # only events since submission count: an old attempt's end is not this job's
    v = sl.decide(d, {**REC, "ends_before": 1}, J("PENDING"))
    assert (v.status, v.final) == ("queued", False)


@pytest.mark.parametrize("state, status, words", [
    ("OUT_OF_MEMORY", "failed", "OUT_OF_MEMORY"), ("NODE_FAIL", "failed", "NODE_FAIL"),
    ("FAILED", "failed", "exit code 1:0"), ("CANCELLED", "interrupted", "CANCELLED"),
    ("TIMEOUT", "interrupted", "TIMEOUT"), ("COMPLETED", "failed", "no end event"),
])
def test_decide_job_over_without_end_event(tmp_path, state, status, words):
    d = _run_dir(tmp_path, ("start", {}))
    v = sl.decide(d, REC, J(state, exit_code="1:0" if state == "FAILED" else "0:0", source="sacct"))
    assert (v.status, v.final) == (status, True)
    assert v.mark is not None and v.mark[0] == status and words in v.mark[1] and "5_1" in v.mark[1]


def test_decide_job_unknown_to_slurm(tmp_path):
    d = _run_dir(tmp_path)
    recent = {**REC, "submitted_unix": time.time()}
    assert sl.decide(d, recent, None).final is False  # sacct lags behind a fresh job
    v = sl.decide(d, REC, None)  # submitted long ago, known nowhere
    assert (v.status, v.final) == ("failed", True) and "unknown" in v.mark[1]


def test_refresh_is_a_no_op_without_slurm_submissions(tmp_path):
    t0 = time.monotonic()
    assert sl.refresh(tmp_path / "none.duckdb", tmp_path / ".ncbench") == 0
    assert time.monotonic() - t0 < 0.5


def test_submit_without_sbatch_is_a_clear_error(tmp_path, monkeypatch):
    from ncbench.config import expand, load_config

    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm client here
    specs = expand(load_config(rk.write_config(tmp_path, rk.experiment("e"))))
    with pytest.raises(SlurmUnavailableError, match="sbatch"):
        sl.SlurmExecutor().submit(specs, tmp_path / ".ncbench")


# ----------------------------------------------------------------------------------------------
# with a real Slurm cluster
# ----------------------------------------------------------------------------------------------

_SUBMITTED: list[str] = []  # job ids the tests made, cancelled at the end if still alive


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node Slurm (8 CPUs, 4 fake GPUs) with accounting."""
    if sys.platform != "linux" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("Slurm tests need root on Linux to start a local cluster "
                    "(scripts/slurm-local.sh start)")
    up = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    started = False
    if up.returncode != 0:
        res = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
        if res.returncode in (3, 4):
            pytest.skip(f"Slurm cannot be started here: {res.stderr.strip().splitlines()[-1]}")
        if res.returncode != 0:
            pytest.fail(f"scripts/slurm-local.sh start failed (exit {res.returncode}):\n{res.stderr}")
        started = True
    yield
    alive = [j for j, s in sl.query_jobs(_SUBMITTED).items() if s.status in ("queued", "running")]
    if alive:
        subprocess.run(["scancel", *alive], capture_output=True, timeout=30)
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)


def _db_runs(db: Path) -> dict[str, dict]:
    from ncbench.store import query_dicts, read_connection

    with read_connection(db) as con:
        return {r["run_id"]: r for r in query_dicts(con, "SELECT * FROM runs")}


def _remember_jobs(db: Path) -> list[str]:
    ids = [r["slurm_job_id"] for r in _db_runs(db).values() if r["slurm_job_id"]]
    _SUBMITTED.extend(ids)
    return ids


@pytest.mark.slurm
@pytest.mark.slow
def test_grid_on_slurm_ends_done_with_fake_gpus(slurm_cluster, tmp_path):
    """A grid of 2 runs as one job array, 2 GPUs each: both done in the database with their
    Slurm job ids and metrics, and each job's worker saw the GPUs Slurm's GRES gave it
    (CUDA_VISIBLE_DEVICES, recorded as the slot): two disjoint pairs of the node's 4 GPUs."""
    cfg = rk.write_config(tmp_path, rk.experiment("g", losses=("ce", "mse"), epochs=2))
    res = rk.ncbench("run", "-c", str(cfg), "-e", "slurm", "--slurm-gpus", "2", "--slurm-time", "5",
                     cwd=tmp_path, timeout=300)
    db = tmp_path / "ncbench.duckdb"
    jobs = _remember_jobs(db) if db.exists() else []
    assert res.returncode == 0, res.stdout + res.stderr
    assert "submitted 2 run(s) to Slurm" in res.stdout
    runs = _db_runs(db)
    assert len(runs) == 2 and {r["status"] for r in runs.values()} == {"done"}, runs
    assert len({j.split("_")[0] for j in jobs}) == 1 and len(set(jobs)) == 2  # one array, 2 tasks
    gpus = []
    for rid, r in runs.items():
        assert r["executor"] == "slurm" and r["attempt"] == 1 and r["host"] and r["heartbeat_at"]
        start = rk.of_type(run_dir_of(tmp_path / ".ncbench", rid), "start")[0]
        assert start["executor"] == "slurm"
        assert r["slot"] == f"gpu{start['cuda_visible_devices']}"
        gpus.append(start["cuda_visible_devices"].split(","))
    assert all(len(g) == 2 for g in gpus) and sorted(gpus[0] + gpus[1]) == ["0", "1", "2", "3"]
    n = rk.query(db, "SELECT count(*) FROM epochs WHERE epoch = 2 AND test_acc IS NOT NULL "
                     "AND nc1 IS NOT NULL")[0][0]
    assert n == 2
    states = sl.query_jobs(jobs)
    assert {s.state for s in states.values()} == {"COMPLETED"}, states
    # `ncbench status` shows the job ids
    st = rk.ncbench("status", "-c", str(cfg), cwd=tmp_path)
    assert st.returncode == 0 and all(j in st.stdout for j in jobs), st.stdout


@pytest.mark.slurm
@pytest.mark.slow
def test_detach_requeue_resumes_and_sync_picks_up(slurm_cluster, tmp_path):
    """--detach returns at once with the job queued; SIGUSR2 (what Slurm sends before preemption
    or the time limit) makes the job checkpoint and requeue itself; the requeued job resumes
    from the checkpoint; a later `ncbench sync` alone brings the database to `done`, which
    `ncbench status` shows."""
    exp = rk.experiment("rq", losses=("_runkit:slow_ce",), epochs=8,
                        extra="loss_params = { delay = 0.08 }")
    cfg = rk.write_config(tmp_path, exp)
    wd = tmp_path / ".ncbench"
    t0 = time.monotonic()
    res = rk.ncbench("run", "-c", str(cfg), "-e", "slurm", "--detach", "--slurm-time", "5",
                     cwd=tmp_path, timeout=120)
    db = tmp_path / "ncbench.duckdb"
    (job,) = _remember_jobs(db)
    assert res.returncode == 0, res.stdout + res.stderr
    (run,) = _db_runs(db).values()
    assert run["status"] in ("queued", "running") and run["slurm_job_id"] == job
    run_dir = run_dir_of(wd, run["run_id"])
    assert sl.read_record(run_dir)["job_id"] == job

    rk.wait_for(lambda: any(e["epoch"] >= 2 for e in rk.of_type(run_dir, "eval")), timeout=120,
                what="epoch 2 evaluated in the Slurm job")
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    rk.wait_for(lambda: len(rk.of_type(run_dir, "start")) >= 2, timeout=120,
                what="the requeued job to start again")

    def synced_done():  # what `ncbench sync`, then `ncbench status` do (in-process)
        sync_workdir(db, wd)
        row = load_status(cfg, None, None)[0]
        return row.status == "done" and row

    row = rk.wait_for(synced_done, timeout=120, interval=0.5, what="`ncbench sync` to store done")
    assert row.slurm_job_id == job and row.attempt == 2 and row.last_epoch == 8
    out = json.loads(rk.ncbench("status", "-c", str(cfg), "--json", cwd=tmp_path).stdout)
    assert out[0]["status"] == "done" and out[0]["slurm_job_id"] == job
    starts, ends = rk.of_type(run_dir, "start"), rk.of_type(run_dir, "end")
    assert [e["status"] for e in ends] == ["interrupted", "done"]
    assert starts[0]["resumed_from_epoch"] is None and starts[1]["resumed_from_epoch"] >= 2
    rk.assert_no_duplicate_evals(run_dir)
    epochs = rk.query(db, "SELECT epoch FROM epochs WHERE run_id = ? ORDER BY epoch", [run["run_id"]])
    assert [e for (e,) in epochs] == list(range(0, 9))  # epoch 0 on; none lost, none twice
    assert time.monotonic() - t0 < 200


@pytest.mark.slurm
def test_cancelled_pending_job_ends_interrupted(slurm_cluster, tmp_path):
    """A job cancelled before it starts: `ncbench sync` maps CANCELLED to interrupted, with
    the cause (in-process: `run_grid` with detach, then what `ncbench sync` and `ncbench status`
    do)."""
    cfg = rk.write_config(tmp_path, rk.experiment("c", losses=("ce",)),
                          '[executor.slurm]\nextra = { begin = "now+600" }\n')
    result = run_grid(cfg, executor="slurm", options={"detach": True})
    (job,) = _remember_jobs(result.db_path)
    assert list(result.results.values()) == ["queued"]
    assert sl.query_jobs([job])[job].state == "PENDING"
    sync_workdir(result.db_path, result.workdir)
    (row,) = load_status(cfg, None, None)
    assert row.status == "queued" and row.slurm_job_id == job and row.executor == "slurm"
    subprocess.run(["scancel", job], check=True, timeout=30)

    def synced():
        sync_workdir(result.db_path, result.workdir)
        return [r for r in load_status(cfg, None, None) if r.status != "queued"]

    row = rk.wait_for(synced, timeout=60, interval=0.5, what="the cancelled job to show")[0]
    assert row.status == "interrupted" and "CANCELLED" in row.error and job in row.error

    # Submitting it again with --detach: one new job, and run_grid returns at once (the run is
    # `queued` in the store while its directory still ends `interrupted`: that is no retry).
    t0 = time.monotonic()
    again = run_grid(cfg, executor="slurm", options={"detach": True})
    assert list(again.results.values()) == ["queued"] and not again.interrupted
    (job2,) = _remember_jobs(again.db_path)
    assert job2 != job and time.monotonic() - t0 < 60
    subprocess.run(["scancel", job2], check=True, timeout=30)


@pytest.mark.slurm
@pytest.mark.slow
def test_failed_run_is_failed_then_retried(slurm_cluster, tmp_path, monkeypatch):
    """A run that fails inside its job: the job ends FAILED, the run `failed` with its error;
    with retries=1 it is submitted again (a new job) and ends done at attempt 2."""
    monkeypatch.setenv("PYTHONPATH", rk.env()["PYTHONPATH"])  # the jobs import _runkit
    monkeypatch.setenv("NCBENCH_THREADS", "1")
    marker = tmp_path / "failed-once"
    cfg = rk.write_config(tmp_path, rk.experiment(
        "f", losses=("_runkit:fail_once",), epochs=1,
        extra=f'loss_params = {{ marker = "{marker}" }}'))
    notes = []

    class UI:
        def update(self, views):
            pass

        def note(self, message):
            notes.append(message)

    result = run_grid(cfg, executor="slurm", options={"retries": 1, "poll_interval": 0.5},
                      ui_factory=lambda skipped: UI())
    jobs = _remember_jobs(result.db_path)
    (rid,) = result.results
    assert result.results[rid] == "done" and marker.exists()
    run_dir = run_dir_of(tmp_path / ".ncbench", rid)
    ends = rk.of_type(run_dir, "end")
    assert [e["status"] for e in ends] == ["failed", "done"]
    assert "deliberate failure" in ends[0]["error"]
    assert any("failed; submitting it again" in n for n in notes), notes
    latest = sl.read_record(run_dir)["job_id"]
    (row,) = _db_runs(result.db_path).values()
    assert row["attempt"] == 2 and row["slurm_job_id"] == latest == jobs[0]
    # the first job (its id is in the worker log) ended FAILED for Slurm
    logged = [ln.split()[3] for ln in (run_dir / WORKER_LOG).read_text().splitlines()
              if ln.startswith("--- Slurm job")]
    assert len(logged) == 2 and logged[1] == latest
    _SUBMITTED.extend(logged)
    assert sl.query_jobs([logged[0]])[logged[0]].state == "FAILED"


@pytest.mark.slurm
@pytest.mark.slow
def test_a_run_retried_during_a_slurm_grid_is_submitted_again_before_it_ends(
        slurm_cluster, tmp_path, monkeypatch):
    """The TUI's retry (`retry_run`) of a run whose job failed, while another job of the grid
    still runs: `run_grid` submits it again once the executor is done, and it ends done."""
    import threading

    from ncbench.tui.control import retry_run

    monkeypatch.setenv("PYTHONPATH", rk.env()["PYTHONPATH"])  # the jobs import _runkit
    monkeypatch.setenv("NCBENCH_THREADS", "1")
    marker = tmp_path / "failed-once"
    params = (f'loss_params = {{ "_runkit:fail_once" = {{ marker = "{marker}" }}, '
              f'"_runkit:slow_ce" = {{ delay = 0.02 }} }}')
    cfg = rk.write_config(tmp_path, rk.experiment(
        "r", losses=("_runkit:fail_once", "_runkit:slow_ce"), epochs=60, eval_every=5, extra=params))
    db, workdir = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    notes: list[str] = []

    class UI:
        def update(self, views):
            pass

        def note(self, message):
            notes.append(message)

    out: dict = {}
    grid = threading.Thread(target=lambda: out.update(result=run_grid(
        cfg, executor="slurm", options={"poll_interval": 0.5}, ui_factory=lambda skipped: UI())))
    grid.start()
    try:
        flaky = rk.wait_for(lambda: [d for d in rk.run_dirs(workdir)
                                     if "fail_once" in rk.spec_of(d).get("loss", "")
                                     and rk.of_type(d, "end")], timeout=120, what="the failed run")[0]
        rk.wait_for(lambda: rk.query(db, "SELECT status FROM runs WHERE run_id = ?", [flaky.name])
                    == [("failed",)], timeout=60, what="the failure in the database")
        slow = [d for d in rk.run_dirs(workdir) if "slow_ce" in rk.spec_of(d).get("loss", "")][0]
        assert not rk.of_type(slow, "end"), "the slow run ended before the retry: make it slower"
        assert "queued again" in retry_run(db, flaky.name)
    finally:
        grid.join(timeout=300)
    assert not grid.is_alive()
    result = out["result"]
    _remember_jobs(result.db_path)
    assert sorted(result.results.values()) == ["done", "done"] and not result.failed
    assert any("was queued again while the grid ran" in n for n in notes), notes
    assert [e["status"] for e in rk.of_type(flaky, "end")] == ["failed", "done"]
    row = _db_runs(db)[flaky.name]
    assert row["status"] == "done" and row["attempt"] == 2

