"""`--only` / `--set` (ncbench.selection) and `ncbench rm`, through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _runkit import env, experiment, ncbench, query, run_dirs, write_config

from ncbench.errors import UsageError
from ncbench.selection import matches, parse_only, parse_set, to_where
from ncbench.runs import RunSpec


def _spec(**kw):
    base = dict(experiment="a", dataset="digits", model="mlp", loss="ce", width=1.0, epochs=2,
                seed=0)
    base.update(kw)
    return RunSpec(**base)


def test_only_is_and_over_keys_or_within_a_key_and_typed_like_the_config():
    sel = parse_only(["loss=ce,mse", "width=1", "seed=0"])
    assert matches(_spec(loss="mse"), sel) and matches(_spec(), sel)
    assert not matches(_spec(loss="fl"), sel) and not matches(_spec(seed=1), sel)
    assert not matches(_spec(width=0.5), sel)
    assert matches(_spec(loss_params={"gamma": 2}), parse_only(["loss_params={gamma=2}"]))
    assert to_where(parse_only(["loss=ce", "seed=0"])) == "loss IN ('ce') AND seed IN (0.0)"


@pytest.mark.parametrize("bad, words", [(["los=ce"], "did you mean 'loss'"), (["loss"], "KEY=VALUE"),
                                        (["seed="], "missing")])
def test_bad_only_names_the_option(bad, words):
    with pytest.raises(UsageError, match="--only") as exc:
        parse_only(bad)
    assert words in str(exc.value)


def test_set_parses_toml_values():
    assert parse_set(["lr=0.05", "loss_params={gamma=2}", "device=cpu"]) == {
        "lr": 0.05, "loss_params": {"gamma": 2}, "device": "cpu"}
    with pytest.raises(UsageError, match="epoch.*did you mean 'epochs'"):
        parse_set(["epoch=5"])


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line[:12].isalnum() and "/" in line]


def test_only_set_status_report_and_rm_on_a_tiny_grid(tmp_path):
    cfg = write_config(tmp_path, experiment("a", losses=("ce", "mse"), epochs=1,
                                            extra="seed = [0, 1]"))
    full = ncbench("run", "--dry-run", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    lines = [ln for ln in full.stdout.splitlines() if "/mse/" in ln and "/s0" in ln]
    some = ncbench("run", "--dry-run", "--only", "loss=mse", "--only", "seed=0", cwd=tmp_path)
    assert some.returncode == 0, some.stderr
    assert _ids(some.stdout) == [ln.split()[0] for ln in lines] and len(lines) == 1
    quick = ncbench("run", "--dry-run", "--only", "loss=mse", "--only", "seed=0", "--set",
                    "epochs=2", cwd=tmp_path)
    assert quick.returncode == 0 and "/e2/" in quick.stdout and _ids(quick.stdout)[0] not in full.stdout
    bad = ncbench("run", "--dry-run", "--set", "epochs=0", cwd=tmp_path)
    assert bad.returncode == 2 and "--set epochs" in bad.stderr and "Traceback" not in bad.stderr

    ran = ncbench("run", "--only", "seed=0", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    db = tmp_path / "ncbench.duckdb"
    assert sorted(r[0] for r in query(db, "SELECT loss FROM runs WHERE status = 'done'")) == ["ce", "mse"]
    st = ncbench("status", "--only", "loss=mse", "--json", cwd=tmp_path)
    assert st.returncode == 0, st.stderr
    assert {r["loss"] for r in json.loads(st.stdout)} == {"mse"} and len(json.loads(st.stdout)) == 2
    rep = ncbench("report", "--only", "loss=mse", "--format", "csv", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "mse" in rep.stdout and ",ce," not in rep.stdout

    (mse_id,) = [r[0] for r in query(db, "SELECT run_id FROM runs WHERE loss = 'mse' AND status = 'done'")]
    refused = subprocess.run([sys.executable, "-m", "ncbench", "rm", "a", "--only", "loss=mse",
                              "--only", "seed=0"], cwd=tmp_path, env=env(), capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert mse_id in [d.name for d in run_dirs(tmp_path / ".ncbench")]
    gone = ncbench("rm", mse_id, "--yes", cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert query(db, "SELECT count(*) FROM runs WHERE run_id = ?", [mse_id]) == [(0,)]
    assert query(db, "SELECT count(*) FROM metrics WHERE run_id = ?", [mse_id]) == [(0,)]
    assert mse_id not in [d.name for d in run_dirs(tmp_path / ".ncbench")]
    assert query(db, "SELECT count(*) FROM runs WHERE status = 'done'") == [(1,)]
    assert cfg.exists()


def test_rm_refuses_while_a_manager_holds_the_workdir(tmp_path):
    from ncbench.grid import lock_workdir
    from ncbench.rundir import run_dir_of

    write_config(tmp_path, experiment("a", losses=("ce",), epochs=1))
    d = run_dir_of(tmp_path / ".ncbench", "0123456789ab")
    d.mkdir(parents=True)
    lock = lock_workdir(tmp_path / ".ncbench")
    try:
        busy = ncbench("rm", "0123456789ab", "--yes", cwd=tmp_path)
    finally:
        lock.close()
    assert busy.returncode == 2 and "another `ncbench run`" in busy.stderr and d.is_dir()
    done = ncbench("rm", "0123456789ab", "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not d.exists()


def test_rm_refuses_a_run_alive_under_a_job_elsewhere(tmp_path):
    """A run whose worker is a Slurm job on another node (fresh heartbeat from that host, no
    `end`) is not deleted — not its directory, not its row — and the message says where it
    runs; once its heartbeat is stale (the job is gone) `rm` deletes it."""
    from datetime import datetime, timedelta, timezone

    from ncbench.events import EventLog
    from ncbench.rundir import HEARTBEAT_FILE, run_dir_of

    write_config(tmp_path, experiment("a", losses=("ce",), epochs=1))
    rid = "0123456789ab"
    d = run_dir_of(tmp_path / ".ncbench", rid)
    d.mkdir(parents=True)
    EventLog(d).start(1, host="gpu-node-7", pid=4242, device="cuda:0")

    def beat(age_s: float) -> None:
        t = (datetime.now(timezone.utc) - timedelta(seconds=age_s)).isoformat(timespec="milliseconds")
        (d / HEARTBEAT_FILE).write_text(json.dumps(
            {"pid": 4242, "host": "gpu-node-7", "time": t, "epoch": 3, "phase": "train"}))

    beat(5)
    refused = ncbench("rm", rid, "--yes", cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "still being trained" in refused.stderr and "gpu-node-7" in refused.stderr
    assert "Traceback" not in refused.stderr and d.is_dir()
    beat(3600)  # the job is gone: stale heartbeat
    gone = ncbench("rm", rid, "--yes", cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert not d.exists()
