"""Where a command's files are: the experiments file, the results database and the workdir.

The only module that knows the defaults. Every command (`run`, `status`, `sql`, `report`, `tui`)
and the library function behind `ncbench run` call `resolve(--config, --db, --workdir)`:

* the config is `--config`, else `./experiments.toml` (`DEFAULT_CONFIG`);
* the database is `--db`, else `ncbench.duckdb` beside the config (`DB_NAME`);
* the workdir (run directories) is `--workdir`, else `.ncbench/` beside the config
  (`WORKDIR_NAME`) — or beside the database when there is no config (`--db` alone);
* `need_config=True` (`run`; `sql` and `report`, which only place the database by it): the
  config path is returned whether or not the file exists — whoever loads it says "not found";
* `need_config=False` (`status`, `tui`: they can show a database alone): without `--config`, a
  missing `./experiments.toml` is fine when `--db` is given (`Paths.config` is then None);
  with neither, `resolve` raises a UsageError (`--config`) saying to pass one of them.

Paths stay as given (relative paths are relative to the current directory); nothing is created.

Checks, before anything uses a path (`path_problem`, and `check_run_paths` for `ncbench run`,
`--dry-run` too): a path that must be a folder is not a file, one that must be a file is not a
folder, a name is not too long, what is read can be read, and what is written can be written —
or, for a folder or file that does not exist yet, can be created (its nearest existing parent is
a writable folder). Each problem is one line naming the option (or the config key) and the path.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from ncbench.errors import UsageError

__all__ = ["DEFAULT_CONFIG", "DB_NAME", "WORKDIR_NAME", "Paths", "resolve", "default_db_path",
           "default_workdir", "workdir_for", "path_problem", "check_run_paths"]

PathLike = str | os.PathLike

#: The experiments file a command reads when no --config is given.
DEFAULT_CONFIG = "experiments.toml"
#: The results database's file name, beside the config.
DB_NAME = "ncbench.duckdb"
#: The workdir's folder name (run directories: `<workdir>/runs/<run_id>/`), beside the config.
WORKDIR_NAME = ".ncbench"


@dataclass(frozen=True)
class Paths:
    """The files of one command: `config` (None: no experiments file, the database alone),
    `db` (the results database, which need not exist yet) and `workdir` (run directories)."""

    config: Path | None
    db: Path
    workdir: Path


def default_db_path(config_path: PathLike = DEFAULT_CONFIG) -> Path:
    """`ncbench.duckdb` beside the config file."""
    return Path(config_path).parent / DB_NAME


def default_workdir(config_path: PathLike = DEFAULT_CONFIG) -> Path:
    """`.ncbench/` beside the config file (run dirs are `<workdir>/runs/<run_id>/`)."""
    return Path(config_path).parent / WORKDIR_NAME


def workdir_for(config: PathLike | None, db: PathLike) -> Path:
    """The workdir when no --workdir is given: `.ncbench/` beside the config, or beside the
    database `db` when there is no config (`config` None: the database alone)."""
    return default_workdir(config) if config is not None else Path(db).parent / WORKDIR_NAME


def resolve(config: PathLike | None = None, db: PathLike | None = None,
            workdir: PathLike | None = None, *, need_config: bool = True) -> Paths:
    """The config, database and workdir from the options as given (None: not given), by the
    rules of the module docstring. Raises UsageError only with `need_config=False`, when
    neither `config` nor `db` is given and ./experiments.toml does not exist."""
    config_path: Path | None = Path(config) if config is not None else Path(DEFAULT_CONFIG)
    if not need_config and config is None and not config_path.exists():
        if db is None:
            raise UsageError("--config", f"no {DEFAULT_CONFIG} here and no --db given: pass "
                                         "--config FILE or --db PATH")
        config_path = None
    db_path = Path(db) if db is not None else default_db_path(config_path)
    work = Path(workdir) if workdir is not None else workdir_for(config_path, db_path)
    return Paths(config_path, db_path, work)


def _nearest_existing(path: Path) -> Path:
    """`path`'s nearest ancestor that exists (`.` for a relative path none of whose parts do)."""
    for parent in path.parents:
        try:
            os.stat(parent)
            return parent
        except OSError:
            continue
    return Path(".")


def path_problem(path: PathLike, *, kind: str = "dir", read: bool = True, write: bool = False,
                 create: bool = False) -> str | None:
    """What is wrong with `path` for its use, or None: `kind` "dir" (a folder) or "file"; `read`
    (it can be read; a missing path is then fine only with `create`, or when nothing is written
    and whoever reads it says "not found"), `write` (it can be written, a file's folder too, for
    DuckDB's .wal file), `create` (a missing path is created: its nearest existing parent must
    be a writable folder). The reason names the path."""
    p = Path(path)
    what = "folder" if kind == "dir" else "file"
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return f"{p}: the name is too long for the file system ({exc.strerror})"
        if exc.errno == errno.ENOTDIR:
            anc = _nearest_existing(p)
            return f"{p}: {anc} is a file, not a folder"
        if exc.errno == errno.EACCES:
            return f"{p}: cannot be reached (permission denied on a folder above it)"
        if exc.errno != errno.ENOENT:
            return f"{p}: cannot be used ({exc.strerror})"
        if not (create or write):
            return None  # whoever reads it says "not found" (with the fix)
        anc = _nearest_existing(p)
        if not anc.is_dir():
            return f"{p}: cannot create it: {anc} is a file, not a folder"
        if not os.access(anc, os.W_OK | os.X_OK):
            return f"{p}: cannot create it: the folder {anc} is not writable"
        return None
    import stat

    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        return f"{p}: is a file, not a folder"
    if kind == "file" and stat.S_ISDIR(st.st_mode):
        return f"{p}: is a folder, not a file"
    mode = os.R_OK | (os.X_OK if kind == "dir" else 0)
    if read and not os.access(p, mode):
        return f"{p}: the {what} is not readable (permission denied)"
    if write:
        if not os.access(p, os.W_OK | (os.X_OK if kind == "dir" else 0)):
            return f"{p}: the {what} is not writable (permission denied)"
        if kind == "file" and not os.access(p.parent if str(p.parent) else Path("."),
                                            os.W_OK | os.X_OK):
            return f"{p}: its folder {p.parent} is not writable (the database writes a .wal file beside it)"
    return None


def check_run_paths(paths: Paths, *, given: dict[str, bool] | None = None) -> None:
    """`ncbench run`'s paths, before anything is read or written (`--dry-run` too): the workdir
    is (or can be created as) a writable folder, the database a readable and writable file (or
    can be created), the config a file. UsageError naming the option (`--workdir`, `--db`,
    `--config`) and the path; `given[option]` False: the path is the default, and the message
    says so."""
    given = given or {}
    checks = [("--config", paths.config, dict(kind="file")),
              ("--db", paths.db, dict(kind="file", write=True, create=True)),
              ("--workdir", paths.workdir, dict(kind="dir", write=True, create=True))]
    for option, path, how in checks:
        if path is None:
            continue
        problem = path_problem(path, **how)
        if problem is not None:
            if not given.get(option, True):
                problem += f" (the default {option}, beside the config; pass {option} to choose)"
            raise UsageError(option, problem)
