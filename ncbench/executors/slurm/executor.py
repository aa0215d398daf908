"""The Slurm executor: submit each run as a job through submitit, then follow the jobs until over.

`SlurmExecutor.run` prepares each run directory, submits a `SlurmRunJob(run_dir)` per run
(all runs as one job array when `array` is on, at most `array_parallelism` at a time), records
the job id in the run dir (`slurm.json`) and in the database (`slurm_job_id`, executor `slurm`,
status `queued`), then — unless `detach` — polls until every job is over: Slurm's view of each
job (`query_jobs`) and the run's own event log (read from the shared filesystem and ingested
with `store.sync`) decide the run's status (`decide`, `apply_verdict`). `refresh(db_path,
workdir)` does one such poll for `ncbench sync`, so a detached grid's results are picked up
later without any manager running. submitit is imported only when jobs are submitted.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncbench.errors import SlurmUnavailableError, StoreError
from ncbench.events import read_events, utcnow_iso
from ncbench.executors.base import NullUI, RunUI, RunView, RunWatcher
from ncbench.executors.slurm.job import SlurmRunJob
from ncbench.executors.slurm.options import check_options
from ncbench.executors.slurm.scheduler import query_jobs, slurm_available
from ncbench.executors.slurm.verdict import (
    apply_verdict, decide, last_end_error, read_record, write_record,
)
from ncbench.lifecycle import (
    ACTIVE, FAILED, QUEUED, RUNNING, ended_attempts, prepare_run_dir, retries_again,
)
from ncbench.rundir import run_dir_of, slurm_dir
from ncbench.runs import RunSpec

__all__ = ["SlurmExecutor", "refresh"]


@dataclass
class _Tracked:
    """One run the manager follows: its job record, its watcher (the progress view) and the
    retries it has left; `done` once its verdict is final and it is not submitted again."""

    spec: RunSpec
    run_dir: Path
    record: dict
    watcher: RunWatcher
    retries_left: int = 0
    done: bool = False


class SlurmExecutor:
    """`ncbench run --executor slurm`: see the module doc. Options: the keys of SlurmOptions
    (`[executor.slurm]` and the command line); `config_file` names the file in errors."""

    name = "slurm"

    def __init__(self, config_file: str | os.PathLike | None = None, **options: Any):
        self.options = check_options(options, config_file)

    # -- submission ------------------------------------------------------------------------------
    def _submitit(self, workdir: Path):
        import submitit

        folder = slurm_dir(workdir) / "%j"
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.options.max_requeues,
                                    python=self.options.python)
        ex.update_parameters(**self.options.sbatch_parameters())
        return ex

    def submit(self, specs: Sequence[RunSpec], workdir: Path) -> dict[str, dict]:
        """Submit one job per run (one array when `array` and more than one run); write each
        run's slurm.json; returns run_id -> record."""
        if not specs:
            return {}
        if shutil.which("sbatch") is None:
            raise SlurmUnavailableError(
                "--executor slurm: `sbatch` is not on PATH (no Slurm client here). Run on a login "
                "node of the cluster, or start a local test cluster with scripts/slurm-local.sh start")
        ex = self._submitit(workdir)
        dirs = [prepare_run_dir(workdir, s) for s in specs]
        ends = [ended_attempts(read_events(d)) for d in dirs]
        fns = [SlurmRunJob(d) for d in dirs]
        try:
            if self.options.array and len(fns) > 1:
                ex.update_parameters(job_name="ncbench")
                jobs = ex.submit_array(fns)
            else:
                jobs = []
                for spec, fn in zip(specs, fns):
                    ex.update_parameters(job_name=f"ncbench-{spec.run_id}")
                    jobs.append(ex.submit(fn))
        except Exception as exc:  # sbatch refused: show Slurm's own words
            msg = str(exc).strip().splitlines()
            raise SlurmUnavailableError("sbatch refused the job(s): "
                                        + next((m for m in reversed(msg) if "error" in m.lower()),
                                               msg[-1] if msg else type(exc).__name__)) from None
        out = {}
        for spec, d, n_end, job in zip(specs, dirs, ends, jobs):
            record = {"job_id": str(job.job_id), "submitted_at": utcnow_iso(),
                      "submitted_unix": time.time(), "ends_before": n_end,
                      "stderr": str(job.paths.stderr), "stdout": str(job.paths.stdout),
                      "submission": str(job.paths.submission_file)}
            write_record(d, record)
            out[spec.run_id] = record
        return out

    # -- the manager loop ------------------------------------------------------------------------
    def run(self, specs: Sequence[RunSpec], workdir: Path, store,
            ui: RunUI | None = None, requeued=None) -> dict[str, str]:
        """Submit `specs` (adopting runs whose recorded job is still queued or running), then
        poll until all are over (or return at once with `detach`); returns run_id -> status.
        `requeued` is not used: every run is submitted at once, and Slurm queues them; runs
        retried meanwhile are submitted by `run_grid` when this returns."""
        ui = ui or NullUI()
        workdir = Path(workdir)
        tracked: dict[str, _Tracked] = {}
        to_submit: list[RunSpec] = []
        recorded = {s.run_id: read_record(run_dir_of(workdir, s.run_id)) for s in specs}
        alive = query_jobs([r["job_id"] for r in recorded.values() if r and r.get("job_id")])
        for spec in specs:
            rec = recorded[spec.run_id]
            job = alive.get(rec.get("job_id")) if rec else None
            if rec and job is not None and job.status in ACTIVE:
                ui.note(f"run {spec.run_id}: Slurm job {rec['job_id']} is still {job.state}; "
                        "following it (not submitted again)")
                tracked[spec.run_id] = self._track(spec, workdir, rec)
            else:
                to_submit.append(spec)
        records = self.submit(to_submit, workdir)
        for spec in to_submit:
            tracked[spec.run_id] = self._track(spec, workdir, records[spec.run_id])
        if records:
            ids = sorted({r["job_id"].split("_")[0] for r in records.values()})
            array = " (array)" if self.options.array and len(records) > 1 else ""
            ui.note(f"submitted {len(records)} run(s) to Slurm: job{'s' if len(ids) > 1 else ''} "
                    f"{', '.join(ids)}{array}")
        with store.write() as w:
            for t in tracked.values():
                w.set_status(t.spec.run_id, QUEUED, executor="slurm",
                             slurm_job_id=t.record["job_id"], error=None, finished_at=None, slot=None)
        views = {rid: t.watcher.view for rid, t in tracked.items()}
        if self.options.detach:
            ui.update(list(views.values()))
            ui.note(f"detached: {len(tracked)} Slurm job(s) run on; `ncbench sync` picks up "
                    "their results")
            return {rid: QUEUED for rid in tracked}
        return self._poll(tracked, workdir, store, ui)

    def _track(self, spec: RunSpec, workdir: Path, record: dict) -> _Tracked:
        d = run_dir_of(workdir, spec.run_id)
        view = RunView(spec.run_id, spec.label, spec.epochs)
        watcher = RunWatcher(d, view)
        return _Tracked(spec, d, record, watcher, self.options.retries)

    def _poll(self, tracked: dict[str, _Tracked], workdir: Path, store, ui: RunUI) -> dict[str, str]:
        results: dict[str, str] = {}
        try:
            while True:
                active = [t for t in tracked.values() if not t.done]
                if not active:
                    break
                for t in active:
                    t.watcher.poll()
                jobs = query_jobs([t.record["job_id"] for t in active])
                resubmit: list[_Tracked] = []
                try:
                    with store.write() as w:
                        w.sync(workdir, run_ids=[t.spec.run_id for t in active])
                        for t in active:
                            v = decide(t.run_dir, t.record, jobs.get(t.record["job_id"]))
                            apply_verdict(w, t.run_dir, t.record, v)
                            view = t.watcher.view
                            jid = t.record["job_id"]
                            # a run ended in a job that is still finishing shows as running
                            # until the job is over (it may yet be requeued or retried)
                            view.status = v.status if v.final or v.status in ACTIVE else RUNNING
                            view.slot = f"{v.slot} job {jid}" if v.slot else f"job {jid}"
                            view.attempt = v.attempt or view.attempt
                            view.note = f"Slurm {jid} {v.slurm_state or ''}".strip()
                            if v.final:
                                if retries_again(v.status, t.retries_left):
                                    t.retries_left -= 1
                                    resubmit.append(t)
                                    continue
                                t.done = True
                                results[t.spec.run_id] = v.status
                                err = last_end_error(t.run_dir)
                                view.error = err
                                if v.status == FAILED:
                                    ui.note(f"run {t.spec.run_id} ({t.spec.label}) failed: {err}")
                except Exception as exc:  # noqa: BLE001 - a busy database must not stop the loop
                    if not isinstance(exc, StoreError):
                        raise
                    ui.note(f"database sync failed (will retry): {exc}")
                for t in resubmit:
                    ui.note(f"run {t.spec.run_id} failed; submitting it again "
                            f"({t.retries_left} retries left after this)")
                    t.record = self.submit([t.spec], workdir)[t.spec.run_id]
                    t.watcher.view.status = QUEUED
                ui.update([t.watcher.view for t in tracked.values()])
                if any(not t.done for t in tracked.values()):
                    time.sleep(self.options.poll_interval)
        except KeyboardInterrupt:
            left = [t for t in tracked.values() if not t.done]
            ids = " ".join(t.record["job_id"] for t in left)
            ui.note(f"stopped watching: {len(left)} Slurm job(s) run on ({ids}); `ncbench sync` "
                    f"picks up their results, `scancel {ids}` stops them")
            for t in left:
                results[t.spec.run_id] = t.watcher.view.status
        ui.update([t.watcher.view for t in tracked.values()])
        return results


# ----------------------------------------------------------------------------------------------
# refresh: one poll for `ncbench sync` (no manager needed)
# ----------------------------------------------------------------------------------------------


def refresh(db_path: str | os.PathLike, workdir: str | os.PathLike, *,
            lock_timeout: float | None = None) -> int:
    """Bring the database up to date for runs submitted to Slurm that it still shows queued or
    running (`lifecycle.ACTIVE`): ingest their run dirs and apply Slurm's job states (as the
    manager would). Returns the number of runs looked at. Cheap when there is nothing to do (no
    `<workdir>/slurm` folder: returns at once; no such runs: one read-only query). Writes: it is
    `ncbench sync`'s, never a view's. Without Slurm it only ingests the run dirs (it cannot tell
    more); a database that stays locked for `lock_timeout` s (default: the store's) is a
    StoreError."""
    from ncbench.store import LOCK_TIMEOUT, Store, query_dicts, read_connection

    workdir, db_path = Path(workdir), Path(db_path)
    if not slurm_dir(workdir).is_dir() or not db_path.exists():
        return 0
    timeout = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
    with read_connection(db_path, timeout=timeout) as con:
        marks = ", ".join("?" * len(ACTIVE))
        rows = query_dicts(con, f"SELECT run_id FROM runs WHERE executor = 'slurm' "
                                f"AND status IN ({marks})", list(ACTIVE))
    todo = []
    for r in rows:
        d = run_dir_of(workdir, r["run_id"])
        rec = read_record(d)
        if rec and rec.get("job_id"):
            todo.append((d, rec))
    if not todo:
        return 0
    jobs = query_jobs([rec["job_id"] for _, rec in todo], timeout=10.0) if slurm_available() else {}
    store = Store(db_path, lock_timeout=timeout)
    with store.write() as w:
        w.sync(workdir, run_ids=[d.name for d, _ in todo])
        for d, rec in todo:
            job = jobs.get(rec["job_id"])
            if job is None and not slurm_available():
                continue  # cannot tell: leave the run as its events say
            apply_verdict(w, d, rec, decide(d, rec, job))
    return len(todo)
