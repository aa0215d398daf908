"""The sandbox of user SQL (`ncbench sql`, `report --where`): it may read the results tables only.

A user's SQL text runs on a connection that `sandbox` has locked down: DuckDB's external access
off (no COPY, EXPORT, ATTACH, read_csv / read_text / glob / read_parquet of any file, no URL, no
extension install or load), extension autoloading off, and then the configuration locked, so
the query cannot switch any of it back on (`SET enable_external_access = true` is refused).
`check_statements` refuses the statement kinds that reach outside the database before DuckDB
sees them, so the message is ours; the sandbox holds even where that check would miss one.
`explain` turns DuckDB's refusal into a sentence the CLI shows (`QueryError` / `ReportError`).

DuckDB settings belong to the database instance: every connection of this process to the same
file, while one is sandboxed, is sandboxed too (the readers need none of what is switched off),
and a fresh open after all are closed is not.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from ncbench.errors import QueryError

__all__ = ["SANDBOX_SETTINGS", "sandbox", "is_sandboxed", "check_statements", "explain",
           "check_query", "run_query"]

#: What `sandbox` sets, in this order (`lock_configuration` last: nothing can be SET after it).
SANDBOX_SETTINGS = (
    ("enable_external_access", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("lock_configuration", "true"),
)

#: Statement kinds that reach outside the results tables (or change settings): refused.
_REFUSED = {
    "COPY": "COPY writes or reads files",
    "COPY_DATABASE": "COPY FROM DATABASE copies into another database",
    "EXPORT": "EXPORT DATABASE writes files",
    "ATTACH": "ATTACH opens another database",
    "DETACH": "DETACH changes the attached databases",
    "LOAD": "INSTALL / LOAD installs or loads an extension",
    "EXTENSION": "this statement manages extensions",
    "SET": "SET / RESET / USE changes DuckDB's settings",
}


def is_sandboxed(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `con`'s database has external access off and its configuration locked."""
    row = con.execute("SELECT current_setting('enable_external_access'), "
                      "current_setting('lock_configuration')").fetchall()[0]
    return (not row[0]) and bool(row[1])


def sandbox(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Lock `con` down for user SQL (see the module docstring); a no-op when already done."""
    if not is_sandboxed(con):
        for name, value in SANDBOX_SETTINGS:
            con.execute(f"SET {name} = {value}")
    return con


def check_statements(sql: str) -> str | None:
    """Why `sql` may not run in the sandbox (a statement kind that reaches outside the results
    tables), or None. A text DuckDB cannot parse gives None: running it reports the syntax."""
    try:
        kinds = [st.type.name for st in duckdb.extract_statements(sql)]
    except duckdb.Error:
        return None
    except ValueError:  # a statement kind this duckdb module has no name for (UPDATE EXTENSIONS)
        return "this kind of statement is not a query; queries may only read the results tables"
    for kind in kinds:
        why = _REFUSED.get(kind)
        if why:
            return f"{why}; queries may only read the results tables (runs, metrics, epochs, results)"
    return None


def explain(exc: BaseException) -> str | None:
    """A sentence for DuckDB's refusal of something the sandbox forbids, or None when `exc` is
    another error."""
    msg = str(exc)
    if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in msg \
            or "disabled through configuration" in msg:
        first = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
        return (f"queries may only read the results tables, not files, URLs, other databases "
                f"or extensions ({first})")
    if "configuration has been locked" in msg:
        return "queries cannot change DuckDB's settings (the configuration is locked)"
    return None


def check_query(sql: str) -> None:
    """QueryError for an empty text or a statement kind the sandbox refuses (`check_statements`)."""
    if not sql or not sql.strip():
        raise QueryError("empty query: give a SQL statement, e.g. ncbench sql \"SELECT * FROM results\"")
    why = check_statements(sql)
    if why:
        raise QueryError(f"refused: {why}")


def _execute(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int | None,
             timeout_s: float | None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """`sql`'s columns and (at most `max_rows`) rows, run in a thread so that this one stays
    responsive: past `timeout_s` seconds, or on Ctrl-C, the query is interrupted
    (`con.interrupt()`) instead of running on (a cross join of `metrics` with itself would run
    for hours). The thread is waited for through an Event (a `Thread.join` interrupted by
    Ctrl-C may return early on Python 3.11, before the query has let go of the connection)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            cur = con.execute(sql)
            if cur.description is None:
                box["out"] = ([], [])
            else:
                rows = cur.fetchall() if max_rows is None else cur.fetchmany(max_rows)
                box["out"] = ([d[0] for d in cur.description], rows)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["exc"] = exc
        finally:
            done.set()

    def stop() -> None:
        con.interrupt()
        deadline = time.monotonic() + 30  # DuckDB stops at once; never wait forever
        while not done.is_set() and time.monotonic() < deadline:
            try:
                done.wait(0.1)
            except KeyboardInterrupt:  # a second Ctrl-C: still let the query unwind first
                con.interrupt()

    threading.Thread(target=work, name="ncbench-sql", daemon=True).start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while not done.wait(0.05):
            if deadline is not None and time.monotonic() > deadline:
                stop()
                raise QueryError(f"the query ran for more than {timeout_s:g} s and was stopped "
                                 "(a longer limit: --timeout SECONDS; 0 for none)")
    except KeyboardInterrupt:
        stop()
        raise
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def run_query(con: duckdb.DuckDBPyConnection, sql: str, db_path: str | Path = "", *,
              max_rows: int | None = None,
              timeout_s: float | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run the user's `sql` on `con` (sandboxed first): (column names, rows), ([], []) for a
    statement without a result; at most `max_rows` rows (None: all); stopped with a QueryError
    after `timeout_s` seconds (None: no limit) or by Ctrl-C. Failures are QueryError: a write is
    refused by the read-only connection, a file or extension by the sandbox, each explained;
    else DuckDB's message."""
    check_query(sql)
    sandbox(con)
    try:
        return _execute(con, sql, max_rows, timeout_s)
    except duckdb.Error as exc:
        msg = str(exc).strip()
        first = msg.splitlines()[0] if msg else type(exc).__name__
        if "read-only" in msg or "read only" in msg:
            raise QueryError(f"the database is opened read-only: `ncbench sql` runs queries, it "
                             f"cannot change {Path(db_path)} ({first})") from None
        why = explain(exc)
        if why:
            raise QueryError(f"refused: {why}") from None
        from ncbench.dbfile import is_damage_error, unreadable  # the file, not the query

        if is_damage_error(exc):
            raise unreadable(db_path, first) from None
        raise QueryError(f"SQL error: {msg}") from None
