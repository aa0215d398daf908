"""What a DuckDB file holds: damaged or not, ncbench's schema or not, which tables it lacks.

The store (`ncbench.store`: its readers and its writer) and `ncbench doctor` (`ncbench.rebuild`)
ask these questions; this module only answers them, and phrases the one message about a database
that cannot be read (`unreadable`, naming `ncbench doctor --rebuild`). Never imports torch.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from ncbench import schema
from ncbench.errors import StoreError

__all__ = ["REBUILD_HINT", "SCHEMA_TABLES", "SCHEMA_VIEWS", "unreadable", "is_damage_error",
           "table_names", "missing_parts"]

#: What `ncbench doctor --rebuild` does, for the messages about a damaged database.
REBUILD_HINT = "run `ncbench doctor --rebuild` to rebuild it from the run directories"
#: The tables and the views of an ncbench database, in schema order (read from ncbench.schema's DDL).
SCHEMA_TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema.TABLES))
SCHEMA_VIEWS = tuple(re.findall(r"CREATE OR REPLACE VIEW (\w+)", schema.VIEWS))


def unreadable(path: str | Path, reason: str) -> StoreError:
    """The StoreError of a database file that is damaged or not ncbench's: names the file, what
    is wrong, and the command that rebuilds it from the run directories."""
    return StoreError(f"{path} is not a readable ncbench database ({reason}): {REBUILD_HINT}")


def is_damage_error(exc: BaseException) -> bool:
    """True for DuckDB's errors about a damaged file (unreadable blocks, bad checksums, a truncated
    file, not a DuckDB file), as opposed to errors of a query or of the lock."""
    if not isinstance(exc, duckdb.Error):
        return False
    msg = str(exc).lower()
    if "lock" in msg or "different configuration" in msg:  # another connection: retried elsewhere
        return False
    if any(s in msg for s in ("no space left", "permission denied", "read-only file system")):
        return False  # the disk or the file's permissions, not the file's content
    if isinstance(exc, (duckdb.IOException, duckdb.InternalException, duckdb.SerializationException)):
        return True
    return "corrupt" in msg or "checksum" in msg or "not a valid duckdb database" in msg


def table_names(con: duckdb.DuckDBPyConnection) -> tuple[set[str], set[str]]:
    """The tables and the views of the main schema of `con`'s database."""
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
        "AND database_name = current_database()").fetchall()}
    views = {r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal "
        "AND database_name = current_database()").fetchall()}
    return tables, views


def missing_parts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables and views of the ncbench schema that `con`'s database lacks (e.g. "table
    metrics", "view results"), in schema order."""
    tables, views = table_names(con)
    return ([f"table {t}" for t in SCHEMA_TABLES if t not in tables]
            + [f"view {v}" for v in SCHEMA_VIEWS if v not in views])


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The ncbench schema version stored in `meta`, or None (no `meta` table, or no version)."""
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except duckdb.CatalogException:
        return None
    return int(rows[0][0]) if rows else None


def _newer(path: str | Path, version: int) -> StoreError:
    return StoreError(f"{path}: schema version {version} is newer than this ncbench understands "
                      f"({schema.SCHEMA_VERSION}); upgrade ncbench")


def check_ncbench_db(con: duckdb.DuckDBPyConnection, path: str | Path = "") -> None:
    """For readers: StoreError unless `con` holds an ncbench schema this version can read, with
    all its tables (a missing one: the message says which, and how to repair it). Missing views
    are no error here (derived: the next writer re-creates them; `ncbench doctor` reports them)."""
    version = schema_version(con)
    if version is None:
        raise unreadable(path, "no ncbench schema version: not an ncbench results database")
    if version > schema.SCHEMA_VERSION:
        raise _newer(path, version)
    missing = [part for part in missing_parts(con) if part.startswith("table ")]
    if missing:
        raise StoreError(f"{path}: the ncbench database lacks its {', '.join(missing)} (dropped?): "
                         f"`ncbench sync` re-creates the schema and re-reads the run directories; "
                         f"`ncbench doctor` shows what else is wrong")


def writable_version(con: duckdb.DuckDBPyConnection, path: str | Path = "") -> int | None:
    """For the writer: the stored schema version (None: none yet). StoreError for a database of
    a newer version, and for a DuckDB file that is not an ncbench store (tables or views but no
    schema version): ncbench never writes into it. An empty database is fine (None)."""
    version = schema_version(con)
    if version is None:
        held = sorted(set.union(*table_names(con)))
        if held:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise StoreError(f"{path} is not an ncbench database (it holds {shown} but no ncbench "
                             f"schema version): ncbench does not write into it; pass --db with a "
                             f"new file name")
    elif version > schema.SCHEMA_VERSION:
        raise _newer(path, version)
    return version
