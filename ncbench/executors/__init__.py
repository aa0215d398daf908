"""Executors: how the runs of a grid get computed (local slots, or Slurm jobs).

An executor takes the runs to do, starts one worker per run (`python -m ncbench.worker RUN_DIR`
locally, a Slurm job elsewhere), keeps the database in step with the run directories
(`store.sync`, open-write-close, never holding the file), reports progress to a `RunUI`, and
returns each run's final status. The contract (used by `ncbench run` and implemented by
`ncbench.executors.local.LocalExecutor` and `ncbench.executors.slurm`):

    class Executor(Protocol):
        name: str                                          # "local" | "slurm" → runs.executor
        def run(self, specs: Sequence[RunSpec], workdir: Path, store: Store, ui: RunUI,
                requeued: Callable[[set[str]], list[RunSpec]] | None = None,
                ) -> dict[str, str]                        # run_id -> final status

`requeued(held)` (optional to use): the runs set back to `queued` meanwhile (the TUI's retry),
leaving out the run ids in `held` (those the executor has queued or running);
an executor with free capacity may start them before its own queue ends (the local one does,
whenever a slot frees up); `run_grid` runs whatever is left once the executor returns.

`specs` are the runs to do now, in the declared order, already registered in the store and
already filtered by `plan_runs` (done/diverged/alive-elsewhere runs are not passed). The
executor calls `prepare_run_dir` for each before starting it. It must leave every run it was
given in a final state in the database: `done`, `failed`, `diverged` or `interrupted` — a worker
that died without writing an `end` event gets one from the executor (`mark_ended`).

Shared helpers here: `prepare_run_dir`, `plan_runs`/`classify_run` (what to do with a run given
what its directory says), `RunWatcher` (incremental reading of a run's events and heartbeat for
the UI), `RunView`/`RunUI`/`NullUI` (what the progress display receives), `next_attempt`,
`mark_ended`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ncbench.errors import NcbenchError
from ncbench.events import (
    EventLog, HEARTBEAT_FILE, parse_time, read_events, read_events_from, read_heartbeat, write_spec,
)
from ncbench.runs import RunSpec

if TYPE_CHECKING:  # pragma: no cover
    from ncbench.store import Store

__all__ = [
    "Executor", "RunUI", "NullUI", "RunView", "RunWatcher", "RunState", "prepare_run_dir",
    "run_dir_of", "classify_run", "plan_runs", "next_attempt", "mark_ended", "STALE_AFTER_S",
    "TERMINAL", "get_executor", "run_grid", "requeued_runs", "lock_workdir", "WorkdirBusyError",
]

from ncbench.events import STALE_AFTER_S  # noqa: E402  (re-exported)
#: Statuses a rerun never starts again (a diverged run would diverge again: it is deterministic).
TERMINAL = ("done", "diverged")


class Executor(Protocol):
    """See the module docstring."""

    name: str

    def run(self, specs: Sequence[RunSpec], workdir: Path, store: "Store", ui: "RunUI",
            requeued: Callable[[set[str]], list[RunSpec]] | None = None) -> dict[str, str]:
        ...


def get_executor(name: str, **options: Any) -> Executor:
    """`local` → LocalExecutor(**options); `slurm` → ncbench.executors.slurm.SlurmExecutor
    (imported lazily: submitit is only needed there)."""
    if name == "local":
        from ncbench.executors.local import LocalExecutor, parse_gpus

        options = dict(options)
        if "gpus" in options:
            options["gpus"] = parse_gpus(options["gpus"])
        return LocalExecutor(**options)
    if name == "slurm":
        from ncbench.executors import slurm

        return slurm.SlurmExecutor(**options)
    from ncbench.errors import UnknownNameError

    raise UnknownNameError("executor", name, ["local", "slurm"])


# ----------------------------------------------------------------------------------------------
# run directories
# ----------------------------------------------------------------------------------------------


def run_dir_of(workdir: str | os.PathLike, run_id: str) -> Path:
    """`<workdir>/runs/<run_id>`."""
    return Path(workdir) / "runs" / run_id


def prepare_run_dir(workdir: str | os.PathLike, spec: RunSpec) -> Path:
    """Create `<workdir>/runs/<run_id>/` and (re)write its spec.json atomically; returns it.
    Existing events, checkpoint and heartbeat are kept (a rerun resumes from them)."""
    d = run_dir_of(workdir, spec.run_id)
    write_spec(d, spec)
    return d


def next_attempt(run_dir: str | os.PathLike) -> int:
    """The attempt number of the next start: 1 + the number of `end` events in the log (every
    attempt ends with one: written by the worker, or by the executor for a dead worker)."""
    return 1 + sum(1 for e in read_events(run_dir) if e.get("type") == "end")


def mark_ended(run_dir: str | os.PathLike, status: str, error: str | None, **info: Any) -> None:
    """Append an `end` event for a worker that could not write its own (killed, lost)."""
    EventLog(run_dir).end(status, error=error, by="executor", **info)


# ----------------------------------------------------------------------------------------------
# what to do with each run: skip, start, resume
# ----------------------------------------------------------------------------------------------


@dataclass
class RunState:
    """What a run directory says about a run.

    `status`: `new` (no attempt yet), `done` / `diverged` / `failed` / `interrupted` (last `end`),
    `alive` (started, no `end`, heartbeat fresh — a worker is on it, here or elsewhere), or
    `lost` (started, no `end`, heartbeat stale or its pid dead on this host: its manager was
    killed). `note`: a human explanation; `heartbeat`: heartbeat.json or None; `last_epoch`:
    the last evaluated epoch (None if none)."""

    status: str
    note: str = ""
    heartbeat: dict | None = None
    last_epoch: int | None = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def classify_run(run_dir: str | os.PathLike, *, now: datetime | None = None,
                 stale_after: float = STALE_AFTER_S, host: str | None = None) -> RunState:
    """Classify a run from its directory (events.jsonl and heartbeat.json).

    A run whose last `start` has no `end` after it is `alive` when its heartbeat is fresher than
    `stale_after` seconds and — if the heartbeat is from this host — its pid still exists;
    otherwise `lost`. A heartbeat from another host is judged by its age alone."""
    run_dir = Path(run_dir)
    events = read_events(run_dir)
    status, last_epoch, ended_at = "new", None, None
    for e in events:
        kind = e.get("type")
        if kind == "start":
            status = "started"
        elif kind == "end":
            status, ended_at = e.get("status") or "failed", parse_time(e.get("time"))
        elif kind == "eval" and isinstance(e.get("epoch"), int):
            last_epoch = max(e["epoch"], last_epoch or 0)
    beat = read_heartbeat(run_dir)
    t = parse_time(beat.get("time")) if beat else None
    # A worker in setup (no `start` yet) or training after the last `end`: a newer attempt.
    newer = (beat is not None and beat.get("phase") in ("setup", "train") and t is not None
             and (ended_at is None or t > ended_at))
    if status != "started" and not newer:
        return RunState(status, heartbeat=beat, last_epoch=last_epoch)
    # Started (or still in setup, with a heartbeat) and not ended.
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    host = host or socket.gethostname()
    age = (now - t).total_seconds() if t is not None else None
    beat_host = beat.get("host") if beat else None
    pid = beat.get("pid") if beat else None
    if age is None:
        return RunState("lost", "no heartbeat", beat, last_epoch)
    if age > stale_after:
        return RunState("lost", f"heartbeat {age:.0f} s old (host {beat_host}, pid {pid})", beat, last_epoch)
    if beat_host == host and isinstance(pid, int) and not _pid_alive(pid):
        return RunState("lost", f"worker pid {pid} is gone", beat, last_epoch)
    where = "this host" if beat_host == host else f"host {beat_host}"
    return RunState("alive", f"running on {where} (pid {pid}, heartbeat {age:.0f} s ago)", beat, last_epoch)


@dataclass
class Plan:
    """`plan_runs` result: `todo` (specs to start, declared order), `skipped` (run_id -> reason:
    already done/diverged, or alive elsewhere), `resumed` (run_id -> note, for lost runs whose
    dead attempt got an `end interrupted`), `states` (run_id -> RunState)."""

    todo: list[RunSpec] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    resumed: dict[str, str] = field(default_factory=dict)
    states: dict[str, RunState] = field(default_factory=dict)


def plan_runs(specs: Sequence[RunSpec], workdir: str | os.PathLike, *,
              stale_after: float = STALE_AFTER_S, mark_lost: bool = True) -> Plan:
    """Decide per run: `done`/`diverged` → skip; `alive` (a worker is on it) → skip with a note;
    `lost` → append `end interrupted` for the dead attempt (unless `mark_lost` is False: a dry
    run writes nothing), then start it (it resumes from its checkpoint);
    `new`/`failed`/`interrupted` → start (resuming if there is a checkpoint)."""
    plan = Plan()
    for spec in specs:
        d = run_dir_of(workdir, spec.run_id)
        state = classify_run(d, stale_after=stale_after) if d.is_dir() else RunState("new")
        plan.states[spec.run_id] = state
        if state.status in TERMINAL:
            plan.skipped[spec.run_id] = state.status
        elif state.status == "alive":
            plan.skipped[spec.run_id] = state.note
        else:
            if state.status == "lost":
                if mark_lost:
                    mark_ended(d, "interrupted", f"worker lost: {state.note}")
                plan.resumed[spec.run_id] = state.note
            plan.todo.append(spec)
    return plan


# ----------------------------------------------------------------------------------------------
# progress: what the UI sees
# ----------------------------------------------------------------------------------------------


@dataclass
class RunView:
    """One run as the progress display shows it.

    `status` among queued/running/done/failed/diverged/interrupted; `epoch` epochs completed
    (from the heartbeat), `batch`/`batches` progress inside the current epoch, `metrics` the
    latest evaluation (name -> value), `slot` e.g. "gpu1" / "cpu0", `error` one line or None."""

    run_id: str
    label: str
    epochs: int
    status: str = "queued"
    slot: str | None = None
    attempt: int = 0
    epoch: int = 0
    batch: int = 0
    batches: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None


class RunUI(Protocol):
    """What an executor reports to (the rich display of `ncbench run`, or nothing)."""

    def update(self, views: Sequence[RunView]) -> None:
        """All runs of this invocation, current state (called about once a second)."""

    def note(self, message: str) -> None:
        """A one-line message (a run failed and is retried, Ctrl-C received, …)."""


class NullUI:
    """A RunUI that shows nothing (tests, `--quiet`)."""

    def update(self, views: Sequence[RunView]) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class RunWatcher:
    """Incremental reader of one run directory for the UI: `poll()` reads new event lines and the
    heartbeat and updates `view` (epoch, batch, metrics); `ended` holds the last `end` event
    read (None while the attempt runs)."""

    def __init__(self, run_dir: str | os.PathLike, view: RunView):
        self.run_dir = Path(run_dir)
        self.view = view
        self.ended: dict | None = None
        self._offset = 0

    def skip_existing(self) -> None:
        """Ignore events already in the log (a new attempt's `end` is then the only one seen)."""
        try:
            self._offset = (self.run_dir / "events.jsonl").stat().st_size
        except FileNotFoundError:
            self._offset = 0

    def poll(self) -> list[dict]:
        """Read what is new; returns the new events."""
        events, self._offset = read_events_from(self.run_dir / "events.jsonl", self._offset)
        for e in events:
            if e.get("type") == "eval" and isinstance(e.get("metrics"), dict):
                self.view.metrics = dict(e["metrics"])
                self.view.epoch = max(self.view.epoch, int(e.get("epoch") or 0))
            elif e.get("type") == "start":
                self.view.epoch = int(e.get("resumed_from_epoch") or 0)
            elif e.get("type") == "end":
                self.ended = e
        if (self.run_dir / HEARTBEAT_FILE).exists():
            beat = read_heartbeat(self.run_dir)
            if beat and isinstance(beat.get("epoch"), int):
                self.view.epoch = max(self.view.epoch, beat["epoch"])
                self.view.batch = int(beat.get("batch") or 0)
                self.view.batches = int(beat.get("batches") or 0)
        return events


# ----------------------------------------------------------------------------------------------
# the whole `ncbench run`: config → plan → executor → store
# ----------------------------------------------------------------------------------------------


@dataclass
class GridResult:
    """What `run_grid` did: `specs` (all runs of the selected experiments, declared order),
    `plan` (skips / resumes), `results` (run_id -> final status of the runs executed now),
    `interrupted` (the user stopped the grid), `db_path`, `workdir`."""

    specs: list[RunSpec]
    plan: Plan
    results: dict[str, str]
    db_path: Path
    workdir: Path
    interrupted: bool = False

    @property
    def failed(self) -> list[str]:
        return [r for r, s in self.results.items() if s == "failed"]


LOCAL_OPTIONS = ("workers", "gpus", "per_gpu", "retries")


def executor_options(config, name: str, cli: dict[str, Any]) -> dict[str, Any]:
    """The executor's options: `[executor.<name>]` from the config, overridden by the command
    line's (non-None) values. Unknown keys of `[executor.local]` are a ConfigError."""
    from ncbench.errors import ConfigError, closest

    table = dict((config.executor or {}).get(name, {}))
    if name == "local":
        cli = dict(cli)
        for key in [k for k in cli if k not in LOCAL_OPTIONS]:
            if cli.pop(key) is not None:
                raise ConfigError(None, f"--{key.replace('_', '-')} is a Slurm option: use it with "
                                  "--executor slurm", key=key)
        for key in table:
            if key not in LOCAL_OPTIONS:
                hint = closest(key, LOCAL_OPTIONS)
                raise ConfigError(str(config.path), "unknown key" + (f" (did you mean '{hint}'?)" if hint else "")
                                  + f"; valid: {', '.join(LOCAL_OPTIONS)}", key=f"executor.local.{key}")
    if name == "slurm":  # [executor.slurm] + its flags; checked here so errors name the file
        from ncbench.executors.slurm import OPTION_KEYS, check_options

        table.update({k: v for k, v in cli.items() if k in OPTION_KEYS and v is not None})
        check_options(table, config.path)
        return table
    cli = {k: v for k, v in cli.items() if k in (LOCAL_OPTIONS if name == "local" else ("retries",))}
    table.update({k: v for k, v in cli.items() if v is not None})
    return table


def run_grid(config_path: str | os.PathLike, experiments: Sequence[str] | None = None, *,
             db_path: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
             executor: str = "local", options: dict[str, Any] | None = None,
             ui_factory=None, dry_run: bool = False, preflight: bool = True) -> GridResult:
    """`ncbench run`'s library function: load and validate the config (ConfigError: nothing is
    stored), check the datasets, register the runs (`queued`), decide per run (skip done /
    diverged / alive elsewhere; resume lost, interrupted, failed), run the rest with the executor,
    and sync the database one last time. `ui_factory(skipped: int) -> RunUI`; `dry_run`: stop
    after the plan (nothing written)."""
    from ncbench.config import check_datasets, check_runs, default_db_path, default_workdir, expand, load_config
    from ncbench.store import Store

    cfg = load_config(config_path)
    specs = expand(cfg, list(experiments) if experiments else cfg.default)
    opts = executor_options(cfg, executor, dict(options or {}))
    db = Path(db_path) if db_path is not None else default_db_path(cfg.path)
    wd = Path(workdir) if workdir is not None else default_workdir(cfg.path)
    if preflight:
        check_runs(specs, cfg)
        check_datasets(specs, fetch=not dry_run, config=cfg)  # downloads happen here, once
    exe = get_executor(executor, **opts)
    if dry_run:
        return GridResult(specs, plan_runs(specs, wd, mark_lost=False), {}, db, wd)

    with lock_workdir(wd):  # one manager per workdir (released even if this process is killed)
        store = Store(db)
        existing = [s.run_id for s in specs if run_dir_of(wd, s.run_id).is_dir()]
        with store.write() as w:
            w.register_runs(specs)
            if existing:
                w.sync(wd, run_ids=existing)
        plan = plan_runs(specs, wd)
        with store.write() as w:
            if plan.resumed:
                w.sync(wd, run_ids=list(plan.resumed))
            for spec in plan.todo:
                w.set_status(spec.run_id, "queued")
        ui = ui_factory(len(plan.skipped)) if ui_factory is not None else NullUI()
        for rid, note in plan.resumed.items():
            ui.note(f"run {rid}: its worker was lost ({note}); resuming it from its checkpoint")
        for rid, note in plan.skipped.items():
            if note not in TERMINAL:
                ui.note(f"run {rid} skipped: {note}")
        results: dict[str, str] = {}
        todo = list(plan.todo)
        try:
            results = exe.run(todo, wd, store, ui, requeued=again_for(specs, wd, store))
            # Runs set back to `queued` while the grid ran (the TUI's retry): run them too —
            # only once every run given to the executor has ended (not stopped, not detached).
            while all(results.get(s.run_id) in ("done", "failed", "diverged") for s in todo):
                try:
                    again = requeued_runs(specs, wd, store)
                except Exception as exc:  # noqa: BLE001 - the grid itself is over and stored
                    ui.note(f"could not look for runs queued again: {exc}")
                    break
                if not again:
                    break
                for spec in again:
                    ui.note(f"run {spec.run_id} ({spec.label}) was queued again while the grid "
                            f"ran (a retry): running it now")
                todo += [s for s in again if s not in todo]
                results.update(exe.run(again, wd, store, ui, requeued=again_for(specs, wd, store)))
        finally:
            close = getattr(ui, "close", None)
            if close is not None:
                close()
            ran = [s.run_id for s in todo if run_dir_of(wd, s.run_id).is_dir()]
            if ran:
                store.sync(wd, run_ids=ran)
    return GridResult(specs, plan, results, db, wd, interrupted=_stopped(todo, results))


def _stopped(todo: Sequence[RunSpec], results: dict[str, str]) -> bool:
    """The user stopped the grid: a run left without a final status, or ended interrupted."""
    return any(s.run_id not in results for s in todo) or "interrupted" in results.values()


def again_for(specs: Sequence[RunSpec], workdir: str | os.PathLike, store: "Store"):
    """The executors' `requeued(held)` callback: `requeued_runs` of `specs` but those held."""
    def requeued(held: set[str]) -> list[RunSpec]:
        return requeued_runs([s for s in specs if s.run_id not in held], workdir, store)
    return requeued


def requeued_runs(specs: Sequence[RunSpec], workdir: str | os.PathLike, store: "Store") -> list[RunSpec]:
    """The runs of `specs` with a pending retry request in the store (`retry_requested_at`,
    set by `ncbench.tui.control.retry_run`) whose directory says they ended failed or
    interrupted. The store is synced with the run directories first (a start event clears the
    request); done, diverged and alive runs are never returned (`plan_runs` decides, writing
    nothing)."""
    wd = Path(workdir)
    present = [s for s in specs if run_dir_of(wd, s.run_id).is_dir()]
    if not present:
        return []
    with store.write() as w:
        w.sync(wd, run_ids=[s.run_id for s in present])
        asked = w.retry_requests([s.run_id for s in present])
    plan = plan_runs([s for s in present if s.run_id in asked], wd, mark_lost=False)
    return [s for s in plan.todo if plan.states[s.run_id].status in ("failed", "interrupted")]


class WorkdirBusyError(NcbenchError):
    """Another `ncbench run` manages the runs of this workdir right now."""


def lock_workdir(workdir: str | os.PathLike):
    """Take `<workdir>/manager.lock` (an exclusive `flock`, not blocking) and write this
    process's pid and host in it; returns the open file (closing it, or the process ending in any
    way — even SIGKILL — releases the lock). Raises WorkdirBusyError naming the holder if another
    `ncbench run` has it: two managers would start the same runs twice."""
    import fcntl

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    f = open(wd / "manager.lock", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise WorkdirBusyError(f"another `ncbench run` ({holder}) is running the runs of {wd}; "
                               f"wait for it to finish (`ncbench status` shows its progress), or "
                               f"stop it first") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f
