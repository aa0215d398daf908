"""The results database (DuckDB): one writer at a time, never held open between syncs.

DuckDB lets one process open a file read-write, and while it is open no other process can open it
at all (not even read-only). So:

* the writer (`Store.write()`) opens the file, applies the schema if needed, does its work in one
  transaction, and closes it — every ~1 s at most while `ncbench run` works; an open that meets
  the lock (another writer, or a reader) is retried with short sleeps;
* readers (`read_connection`) open it `read_only=True` and retry the same way, so `status`, `sql`,
  `report` and the TUI never show a lock error and see data at most one sync old;
* readers never create a file: a missing database is a StoreError ("no results yet").

What is stored comes from the run directories (`ncbench.events`): `sync(workdir)` ingests each
run's events.jsonl (incrementally: the byte offset already read is remembered per Store object;
a re-read is harmless because metrics are upserted on their primary key (run_id, epoch, name))
and heartbeat.json. Status comes from the event log once a run has started
(`ncbench.lifecycle.event_status`: the last `end` event wins, else `running`). `set_status` is
for what has no event (queued, slot and Slurm job id). To mark a worker that died without an
`end` event, append one (`ncbench.lifecycle.mark_ended`) so that a later re-ingest agrees.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from ncbench import ingest, schema, usersql
from ncbench.dbfile import (check_ncbench_db, is_damage_error, missing_parts, unreadable,
                            writable_version)
from ncbench.errors import StoreError
from ncbench.events import utcnow
from ncbench.ingest import db_value as _db_value
from ncbench.ingest import join_notes as _join_notes
from ncbench.lifecycle import QUEUED, RUN_STATUSES
from ncbench.rundir import run_dir_of, run_dirs
from ncbench.runs import RunSpec

__all__ = [
    "Store", "StoreWriter", "SyncResult", "read_connection", "is_lock_error", "query_dicts",
    "query_runs", "RUN_FIELDS", "LOCK_TIMEOUT", "check_ncbench_db",
]

#: Columns of `runs` that `set_status(..., **fields)` may set.
RUN_FIELDS = ("started_at", "finished_at", "host", "device", "error", "executor", "slot",
              "attempt", "slurm_job_id", "heartbeat_at", "pid", "last_epoch", "retry_requested_at")
#: Seconds a writer waits for the lock before giving up with a StoreError.
LOCK_TIMEOUT = 60.0
#: Counters of this process (for tests and diagnostics): opens that met the lock and retried.
STATS = {"lock_retries": 0}


def is_lock_error(exc: BaseException) -> bool:
    """True when the file is briefly held by another connection, so retrying will succeed:
    DuckDB's "Could not set lock on file" (another process has it open) and "Can't open a
    connection to same database file with a different configuration" (a read-only connection of
    this process, e.g. the TUI's poller thread, is open while another thread writes, or the
    reverse)."""
    msg = str(exc)
    return isinstance(exc, duckdb.Error) and ("Could not set lock" in msg or "Conflicting lock" in msg
                                              or "different configuration" in msg)


def _connect(path: Path, read_only: bool, timeout: float) -> duckdb.DuckDBPyConnection:
    """Open `path`, retrying on the lock error for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if is_lock_error(exc):
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{path}: the database stayed locked by another process for {timeout:g} s "
                        "(is an old ncbench process stuck? ncbench processes hold it only briefly)"
                    ) from None
                STATS["lock_retries"] += 1
                time.sleep(delay)
                delay = min(delay * 1.5, 0.1)
                continue
            if read_only and not path.exists():
                raise _missing(path) from None
            raise unreadable(path, f"cannot open the database: {_first_line(exc)}") from None


def _one(cursor) -> tuple | None:
    """The first row of a result, fetching it whole (DuckDB 2 refuses new work on a connection
    while a result is unfinished)."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _missing(path: Path) -> StoreError:
    return StoreError(f"no results yet: {path} does not exist (run `ncbench run` first, or "
                      "pass --db PATH)")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextlib.contextmanager
def read_connection(db_path: str | Path, timeout: float = 10.0, *,
                    check: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to `db_path`, closed on exit. Retries while a writer holds the file
    (up to `timeout` s). Never creates a file: a missing database is a StoreError. `check`: the
    file must be an ncbench database with all its tables (`check_ncbench_db`). A DuckDB error
    about a damaged file, at the open or in the body, is a StoreError naming the file and
    `ncbench doctor --rebuild`."""
    path = Path(db_path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a DuckDB database")
    con = _connect(path, read_only=True, timeout=timeout)
    try:
        if check:
            check_ncbench_db(con, path)
        yield con
    except duckdb.Error as exc:
        if is_damage_error(exc):
            raise unreadable(path, _first_line(exc)) from None
        raise
    finally:
        con.close()


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """What one sync did: run dirs read, metric rows upserted, runs whose row changed, and the
    problems met (one line each, naming the run dir: skipped event lines, unreadable files)."""

    runs_seen: int = 0
    metrics_written: int = 0
    runs_updated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Store:
    """The results database at `db_path` (created with its parent folder on first write).

    Each method opens the file for its own short write session; to batch several calls in one
    session, use `with store.write() as w: w.register_runs(...); w.sync(...)`.
    """

    def __init__(self, db_path: str | Path, *, lock_timeout: float = LOCK_TIMEOUT):
        self.db_path = Path(db_path)
        self.lock_timeout = lock_timeout
        # events.jsonl path -> (file identity, byte offset already ingested, line number there)
        self._offsets: dict[str, tuple[tuple[int, int], int, int]] = {}

    @contextlib.contextmanager
    def write(self) -> Iterator["StoreWriter"]:
        """One write session: open read-write (retrying on the lock), apply the schema if
        missing, run the body in a transaction (rolled back on error), close the file."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        if self.db_path.is_file() and self.db_path.stat().st_size == 0:
            self.db_path.unlink()  # an empty file (e.g. made by mktemp): DuckDB refuses to open it
        con = _connect(self.db_path, read_only=False, timeout=self.lock_timeout)
        try:
            _ensure_schema(con, self.db_path)
            con.execute("BEGIN TRANSACTION")
            writer = StoreWriter(self, con)
            try:
                yield writer
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # a damaged file may refuse even this
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            self._offsets.update(writer._pending_offsets)  # only what was committed
        except duckdb.Error as exc:
            if is_damage_error(exc):
                raise unreadable(self.db_path, _first_line(exc)) from None
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                con.close()

    # Convenience: one write session per call.
    def register_runs(self, specs: Iterable[RunSpec]) -> int:
        with self.write() as w:
            return w.register_runs(specs)

    def set_status(self, run_id: str, status: str, **fields: Any) -> bool:
        with self.write() as w:
            return w.set_status(run_id, status, **fields)

    def ingest_run_dir(self, run_dir: str | Path) -> int:
        with self.write() as w:
            return w.ingest_run_dir(run_dir)

    def sync(self, workdir: str | Path, run_ids: Iterable[str] | None = None) -> SyncResult:
        with self.write() as w:
            return w.sync(workdir, run_ids)

    def reset_offsets(self) -> None:
        """Forget what was ingested: the next sync re-reads every event log (idempotent)."""
        self._offsets.clear()


def _ensure_schema(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Apply the schema unless the database holds all of it at this version (a dropped table or
    view is re-created); `dbfile.writable_version` refuses a newer or a foreign database."""
    version = writable_version(con, path)
    if version != schema.SCHEMA_VERSION or missing_parts(con):
        schema.apply(con)


class StoreWriter:
    """The operations of one open write session (see `Store.write`). `con` is the connection."""

    def __init__(self, store: Store, con: duckdb.DuckDBPyConnection):
        self.store, self.con = store, con
        self._pending_offsets: dict[str, tuple[tuple[int, int], int, int]] = {}
        #: What went wrong with run dirs in this session (see `sync`), one line each.
        self.problems: list[str] = []

    def register_runs(self, specs: Iterable[RunSpec]) -> int:
        """Insert the runs not yet stored, as `queued`; existing rows are left untouched (status,
        metrics, config). Returns the number inserted."""
        rows, seen = [], set()
        now = utcnow()
        for spec in specs:
            if spec.run_id in seen:
                continue
            seen.add(spec.run_id)
            rows.append(_run_row(spec, QUEUED, now))
        if not rows:
            return 0
        # Only the new ones, through the appender: executemany is ~1000x slower here (see
        # benchmarks/store_ingest.py). One writer at a time, inside a transaction: no race.
        existing = {r[0] for r in self.con.execute("SELECT run_id FROM runs").fetchall()}
        rows = [r for r in rows if r[_RUN_ID_INDEX] not in existing]
        if rows:
            app = self.con.appender("runs", columns=list(_RUN_INSERT_COLS))
            app.append_rows(rows)
            app.flush()
        return len(rows)

    def set_status(self, run_id: str, status: str, **fields: Any) -> bool:
        """Set `status` (one of lifecycle.RUN_STATUSES) and columns among RUN_FIELDS of one
        run. Returns False if the run is not stored."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        bad = sorted(set(fields) - set(RUN_FIELDS))
        if bad:
            raise ValueError(f"unknown runs column(s) {bad}; settable: {RUN_FIELDS}")
        cols = ["status", *fields]
        values = [status, *(_db_value(k, v) for k, v in fields.items())]
        self.con.execute(
            f"UPDATE runs SET {', '.join(f'{c} = ?' for c in cols)} WHERE run_id = ?",
            [*values, run_id],
        )
        return _one(self.con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]))[0] > 0

    def delete_runs(self, run_ids: Iterable[str]) -> None:
        """Delete these runs' rows and metrics (`ncbench run --rerun`; in this session's
        transaction, so a run is deleted whole or not at all)."""
        ids = list(run_ids)
        self.con.execute("DELETE FROM metrics WHERE list_contains(?, run_id)", [ids])
        self.con.execute("DELETE FROM runs WHERE list_contains(?, run_id)", [ids])

    def retry_requests(self, run_ids: Iterable[str]) -> set[str]:
        """The runs among `run_ids` with a pending retry request (`retry_requested_at` set by
        a retry, cleared when a new attempt starts)."""
        ids = list(run_ids)
        if not ids:
            return set()
        rows = self.con.execute("SELECT run_id FROM runs WHERE list_contains(?, run_id) "
                                "AND retry_requested_at IS NOT NULL", [ids]).fetchall()
        return {r[0] for r in rows}

    def ingest_run_dir(self, run_dir: str | Path) -> int:
        """Read one run dir's new events and heartbeat into the database (`ncbench.ingest`):
        registers the run from spec.json if needed, upserts metrics, updates the run's row, notes
        what had to be skipped. Returns the number of metric rows written."""
        return ingest.ingest_run_dir(self, run_dir)

    def _problem(self, run_dir: Path, run_id: str | None, message: str) -> str:
        return ingest.record_problem(self, run_dir, message)

    def sync(self, workdir: str | Path, run_ids: Iterable[str] | None = None) -> SyncResult:
        """Ingest `<workdir>/runs/<run_id>/` for each of `run_ids` (None: every run dir there).

        One run dir never stops the others: what cannot be read in one (see `ingest_run_dir`)
        is warned about, listed in `SyncResult.problems` and, for a stored run, put in its
        `note`. Only the database itself failing raises (a StoreError)."""
        result = SyncResult()
        dirs = run_dirs(workdir) if run_ids is None else [run_dir_of(workdir, r) for r in run_ids]
        start = len(self.problems)
        for d in dirs:
            try:
                if not d.is_dir():
                    continue
            except OSError:
                continue
            result.runs_seen += 1
            try:
                n = self.ingest_run_dir(d)
            except duckdb.Error as exc:  # the transaction is lost: nothing more can be written
                if is_damage_error(exc):
                    raise
                raise StoreError(f"{d}: this run directory cannot be stored ({_first_line(exc)});"
                                 " move it out of the workdir and run again") from None
            except Exception as exc:  # noqa: BLE001 - one run dir must not stop the others
                message = self._problem(d, d.name, f"cannot be ingested, skipped: "
                                                   f"{type(exc).__name__}: {_first_line(exc)}")
                prev = _one(self.con.execute("SELECT note FROM runs WHERE run_id = ?", [d.name]))
                self.con.execute("UPDATE runs SET note = ? WHERE run_id = ?",
                                 [_join_notes(prev and prev[0], [message]), d.name])
                continue
            result.metrics_written += n
            result.runs_updated.append(d.name)
        result.problems.extend(self.problems[start:])
        return result


_RUN_INSERT_COLS = (*schema.RUN_KEY_COLUMNS, "run_id", "status", "config", "created_at", "attempt")
_RUN_ID_INDEX = _RUN_INSERT_COLS.index("run_id")


def _run_row(spec: RunSpec, status: str, now: datetime) -> tuple:
    return (*(getattr(spec, c) for c in schema.RUN_KEY_COLUMNS), spec.run_id, status,
            json.dumps(spec.to_dict(), allow_nan=False), now, 0)


# ------------------------------------------------------------------------------------------
# reading (for views: status, report, tui)
# ------------------------------------------------------------------------------------------


def query_dicts(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> list[dict]:
    """Rows of a query as dicts (column name -> python value)."""
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def query_runs(con: duckdb.DuckDBPyConnection, experiments: Sequence[str] | None = None,
               run_ids: Sequence[str] | None = None) -> list[dict]:
    """Rows of `runs` (all columns, `config` parsed to a dict), optionally filtered, ordered by
    experiment then created_at."""
    where, params = [], []
    if experiments:
        where.append(f"experiment IN ({', '.join('?' * len(experiments))})")
        params += list(experiments)
    if run_ids is not None:
        if not run_ids:
            return []
        where.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
        params += list(run_ids)
    sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
    rows = query_dicts(con, sql + " ORDER BY experiment, created_at, run_id", params)
    for r in rows:
        try:
            r["config"] = json.loads(r["config"]) if isinstance(r["config"], str) else r["config"]
        except ValueError:
            pass
    return rows


def finite_or_none(value: Any) -> Any:
    """NaN/±inf -> None (for JSON output); other values unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------
# user SQL (ncbench sql) and JSON output of query values
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def sandboxed_connection(db_path: str | Path, timeout: float = 10.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """`read_connection` locked down for user SQL (`ncbench.usersql.sandbox`): `sql`, `report`."""
    with read_connection(db_path, timeout=timeout) as con:
        yield usersql.sandbox(con)


def run_sql(db_path: str | Path, sql: str, timeout: float = 10.0, *, max_rows: int | None = None,
            query_timeout_s: float | None = None) -> tuple[list[str], list[tuple]]:
    """Run a user's query on a sandboxed read-only connection: (column names, rows); ([], []) for
    a statement without a result. `timeout`: seconds to wait for the writer's lock; `max_rows`,
    `query_timeout_s`: see `ncbench.usersql.run_query`. Failures are QueryError."""
    usersql.check_query(sql)
    with sandboxed_connection(db_path, timeout=timeout) as con:
        return usersql.run_query(con, sql, db_path, max_rows=max_rows, timeout_s=query_timeout_s)


def to_jsonable(value: Any) -> Any:
    """A query value as JSON: NaN/±inf -> None, datetimes/dates -> ISO strings, Decimal -> float,
    bytes -> hex, nested lists/dicts converted; anything else unknown -> str."""
    import datetime as _dt
    import decimal
    import uuid

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return to_jsonable(float(value))
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return str(value)
