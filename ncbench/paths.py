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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ncbench.errors import UsageError

__all__ = ["DEFAULT_CONFIG", "DB_NAME", "WORKDIR_NAME", "Paths", "resolve", "default_db_path",
           "default_workdir", "workdir_for"]

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
