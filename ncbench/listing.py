"""The one listing of runs — declared in the config and stored — for `ncbench status` and the TUI.

A run of the listing is a `RunRow` (named fields, frozen). Where rows come from:

* declared runs — the RunSpecs of experiments.toml (`declared_rows`): `queued` and not stored
  until the database holds them;
* stored runs — the `runs` table (`read_run_records` → `stored_row`; `stored_rows` does both, with
  the latest metrics, in two queries whatever the number of runs);
* `merge_rows(declared, stored)` — the declared runs in config order (each the stored row where
  the database has one), then the stored runs the config does not declare;
* `list_runs(specs, db_path, ...)` — all of it over one read-only session (`ncbench status`); the
  TUI polls with its incremental `ncbench.tui.data.RunsReader`, built on the same functions.

"Latest metrics" (`STATUS_METRICS`: test accuracy and NC1) has one definition, `latest_metrics`:
for each metric, its value at the highest epoch at which the run recorded it (NaN counts as a
value, NULL — not measured — does not). Metrics are keyed by (run, epoch, name) with no attempt: a
resumed attempt overwrites the epochs after its checkpoint as it reaches them, so the latest
values are those of the attempt that got furthest, i.e. of the latest attempt once it passes the
previous one's last evaluation. A run's `last_epoch` (heartbeat or evaluation, never going back)
is at or above its latest evaluation, so a value recorded at `last_epoch` is the latest one:
`metrics_at` reads such values for a few runs cheaply (the TUI's poller).

`shown_experiments` decides which experiments the views show when none is named. This module
never writes (readers never create the database), never imports torch or training code.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ncbench.lifecycle import DONE, QUEUED, RUN_STATUSES, RUNNING
from ncbench.runs import RunSpec
from ncbench.store import check_ncbench_db, query_dicts, read_connection

if TYPE_CHECKING:
    from ncbench.config import Config

__all__ = [
    "RunRow", "STATUS_METRICS", "RUN_COLUMNS", "declared_rows", "read_run_records", "stored_row",
    "stored_rows", "latest_metrics", "metrics_at", "merge_rows", "list_runs", "status_counts",
    "stored_experiments", "shown_experiments",
]

#: The metrics a listing shows per run (their latest values, see the module docstring).
STATUS_METRICS = ("test_acc", "nc1")


@dataclass(frozen=True)
class RunRow:
    """One run of the listing.

    `last_epoch`: the last epoch the run reached (its heartbeat or its last evaluation; None
    before either); `test_acc`/`nc1`: the latest values (module docstring); `start_epoch`: the
    epoch the latest attempt started from (its checkpoint's when resumed); `note`: remarks on the
    run that are not its error (skipped event lines, a resume from an older checkpoint, ...;
    `runs.note`); `stored`: the database
    holds the run (False: declared in the config only, shown as queued); `listed`: the config
    declares it.
    """

    run_id: str
    experiment: str
    dataset: str
    model: str
    loss: str
    width: float
    epochs: int
    seed: int
    status: str
    last_epoch: int | None = None
    executor: str | None = None
    slot: str | None = None
    device: str | None = None
    host: str | None = None
    attempt: int = 0
    slurm_job_id: str | None = None
    pid: int | None = None
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    start_epoch: int = 0
    note: str | None = None
    test_acc: float | None = None
    nc1: float | None = None
    stored: bool = True
    listed: bool = False

    @property
    def epochs_done(self) -> int:
        """Epochs done: all of them for a `done` run, else `last_epoch` (0 before any)."""
        return self.epochs if self.status == DONE else (self.last_epoch or 0)

    @property
    def progress(self) -> float:
        """Fraction of epochs done, in [0, 1] (1 for a `done` run)."""
        if self.status == DONE:
            return 1.0
        if not self.last_epoch or self.epochs <= 0:
            return 0.0
        return max(0.0, min(1.0, self.last_epoch / self.epochs))

    @property
    def progress_text(self) -> str:
        """`E/N`: epochs done of the run's epochs."""
        return f"{self.epochs_done}/{self.epochs}"

    def elapsed(self, now: datetime) -> float | None:
        """Seconds since the run started (until it finished); None if it never started."""
        if self.started_at is None or self.status == QUEUED:
            return None
        end = self.finished_at if (self.finished_at and self.status != RUNNING) else now
        return max(0.0, (end - self.started_at).total_seconds())

    def eta(self, now: datetime) -> float | None:
        """Estimated seconds left for a running run: the latest attempt's seconds per epoch
        (elapsed since it started / epochs done since `start_epoch`) × epochs left."""
        done = (self.last_epoch or 0) - self.start_epoch
        if self.status != RUNNING or done <= 0:
            return None
        elapsed = self.elapsed(now)
        if elapsed is None:
            return None
        left = max(0, self.epochs - (self.last_epoch or 0))
        return elapsed / done * left

    def heartbeat_age(self, now: datetime) -> float | None:
        """Seconds since the run's last heartbeat (None without one)."""
        hb = self.heartbeat_at
        return (now - hb).total_seconds() if isinstance(hb, datetime) else None

    def field(self, name: str) -> Any:
        """A column's value by name (for filters and sorting)."""
        return getattr(self, name)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """The row as `ncbench status --json` prints it (these keys, in this order)."""
        return {
            "experiment": self.experiment, "run_id": self.run_id, "dataset": self.dataset,
            "model": self.model, "loss": self.loss, "width": self.width, "epochs": self.epochs,
            "seed": self.seed, "status": self.status, "last_epoch": self.last_epoch,
            "executor": self.executor, "slot": self.slot, "device": self.device,
            "host": self.host, "attempt": self.attempt, "slurm_job_id": self.slurm_job_id,
            "pid": self.pid, "heartbeat_at": self.heartbeat_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "error": self.error, "note": self.note,
            "progress": self.progress_text, "heartbeat_age_s": self.heartbeat_age(now),
            "test_acc": self.test_acc, "nc1": self.nc1, "stored": self.stored,
            "listed": self.listed,
        }


# -- declared runs ---------------------------------------------------------------------------

def declared_rows(specs: Iterable[RunSpec]) -> list[RunRow]:
    """The runs `specs` declare, in their order (a run id listed twice, once), as queued rows
    not stored (yet)."""
    rows, seen = [], set()
    for spec in specs:
        if spec.run_id in seen:
            continue
        seen.add(spec.run_id)
        rows.append(RunRow(
            run_id=spec.run_id, experiment=spec.experiment, dataset=spec.dataset,
            model=spec.model, loss=spec.loss, width=float(spec.width), epochs=int(spec.epochs),
            seed=int(spec.seed), status=QUEUED, stored=False, listed=True,
        ))
    return rows


# -- stored runs -----------------------------------------------------------------------------

#: Columns of `runs` a listing reads (`start_epoch` is NULL in a schema version 2 database).
RUN_COLUMNS = ("run_id", "experiment", "dataset", "model", "loss", "width", "epochs", "seed",
               "status", "last_epoch", "executor", "slot", "device", "host", "attempt",
               "slurm_job_id", "pid", "heartbeat_at", "started_at", "finished_at", "error",
               "start_epoch", "note")


def read_run_records(con: Any, experiments: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The `RUN_COLUMNS` of every stored run (optionally only these experiments), as dicts,
    ordered by experiment, creation time and run id — one query."""
    where, params = "", []
    if experiments:
        where = f" WHERE experiment IN ({', '.join('?' * len(experiments))})"
        params = list(experiments)
    order = " ORDER BY experiment, created_at, run_id"
    try:
        return query_dicts(con, f"SELECT {', '.join(RUN_COLUMNS)} FROM runs{where}{order}", params)
    except duckdb.BinderException:  # schema version 2/3 (not written since): no start_epoch/note
        have = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'runs'").fetchall()}
        cols = ", ".join(c if c in have else f"NULL AS {c}" for c in RUN_COLUMNS)
        return query_dicts(con, f"SELECT {cols} FROM runs{where}{order}", params)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def stored_row(record: Mapping[str, Any], latest: Mapping[str, float | None] | None = None, *,
               listed: bool = False) -> RunRow:
    """The row of a stored run: `record` from `read_run_records`, `latest` its metrics
    (`STATUS_METRICS` name -> value; absent: None)."""
    latest = latest or {}
    return RunRow(
        run_id=record["run_id"], experiment=record["experiment"], dataset=record["dataset"],
        model=record["model"], loss=record["loss"], width=float(record["width"]),
        epochs=int(record["epochs"]), seed=int(record["seed"]), status=record["status"],
        last_epoch=record["last_epoch"], executor=record["executor"], slot=record["slot"],
        device=record["device"], host=record["host"], attempt=int(record["attempt"] or 0),
        slurm_job_id=record["slurm_job_id"], pid=record["pid"],
        heartbeat_at=record["heartbeat_at"], started_at=record["started_at"],
        finished_at=record["finished_at"], error=record["error"],
        start_epoch=int(record["start_epoch"] or 0), note=record.get("note"),
        **{m: _num(latest.get(m)) for m in STATUS_METRICS},
        stored=True, listed=listed,
    )


def latest_metrics(con: Any, names: Sequence[str] = STATUS_METRICS,
                   run_ids: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
    """run_id -> {name: the latest value of `name`} (module docstring): the value at the highest
    epoch where the run recorded it, NaN included, NULL skipped. One query for every run (None)
    or only `run_ids`; runs without any of `names` are absent."""
    if not names:
        return {}
    params: list[Any] = list(names)
    sql = (f"SELECT run_id, name, arg_max(value, epoch) FROM metrics "
           f"WHERE name IN ({', '.join('?' * len(names))}) AND value IS NOT NULL")
    if run_ids is not None:
        if not run_ids:
            return {}
        sql += f" AND run_id IN ({', '.join('?' * len(run_ids))})"
        params += list(run_ids)
    out: dict[str, dict[str, float | None]] = {}
    for run_id, name, value in con.execute(sql + " GROUP BY run_id, name", params).fetchall():
        out.setdefault(run_id, {})[name] = value
    return out


def metrics_at(con: Any, epochs: Mapping[str, int], names: Sequence[str] = STATUS_METRICS
               ) -> dict[str, dict[str, float | None]]:
    """run_id -> {name: value recorded at `epochs[run_id]`} for the metrics `names` that the run
    recorded at that epoch (NULL skipped): a lookup on the metrics' primary key, cheap for a few
    runs. At a run's `last_epoch` these are its latest values (module docstring)."""
    if not epochs or not names:
        return {}
    pairs = " OR ".join("(run_id = ? AND epoch = ?)" for _ in epochs)
    rows = con.execute(
        f"SELECT run_id, name, value FROM metrics WHERE name IN ({', '.join('?' * len(names))}) "
        f"AND value IS NOT NULL AND ({pairs})",
        [*names, *(v for pair in epochs.items() for v in pair)],
    ).fetchall()
    out: dict[str, dict[str, float | None]] = {}
    for run_id, name, value in rows:
        out.setdefault(run_id, {})[name] = value
    return out


def stored_rows(con: Any, experiments: Sequence[str] | None = None,
                listed: Collection[str] = ()) -> dict[str, RunRow]:
    """Every stored run (optionally only these experiments) with its latest metrics, keyed by run
    id — two queries, whatever the number of runs. `listed`: the run ids the config declares."""
    records = read_run_records(con, experiments)
    latest = latest_metrics(con, STATUS_METRICS)
    return {r["run_id"]: stored_row(r, latest.get(r["run_id"]), listed=r["run_id"] in listed)
            for r in records}


# -- the listing -----------------------------------------------------------------------------

def merge_rows(declared: Iterable[RunRow], stored: Mapping[str, RunRow], *,
               include_unlisted: bool = True) -> list[RunRow]:
    """The declared runs in their order — the stored row where `stored` has the run, else the
    declared (queued) one — followed, if `include_unlisted`, by the stored runs not declared.
    Rows whose `listed` flag is already right are returned as they are (the TUI's poller keeps
    unchanged rows as the same objects, and the views skip them by identity)."""
    out: list[RunRow] = []
    seen: set[str] = set()
    for row in declared:
        if row.run_id in seen:
            continue
        seen.add(row.run_id)
        db = stored.get(row.run_id)
        out.append(row if db is None else (db if db.listed else replace(db, listed=True)))
    if include_unlisted:
        for run_id, db in stored.items():
            if run_id not in seen:
                out.append(replace(db, listed=False) if db.listed else db)
    return out


def list_runs(specs: Sequence[RunSpec], db_path: str | Path | None,
              experiments: Sequence[str] | None = None, *, include_unlisted: bool = True,
              timeout: float = 10.0, missing_ok: bool = True) -> list[RunRow]:
    """The listing of `ncbench status`: the runs of `specs` (in their order; queued when not in
    the database — nothing is written) followed, if `include_unlisted`, by the stored runs of
    `experiments` (None: all) that `specs` do not declare. A missing database is no error (every
    declared run is queued) unless not `missing_ok` (the user named it: `status --db PATH`); a
    file that is not an ncbench database is a StoreError."""
    declared = declared_rows(specs)
    stored: dict[str, RunRow] = {}
    path = Path(db_path) if db_path is not None else None
    if path is not None and (path.exists() or not missing_ok):
        with read_connection(path, timeout=timeout) as con:
            check_ncbench_db(con, path)
            stored = stored_rows(con, list(experiments) if experiments else None,
                                 listed={r.run_id for r in declared})
    return merge_rows(declared, stored, include_unlisted=include_unlisted)


def status_counts(rows: Iterable[RunRow], *, zeros: bool = False) -> dict[str, int]:
    """Number of rows per status, the known statuses first in their order (`RUN_STATUSES`), then
    any other; statuses without rows are left out unless `zeros`."""
    counts = {s: 0 for s in RUN_STATUSES}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts if zeros else {k: v for k, v in counts.items() if v}


# -- which experiments are shown -------------------------------------------------------------

def stored_experiments(db_path: str | Path) -> set[str]:
    """Experiment names with at least one run in the database (empty if there is no database)."""
    path = Path(db_path)
    if not path.exists():
        return set()
    with read_connection(path) as con:
        return {name for (name,) in con.execute("SELECT DISTINCT experiment FROM runs").fetchall()}


def shown_experiments(config: Config, db_path: str | Path) -> list[str]:
    """The experiments views show when none is named: the config's `default` ones and every one
    with stored runs, in file order — not the untouched grids of a shared experiments.toml
    (e.g. the paper's GPU grids on a laptop)."""
    active = set(config.default) | stored_experiments(db_path)
    return [name for name in config.names if name in active]
