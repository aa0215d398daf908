"""The TUI's control policy (`ncbench.tui.controller.RunController`) without an app: which runs
may be retried or cancelled, and when the queue starts, restarts or stays stopped — over real
queue processes (stand-in commands that exit with a chosen code) and the real store."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from ncbench.errors import ControlError
from ncbench.listing import RunRow
from ncbench.store import read_connection
from ncbench.tui.control import QueueController
from ncbench.tui.controller import Notice, RunController
from tests._tui_data import make_tui_db

#: A stand-in for `ncbench run`: appends "started" to a file, sleeps, exits with a code.
STANDIN = ("import sys, time, pathlib\n"
           "p = pathlib.Path(sys.argv[1]); p.write_text(p.read_text() + 'started\\n' "
           "if p.exists() else 'started\\n')\n"
           "print(sys.argv[4], flush=True)\n"
           "time.sleep(float(sys.argv[2])); sys.exit(int(sys.argv[3]))\n")

TOML = """\
[experiments.pilot]
dataset = "gaussian"
model = "mlp"
loss = "ce"
epochs = 2
"""


def row(status: str, experiment: str = "demo", run_id: str = "r1") -> RunRow:
    return RunRow(run_id, experiment, "digits", "mlp", "ce", 1.0, 10, 0, status)


def make(tmp_path: Path, seconds: float = 30, code: int = 0, last_line: str = "all done",
         config: bool = True) -> tuple[RunController, Path]:
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(TOML)
    starts = tmp_path / "starts.txt"
    queue = QueueController(cfg if config else None, tmp_path / "t.duckdb",
                            workdir=tmp_path / "work", log_path=tmp_path / "queue.log",
                            command=[sys.executable, "-c", STANDIN, str(starts), str(seconds),
                                     str(code), last_line])
    return RunController(queue, tmp_path / "t.duckdb", workdir=tmp_path / "work"), starts


def wait_exit(control: RunController, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while control.queue.running:
        assert time.monotonic() < deadline, "the queue stand-in did not exit"
        time.sleep(0.05)


@pytest.fixture
def cleanup():
    controls: list[RunController] = []
    yield controls.append
    for c in controls:
        c.queue.shutdown(timeout=5)


def test_retry_and_cancel_rules():
    c = RunController(QueueController(None, "x.duckdb", workdir=".ncbench"), "x.duckdb")
    for status in ("failed", "interrupted"):
        assert c.retry_refusal(row(status)) is None
    for status in ("done", "running", "queued"):
        assert c.retry_refusal(row(status)) == Notice(
            f"run r1 is {status}; only failed or interrupted runs can be retried", "warning")
    diverged = c.retry_refusal(row("diverged"))
    assert diverged.severity == "warning" and "diverged run is deterministic" in diverged.message
    assert c.cancel_refusal(row("running")) is None
    assert c.cancel_refusal(row("done")) == Notice("run r1 is done, not running", "warning")
    assert "Cancel run r1 (demo/ce/w1/s0)?" in c.cancel_question(row("running"))


def test_retry_with_no_queue_starts_one_for_the_experiment(tmp_path, cleanup):
    c, starts = make(tmp_path)
    cleanup(c)
    n = c.after_retry("demo", "run r1 queued again")
    assert n.severity == "information"
    assert n.message.startswith("run r1 queued again; queue started")
    assert c.queue.running and c.queue.running_experiments == ["pilot", "demo"]


def test_retry_without_a_config_says_how_to_run_it(tmp_path):
    c, starts = make(tmp_path, config=False)
    assert c.after_retry("demo", "run r1 queued again") == Notice(
        "run r1 queued again; start `ncbench run` to run it")
    assert not c.queue.running and not starts.exists()


def test_retry_inside_the_running_queue_waits_for_a_free_slot(tmp_path, cleanup):
    c, _ = make(tmp_path)
    cleanup(c)
    assert c.toggle_queue().message.startswith("queue started")
    n = c.after_retry("pilot", "run r1 queued again")
    assert n.message == "run r1 queued again; the running queue starts it at its next free slot"
    assert c.retry_later == set()


def test_retry_outside_the_running_queue_restarts_it_when_it_ends(tmp_path, cleanup):
    c, starts = make(tmp_path, seconds=1.0, code=1)
    cleanup(c)
    c.toggle_queue()
    n = c.after_retry("demo", "run r1 queued again")
    assert n.message == "run r1 queued again; the queue starts again for demo when it ends"
    assert c.retry_later == {"demo"} and c.check_queue() == []
    wait_exit(c)
    notices = c.check_queue()  # exit 1 (a run failed): ended by itself, so it starts again
    assert notices[0] == Notice("queue finished (exit code 1)", "warning")
    assert notices[1].message.startswith("for the retried runs of demo; queue started")
    assert c.queue.running and c.queue.running_experiments == ["pilot", "demo"]
    assert c.retry_later == set()
    deadline = time.monotonic() + 30
    while starts.read_text().count("started") < 2:  # the second process has begun
        assert time.monotonic() < deadline, starts.read_text()
        time.sleep(0.05)


def test_a_stopped_queue_is_not_restarted(tmp_path, cleanup):
    c, starts = make(tmp_path)
    cleanup(c)
    c.toggle_queue()
    c.after_retry("demo", "run r1 queued again")
    assert c.toggle_queue().message.startswith("stopping queue (SIGINT")
    wait_exit(c)
    (notice,) = c.check_queue()  # no restart: the user stopped it
    assert notice == Notice("queue stopped")  # not "queue finished (exit code 130)"
    assert not c.queue.running and c.retry_later == {"demo"}
    assert c.toggle_queue().message.startswith("queue started")  # the next start includes it
    assert c.queue.running_experiments == ["pilot", "demo"] and c.retry_later == set()


def test_a_failing_queue_is_explained_and_not_restarted(tmp_path, cleanup):
    c, starts = make(tmp_path, seconds=0.1, code=2, last_line="error: bad.toml: key 'x'")
    cleanup(c)
    c.toggle_queue()
    c.after_retry("demo", "run r1 queued again")
    wait_exit(c)
    assert c.check_queue() == [Notice("queue finished (exit code 2): error: bad.toml: key 'x'",
                                      "warning")]
    assert not c.queue.running and c.retry_later == {"demo"}
    assert c.check_queue() == []  # said once


def test_request_retry_and_cancel_use_the_store(tmp_path):
    c, _ = make(tmp_path)
    make_tui_db(tmp_path / "t.duckdb")
    assert c.request_retry("demo-fl-s1") == "run demo-fl-s1 queued again"
    with read_connection(tmp_path / "t.duckdb") as con:
        assert con.execute("SELECT status FROM runs WHERE run_id = 'demo-fl-s1'").fetchone() == \
            ("queued",)
    with pytest.raises(ControlError, match="not in the database"):
        c.request_retry("nope")
    with pytest.raises(ControlError, match="no worker pid"):  # stored, but no pid known
        c.cancel("demo-fl-s0")
