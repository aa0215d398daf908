"""The local executor: a queue of runs over slots, one worker process per run.

Slots. With GPUs, each GPU gives `per_gpu` slots and a worker on it sees only that GPU
(`CUDA_VISIBLE_DEVICES=<gpu>`). GPUs are the visible ones: the entries of `CUDA_VISIBLE_DEVICES`
if set, else `torch.cuda.device_count()` devices; `gpus=[0, 1, 3]` picks by index among the
visible ones (so with `CUDA_VISIBLE_DEVICES=4,5`, `--gpus 1` is physical GPU 5). Without GPUs
(or with `gpus=[]`, `--gpus none`) there are `workers` CPU slots (default 1), each worker with
`NCBENCH_THREADS = cores // workers` torch threads. `NCBENCH_FAKE_GPUS=N` pretends N GPUs are
visible — for testing slot assignment on a machine without GPUs: the workers get
`CUDA_VISIBLE_DEVICES`, find no CUDA device and train on the CPU. The slots and the checks of
these options live in `ncbench.executors.slots`.

The manager loop (every `poll_interval` s, default 1): start queued runs (declared order) in
free slots; poll the worker processes; `store.sync` the active run dirs (open, write, close);
update the UI. A worker that exits without an `end` event (SIGKILL, segfault, the OOM killer)
gets one from the manager — `failed` with the cause ("killed by SIGKILL", "exit code 139
(SIGSEGV)", plus the last error line of its worker.log) — and the queue goes on; with
`retries=N` a failed run is queued again (at the end of the queue) up to N times.

Stopping. The first Ctrl-C (SIGINT, or SIGTERM to the manager) starts no new run and sends
SIGTERM to the workers: each stops before its next batch and ends `interrupted` (resumable from
its last checkpoint). A second Ctrl-C SIGKILLs the workers at once; the manager marks their runs
`interrupted`. Workers run in their own session (a terminal's Ctrl-C reaches only the manager)
and die with it: if the manager is killed (SIGKILL), Linux sends them SIGTERM
(`PR_SET_PDEATHSIG`, see `ncbench.worker`), they end `interrupted`, and the next `ncbench run`
resumes them.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ncbench.executors.base import NullUI, RunUI, RunView, RunWatcher
from ncbench.executors.slots import (
    FAKE_GPUS_ENV, Slot, check_options, detect_gpus, make_slots, parse_gpus, worker_cuda_devices,
)
from ncbench.lifecycle import (
    FAILED, INTERRUPTED, QUEUED, RUNNING, end_status, mark_ended, next_attempt, prepare_run_dir,
    retries_again,
)
from ncbench.rundir import WORKER_LOG
from ncbench.runs import RunSpec

__all__ = ["LocalExecutor", "Slot", "detect_gpus", "make_slots", "parse_gpus", "describe_exit",
           "check_options", "worker_cuda_devices", "attempt_banner", "is_attempt_banner"]

#: Workers started ahead of time (on standby) at most: each holds torch and its dataset in memory.
MAX_STANDBY = 2


#: The line the executor writes into a run's worker.log before each attempt (`attempt_banner`);
#: `describe_exit` never takes it for the worker's error.
_BANNER = "--- attempt {attempt} on slot {slot} at {time} ---"
_BANNER_RE = re.compile("^" + re.escape(_BANNER).replace(r"\{attempt\}", r"\S+")
                        .replace(r"\{slot\}", r"\S+").replace(r"\{time\}", r"\S+") + "$")


def attempt_banner(attempt: int, slot: str, at: str | None = None) -> str:
    """The worker.log banner of an attempt: `--- attempt 2 on slot gpu0 at 21:36:08 ---`."""
    return _BANNER.format(attempt=attempt, slot=slot, time=at or time.strftime("%H:%M:%S"))


def is_attempt_banner(line: str) -> bool:
    """Whether `line` is an `attempt_banner` (written by the executor, not by the worker)."""
    return bool(_BANNER_RE.match(line.strip()))


_SIGNAL_HINT = {"SIGSEGV": "segmentation fault", "SIGKILL": "killed, e.g. by the OOM killer",
                "SIGABRT": "aborted", "SIGBUS": "bus error", "SIGTERM": "terminated"}


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def describe_exit(returncode: int, log_path: Path | None = None) -> str:
    """A one-line cause for a worker that ended without an `end` event: "killed by SIGKILL",
    "exit code 139 (SIGSEGV)", … followed by the last error line of its log, if any."""
    if returncode < 0:
        name = _signal_name(-returncode)
        cause = f"killed by {name}"
    elif returncode > 128 and returncode - 128 < 65:
        name = _signal_name(returncode - 128)
        cause = f"exit code {returncode} ({name})"
    else:
        cause = f"exit code {returncode}"
    last = _last_error_line(log_path) if log_path is not None else None
    return f"{cause}: {last}" if last else cause


def _last_error_line(path: Path) -> str | None:
    """The last line of `path` that looks like an error (…Error…, Traceback excluded), else the
    last non-empty line that is not the worker's own chatter."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    lines = [ln.strip() for ln in lines if ln.strip() and not is_attempt_banner(ln)]
    for ln in reversed(lines):
        if ("Error" in ln or "error" in ln or "Killed" in ln) and not ln.startswith("Traceback"):
            return ln[:300]
    for ln in reversed(lines):
        if not ln.startswith("ncbench worker:"):
            return ln[:300]
    return None


@dataclass
class _Spawned:
    """A worker process started on standby for `spec` (not yet given a slot)."""

    spec: RunSpec
    run_dir: Path
    proc: subprocess.Popen
    log: IO[bytes]


@dataclass
class _Active:
    """A worker given a slot: its run, process, attempt number and event watcher."""

    spec: RunSpec
    slot: Slot
    proc: subprocess.Popen
    run_dir: Path
    attempt: int
    log: IO[bytes]
    watcher: RunWatcher
    killed: bool = False  # SIGKILLed by the manager (second Ctrl-C)


@dataclass
class LocalExecutor:
    """Runs each run in its own `python -m ncbench.worker RUN_DIR` process, pinned to a slot.

    `gpus`: GPU indices among the visible ones (None: all visible; [] : CPU only);
    `per_gpu`: workers per GPU; `workers`: CPU workers (CPU-only); `retries`: times a failed
    run is queued again; `poll_interval`: seconds between database syncs / UI refreshes (the
    processes are polled 10× as often); `standby`: start the next queued run's worker ahead of
    time (one per slot, at most `MAX_STANDBY`), so it has imported torch and loaded its data when a slot frees up (see `ncbench.worker`); `python`:
    interpreter of the workers (default: this one); `env`: extra environment for the workers."""

    gpus: Sequence[int] | None = None
    per_gpu: int = 1
    workers: int | None = None
    retries: int = 0
    poll_interval: float = 1.0
    standby: bool = True
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
    name: str = "local"

    def slots(self) -> list[Slot]:
        return make_slots(self.gpus, self.per_gpu, self.workers)

    # -- the manager loop ------------------------------------------------------------------------
    def run(self, specs: Sequence[RunSpec], workdir: Path, store, ui: RunUI | None = None,
            requeued: Callable[[set[str]], list[RunSpec]] | None = None) -> dict[str, str]:
        """Run `specs` (declared order) over the slots; returns run_id -> final status.
        `requeued(held)`, asked whenever a run ends: runs set back to `queued` meanwhile (a
        retry in the TUI) but those held here; they go to the front of the queue (after a worker
        already on standby)."""
        ui = ui or NullUI()
        workdir = Path(workdir)
        slots = self.slots()
        queue = collections.deque(specs)
        views = {s.run_id: RunView(s.run_id, s.label, s.epochs) for s in specs}
        retries_left = {s.run_id: self.retries for s in specs}
        results: dict[str, str] = {}
        active: dict[str, _Active] = {}  # slot name -> active run
        free = list(slots)
        standby: list[_Spawned] = []  # started ahead, waiting for a slot (at most one per slot)
        stopping = {"level": 0, "acted": 0}  # Ctrl-Cs received / acted upon

        def on_signal(signum, frame):  # noqa: ARG001 - only counts: the loop acts (no I/O here)
            stopping["level"] += 1

        def act_on_signals() -> None:
            if stopping["acted"] == 0 and stopping["level"] >= 1:
                ui.note("stopping: the running workers stop before their next batch and end "
                        "interrupted (resumable); Ctrl-C again to kill them now")
                for a in active.values():
                    _signal(a.proc, signal.SIGTERM)
                stopping["acted"] = 1
            if stopping["acted"] == 1 and stopping["level"] >= 2:
                ui.note("killing the workers now")
                for a in active.values():
                    a.killed = True
                    _signal(a.proc, signal.SIGKILL)
                stopping["acted"] = 2

        import threading

        in_main = threading.current_thread() is threading.main_thread()
        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
        last_sync = 0.0
        try:
            while queue or active or standby:
                changed = False
                act_on_signals()
                # 1. start runs into free slots (standby workers first); none once stopping
                while stopping["level"] == 0 and free and (standby or queue):
                    spawned = standby.pop(0) if standby else self._spawn(queue.popleft(), workdir)
                    slot = free.pop(0)
                    a = self._go(spawned, slot, store)
                    active[slot.name] = a
                    v = views[a.spec.run_id]
                    v.status, v.slot, v.attempt, v.error = RUNNING, slot.name, a.attempt, None
                    v.epoch, v.batch, v.batches = 0, 0, 0
                    a.watcher.view = v
                    changed = True
                while (stopping["level"] == 0 and self.standby and queue
                       and len(standby) < min(len(slots), MAX_STANDBY)):
                    standby.append(self._spawn(queue.popleft(), workdir))
                if stopping["level"] and standby:
                    for sp in reversed(standby):
                        queue.appendleft(sp.spec)
                        _cancel(sp)
                    standby = []
                # 2. poll workers
                act_on_signals()
                finished = [name for name, a in active.items() if a.proc.poll() is not None]
                synced = [a.spec.run_id for a in active.values()]
                for slot_name in finished:
                    a = active.pop(slot_name)
                    free.append(a.slot)
                    free.sort(key=slots.index)
                    status, error = self._finish(a, stopping["level"] > 0)
                    v = views[a.spec.run_id]
                    v.status, v.error = status, error
                    changed = True
                    if retries_again(status, retries_left[a.spec.run_id],
                                     stopping=stopping["level"] > 0):
                        retries_left[a.spec.run_id] -= 1
                        ui.note(f"run {a.spec.run_id} ({a.spec.label}) failed: {error} — queued "
                                f"again ({retries_left[a.spec.run_id]} retries left)")
                        v.status = QUEUED
                        queue.append(a.spec)
                    else:
                        results[a.spec.run_id] = status
                        if status == FAILED:
                            ui.note(f"run {a.spec.run_id} ({a.spec.label}) failed: {error}")
                if finished and requeued is not None and stopping["level"] == 0:
                    busy = ({a.spec.run_id for a in active.values()} | {s.run_id for s in queue}
                            | {sp.spec.run_id for sp in standby})
                    try:
                        again = [s for s in requeued(busy) if s.run_id not in busy]
                    except Exception as exc:  # noqa: BLE001 - the grid goes on without them
                        ui.note(f"could not look for runs queued again: {exc}")
                        again = []
                    for spec in reversed(again):
                        queue.appendleft(spec)
                        views.setdefault(spec.run_id, RunView(spec.run_id, spec.label, spec.epochs))
                        views[spec.run_id].status = QUEUED
                        retries_left.setdefault(spec.run_id, self.retries)
                        results.pop(spec.run_id, None)
                        ui.note(f"run {spec.run_id} ({spec.label}) was queued again (a retry): "
                                f"it starts at the next free slot")
                        changed = True
                # 3. database, UI (about once per poll_interval, at once when a run ended)
                now = time.monotonic()
                if changed or now - last_sync >= self.poll_interval:
                    last_sync = now
                    for a in active.values():
                        a.watcher.poll()
                    if synced:
                        _sync(store, workdir, synced, ui)
                    ui.update(list(views.values()))
                if stopping["level"] and not active:
                    break
                if queue or active or standby:
                    time.sleep(min(0.1, self.poll_interval))
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            for sp in standby:
                _cancel(sp)
            for a in active.values():  # only on an exception in the loop itself
                _signal(a.proc, signal.SIGKILL)
                a.proc.wait()
                self._finish(a, True)
        for spec in queue:  # never started (stopped first): left as they were
            views[spec.run_id].status = QUEUED
        ui.update(list(views.values()))
        return results

    # -- one worker ------------------------------------------------------------------------------
    def _spawn(self, spec: RunSpec, workdir: Path) -> _Spawned:
        """Start `spec`'s worker on standby: it imports torch, then waits for `_go`."""
        run_dir = prepare_run_dir(workdir, spec)
        env = dict(os.environ)
        env.update(self.env)
        env.update(NCBENCH_EXECUTOR=self.name, NCBENCH_PARENT_PID=str(os.getpid()),
                   NCBENCH_STANDBY="1", PYTHONUNBUFFERED="1")
        # OpenMP threads that sleep instead of spinning while they wait: workers share the cores
        # with other workers and with the next run's standby start-up, and spinning threads
        # made small CPU models ~3x slower on a shared 2-core machine (user setting wins).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.pop(FAKE_GPUS_ENV, None)
        log = open(run_dir / WORKER_LOG, "ab")
        proc = subprocess.Popen([self.python, "-m", "ncbench.worker", str(run_dir)], env=env,
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=os.getcwd())
        return _Spawned(spec, run_dir, proc, log)

    def _go(self, sp: _Spawned, slot: Slot, store) -> _Active:
        """Give a spawned worker its slot and attempt number: it starts training."""
        import json

        attempt = next_attempt(sp.run_dir)
        env = dict(slot.env)
        if os.environ.get("NCBENCH_THREADS"):  # an explicit user setting wins over cores // slots
            env["NCBENCH_THREADS"] = os.environ["NCBENCH_THREADS"]
        env.update(NCBENCH_ATTEMPT=str(attempt), NCBENCH_SLOT=slot.name)
        sp.log.write((attempt_banner(attempt, slot.name) + "\n").encode())
        sp.log.flush()
        watcher = RunWatcher(sp.run_dir, RunView(sp.spec.run_id, sp.spec.label, sp.spec.epochs))
        watcher.skip_existing()
        try:
            sp.proc.stdin.write((json.dumps({"env": env}) + "\n").encode())
            sp.proc.stdin.close()
        except (BrokenPipeError, OSError):  # died on standby: _finish reports how
            pass
        try:
            store.set_status(sp.spec.run_id, RUNNING, executor=self.name, slot=slot.name,
                             attempt=attempt, pid=sp.proc.pid, error=None, finished_at=None,
                             started_at=None)  # per attempt: set again by its start event
        except Exception:  # noqa: BLE001 - the database is informative; the run goes on
            pass
        return _Active(sp.spec, slot, sp.proc, sp.run_dir, attempt, sp.log, watcher)

    def _finish(self, a: _Active, stopping: bool) -> tuple[str, str | None]:
        """The final status of a finished worker: its own `end` event, else one written here."""
        a.watcher.poll()
        a.log.close()
        ended = a.watcher.ended
        if ended is not None:
            return end_status(ended), ended.get("error")
        rc = a.proc.returncode
        if a.killed or (stopping and rc in (-signal.SIGTERM, -signal.SIGINT)):
            status, error = INTERRUPTED, "stopped by the user (" + describe_exit(rc) + ")"
        else:
            status, error = FAILED, describe_exit(rc, a.run_dir / WORKER_LOG)
        mark_ended(a.run_dir, status, error, returncode=rc)
        return status, error


def _cancel(sp: _Spawned) -> None:
    """Stop a standby worker: it has written nothing yet (no event, no heartbeat), so SIGKILL."""
    try:
        sp.proc.stdin.close()
    except OSError:
        pass
    _signal(sp.proc, signal.SIGKILL)
    sp.proc.wait()
    sp.log.close()


def _signal(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _sync(store, workdir: Path, run_ids: list[str], ui: RunUI) -> None:
    try:
        store.sync(workdir, run_ids=run_ids)
    except Exception as exc:  # noqa: BLE001 - a locked/busy DB must not stop the queue
        ui.note(f"database sync failed (will retry): {exc}")
