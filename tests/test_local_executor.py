"""The local executor's parts: slots, exit causes, run classification (alive here / elsewhere /
lost), and slot assignment with fake GPUs through real worker processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from _runkit import experiment, ncbench, of_type, query, run_dirs, write_config

from ncbench.errors import ConfigError, ParameterError, UsageError
from ncbench.events import EventLog, atomic_write_text
from ncbench.executors.local import describe_exit, make_slots, parse_gpus
from ncbench.grid import plan_runs
from ncbench.lifecycle import classify_run, next_attempt
from ncbench.rundir import HEARTBEAT_FILE, WORKER_LOG, run_dir_of, runs_root
from ncbench.runs import RunSpec


def env_of(slot) -> dict:
    return dict(slot.env)


# -- slots ----------------------------------------------------------------------------------------


def test_gpu_slots_pin_one_gpu_each_and_pack_per_gpu():
    visible = ["0", "1", "2", "3"]
    slots = make_slots([0, 1, 3], 1, None, visible=visible, cores=12)
    assert [s.name for s in slots] == ["gpu0", "gpu1", "gpu3"]
    assert [env_of(s)["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "3"]
    assert all(env_of(s)["NCBENCH_THREADS"] == "4" for s in slots)
    packed = make_slots([2], 3, None, visible=visible, cores=12)
    assert [s.name for s in packed] == ["gpu2.0", "gpu2.1", "gpu2.2"]
    assert {env_of(s)["CUDA_VISIBLE_DEVICES"] for s in packed} == {"2"}
    # indices are among the *visible* GPUs: CUDA_VISIBLE_DEVICES=4,6 → --gpus 1 is GPU 6
    (slot,) = make_slots([1], 1, None, visible=["4", "6"], cores=2)
    assert env_of(slot)["CUDA_VISIBLE_DEVICES"] == "6"
    assert [s.name for s in make_slots(None, 2, None, visible=["0", "1"], cores=8)] == \
        ["gpu0.0", "gpu0.1", "gpu1.0", "gpu1.1"]


def test_cpu_slots_split_the_cores():
    slots = make_slots(None, 1, None, visible=[], cores=2)
    assert [s.name for s in slots] == ["cpu0"] and env_of(slots[0])["NCBENCH_THREADS"] == "2"
    slots = make_slots(None, 1, 2, visible=[], cores=2)
    assert [s.name for s in slots] == ["cpu0", "cpu1"]
    assert all(env_of(s)["NCBENCH_THREADS"] == "1" for s in slots)
    # --gpus none on a GPU machine: CPU slots that hide the GPUs
    slots = make_slots([], 1, 3, visible=["0"], cores=6)
    assert len(slots) == 3 and all(env_of(s)["CUDA_VISIBLE_DEVICES"] == "" for s in slots)


def test_slot_option_errors():
    """The executor says what is wrong with an option (ParameterError, keyed by the option);
    where the value came from is the grid's to say (below)."""
    with pytest.raises(ParameterError, match="only 2 GPU") as info:
        make_slots([5], 1, None, visible=["0", "1"])
    assert info.value.key == "gpus"
    with pytest.raises(ParameterError, match="--per-gpu") as info:
        make_slots([0], 1, 2, visible=["0", "1"])
    assert info.value.key == "workers"
    with pytest.raises(ParameterError, match="must be ≥ 1, got 0") as info:
        make_slots(None, 1, 0, visible=[])
    assert info.value.key == "workers"
    with pytest.raises(ParameterError, match="must be ≥ 1, got 0") as info:
        make_slots(None, 0, None, visible=[])
    assert info.value.key == "per_gpu"
    assert parse_gpus("0,1,3") == [0, 1, 3] and parse_gpus([2]) == [2]
    assert parse_gpus("all") is None and parse_gpus("none") == [] and parse_gpus(None) is None
    with pytest.raises(ParameterError, match="GPU indices") as info:
        parse_gpus("0,x")
    assert info.value.key == "gpus"


def test_a_bad_option_names_its_flag_or_its_config_key(tmp_path):
    """The same check of an option is a UsageError naming the flag when `ncbench run` was given
    the value, and a ConfigError naming the file and `executor.local.<key>` when the config's
    `[executor.local]` holds it (nothing trains either way)."""
    from ncbench.grid import run_grid

    cfg = write_config(tmp_path, experiment("tiny", epochs=1))
    with pytest.raises(UsageError) as info:
        run_grid(cfg, options={"workers": 0}, preflight=False)
    assert str(info.value) == "--workers: must be ≥ 1, got 0"
    with pytest.raises(UsageError) as info:
        run_grid(cfg, options={"gpus": "0,x"}, preflight=False)
    assert str(info.value).startswith("--gpus: expected GPU indices like 0,1,3")
    with pytest.raises(UsageError) as info:
        run_grid(cfg, options={"mem_gb": 4}, preflight=False)
    assert str(info.value) == "--slurm-mem-gb: a Slurm option: use it with --executor slurm"

    text = cfg.read_text()
    cfg.write_text("[executor.local]\nper_gpu = 0\n" + text)
    with pytest.raises(ConfigError) as info:
        run_grid(cfg, preflight=False)
    assert str(info.value) == f"{cfg}, key 'executor.local.per_gpu': must be ≥ 1, got 0"
    # the flag overrides the config's value: the error is then the flag's
    with pytest.raises(UsageError, match="^--per-gpu: must be ≥ 1, got -1$"):
        run_grid(cfg, options={"per_gpu": -1}, preflight=False)
    cfg.write_text('[executor.local]\ngpus = "0,x"\n' + text)
    with pytest.raises(ConfigError, match=r"key 'executor.local.gpus': expected GPU indices"):
        run_grid(cfg, preflight=False)
    assert not any(d.is_dir() for d in run_dirs(tmp_path / ".ncbench"))


def test_every_executor_setting_is_checked_before_anything_runs_dry_run_too(tmp_path):
    """#17: `[executor.local] workers = -1 / "two" / 1.5`, `retries = -1 / "x"`, `per_gpu = 0`,
    and the flags `--workers 0`, `--per-gpu 0`, `--retries -1`, `--gpus 0` (no GPU here) passed
    `--dry-run` and were found only once the runs were registered (or, `retries = "x"`, crashed
    the manager when a run failed). Now each is an error naming the config file and key, or the
    flag, before anything is registered — in a dry run too."""
    from ncbench.grid import run_grid

    cfg = write_config(tmp_path, experiment("tiny", epochs=1))
    text = cfg.read_text()
    for line, reason in (("workers = -1", "must be ≥ 1, got -1"),
                         ('workers = "two"', "expected an integer ≥ 1, got 'two'"),
                         ("workers = 1.5", "expected an integer ≥ 1, got 1.5"),
                         ("retries = -1", "must be ≥ 0, got -1"),
                         ('retries = "x"', "expected an integer ≥ 0, got 'x'"),
                         ("per_gpu = 0", "must be ≥ 1, got 0"),
                         ("per_gpu = true", "expected an integer ≥ 1, got True")):
        cfg.write_text(f"[executor.local]\n{line}\n" + text)
        key = line.split(" ")[0]
        for dry_run in (True, False):
            with pytest.raises(ConfigError) as info:
                run_grid(cfg, dry_run=dry_run, preflight=False)
            assert str(info.value) == f"{cfg}, key 'executor.local.{key}': {reason}"
    cfg.write_text(text)
    flags = [({"workers": 0}, "--workers: must be ≥ 1, got 0"),
             ({"per_gpu": 0}, "--per-gpu: must be ≥ 1, got 0"),
             ({"retries": -1}, "--retries: must be ≥ 0, got -1")]
    if not os.environ.get("CUDA_VISIBLE_DEVICES") and not _cuda():
        flags.append(({"gpus": "0"}, "--gpus: GPU 0: no GPU is visible here"))
    for options, message in flags:
        for dry_run in (True, False):
            with pytest.raises(UsageError) as info:
                run_grid(cfg, options=options, dry_run=dry_run, preflight=False)
            assert str(info.value).startswith(message)
    assert not (tmp_path / ".ncbench").exists() and not (tmp_path / "ncbench.duckdb").exists()
    # through the command line: exit 2, one line, nothing would run
    out = ncbench("run", "--config", str(cfg), "--dry-run", "--per-gpu", "0", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == "error: --per-gpu: must be ≥ 1, got 0"
    assert "would run" not in out.stdout and not (tmp_path / ".ncbench").exists()


def _cuda() -> bool:
    import torch

    return torch.cuda.device_count() > 0


def test_slurm_settings_name_the_flag_they_came_from(tmp_path):
    """`check_options` named `executor.slurm.<key>` of the config file even for a value the
    command line gave: the flag is named then; the config's values still name file and key."""
    from ncbench.executors.slurm import check_options
    from ncbench.grid import run_grid

    cfg = write_config(tmp_path, experiment("tiny", epochs=1))
    for options, message in (({"time_min": 0}, "--slurm-time: expected an integer ≥ 1, got 0"),
                             ({"retries": -1}, "--retries: expected an integer ≥ 0, got -1"),
                             ({"mem_gb": float("nan")}, "--slurm-mem-gb: expected a positive"),
                             ({"gpus_per_run": -1}, "--slurm-gpus: expected an integer ≥ 0"),
                             ({"workers": 2}, "--workers: a local executor option")):
        with pytest.raises(UsageError) as info:
            run_grid(cfg, executor="slurm", options=options, dry_run=True, preflight=False)
        assert str(info.value).startswith(message), str(info.value)
    cfg.write_text('[executor.slurm]\nretries = "x"\n' + cfg.read_text())
    with pytest.raises(ConfigError, match=r"key 'executor.slurm.retries': expected an integer ≥ 0"):
        run_grid(cfg, executor="slurm", dry_run=True, preflight=False)
    with pytest.raises(ConfigError, match="executor.slurm.mem_gb"):
        check_options({"mem_gb": float("inf")}, "exp.toml")  # would overflow into sbatch's --mem
    assert not (tmp_path / ".ncbench").exists()


def test_a_device_the_workers_do_not_have_is_a_config_error(tmp_path):
    """#17: `device = "cuda"` without a GPU (`cuda:3` with fewer, `mps` where it is missing) was
    accepted, then failed in every worker: the pre-flight names file, experiment and key."""
    from ncbench.grid import run_grid
    from ncbench.preflight import check_devices

    from dataclasses import replace

    spec = RunSpec(experiment="e", dataset="digits", model="mlp", loss="ce", width=1.0, epochs=1,
                   seed=0)
    for cuda, mps, device, why in ((0, False, "cuda", "no CUDA device is visible"),
                                   (2, False, "cuda:3", r"each worker sees 2 CUDA device\(s\)"),
                                   (1, False, "cuda:1", r"each worker sees 1 CUDA device\(s\)"),
                                   (4, False, "mps", "MPS is not available")):
        with pytest.raises(ConfigError, match=why) as info:
            check_devices([replace(spec, device=device)], cuda_devices=cuda,
                          mps=mps)
        assert (info.value.experiment, info.value.key) == ("e", "device")
    for cuda, mps, device in ((1, False, "cuda"), (4, False, "cuda:3"), (0, True, "mps"),
                              (0, False, "cpu"), (0, False, "auto")):
        check_devices([replace(spec, device=device)], cuda_devices=cuda, mps=mps)
    if _cuda():
        return  # the end-to-end half needs a machine without a GPU
    cfg = write_config(tmp_path, experiment("tiny", epochs=1).replace('device = "cpu"',
                                                                       'device = "cuda"'))
    for dry_run in (True, False):
        with pytest.raises(ConfigError) as info:
            run_grid(cfg, dry_run=dry_run)
        e = info.value
        assert (e.file, e.experiment, e.key) == (str(cfg), "tiny", "device") and e.line
    # the local executor pins one GPU per worker: fake GPUs are no CUDA device for the workers
    with pytest.raises(ConfigError, match="no CUDA device"):
        os.environ["NCBENCH_FAKE_GPUS"] = "2"
        try:
            run_grid(cfg, dry_run=True)
        finally:
            del os.environ["NCBENCH_FAKE_GPUS"]
    assert not (tmp_path / ".ncbench").exists()


# -- exit causes ----------------------------------------------------------------------------------


def test_describe_exit(tmp_path):
    log = tmp_path / WORKER_LOG
    log.write_text("ncbench worker: run x\nTraceback (most recent call last):\n  File ...\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(139) == "exit code 139 (SIGSEGV)"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(1, log) == "exit code 1: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_the_executors_own_banner_is_not_taken_for_the_error(tmp_path):
    """#17: a killed worker's error read "killed by SIGKILL: --- attempt 1 on slot cpu0 at
    21:36:08 ---" (the banner the executor writes into worker.log before each attempt)."""
    from ncbench.executors.local import attempt_banner, is_attempt_banner

    banner = attempt_banner(1, "cpu0", "21:36:08")
    assert banner == "--- attempt 1 on slot cpu0 at 21:36:08 ---" and is_attempt_banner(banner)
    assert not is_attempt_banner("--- attempt to read the data ---")
    log = tmp_path / WORKER_LOG
    log.write_text(f"ncbench worker: standby\n{banner}\n")
    assert describe_exit(-signal.SIGKILL, log) == "killed by SIGKILL"
    log.write_text(f"{banner}\nloading data\nRuntimeError: boom\n{attempt_banner(2, 'gpu0.1')}\n")
    assert describe_exit(1, log) == "exit code 1: RuntimeError: boom"
    log.write_text(f"{banner}\nsome last words\n{attempt_banner(2, 'gpu0.1')}\n")
    assert describe_exit(-signal.SIGKILL, log) == "killed by SIGKILL: some last words"


def test_segfaulting_worker_is_reported_with_its_signal(tmp_path):
    """A real process killed by SIGSEGV: the cause the executor would record."""
    p = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    assert describe_exit(p.returncode).startswith("killed by SIGSEGV")


# -- alive here, alive elsewhere, or lost -----------------------------------------------------------


def _started_run(tmp_path, *, host: str, pid: int, age_s: float, end: str | None = None):
    spec = RunSpec(experiment="x", dataset="gaussian", model="mlp", loss="ce", width=1.0, epochs=3, seed=0)
    d = run_dir_of(tmp_path, spec.run_id)
    log = EventLog(d, spec.run_id)
    log.start(1, host=host, device="cpu", pid=pid)
    log.eval(1, {"train_acc": 0.5})
    if end:
        log.end(end)
    t = (datetime.now(timezone.utc) - timedelta(seconds=age_s)).isoformat()
    atomic_write_text(d / HEARTBEAT_FILE, json.dumps({"pid": pid, "host": host, "time": t,
                                                        "epoch": 1, "phase": "train"}))
    return spec, d


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_classify_alive_here_elsewhere_and_lost(tmp_path):
    me = socket.gethostname()
    _, d = _started_run(tmp_path / "a", host=me, pid=os.getpid(), age_s=1)
    assert classify_run(d).status == "alive"
    _, d = _started_run(tmp_path / "b", host=me, pid=_dead_pid(), age_s=1)
    state = classify_run(d)
    assert state.status == "lost" and "is gone" in state.note
    _, d = _started_run(tmp_path / "c", host="gpu-node-7", pid=12345, age_s=5)
    state = classify_run(d)
    assert state.status == "alive" and "gpu-node-7" in state.note
    _, d = _started_run(tmp_path / "d", host="gpu-node-7", pid=12345, age_s=3600)
    assert classify_run(d).status == "lost"
    _, d = _started_run(tmp_path / "e", host=me, pid=os.getpid(), age_s=1, end="done")
    assert classify_run(d).status == "done"
    assert classify_run(tmp_path / "nothing").status == "new"


def test_plan_skips_done_and_alive_resumes_lost(tmp_path):
    me = socket.gethostname()
    lost, d_lost = _started_run(tmp_path, host=me, pid=_dead_pid(), age_s=1)
    spec2 = lost.replace(seed=1)
    d2 = run_dir_of(tmp_path, spec2.run_id)
    EventLog(d2, spec2.run_id).start(1, host="elsewhere", pid=1)
    atomic_write_text(d2 / HEARTBEAT_FILE, json.dumps(
        {"pid": 1, "host": "elsewhere", "time": datetime.now(timezone.utc).isoformat(), "epoch": 0,
         "phase": "train"}))
    spec3 = lost.replace(seed=2)
    plan = plan_runs([lost, spec2, spec3], tmp_path)
    assert [s.run_id for s in plan.todo] == [lost.run_id, spec3.run_id]
    assert "elsewhere" in plan.skipped[spec2.run_id]
    assert lost.run_id in plan.resumed
    assert of_type(d_lost, "end")[-1]["status"] == "interrupted"  # the dead attempt is closed
    assert next_attempt(d_lost) == 2


# -- fake GPUs through real workers ------------------------------------------------------------------


def test_fake_gpu_slots_reach_the_workers(tmp_path):
    cfg = write_config(tmp_path, experiment("tiny", losses=("ce", "mse"), epochs=1, extra='device = "auto"'
                                            ).replace('device = "cpu"\n', ""))
    out = ncbench("run", "--config", str(cfg), "--gpus", "1,3", "--per-gpu", "1", cwd=tmp_path,
                  NCBENCH_FAKE_GPUS="4")
    assert out.returncode == 0, out.stdout + out.stderr
    seen = {}
    for d in run_dirs(tmp_path / ".ncbench"):
        (start,) = of_type(d, "start")
        assert start["device"] == "cpu"  # no real GPU 1 or 3: torch falls back to the CPU
        assert start["slot"] == f"gpu{start['cuda_visible_devices']}"
        seen[d.name] = start["cuda_visible_devices"]
    assert sorted(seen.values()) == ["1", "3"]
    slots = dict(query(tmp_path / "ncbench.duckdb", "SELECT run_id, slot FROM runs"))
    assert slots == {rid: f"gpu{g}" for rid, g in seen.items()}


def test_a_second_manager_on_the_same_workdir_is_refused(tmp_path):
    from ncbench.grid import lock_workdir

    cfg = write_config(tmp_path, experiment("tiny", losses=("ce",), epochs=1))
    with lock_workdir(tmp_path / ".ncbench"):  # as if another `ncbench run` were running
        out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2
    assert "another `ncbench run`" in out.stderr and f"pid {os.getpid()}" in out.stderr
    assert "Traceback" not in out.stderr
    assert not runs_root(tmp_path / ".ncbench").exists()
