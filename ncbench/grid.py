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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncbench.errors import (ConfigError, ParameterError, RunAliveError, UsageError,
                            WorkdirBusyError, did_you_mean, plural)
from ncbench.executors import get_executor
from ncbench.executors.base import NullUI
from ncbench.lifecycle import (
    ALIVE, DIVERGED, DONE, END_STATUSES, FAILED, FINISHED, INTERRUPTED, LOST, NEW, QUEUED, RunState,
    classify_run, STALE_AFTER_S, end_lost_attempt, honours_retry, why_not_start,
)
from ncbench.dbfile import missing_parts
from ncbench.rundir import MANAGER_LOCK, TRASH_DIR, run_dir_of, run_dirs
from ncbench.runs import RunSpec
from ncbench.store import Store, query_dicts, read_connection

__all__ = [
    "Plan", "plan_runs", "GridResult", "run_grid", "delete_runs", "MISSING_DIR_NOTE",
    "requeued_runs", "again_for", "lock_workdir",
    "executor_options", "LOCAL_OPTIONS", "SyncReport", "sync_workdir",
]


# ----------------------------------------------------------------------------------------------
# what to do with each run: skip, start, resume
# ----------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """`plan_runs` result: `todo` (specs to start, declared order), `skipped` (run_id -> reason:
    already done/diverged, or alive elsewhere), `resumed` (run_id -> note, for lost runs whose
    dead attempt got an `end interrupted`), `states` (run_id -> RunState), `rerun` (run_id ->
    the status it had, for the runs `--rerun` trains again from scratch; they are in `todo`)."""

    todo: list[RunSpec] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    resumed: dict[str, str] = field(default_factory=dict)
    states: dict[str, RunState] = field(default_factory=dict)
    rerun: dict[str, str] = field(default_factory=dict)

    def action(self, run_id: str) -> str:
        """What the plan does with a run, in words (`ncbench run --dry-run`): `skip (<reason>)`,
        `rerun (was <status>: from scratch)`, `resume` (it has an earlier attempt) or `start`."""
        if run_id in self.skipped:
            return f"skip ({self.skipped[run_id]})"
        if run_id in self.rerun:
            return f"rerun (was {self.rerun[run_id]}: from scratch)"
        state = self.states.get(run_id)
        return "resume" if state is not None and state.status != NEW else "start"


#: Why a run the store has as done (or diverged) is not trained again without its run directory.
MISSING_DIR_NOTE = "run dir missing for a done run: results kept; `--rerun` to train it again"
#: The statuses (of the run directory, else of the store) whose runs `--rerun` trains again.
RERUN_STATUSES = (DONE, DIVERGED, FAILED)


def plan_runs(specs: Sequence[RunSpec], workdir: str | os.PathLike, *,
              stale_after: float = STALE_AFTER_S, mark_lost: bool = True,
              stored: Mapping[str, str] | None = None, rerun: bool = False) -> Plan:
    """Decide per run (`lifecycle.why_not_start`): `done`/`diverged` → skip; `alive` (a worker
    is on it) → skip with a note; `lost` → close its dead attempt (`lifecycle.end_lost_attempt`,
    unless `mark_lost` is False: a dry run writes nothing), then start it (it resumes from its
    checkpoint); `new`/`failed`/`interrupted` → start (resuming if there is a checkpoint).

    "Done" is also what the store says: `stored` (run_id -> stored status) — a run stored as
    done/diverged whose run directory is missing (or has no attempt) is skipped with
    `MISSING_DIR_NOTE`. `rerun`: runs whose directory (else the store) says done, diverged or
    failed go to `plan.rerun` and `todo` instead (`run_grid` deletes them first)."""
    plan = Plan()
    stored = stored or {}
    for spec in specs:
        d = run_dir_of(workdir, spec.run_id)
        state = classify_run(d, stale_after=stale_after) if d.is_dir() else RunState(NEW)
        plan.states[spec.run_id] = state
        was = state.status if state.status != NEW else stored.get(spec.run_id)
        if rerun and was in RERUN_STATUSES:
            plan.rerun[spec.run_id] = was
            plan.todo.append(spec)
            continue
        reason = why_not_start(state)
        if reason is None and state.status == NEW and stored.get(spec.run_id) in FINISHED:
            reason = MISSING_DIR_NOTE
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
    line's (non-None) values, checked here — before anything is registered or run, `--dry-run`
    too — so that each error names where the value came from: a UsageError naming the flag
    (`--workers`) for a command-line value, else a ConfigError naming the config file and key
    (`executor.local.workers`). Unknown keys are ConfigErrors; a Slurm flag given with the local
    executor (or a local one with Slurm) is a UsageError."""
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

        for key in ("workers", "gpus", "per_gpu"):
            if cli.get(key) is not None:
                raise UsageError(_flag(key), "a local executor option: with --executor slurm, "
                                             "ask for GPUs per job with --slurm-gpus N")
        given = {k: v for k, v in cli.items() if k in OPTION_KEYS and v is not None}
        table.update(given)
        check_options(table, config.path, flags=set(given))
        return table
    cli = {k: v for k, v in cli.items() if k in (LOCAL_OPTIONS if name == "local" else ("retries",))}
    table.update({k: v for k, v in cli.items() if v is not None})
    if name == "local":
        from ncbench.executors.slots import check_options

        with _named_option_errors(config, name, cli):
            check_options(table)
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
             ui_factory=None, dry_run: bool = False, preflight: bool = True,
             rerun: bool = False, only: Sequence[str] | None = None,
             sets: Sequence[str] | None = None) -> GridResult:
    """`ncbench run`'s library function: load and validate the config (ConfigError: nothing is
    stored), check the datasets, register the runs (`queued`), decide per run (skip done /
    diverged / alive elsewhere; resume lost, interrupted, failed), run the rest with the executor,
    and sync the database one last time. `ui_factory(skipped: int) -> RunUI`; `dry_run`: stop
    after the plan (nothing written). `rerun`: the selection's done, diverged and failed runs are
    deleted (rows, metrics, run directory: `delete_runs`) and trained again from scratch.
    `only`/`sets`: `--only KEY=V1,V2` and `--set KEY=VALUE` (`ncbench.selection`)."""
    from ncbench.config import expand, load_config
    from ncbench.paths import check_run_paths, resolve
    from ncbench.preflight import check_datasets, check_runs  # imports torch: the manager only

    paths = resolve(config_path, db_path, workdir)
    check_run_paths(paths, given={"--config": config_path is not None, "--db": db_path is not None,
                                  "--workdir": workdir is not None})
    cfg = load_config(paths.config)
    from ncbench.config import select
    from ncbench.selection import apply_set, parse_only, parse_set, select_specs

    selection, overrides = parse_only(only), parse_set(sets)
    names = select(cfg, list(experiments) if experiments else cfg.default)
    apply_set(cfg, names, overrides)
    specs = select_specs(expand(cfg, names), selection)
    if selection and not specs:
        raise UsageError("--only", "selects none of the runs of " + ", ".join(names))
    _check_data_roots(specs, cfg)
    cli = dict(options or {})
    opts = executor_options(cfg, executor, cli)  # checked here: before anything is registered
    db, wd = paths.db, paths.workdir
    if preflight:
        if executor == "local":  # a Slurm job's GPUs are on its node, not here
            from ncbench.executors.slots import worker_cuda_devices
            from ncbench.preflight import check_devices

            check_devices(specs, cfg, cuda_devices=worker_cuda_devices(opts))
        check_runs(specs, cfg)
        check_datasets(specs, fetch=not dry_run, config=cfg)  # downloads happen here, once
    with _named_option_errors(cfg, executor, cli):
        exe = get_executor(executor, **opts)
    if dry_run:
        plan = plan_runs(specs, wd, mark_lost=False, stored=_stored_statuses(db), rerun=rerun)
        return GridResult(specs, plan, {}, db, wd)

    with lock_workdir(wd):  # one manager per workdir (released even if this process is killed)
        store = Store(db)
        existing = [s.run_id for s in specs if run_dir_of(wd, s.run_id).is_dir()]
        with store.write() as w:
            w.register_runs(specs)
            if existing:
                w.sync(wd, run_ids=existing)
            stored = dict(w.con.execute("SELECT run_id, status FROM runs").fetchall())
        reruns = {}
        if rerun:
            reruns = plan_runs(specs, wd, mark_lost=False, stored=stored, rerun=True).rerun
            delete_runs(store, wd, [s for s in specs if s.run_id in reruns])
            stored.update(dict.fromkeys(reruns, QUEUED))
        plan = plan_runs(specs, wd, stored=stored)
        plan.rerun = reruns
        with store.write() as w:
            if plan.resumed:
                w.sync(wd, run_ids=list(plan.resumed))
            for spec in plan.todo:
                w.set_status(spec.run_id, QUEUED)
        ui = ui_factory(len(plan.skipped)) if ui_factory is not None else NullUI()
        if reruns:
            ui.note(f"--rerun: {len(reruns)} run{'s' if len(reruns) != 1 else ''} that ended "
                    f"done, diverged or failed deleted (rows, events, checkpoints) and trained "
                    f"again from scratch")
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


def _check_data_roots(specs: Sequence[RunSpec], config) -> None:
    """Each run's `data_root` is a readable folder (or one the download can create): a
    ConfigError naming the file, experiment, key `data_root` and the path (`paths.path_problem`)."""
    from ncbench.paths import path_problem

    seen: set[tuple[str, str, bool]] = set()
    for spec in specs:
        key = (spec.experiment, spec.data_root, spec.download)
        if key in seen or not spec.data_root:
            continue
        seen.add(key)
        problem = path_problem(spec.data_root, kind="dir", create=spec.download)
        if problem is not None:
            raise config.error(problem, experiment=spec.experiment, key="data_root")


def delete_runs(store: Store, workdir: str | os.PathLike, specs: Sequence[RunSpec], *,
                register_again: bool = True) -> None:
    """Delete these runs whole — their rows and metrics, then their run directories (events,
    checkpoints) — and register them again as queued (`ncbench run --rerun`). The rows go in one
    transaction first: should this stop before the directories are gone, the next sync restores
    the rows from them. Each directory is moved to `<workdir>/trash/` in one step, then removed.
    `register_again=False` (`ncbench rm`): the rows stay gone (`specs` need only a `run_id`).
    RunAliveError, and nothing deleted, when a run is alive (`lifecycle.classify_run`: a fresh
    heartbeat from this host's live pid or from another host)."""
    import shutil

    if not specs:
        return
    # A worker still on a run (here, or a Slurm job of an earlier, detached `ncbench run` on
    # another node) would write into the directory again: refuse before anything is deleted.
    alive = [(s.run_id, state.note) for s in specs
             if (d := run_dir_of(workdir, s.run_id)).is_dir()
             and (state := classify_run(d)).status == ALIVE]
    if alive:
        shown = "; ".join(f"{rid}: {note}" for rid, note in alive[:5])
        raise RunAliveError(f"{plural(len(alive), 'run')} still being trained, nothing deleted "
                            f"({shown}{'; ...' if len(alive) > 5 else ''}); stop them first "
                            "(Ctrl-C on their `ncbench run`, `scancel` for Slurm jobs, x in "
                            "the TUI) or wait until they end")
    with store.write() as w:
        w.delete_runs([s.run_id for s in specs])
        if register_again:
            w.register_runs(specs)
    trash = Path(workdir) / TRASH_DIR
    for spec in specs:
        d = run_dir_of(workdir, spec.run_id)
        if d.is_dir():
            trash.mkdir(parents=True, exist_ok=True)
            gone = trash / f"{spec.run_id}.{os.getpid()}"
            shutil.rmtree(gone, ignore_errors=True)
            os.replace(d, gone)
            shutil.rmtree(gone, ignore_errors=True)


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
    """run_id -> stored status ({} without a database or a `runs` table: the writer, which
    re-creates a dropped table, comes next; a damaged or foreign file is a StoreError)."""
    if not db_path.exists():
        return {}
    with read_connection(db_path, check=False) as con:
        if "table runs" in missing_parts(con):
            return {}
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
