"""The grid manager: what `ncbench run` does — plan the runs, lock the workdir, run, requeue.

`run_grid` loads and validates the config, registers the runs in the store, asks each run's
directory what to do (`plan_runs`: skip, start, resume — the rules are `ncbench.lifecycle`'s),
hands the runs to an executor (`ncbench.executors.get_executor`), then runs whatever the TUI
queued again meanwhile (`requeued_runs`), and syncs the database one last time. One manager per
workdir: `lock_workdir`. `sync_workdir` is `ncbench sync`: the database brought up to date with
the run directories and the Slurm jobs of a workdir, no manager needed.

Imports go one way: the grid uses the executors, never the reverse.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncbench.errors import ConfigError, ParameterError, UsageError, WorkdirBusyError, did_you_mean
from ncbench.executors import get_executor
from ncbench.executors.base import NullUI
from ncbench.lifecycle import (
    END_STATUSES, FAILED, FINISHED, INTERRUPTED, LOST, NEW, QUEUED, RunState, classify_run,
    STALE_AFTER_S, end_lost_attempt, honours_retry, why_not_start,
)
from ncbench.rundir import MANAGER_LOCK, run_dir_of, run_dirs
from ncbench.runs import RunSpec
from ncbench.store import Store, query_dicts, read_connection

__all__ = [
    "Plan", "plan_runs", "GridResult", "run_grid", "requeued_runs", "again_for", "lock_workdir",
    "executor_options", "LOCAL_OPTIONS", "SyncReport", "sync_workdir",
]


# ----------------------------------------------------------------------------------------------
# what to do with each run: skip, start, resume
# ----------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """`plan_runs` result: `todo` (specs to start, declared order), `skipped` (run_id -> reason:
    already done/diverged, or alive elsewhere), `resumed` (run_id -> note, for lost runs whose
    dead attempt got an `end interrupted`), `states` (run_id -> RunState)."""

    todo: list[RunSpec] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    resumed: dict[str, str] = field(default_factory=dict)
    states: dict[str, RunState] = field(default_factory=dict)

    def action(self, run_id: str) -> str:
        """What the plan does with a run, in words (`ncbench run --dry-run`): `skip (<reason>)`,
        `resume` (it has an earlier attempt) or `start`."""
        if run_id in self.skipped:
            return f"skip ({self.skipped[run_id]})"
        state = self.states.get(run_id)
        return "resume" if state is not None and state.status != NEW else "start"


def plan_runs(specs: Sequence[RunSpec], workdir: str | os.PathLike, *,
              stale_after: float = STALE_AFTER_S, mark_lost: bool = True) -> Plan:
    """Decide per run (`lifecycle.why_not_start`): `done`/`diverged` → skip; `alive` (a worker
    is on it) → skip with a note; `lost` → close its dead attempt (`lifecycle.end_lost_attempt`,
    unless `mark_lost` is False: a dry run writes nothing), then start it (it resumes from its
    checkpoint); `new`/`failed`/`interrupted` → start (resuming if there is a checkpoint)."""
    plan = Plan()
    for spec in specs:
        d = run_dir_of(workdir, spec.run_id)
        state = classify_run(d, stale_after=stale_after) if d.is_dir() else RunState(NEW)
        plan.states[spec.run_id] = state
        reason = why_not_start(state)
        if reason is not None:
            plan.skipped[spec.run_id] = reason
            continue
        if state.status == LOST:
            if mark_lost:
                end_lost_attempt(d, state)
            plan.resumed[spec.run_id] = state.note
        plan.todo.append(spec)
    return plan


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
        return [r for r, s in self.results.items() if s == FAILED]


LOCAL_OPTIONS = ("workers", "gpus", "per_gpu", "retries")


def _flag(key: str) -> str:
    """The `ncbench run` flag of a local executor option (`per_gpu` → `--per-gpu`)."""
    return "--" + key.replace("_", "-")


def executor_options(config, name: str, cli: dict[str, Any]) -> dict[str, Any]:
    """The executor's options: `[executor.<name>]` from the config, overridden by the command
    line's (non-None) values. Unknown keys of `[executor.local]` are a ConfigError; a Slurm
    flag given with the local executor is a UsageError."""
    table = dict((config.executor or {}).get(name, {}))
    if name == "local":
        cli = dict(cli)
        for key in [k for k in cli if k not in LOCAL_OPTIONS]:
            if cli.pop(key) is not None:
                from ncbench.executors.slurm import CLI_FLAGS

                raise UsageError(CLI_FLAGS.get(key, _flag(key)),
                                 "a Slurm option: use it with --executor slurm")
        for key in table:
            if key not in LOCAL_OPTIONS:
                raise ConfigError(str(config.path), "unknown key" + did_you_mean(key, LOCAL_OPTIONS)
                                  + f"; valid: {', '.join(LOCAL_OPTIONS)}", key=f"executor.local.{key}")
    if name == "slurm":  # [executor.slurm] + its flags; checked here so errors name the file
        from ncbench.executors.slurm import OPTION_KEYS, check_options

        table.update({k: v for k, v in cli.items() if k in OPTION_KEYS and v is not None})
        check_options(table, config.path)
        return table
    cli = {k: v for k, v in cli.items() if k in (LOCAL_OPTIONS if name == "local" else ("retries",))}
    table.update({k: v for k, v in cli.items() if v is not None})
    return table


@contextlib.contextmanager
def _named_option_errors(config, name: str, cli: dict[str, Any]) -> Iterator[None]:
    """The local executor's ParameterErrors (a bad `gpus` / `per_gpu` / `workers`, or GPUs not
    visible here; `ncbench.executors.local`) as the error of where the value came from: a
    UsageError naming the flag when the command line gave it, else a ConfigError naming the
    config file and `executor.local.<key>`."""
    try:
        yield
    except ParameterError as exc:
        if name != "local" or exc.key not in LOCAL_OPTIONS:
            raise
        if cli.get(exc.key) is not None:
            raise UsageError(_flag(exc.key), exc.reason) from None
        raise ConfigError(str(config.path), exc.reason, key=f"executor.local.{exc.key}") from None


def run_grid(config_path: str | os.PathLike | None, experiments: Sequence[str] | None = None, *,
             db_path: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
             executor: str = "local", options: dict[str, Any] | None = None,
             ui_factory=None, dry_run: bool = False, preflight: bool = True) -> GridResult:
    """`ncbench run`'s library function: load and validate the config (ConfigError: nothing is
    stored), check the datasets, register the runs (`queued`), decide per run (skip done /
    diverged / alive elsewhere; resume lost, interrupted, failed), run the rest with the executor,
    and sync the database one last time. `ui_factory(skipped: int) -> RunUI`; `dry_run`: stop
    after the plan (nothing written)."""
    from ncbench.config import expand, load_config
    from ncbench.paths import resolve
    from ncbench.preflight import check_datasets, check_runs  # imports torch: the manager only

    paths = resolve(config_path, db_path, workdir)
    cfg = load_config(paths.config)
    specs = expand(cfg, list(experiments) if experiments else cfg.default)
    cli = dict(options or {})
    opts = executor_options(cfg, executor, cli)
    db, wd = paths.db, paths.workdir
    if preflight:
        check_runs(specs, cfg)
        check_datasets(specs, fetch=not dry_run, config=cfg)  # downloads happen here, once
    with _named_option_errors(cfg, executor, cli):
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
                w.set_status(spec.run_id, QUEUED)
        ui = ui_factory(len(plan.skipped)) if ui_factory is not None else NullUI()
        for rid, note in plan.resumed.items():
            ui.note(f"run {rid}: its worker was lost ({note}); resuming it from its checkpoint")
        for rid, note in plan.skipped.items():
            if plan.states[rid].status not in FINISHED:
                ui.note(f"run {rid} skipped: {note}")
        results: dict[str, str] = {}
        todo = list(plan.todo)
        try:
            with _named_option_errors(cfg, executor, cli):  # the local executor makes its slots
                results = exe.run(todo, wd, store, ui, requeued=again_for(specs, wd, store))
            # Runs set back to `queued` while the grid ran (the TUI's retry): run them too —
            # only once every run given to the executor has ended (not stopped, not detached).
            while _all_ended(todo, results):
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
                with _named_option_errors(cfg, executor, cli):
                    results.update(exe.run(again, wd, store, ui,
                                           requeued=again_for(specs, wd, store)))
        finally:
            close = getattr(ui, "close", None)
            if close is not None:
                close()
            ran = [s.run_id for s in todo if run_dir_of(wd, s.run_id).is_dir()]
            if ran:
                store.sync(wd, run_ids=ran)
    return GridResult(specs, plan, results, db, wd, interrupted=_stopped(todo, results))


def _all_ended(todo: Sequence[RunSpec], results: dict[str, str]) -> bool:
    """Every run given to the executor ended by itself (not stopped: interrupted or left
    without a status, e.g. detached)."""
    return all(results.get(s.run_id) in END_STATUSES and results[s.run_id] != INTERRUPTED
               for s in todo)


def _stopped(todo: Sequence[RunSpec], results: dict[str, str]) -> bool:
    """The user stopped the grid: a run left without a final status, or ended interrupted."""
    return any(s.run_id not in results for s in todo) or INTERRUPTED in results.values()


# ----------------------------------------------------------------------------------------------
# runs queued again meanwhile (the TUI's retry)
# ----------------------------------------------------------------------------------------------


def again_for(specs: Sequence[RunSpec], workdir: str | os.PathLike, store: Store):
    """The executors' `requeued(held)` callback: `requeued_runs` of `specs` but those held."""
    def requeued(held: set[str]) -> list[RunSpec]:
        return requeued_runs([s for s in specs if s.run_id not in held], workdir, store)
    return requeued


def requeued_runs(specs: Sequence[RunSpec], workdir: str | os.PathLike, store: Store) -> list[RunSpec]:
    """The runs of `specs` with a pending retry request in the store (`retry_requested_at`,
    set by `ncbench.tui.control.retry_run`) that the request starts again now
    (`lifecycle.honours_retry`: their directory says they ended failed or interrupted). The
    store is synced with the run directories first (a start event clears the request); done,
    diverged and alive runs are never returned (nothing is written to the run directories)."""
    wd = Path(workdir)
    present = [s for s in specs if run_dir_of(wd, s.run_id).is_dir()]
    if not present:
        return []
    with store.write() as w:
        w.sync(wd, run_ids=[s.run_id for s in present])
        asked = w.retry_requests([s.run_id for s in present])
    plan = plan_runs([s for s in present if s.run_id in asked], wd, mark_lost=False)
    return [s for s in plan.todo if honours_retry(plan.states[s.run_id])]


# ----------------------------------------------------------------------------------------------
# one manager per workdir
# ----------------------------------------------------------------------------------------------


def lock_workdir(workdir: str | os.PathLike):
    """Take `<workdir>/manager.lock` (an exclusive `flock`, not blocking) and write this
    process's pid and host in it; returns the open file (closing it, or the process ending in any
    way — even SIGKILL — releases the lock). Raises WorkdirBusyError naming the holder if another
    `ncbench run` has it: two managers would start the same runs twice."""
    import fcntl

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    f = open(wd / MANAGER_LOCK, "a+")
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


# ----------------------------------------------------------------------------------------------
# ncbench sync: run directories and Slurm jobs → database
# ----------------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What `sync_workdir` wrote: `runs_seen` (run directories ingested), `metrics_written`
    (metric rows upserted), `slurm_runs` (runs whose Slurm job was asked about), `changed`
    (run_id -> (status before or None if the run was not stored, status after))."""

    runs_seen: int = 0
    metrics_written: int = 0
    slurm_runs: int = 0
    changed: dict[str, tuple[str | None, str]] = field(default_factory=dict)


def _stored_statuses(db_path: Path) -> dict[str, str]:
    if not db_path.exists():
        return {}
    with read_connection(db_path) as con:
        return {r["run_id"]: r["status"] for r in query_dicts(con, "SELECT run_id, status FROM runs")}


def sync_workdir(db_path: str | os.PathLike, workdir: str | os.PathLike) -> SyncReport:
    """`ncbench sync`: ingest every run directory of `workdir` into the database at `db_path`
    (created if there are run directories to store), then apply Slurm's job states to the runs
    submitted to Slurm that the database still shows queued or running
    (`ncbench.executors.slurm.refresh`: a detached grid's results). Errors are raised, not
    swallowed: a database that stays locked is a StoreError."""
    from ncbench.executors.slurm import refresh

    db, wd = Path(db_path), Path(workdir)
    report = SyncReport()
    if not db.exists() and not run_dirs(wd):
        return report
    before = _stored_statuses(db)
    result = Store(db).sync(wd)
    report.runs_seen, report.metrics_written = result.runs_seen, result.metrics_written
    report.slurm_runs = refresh(db, wd)  # last: its verdicts are the latest word
    after = _stored_statuses(db)
    report.changed = {rid: (before.get(rid), status) for rid, status in after.items()
                      if before.get(rid) != status}
    return report
