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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from ncbench import schema
from ncbench.errors import StoreError
from ncbench.events import parse_time, read_events_from, read_heartbeat, read_spec, utcnow
from ncbench.lifecycle import QUEUED, RUN_STATUSES, event_status
from ncbench.rundir import EVENTS_FILE, run_dir_of, run_dirs
from ncbench.runs import RunSpec

__all__ = [
    "Store", "StoreWriter", "SyncResult", "read_connection", "is_lock_error", "query_dicts",
    "query_runs", "RUN_FIELDS", "LOCK_TIMEOUT",
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
            raise StoreError(f"{path}: cannot open the database: {_first_line(exc)}") from None


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
def read_connection(db_path: str | Path, timeout: float = 10.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to `db_path`, closed on exit. Retries while a writer holds the file
    (up to `timeout` s). Never creates a file: a missing database is a StoreError."""
    path = Path(db_path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a DuckDB database")
    con = _connect(path, read_only=True, timeout=timeout)
    try:
        yield con
    finally:
        con.close()


def check_ncbench_db(con: duckdb.DuckDBPyConnection, path: str | Path = "") -> None:
    """StoreError unless `con` holds an ncbench schema this version can read."""
    try:
        row = _one(con.execute("SELECT value FROM meta WHERE key = 'schema_version'"))
    except duckdb.Error:
        raise StoreError(f"{path}: not an ncbench results database (no `meta` table)") from None
    if row is None or int(row[0]) > schema.SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {row and row[0]} is newer than this ncbench "
                         f"understands ({schema.SCHEMA_VERSION}); upgrade ncbench")


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """What one sync did: run dirs read, metric rows upserted, runs whose row changed."""

    runs_seen: int = 0
    metrics_written: int = 0
    runs_updated: list[str] = field(default_factory=list)


class Store:
    """The results database at `db_path` (created with its parent folder on first write).

    Each method opens the file for its own short write session; to batch several calls in one
    session, use `with store.write() as w: w.register_runs(...); w.sync(...)`.
    """

    def __init__(self, db_path: str | Path, *, lock_timeout: float = LOCK_TIMEOUT):
        self.db_path = Path(db_path)
        self.lock_timeout = lock_timeout
        # events.jsonl path -> (file identity, byte offset already ingested)
        self._offsets: dict[str, tuple[tuple[int, int], int]] = {}

    @contextlib.contextmanager
    def write(self) -> Iterator["StoreWriter"]:
        """One write session: open read-write (retrying on the lock), apply the schema if
        missing, run the body in a transaction (rolled back on error), close the file."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        con = _connect(self.db_path, read_only=False, timeout=self.lock_timeout)
        try:
            _ensure_schema(con, self.db_path)
            con.execute("BEGIN TRANSACTION")
            writer = StoreWriter(self, con)
            try:
                yield writer
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            self._offsets.update(writer._pending_offsets)  # only what was committed
        finally:
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
    try:
        row = _one(con.execute("SELECT value FROM meta WHERE key = 'schema_version'"))
    except duckdb.CatalogException:
        row = None
    if row is not None:
        if int(row[0]) > schema.SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {row[0]} is newer than this ncbench "
                             f"understands ({schema.SCHEMA_VERSION}); upgrade ncbench")
        if int(row[0]) == schema.SCHEMA_VERSION:
            return
    schema.apply(con)


class StoreWriter:
    """The operations of one open write session (see `Store.write`). `con` is the connection."""

    def __init__(self, store: Store, con: duckdb.DuckDBPyConnection):
        self.store, self.con = store, con
        self._pending_offsets: dict[str, tuple[tuple[int, int], int]] = {}

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
        """Read one run dir's new events and heartbeat into the database: registers the run
        from spec.json if needed, upserts metrics, updates the run's row. Returns the number of
        metric rows written. A dir without spec.json and without a stored row is skipped."""
        run_dir = Path(run_dir)
        run_id = run_dir.name
        known = _one(self.con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]))
        if known is None:
            try:
                spec = read_spec(run_dir)
            except (OSError, ValueError, TypeError):
                return 0
            self.register_runs([spec])
            run_id = spec.run_id if spec.run_id == run_id else run_id

        path = run_dir / EVENTS_FILE
        key = str(path)
        ident, offset = self._pending_offsets.get(key) or self.store._offsets.get(key, (None, 0))
        try:
            st = path.stat()
            cur = (st.st_ino, st.st_dev)
            if ident != cur or st.st_size < offset:  # replaced or truncated: read from start
                offset = 0
        except FileNotFoundError:
            cur, offset = None, 0
        events, new_offset = read_events_from(path, offset) if cur else ([], 0)

        update: dict[str, Any] = {}
        metrics: dict[tuple[int, str], float | None] = {}
        started = None  # time of the latest start event read now
        for ev in events:
            kind = ev.get("type")
            t = parse_time(ev.get("time"))
            if kind == "start":
                update.update(started_at=t, finished_at=None, error=None,
                              host=ev.get("host"), device=ev.get("device"), pid=ev.get("pid"),
                              attempt=ev.get("attempt"),
                              start_epoch=ev.get("resumed_from_epoch") or 0)
                started = t
            elif kind == "eval":
                try:
                    epoch = int(ev["epoch"])
                except (KeyError, TypeError, ValueError):
                    continue
                for name, value in (ev.get("metrics") or {}).items():
                    metrics[(epoch, str(name))] = value
                update["last_epoch"] = max(epoch, update.get("last_epoch") or 0)
            elif kind == "end":
                update.update(finished_at=t, error=ev.get("error"))
        status = event_status(events)  # None: these events leave the status as it is
        if status is not None:
            update["status"] = status
        beat = read_heartbeat(run_dir)
        if beat:
            if beat.get("time"):
                update["heartbeat_at"] = parse_time(beat["time"])
            if isinstance(beat.get("epoch"), int) and not isinstance(beat.get("epoch"), bool):
                update["last_epoch"] = max(beat["epoch"], update.get("last_epoch") or 0)

        if metrics:
            app = self.con.appender("metrics", action="upsert")
            app.append_rows([(run_id, e, n, v) for (e, n), v in metrics.items()])
            app.flush()
        if update:
            if "last_epoch" in update:  # never go backwards (re-reads, resumed runs)
                prev = _one(self.con.execute("SELECT last_epoch FROM runs WHERE run_id = ?",
                                        [run_id]))
                if prev and prev[0] is not None:
                    update["last_epoch"] = max(update["last_epoch"], prev[0])
            cols = list(update)
            self.con.execute(
                f"UPDATE runs SET {', '.join(f'{c} = ?' for c in cols)} WHERE run_id = ?",
                [*(_db_value(c, update[c]) for c in cols), run_id],
            )
        if started is not None:  # an attempt that started after a retry request honours it
            self.con.execute("UPDATE runs SET retry_requested_at = NULL WHERE run_id = ? "
                             "AND retry_requested_at <= ?", [run_id, _db_value("started_at", started)])
        if cur is not None:
            self._pending_offsets[key] = (cur, new_offset)
        return len(metrics)

    def sync(self, workdir: str | Path, run_ids: Iterable[str] | None = None) -> SyncResult:
        """Ingest `<workdir>/runs/<run_id>/` for each of `run_ids` (None: every run dir there)."""
        result = SyncResult()
        dirs = run_dirs(workdir) if run_ids is None else [run_dir_of(workdir, r) for r in run_ids]
        for d in dirs:
            if not d.is_dir():
                continue
            result.runs_seen += 1
            n = self.ingest_run_dir(d)
            result.metrics_written += n
            result.runs_updated.append(d.name)
        return result


_RUN_INSERT_COLS = (*schema.RUN_KEY_COLUMNS, "run_id", "status", "config", "created_at", "attempt")
_RUN_ID_INDEX = _RUN_INSERT_COLS.index("run_id")


def _run_row(spec: RunSpec, status: str, now: datetime) -> tuple:
    return (*(getattr(spec, c) for c in schema.RUN_KEY_COLUMNS), spec.run_id, status,
            json.dumps(spec.to_dict(), allow_nan=False), now, 0)


def _db_value(column: str, value: Any) -> Any:
    """A python value for a runs column: times as naive UTC datetimes (ISO strings accepted)."""
    if column.endswith("_at") and value is not None:
        if isinstance(value, str):
            return parse_time(value)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(timezone.utc).replace(tzinfo=None)
    if column in ("slot", "slurm_job_id") and value is not None:
        return str(value)
    return value


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


def run_sql(db_path: str | Path, sql: str, timeout: float = 10.0) -> tuple[list[str], list[tuple]]:
    """Run a user's query on a read-only connection: (column names, rows). A statement without
    a result gives ([], []). Failures are QueryError with DuckDB's message; a write statement is
    refused by the read-only connection and explained."""
    from ncbench.errors import QueryError

    if not sql or not sql.strip():
        raise QueryError("empty query: give a SQL statement, e.g. ncbench sql \"SELECT * FROM results\"")
    with read_connection(db_path, timeout=timeout) as con:
        try:
            cur = con.execute(sql)
            if cur.description is None:
                return [], []
            cols = [d[0] for d in cur.description]
            return cols, cur.fetchall()
        except duckdb.Error as exc:
            msg = str(exc).strip()
            if "read-only" in msg or "read only" in msg:
                raise QueryError(
                    f"the database is opened read-only: `ncbench sql` runs queries, it cannot change "
                    f"{Path(db_path)} ({_first_line(exc)})") from None
            raise QueryError(f"SQL error: {msg}") from None


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
