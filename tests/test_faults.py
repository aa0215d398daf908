"""Faults with real processes: a worker SIGKILLed, the manager SIGKILLed, Ctrl-C (SIGINT) —
then a rerun resumes from the checkpoints and no (run_id, epoch, name) is logged twice."""

from __future__ import annotations

import signal
import time

import pytest
from _runkit import (
    assert_no_duplicate_evals, experiment, has_checkpoint, heartbeat, kill, ncbench, of_type,
    pid_alive, query, run_dirs, spec_of, start, wait_for, write_config,
)

pytestmark = pytest.mark.slow

# A run that lasts long enough to be hit: 5 batches per epoch sleeping 20 ms each in the loss
# (≈ 0.1 s per epoch, no CPU burnt), 40 epochs, a checkpoint every 2.
SLOW = 'loss_params = { "_runkit:slow_ce" = { delay = 0.02 } }'
VICTIM = experiment("victim", losses=("_runkit:slow_ce",), epochs=40, eval_every=2, extra=SLOW)
QUICK = experiment("quick", losses=("ce",), epochs=2, eval_every=1)


def checkpointed_and_running(run_dir):
    """The run has a checkpoint, an eval logged, and a live worker (pid from its heartbeat)."""
    beat = heartbeat(run_dir)
    if not (has_checkpoint(run_dir) and of_type(run_dir, "eval") and beat and beat.get("phase") == "train"):
        return None
    return beat["pid"] if pid_alive(beat["pid"]) and not of_type(run_dir, "end") else None


def dirs_by_experiment(workdir):
    out = {}
    for d in run_dirs(workdir):
        if spec_of(d):
            out.setdefault(spec_of(d)["experiment"], []).append(d)
    return out


def check_resumed(run_dir, from_at_least=1):
    starts = of_type(run_dir, "start")
    assert len(starts) >= 2, starts
    resumed = starts[-1]["resumed_from_epoch"]
    assert resumed is not None and resumed >= from_at_least, starts
    assert of_type(run_dir, "end")[-1]["status"] == "done"
    assert_no_duplicate_evals(run_dir)


def no_duplicate_metrics(db):
    dup = query(db, "SELECT run_id, epoch, name, count(*) FROM metrics GROUP BY ALL HAVING count(*) > 1")
    assert dup == []


def test_sigkill_worker_fails_run_others_finish_rerun_resumes(tmp_path):
    cfg = write_config(tmp_path, VICTIM, QUICK)
    db, workdir = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    manager = start("run", "victim", "quick", "--config", str(cfg), "--workers", "2", cwd=tmp_path)
    try:
        victim = wait_for(lambda: dirs_by_experiment(workdir).get("victim"), what="victim run dir", proc=manager)[0]
        pid = wait_for(lambda: checkpointed_and_running(victim), what="victim checkpoint", proc=manager)
        kill(pid, signal.SIGKILL)
        assert manager.wait(timeout=120) == 1  # a run failed
    finally:
        kill(manager)
    (status, error), = query(db, "SELECT status, error FROM runs WHERE experiment = 'victim'")
    assert status == "failed" and "killed by SIGKILL" in error
    assert query(db, "SELECT status FROM runs WHERE experiment = 'quick'") == [("done",)]
    ckpt_epoch = max(e["epoch"] for e in of_type(victim, "eval"))

    out = ncbench("run", "victim", "quick", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    check_resumed(victim, from_at_least=2)
    assert of_type(victim, "start")[-1]["resumed_from_epoch"] <= ckpt_epoch
    assert of_type(victim, "start")[-1]["attempt"] == 2
    assert query(db, "SELECT status, attempt, last_epoch FROM runs WHERE experiment = 'victim'") == [("done", 2, 40)]
    assert query(db, "SELECT count(DISTINCT epoch) FROM metrics m JOIN runs r USING (run_id) "
                     "WHERE r.experiment = 'victim'") == [(21,)]  # epoch 0 + 20 evaluations
    no_duplicate_metrics(db)


def test_retries_requeue_a_failed_run(tmp_path):
    marker = tmp_path / "failed-once"
    cfg = write_config(tmp_path, experiment("flaky", losses=("_runkit:fail_once",), epochs=2,
                                            extra=f'loss_params = {{ marker = "{marker}" }}'))
    out = ncbench("run", "--config", str(cfg), "--retries", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert marker.exists()
    (d,) = run_dirs(tmp_path / ".ncbench")
    ends = of_type(d, "end")
    assert [e["status"] for e in ends] == ["failed", "done"]
    assert "deliberate failure" in ends[0]["error"]
    assert query(tmp_path / "ncbench.duckdb", "SELECT status, attempt FROM runs") == [("done", 2)]


def test_a_run_retried_while_the_grid_runs_starts_at_the_next_free_slot(tmp_path):
    """The TUI's retry (`retry_run`: status back to `queued`) of a run that failed earlier in the
    same `ncbench run` (one slot; runs: fail_once, slow, slow2, slow3), done while `slow` trains:
    the manager reruns it as soon as a slot frees — after `slow2`, already on standby, and before
    `slow3` — and exits 0."""
    from ncbench.tui.control import retry_run

    marker = tmp_path / "failed-once"
    slow = "{ delay = 0.02 }"
    params = (f'loss_params = {{ "_runkit:fail_once" = {{ marker = "{marker}" }}, '
              f'"_runkit:slow_ce" = {slow}, "_runkit:slow_ce2" = {slow}, "_runkit:slow_ce3" = {slow} }}')
    losses = ("_runkit:fail_once", "_runkit:slow_ce", "_runkit:slow_ce2", "_runkit:slow_ce3")
    cfg = write_config(tmp_path, experiment("flaky", losses=losses, epochs=40, eval_every=2,
                                            extra=params))
    db, workdir = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    manager = start("run", "--config", str(cfg), "--workers", "1", cwd=tmp_path)

    def run_dir(loss):
        found = [d for d in run_dirs(workdir) if spec_of(d).get("loss") == loss]
        return found[0] if found else None

    flaky = wait_for(lambda: (d := run_dir("_runkit:fail_once")) and of_type(d, "end") and d,
                     what="the first run to fail", proc=manager)
    assert of_type(flaky, "end")[-1]["status"] == "failed"
    first_slow = wait_for(lambda: run_dir("_runkit:slow_ce"), what="the slow run's dir", proc=manager)
    wait_for(lambda: checkpointed_and_running(first_slow), what="the slow run to train", proc=manager)
    wait_for(lambda: query(db, "SELECT status FROM runs WHERE run_id = ?", [flaky.name]) == [("failed",)],
             what="the failure in the database", proc=manager)
    assert "queued again" in retry_run(db, flaky.name)
    manager.wait(timeout=240)
    out = manager.log_path.read_text()
    assert manager.returncode == 0, out
    assert "was queued again (a retry): it starts at the next free slot" in out
    assert [e["status"] for e in of_type(flaky, "end")] == ["failed", "done"]
    started = {loss: [e["time"] for e in of_type(run_dir(loss), "start")] for loss in losses}
    assert len(started["_runkit:fail_once"]) == 2
    assert started["_runkit:slow_ce2"][0] < started["_runkit:fail_once"][1] < started["_runkit:slow_ce3"][0]
    assert sorted(s for (s,) in query(db, "SELECT status FROM runs")) == ["done"] * 4
    assert query(db, "SELECT attempt FROM runs WHERE run_id = ?", [flaky.name]) == [(2,)]
    assert_no_duplicate_evals(flaky)


def test_sigkill_manager_workers_die_rerun_resumes(tmp_path):
    cfg = write_config(tmp_path, experiment("victim", losses=("_runkit:slow_ce", "ce"), epochs=40,
                                            eval_every=2, extra=SLOW))
    db, workdir = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    manager = start("run", "--config", str(cfg), "--workers", "2", cwd=tmp_path)
    # The plain-ce run finishes fast; the slow one is hit mid-training.
    slow = wait_for(lambda: [d for d in run_dirs(workdir) if "slow_ce" in spec_of(d).get("loss", "")],
                    what="run dirs", proc=manager)[0]
    pid = wait_for(lambda: checkpointed_and_running(slow), what="checkpoint", proc=manager)
    kill(manager, signal.SIGKILL)
    manager.wait(timeout=30)
    wait_for(lambda: not pid_alive(pid), timeout=30, what="the worker to die with its manager")
    # The worker got SIGTERM (PR_SET_PDEATHSIG) and ended its attempt as interrupted.
    assert of_type(slow, "end")[-1]["status"] == "interrupted"
    assert query(db, "SELECT status FROM runs WHERE run_id = ?", [slow.name]) == [("running",)]

    out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    check_resumed(slow, from_at_least=2)
    assert [s for (s,) in query(db, "SELECT status FROM runs")] == ["done", "done"]
    no_duplicate_metrics(db)


def test_sigint_interrupts_then_rerun_resumes_readers_work_throughout(tmp_path):
    # 80 epochs (≈ 8 s): long enough to call the readers before Ctrl-C
    cfg = write_config(tmp_path, experiment("victim", losses=("_runkit:slow_ce",), epochs=80,
                                            eval_every=2, extra=SLOW))
    db, workdir = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    manager = start("run", "--config", str(cfg), cwd=tmp_path)
    try:
        (victim,) = wait_for(lambda: run_dirs(workdir), what="run dir", proc=manager)
        wait_for(lambda: checkpointed_and_running(victim), what="checkpoint", proc=manager)
        # Readers while the manager writes: no lock error reaches them.
        st = ncbench("status", "--config", str(cfg), cwd=tmp_path)
        assert st.returncode == 0, st.stderr
        assert "running" in st.stdout
        q = ncbench("sql", "SELECT count(*) AS n FROM metrics", "--db", str(db), "--format", "csv",
                    cwd=tmp_path)
        assert q.returncode == 0, q.stderr
        assert int(q.stdout.strip().splitlines()[-1]) > 0
        manager.send_signal(signal.SIGINT)
        assert manager.wait(timeout=60) == 130
    finally:
        kill(manager)
    assert query(db, "SELECT status FROM runs") == [("interrupted",)]
    assert of_type(victim, "end")[-1]["status"] == "interrupted"

    out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    check_resumed(victim, from_at_least=2)
    assert query(db, "SELECT status FROM runs") == [("done",)]
    no_duplicate_metrics(db)


def test_second_sigint_kills_workers_at_once_runs_stay_resumable(tmp_path):
    # one batch per epoch that takes 1 s: a graceful stop would wait for it, a kill does not
    cfg = write_config(tmp_path, experiment(
        "victim", losses=("_runkit:slow_ce",), epochs=30, eval_every=1, batch_size=256,
        extra='loss_params = { "_runkit:slow_ce" = { delay = 1.0 } }'))
    db, workdir = tmp_path / "ncbench.duckdb", tmp_path / ".ncbench"
    manager = start("run", "--config", str(cfg), cwd=tmp_path)
    try:
        (victim,) = wait_for(lambda: run_dirs(workdir), what="run dir", proc=manager)
        pid = wait_for(lambda: checkpointed_and_running(victim), what="checkpoint", proc=manager)
        manager.send_signal(signal.SIGINT)
        time.sleep(0.3)  # two SIGINTs sent at once can merge into one
        manager.send_signal(signal.SIGINT)
        assert manager.wait(timeout=60) == 130
    finally:
        kill(manager)
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the worker to be gone")
    assert query(db, "SELECT status FROM runs") == [("interrupted",)]
    (end,) = of_type(victim, "end")
    assert end["status"] == "interrupted" and end.get("by") == "executor"  # written by the manager
    assert "SIGKILL" in end["error"]
    assert has_checkpoint(victim)
