"""Helpers for the tests that run `ncbench run` as real processes (e2e, faults, executor).

Also holds user losses the workers import by name ("_runkit:slow_ce"): the subprocesses get
this folder on PYTHONPATH (`env()`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

#: The smallest valid experiments.toml: one digits/mlp/ce run of 3 epochs (tests append keys).
DIGITS_TOML = '''
[experiments.a]
dataset = "digits"
model = "mlp"
loss = "ce"
epochs = 3
'''

TINY_DATA = '{ num_classes = 4, dim = 8, n_train_per_class = 40, n_test_per_class = 20 }'


def tiny_spec(**kw):
    """An in-process RunSpec of the same tiny run (Gaussian 4 classes × 40, 8-d, mlp width 1/8,
    batch 32, CPU, 4 epochs evaluated each epoch); `kw` overrides any field."""
    from ncbench.runs import RunSpec

    base = dict(experiment="t", dataset="gaussian", model="mlp", loss="ce", width=0.125, epochs=4,
                seed=0, eval_every=1, batch_size=32, device="cpu",
                dataset_params={"num_classes": 4, "dim": 8, "n_train_per_class": 40,
                                "n_test_per_class": 20})
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture()
def one_thread(monkeypatch):
    """Tiny models: one torch thread is much faster than two on a busy 2-core machine. Import it
    into a test module (optionally wrapped with autouse) to use it."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("NCBENCH_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def experiment(name: str, *, losses=("ce", "mse"), epochs=2, eval_every=1, extra: str = "",
               batch_size: int = 32) -> str:
    """TOML of a tiny experiment: Gaussian 4 classes × 40 (8-d), mlp width 1/8, batch 32 (5
    batches per epoch), CPU."""
    loss = "[" + ", ".join(f'"{x}"' for x in losses) + "]"
    return (f'[experiments.{name}]\ndataset = "gaussian"\ndataset_params = {TINY_DATA}\n'
            f'model = "mlp"\nwidth = 0.125\nloss = {loss}\nepochs = {epochs}\n'
            f'eval_every = {eval_every}\nbatch_size = {batch_size}\ndevice = "cpu"\n{extra}\n')


def write_config(tmp: Path, *experiments: str) -> Path:
    path = tmp / "experiments.toml"
    path.write_text("\n".join(experiments))
    return path


def env(**extra: str) -> dict[str, str]:
    """Environment of the ncbench subprocesses: one torch thread, this folder importable."""
    e = dict(os.environ)
    e["NCBENCH_THREADS"] = "1"
    e["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e.pop("NCBENCH_FAKE_GPUS", None)
    e.update(extra)
    return e


def ncbench(*args: str, cwd: Path, timeout: float = 180, **env_extra: str) -> subprocess.CompletedProcess:
    """Run `python -m ncbench ARGS` to completion (output captured)."""
    return subprocess.run([sys.executable, "-m", "ncbench", *args], cwd=cwd, env=env(**env_extra),
                          capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path, **env_extra: str) -> subprocess.Popen:
    """Start `python -m ncbench ARGS` in the background; output goes to cwd/manager.log."""
    log = open(cwd / "manager.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "ncbench", *args], cwd=cwd, env=env(**env_extra),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc.log_path = cwd / "manager.log"
    return proc


def wait_for(pred, timeout: float = 90.0, interval: float = 0.1, what: str = "condition",
             proc: subprocess.Popen | None = None):
    """Poll `pred()` until truthy (returns its value) or fail after `timeout` seconds — or as
    soon as `proc` (a background `ncbench run`) has exited, showing its output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ncbench exited ({proc.returncode}) before {what}:\n"
                                 + getattr(proc, "log_path", Path("/dev/null")).read_text())
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_dirs(workdir: Path) -> list[Path]:
    from ncbench.rundir import run_dirs as dirs

    return dirs(workdir)


def spec_of(run_dir: Path) -> dict:
    """The run's spec.json as a dict ({} while it is being written)."""
    from ncbench.rundir import SPEC_FILE

    try:
        return json.loads((run_dir / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return {}


def events(run_dir: Path) -> list[dict]:
    from ncbench.events import read_events

    return read_events(run_dir)


def of_type(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in events(run_dir) if e.get("type") == kind]


def heartbeat(run_dir: Path) -> dict | None:
    from ncbench.rundir import HEARTBEAT_FILE

    try:
        return json.loads((run_dir / HEARTBEAT_FILE).read_text())
    except (OSError, ValueError):
        return None


def has_checkpoint(run_dir: Path) -> bool:
    from ncbench.rundir import CHECKPOINT_FILE

    return (run_dir / CHECKPOINT_FILE).exists()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists": check its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def query(db: Path, sql: str, params=None) -> list[tuple]:
    from ncbench.store import read_connection

    with read_connection(db) as con:
        return con.execute(sql, params or []).fetchall()


def assert_no_duplicate_evals(run_dir: Path) -> None:
    """No epoch has two `eval` events in a run's log (a resumed run never re-logs an epoch)."""
    epochs = [e["epoch"] for e in of_type(run_dir, "eval")]
    assert len(epochs) == len(set(epochs)), f"{run_dir.name}: epochs logged twice: {epochs}"


def kill(proc_or_pid, sig=signal.SIGKILL) -> None:
    pid = proc_or_pid.pid if hasattr(proc_or_pid, "pid") else int(proc_or_pid)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------------------------------
# user losses imported by the workers ("_runkit:NAME")
# ----------------------------------------------------------------------------------------------


def slow_ce(num_classes: int, delay: float = 0.02):
    """Cross-entropy that sleeps `delay` s per call: makes a run last long enough to be
    interrupted, without using CPU."""
    import torch.nn.functional as F

    def loss(logits, target):
        time.sleep(delay)
        return F.cross_entropy(logits, target)

    return loss


slow_ce2 = slow_ce3 = slow_ce  # more names, for grids of several slow runs ("_runkit:slow_ce2")


def fail_once(num_classes: int, marker: str = ""):
    """Cross-entropy that raises on the first attempt (creates `marker`), works afterwards."""
    import torch.nn.functional as F

    def loss(logits, target):
        if marker and not os.path.exists(marker):
            Path(marker).write_text("failed once")
            raise RuntimeError("deliberate failure for the retry test")
        return F.cross_entropy(logits, target)

    return loss


# -- a process that the permission bits apply to (the tests run as root) -------------------------

NOBODY = 65534
_CAPSET = 0x20080522  # _LINUX_CAPABILITY_VERSION_3


def as_nobody() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def without_capabilities() -> None:  # pragma: no cover - runs in the child before exec
    """Stay root but lose every capability across exec (no CAP_DAC_OVERRIDE, CAP_FOWNER…): the
    permission bits then apply to this process as to any user's."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (EINVAL past the last cap: ignored)
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable × 2: all empty
    libc.capset(ctypes.byref(Header(_CAPSET, 0)), data)


def unprivileged(probe_dir: Path):
    """A preexec_fn under which the child cannot write what this process can (None when not
    root), and how: `nobody` (uid 65534) if it can run this interpreter, else root without
    capabilities (the interpreter may live in root's 0700 home, e.g. under pyenv)."""
    if os.geteuid() != 0:
        return None, "user"
    try:
        ok = subprocess.run([sys.executable, "-c", "import ncbench.cli"], preexec_fn=as_nobody,
                            cwd=probe_dir, capture_output=True, env=env()).returncode == 0
    except PermissionError:  # cannot even execute the interpreter
        ok = False
    return (as_nobody, "nobody") if ok else (without_capabilities, "root-without-capabilities")
