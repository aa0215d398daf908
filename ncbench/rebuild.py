"""`ncbench doctor`: the results database checked against the run directories, and rebuilt from them.

The run directories are the source of truth (`ncbench.events`); the database is what the store
made of them. `diagnose` says what differs: a database that cannot be read (damaged, or not
ncbench's), tables or views that are missing, runs with a directory but no row, started runs whose
directory is gone, and stored statuses that are not what the directory says. `rebuild` writes a
new database from every run directory of the workdir — whether or not its experiment is still in
the config — into a new file, carries over from the old file (when it can still be read) the runs
that have no directory, then replaces the database atomically and keeps the old file as
`<db>.corrupt-<time>` (with its `.wal`). It holds the workdir's manager lock meanwhile, so no
`ncbench run` writes into the database being replaced.

Never imports torch, nor views.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ncbench.dbfile import check_ncbench_db, missing_parts, schema_version
from ncbench.errors import StoreError, UsageError
from ncbench.events import read_events, read_spec, utcnow
from ncbench.lifecycle import QUEUED, event_status
from ncbench.rundir import run_dirs
from ncbench.store import Store, query_dicts, read_connection

__all__ = ["Diagnosis", "diagnose", "RebuildReport", "rebuild", "dir_runs"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def dir_runs(workdir: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """The run directories of `workdir`: (run_id -> the status its events say, `queued` before
    any attempt; directory name -> why it cannot be restored: no readable spec.json, or one of
    another run)."""
    runs: dict[str, str] = {}
    unusable: dict[str, str] = {}
    for d in run_dirs(workdir):
        try:
            spec = read_spec(d)
        except FileNotFoundError:
            unusable[d.name] = "no spec.json"
            continue
        except (OSError, ValueError, TypeError, KeyError) as exc:
            unusable[d.name] = f"spec.json cannot be read ({_first_line(exc)})"
            continue
        if spec.run_id != d.name:
            unusable[d.name] = f"its spec.json is of run {spec.run_id}"
            continue
        try:
            runs[d.name] = event_status(read_events(d)) or QUEUED
        except OSError as exc:
            unusable[d.name] = f"events.jsonl cannot be read ({exc})"
    return runs, unusable


@dataclass
class Diagnosis:
    """What `diagnose` found. `unreadable`: why the database cannot be read (None: it can, or it
    does not exist: `exists`); `missing`: its missing tables and views; `only_in_dirs`: runs with
    a directory but no row; `dir_missing`: stored runs that started but have no directory;
    `mismatched`: run_id -> (stored status, the directory's); `unusable`: directories that
    cannot be restored, with why; `dirs`: the number of run directories."""

    db_path: Path
    workdir: Path
    exists: bool = True
    unreadable: str | None = None
    missing: list[str] = field(default_factory=list)
    only_in_dirs: list[str] = field(default_factory=list)
    dir_missing: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[str, str]] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)
    dirs: int = 0

    @property
    def problems(self) -> list[str]:
        """One line per problem found (empty: the database agrees with the run directories)."""
        out = []
        if self.unreadable:
            out.append(self.unreadable)
        elif not self.exists and self.dirs:
            out.append(f"{self.db_path} does not exist, but {self.dirs} run directories do")
        out += [f"{self.db_path} lacks its {part}" for part in self.missing]
        out += [f"run {r}: has a run directory but no row in the database" for r in self.only_in_dirs]
        out += [f"run {r}: stored, started, but its run directory is missing (results kept in the "
                f"database)" for r in self.dir_missing]
        out += [f"run {r}: stored as {a}, its run directory says {b}"
                for r, (a, b) in self.mismatched.items()]
        out += [f"run directory {n}: cannot be restored: {why}" for n, why in self.unusable.items()]
        return out


def diagnose(db_path: str | os.PathLike, workdir: str | os.PathLike) -> Diagnosis:
    """The database at `db_path` checked against the run directories of `workdir` (read-only)."""
    db, wd = Path(db_path), Path(workdir)
    diag = Diagnosis(db, wd, exists=db.exists())
    runs, diag.unusable = dir_runs(wd)
    diag.dirs = len(runs) + len(diag.unusable)
    if not diag.exists:
        diag.only_in_dirs = list(runs)
        return diag
    try:
        with read_connection(db, check=False) as con:
            if schema_version(con) is None:
                check_ncbench_db(con, db)  # raises: not an ncbench database
            diag.missing = missing_parts(con)
            stored = ({} if "table runs" in diag.missing else
                      {r["run_id"]: r for r in query_dicts(
                          con, "SELECT run_id, status, started_at FROM runs")})
    except StoreError as exc:
        diag.unreadable = str(exc)
        return diag
    diag.only_in_dirs = [r for r in runs if r not in stored]
    diag.dir_missing = [r for r, row in stored.items()
                        if r not in runs and r not in diag.unusable
                        and (row["status"] != QUEUED or row["started_at"] is not None)]
    diag.mismatched = {r: (row["status"], runs[r]) for r, row in stored.items()
                       if r in runs and row["status"] != runs[r]}
    return diag


@dataclass
class RebuildReport:
    """What `rebuild` did: `restored` (run_id -> status, from its run directory), `carried`
    (runs without a directory copied from the old database), `skipped` (directory or run ->
    why not restored), `warnings` (event lines skipped while reading, ...), `kept_as` (where the
    old file is now; None if there was none)."""

    db_path: Path
    restored: dict[str, str] = field(default_factory=dict)
    carried: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    kept_as: Path | None = None


def _sidecars(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + ".wal")]


def rebuild(db_path: str | os.PathLike, workdir: str | os.PathLike) -> RebuildReport:
    """Rebuild the database at `db_path` from every run directory of `workdir` (module
    docstring). Raises WorkdirBusyError while an `ncbench run` manages the workdir, and a
    UsageError (`--workdir`) when the workdir has no run directories."""
    from ncbench.grid import lock_workdir

    db, wd = Path(db_path), Path(workdir)
    if not run_dirs(wd):  # a mistyped --workdir must not replace a database with an empty one
        raise UsageError("--workdir", f"no run directories in {wd}: nothing to rebuild the "
                                      f"database from")
    report = RebuildReport(db)
    tmp = db.with_name(f"{db.name}.rebuild-{os.getpid()}")
    for p in _sidecars(tmp):
        p.unlink(missing_ok=True)
    lock = lock_workdir(wd)
    try:
        runs, report.skipped = dir_runs(wd)
        store = Store(tmp)
        with store.write() as w:
            result = w.sync(wd, run_ids=list(runs))
        report.warnings += [str(p) for p in getattr(result, "problems", []) or []]
        with read_connection(tmp) as con:
            report.restored = {r: s for r, s in con.execute(
                "SELECT run_id, status FROM runs ORDER BY run_id").fetchall()}
        for r in runs:
            if r not in report.restored:
                report.skipped[r] = "its run directory could not be read into the database"
        if db.exists():
            report.carried = _carry_over(tmp, db, report)
            stamp = utcnow().strftime("%Y%m%dT%H%M%S")
            kept = db.with_name(f"{db.name}.corrupt-{stamp}")
            n = 1
            while kept.exists():
                n += 1
                kept = db.with_name(f"{db.name}.corrupt-{stamp}-{n}")
            try:  # keep the old file under its new name, then replace it in one step
                os.link(db, kept)
            except OSError:
                shutil.copy2(db, kept)
            wal = _sidecars(db)[1]
            if wal.exists():  # never replayed into the new database
                os.replace(wal, _sidecars(kept)[1])
            report.kept_as = kept
        os.replace(tmp, db)
    finally:
        for p in _sidecars(tmp):
            p.unlink(missing_ok=True)
        lock.close()
    return report


def _carry_over(tmp: Path, old: Path, report: RebuildReport) -> list[str]:
    """Copy into `tmp` the runs of the old database (and their metrics) that have no run
    directory — queued runs, and done runs whose directory was deleted — when the old file can
    still be read; what cannot be read is noted in `report.warnings`."""
    try:
        with read_connection(old, check=False) as con:
            missing = missing_parts(con)
            if "table runs" in missing:
                return []
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs' "
                "AND schema_name = 'main' AND database_name = current_database()").fetchall()]
    except StoreError as exc:
        report.warnings.append(f"nothing carried over from the old database: {exc}")
        return []
    con = duckdb.connect(str(tmp))
    try:
        new_cols = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs' "
            "AND schema_name = 'main'").fetchall()}
        common = ", ".join(c for c in cols if c in new_cols)
        quoted = str(old).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS old (READ_ONLY)")
        con.execute("BEGIN TRANSACTION")
        ids = [r[0] for r in con.execute(
            "SELECT run_id FROM old.runs WHERE run_id NOT IN (SELECT run_id FROM main.runs) "
            "ORDER BY run_id").fetchall()]
        if ids:
            con.execute(f"INSERT INTO main.runs ({common}) SELECT {common} FROM old.runs "
                        "WHERE list_contains(?, run_id)", [ids])
            if "table metrics" not in missing:
                con.execute("INSERT INTO main.metrics SELECT run_id, epoch, name, value "
                            "FROM old.metrics WHERE list_contains(?, run_id)", [ids])
        con.execute("COMMIT")
        return ids
    except duckdb.Error as exc:
        report.warnings.append(f"the runs without a run directory could not be carried over "
                               f"from the old database ({_first_line(exc)})")
        return []
    finally:
        con.close()
