"""The worker process of one run: `python -m ncbench.worker RUN_DIR`.

It reads `RUN_DIR/spec.json`, resumes from the run's checkpoint if one verifies, trains
(`ncbench.train.train_run`) and reports through `RUN_DIR/events.jsonl` (`ncbench.events`; the
file names are `ncbench.rundir`'s, the statuses and attempt numbers `ncbench.lifecycle`'s):

- `start` (once setup is done): attempt, host, device, pid, resumed_from_epoch, resume_note
  (damaged checkpoints passed over — `ncbench.checkpoint` — also written as a `note` event and
  to stderr; None), plus `slot`, `executor`, `cuda_visible_devices` and `threads` as given by
  the executor;
- `eval` per evaluation — an epoch already in the log (a resumed run redoing epochs after its
  last checkpoint) is not logged again;
- `end`: done | diverged | interrupted | failed (error = one line, `Type: message`; the full
  traceback goes to stderr, which the local executor sends to `RUN_DIR/worker.log`).

A heartbeat thread rewrites `RUN_DIR/heartbeat.json` every `HEARTBEAT_SECONDS` (pid, host, time,
epoch = epochs completed, batch, batches, phase) from process start until exit.

Signals: SIGTERM and SIGINT ask for a graceful stop — training stops before its next batch and
the run ends `interrupted` (resumable from its last checkpoint); further signals are ignored
(the local executor uses SIGKILL for "stop now"). If `NCBENCH_PARENT_PID` is set (the local
executor sets it), the worker asks Linux to send it SIGTERM when its parent dies
(`prctl(PR_SET_PDEATHSIG)`), so a killed manager leaves no orphan training on.

Environment read: `NCBENCH_ATTEMPT` (attempt number; default `lifecycle.next_attempt`: 1 + the
number of `end` events already in the log), `NCBENCH_SLOT`, `NCBENCH_EXECUTOR`, `NCBENCH_THREADS` (torch CPU threads),
`NCBENCH_PARENT_PID`, `CUDA_VISIBLE_DEVICES` (recorded).

Standby. With `NCBENCH_STANDBY=1` the worker imports torch and the registries and loads the
run's dataset first (the slow part of its start, 2–5 s) and then waits for one JSON line on stdin, `{"env": {...}}`, whose
variables (NCBENCH_SLOT, NCBENCH_ATTEMPT, NCBENCH_THREADS, CUDA_VISIBLE_DEVICES — CUDA is not
initialised yet) it applies before it starts; EOF instead cancels it (exit 5, nothing written).
The local executor starts the next queued run's worker this way while the slots are busy, so a
queue of short runs does not pay the start-up time between runs.

Exit codes: 0 done, 1 failed (an exception; `end` written), 2 usage (no/invalid spec.json:
nothing written), 3 diverged, 4 interrupted, 5 cancelled while on standby (nothing written).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from ncbench.events import PHASE_DONE, PHASE_SETUP, PHASE_TRAIN, read_events
from ncbench.lifecycle import DIVERGED, DONE, FAILED, INTERRUPTED

HEARTBEAT_SECONDS = 2.0
#: The worker's exit code per outcome: the run's end status, or why it never started.
EXIT_CODES = {DONE: 0, FAILED: 1, "usage": 2, DIVERGED: 3, INTERRUPTED: 4, "cancelled": 5}


def _set_parent_death_signal() -> None:
    """Linux: SIGTERM this process when its parent (the local manager) dies."""
    parent = os.environ.get("NCBENCH_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def eval_line(epoch: int, metrics: dict[str, float]) -> str:
    """The worker log's line for one evaluation: headline metrics and the evaluation's cost as a
    fraction of a training epoch (`eval_seconds / epoch_seconds`), e.g.
    `ncbench worker: epoch 5: train_acc 0.912, test_acc 0.870, nc1 0.123 | epoch 41.2 s, eval 6.3 s
    = 0.15 epoch`."""
    shown = [f"{k} {metrics[k]:.4g}" for k in ("train_loss", "train_acc", "val_acc", "test_acc", "nc1")
             if isinstance(metrics.get(k), (int, float))]
    line = f"ncbench worker: epoch {epoch}: " + ", ".join(shown)
    ep, ev = metrics.get("epoch_seconds"), metrics.get("eval_seconds")
    if isinstance(ep, (int, float)) and isinstance(ev, (int, float)):
        frac = f" = {ev / ep:.2f} epoch" if ep > 0 else ""
        line += f" | epoch {ep:.3g} s, eval {ev:.3g} s{frac}"
    return line


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message` (the cause shown in the database and the UI)."""
    msg = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {msg[0]}" if msg and msg[0] else type(exc).__name__
    return text[:500]


class WorkerSink:
    """The `ncbench.train.Sink` of a worker: events to the EventLog, progress to the heartbeat.

    Holds `log` (EventLog), `attempt`, `info` (extra fields of the start event), `logged`
    (epochs with an eval event already in the log), and the progress the heartbeat reports:
    `epoch` (completed), `batch`, `batches`, `phase` (`ncbench.events.HEARTBEAT_PHASES`)."""

    def __init__(self, log, attempt: int, info: dict[str, Any]):
        self.log, self.attempt, self.info = log, attempt, info
        self.logged = {int(e["epoch"]) for e in read_events(log.run_dir)
                       if e.get("type") == "eval" and "epoch" in e}
        self.epoch: int | None = None
        self.batch = 0
        self.batches = 0
        self.phase = PHASE_SETUP

    def start(self, *, device: str, resumed_from_epoch: int | None, **info: Any) -> None:
        self.epoch = resumed_from_epoch or 0
        self.phase = PHASE_TRAIN
        note = info.get("resume_note")
        self.log.start(self.attempt, device=device, resumed_from_epoch=resumed_from_epoch,
                       **self.info, **info)
        if note:  # damaged checkpoints passed over (ncbench.checkpoint): worker.log, a note event
            print(f"ncbench worker: checkpoint: {note}", file=sys.stderr, flush=True)
            self.log.note(f"checkpoint: {note}")

    def eval(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch in self.logged:
            return
        self.log.eval(epoch, metrics)
        self.logged.add(epoch)
        print(eval_line(epoch, metrics), file=sys.stderr, flush=True)

    def progress(self, epoch: int, batch: int, batches: int) -> None:
        self.epoch, self.batch, self.batches = epoch, batch, batches

    def beat(self) -> None:
        self.log.heartbeat(self.epoch, batch=self.batch, batches=self.batches, phase=self.phase,
                           attempt=self.attempt)


class Heartbeat(threading.Thread):
    """Daemon thread calling `sink.beat()` every `interval` seconds until `stop()`."""

    def __init__(self, sink: WorkerSink, interval: float = HEARTBEAT_SECONDS):
        super().__init__(name="ncbench-heartbeat", daemon=True)
        self.sink, self.interval = sink, interval
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.sink.beat()
            except OSError as exc:  # a full disk must not kill training
                print(f"ncbench worker: heartbeat failed: {exc}", file=sys.stderr, flush=True)
            if self._halt.wait(self.interval):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _wait_for_go() -> bool:
    """Standby (NCBENCH_STANDBY=1): block until the executor writes one JSON line on stdin,
    `{"env": {...}}`, and apply its variables (slot, attempt, CUDA_VISIBLE_DEVICES, threads: CUDA
    is not initialised yet, so they still take effect). False on EOF (the executor cancelled)."""
    import json

    line = sys.stdin.readline()
    if not line.strip():
        return False
    msg = json.loads(line)
    for key, value in (msg.get("env") or {}).items():
        os.environ[str(key)] = str(value)
    return True


def _preimport() -> None:
    """Import what training needs (torch, the registries) — the slow part of a worker's start,
    done before a standby worker is given the go."""
    import ncbench.batches  # noqa: F401
    import ncbench.data  # noqa: F401
    import ncbench.losses  # noqa: F401
    import ncbench.models  # noqa: F401
    import ncbench.nc  # noqa: F401
    import ncbench.train  # noqa: F401
    import torch._dynamo  # noqa: F401  (torch.optim.Optimizer's first use imports it: seconds)


def main(argv: list[str] | None = None) -> int:
    """Run the worker on `argv[0]` (the run dir); returns the exit code (see module doc)."""
    _set_parent_death_signal()
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m ncbench.worker RUN_DIR", file=sys.stderr)
        return EXIT_CODES["usage"]
    run_dir = Path(argv[0])

    from ncbench.events import EventLog, read_spec
    from ncbench.lifecycle import end_attempt, next_attempt
    from ncbench.rundir import SPEC_FILE

    try:
        spec = read_spec(run_dir)
    except (OSError, ValueError, TypeError) as exc:
        print(f"ncbench worker: cannot read {run_dir / SPEC_FILE}: {exc}", file=sys.stderr)
        return EXIT_CODES["usage"]

    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        if not stop.is_set():
            print(f"ncbench worker: {signal.Signals(signum).name} received, stopping before the "
                  f"next batch", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    dataset = None
    if os.environ.get("NCBENCH_STANDBY") == "1":
        import time

        t0 = time.monotonic()
        try:
            _preimport()
            from ncbench.train import load_dataset

            dataset = load_dataset(spec)
        except BaseException:  # noqa: BLE001 - train_run meets it again and reports it
            dataset = None
        print(f"ncbench worker: on standby (imports and data took {time.monotonic() - t0:.1f} s)",
              file=sys.stderr, flush=True)
        # Once the executor has said go, the run is started: even if a stop signal came in the
        # meantime, go on (train_run returns INTERRUPTED before its first batch) so that the
        # attempt ends with an `end` event like every other.
        if not _wait_for_go():
            return EXIT_CODES["cancelled"]

    log = EventLog(run_dir, spec.run_id)
    attempt = int(os.environ.get("NCBENCH_ATTEMPT") or next_attempt(run_dir))
    info = {
        "slot": os.environ.get("NCBENCH_SLOT"),
        "executor": os.environ.get("NCBENCH_EXECUTOR"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "threads": int(os.environ["NCBENCH_THREADS"]) if os.environ.get("NCBENCH_THREADS") else None,
        "host": socket.gethostname(),
    }
    sink = WorkerSink(log, attempt, info)
    beat = Heartbeat(sink)
    beat.start()
    print(f"ncbench worker: run {spec.run_id} ({spec.label}), attempt {attempt}, pid {os.getpid()}",
          file=sys.stderr, flush=True)
    status, error = FAILED, None
    try:
        from ncbench.train import train_run

        status = train_run(spec, sink, run_dir=run_dir, should_stop=stop.is_set, dataset=dataset)
    except KeyboardInterrupt:
        status, error = INTERRUPTED, "KeyboardInterrupt"
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then the code says it
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        status, error = FAILED, one_line(exc)
    finally:
        sink.phase = PHASE_DONE
        beat.stop()
        try:
            sink.beat()
        except OSError:
            pass
    end_attempt(log, status, error)
    print(f"ncbench worker: run {spec.run_id} ended {status}" + (f": {error}" if error else ""),
          file=sys.stderr, flush=True)
    return EXIT_CODES[status]


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk (events fsync'd): skip the interpreter's teardown of torch, which
    # costs a second or more and delays the next run's start.
    os._exit(code)
