"""ncbench.paths: where each command finds the config, the database and the workdir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ncbench.errors import UsageError
from ncbench.paths import (
    DB_NAME, DEFAULT_CONFIG, WORKDIR_NAME, Paths, default_db_path, default_workdir, resolve,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """An empty current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_defaults_are_the_documented_names():
    assert (DEFAULT_CONFIG, DB_NAME, WORKDIR_NAME) == \
        ("experiments.toml", "ncbench.duckdb", ".ncbench")
    assert default_db_path("a/b/exp.toml") == Path("a/b/ncbench.duckdb")
    assert default_workdir("a/b/exp.toml") == Path("a/b/.ncbench")
    assert default_db_path() == Path("ncbench.duckdb") and default_workdir() == Path(".ncbench")


def test_nothing_given_everything_beside_experiments_toml(here):
    """need_config (run, sql, report): ./experiments.toml whether or not it exists (the loader
    says "config file not found"); the database and workdir beside it. Paths stay relative."""
    assert resolve() == Paths(Path("experiments.toml"), Path("ncbench.duckdb"), Path(".ncbench"))
    assert not any(here.iterdir())  # nothing is created


def test_a_config_places_the_database_and_the_workdir(here):
    p = resolve("sub/exp.toml")
    assert p == Paths(Path("sub/exp.toml"), Path("sub/ncbench.duckdb"), Path("sub/.ncbench"))
    assert resolve(here / "x" / "e.toml").db == here / "x" / "ncbench.duckdb"


def test_explicit_db_and_workdir_win(here):
    p = resolve("sub/exp.toml", "other/r.duckdb", "scratch")
    assert p == Paths(Path("sub/exp.toml"), Path("other/r.duckdb"), Path("scratch"))
    # --db alone does not move the workdir away from the config's folder
    assert resolve("sub/exp.toml", "other/r.duckdb").workdir == Path("sub/.ncbench")


def test_optional_config_is_used_when_experiments_toml_exists(here):
    (here / "experiments.toml").write_text("")
    p = resolve(None, "other/r.duckdb", need_config=False)
    assert p == Paths(Path("experiments.toml"), Path("other/r.duckdb"), Path(".ncbench"))
    assert resolve(need_config=False) == resolve()


def test_db_alone_when_experiments_toml_is_missing(here):
    """status / tui with --db and no ./experiments.toml: no config, the workdir beside the db."""
    p = resolve(None, "res/r.duckdb", need_config=False)
    assert p == Paths(None, Path("res/r.duckdb"), Path("res/.ncbench"))
    assert resolve(None, "res/r.duckdb", "w", need_config=False).workdir == Path("w")


def test_neither_config_nor_db_is_an_error_when_the_config_is_optional(here):
    with pytest.raises(UsageError, match=r"^--config: no experiments.toml here and no --db "
                                         r"given: pass --config FILE or --db PATH$"):
        resolve(need_config=False)


def test_an_explicit_config_is_kept_even_if_missing(here):
    """--config nope.toml is never dropped silently: loading it says it is not found."""
    p = resolve("nope.toml", "r.duckdb", need_config=False)
    assert p.config == Path("nope.toml") and p.workdir == Path(".ncbench")


def test_tui_uses_the_same_rules(here):
    from ncbench.cli.cmd_tui import resolve_paths

    (here / "res").mkdir()
    (here / "res" / "r.duckdb").write_bytes(b"")
    assert resolve_paths(None, Path("res/r.duckdb"), None, None) == (
        None, Path("res/r.duckdb"), Path("res/.ncbench"), [])
    with pytest.raises(UsageError, match="no experiments.toml here"):
        resolve_paths(None, None, None, None)


def test_status_without_config_and_db_says_what_to_pass(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ncbench", "status"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no experiments.toml here and no --db given" in out.stderr
    assert "Traceback" not in out.stderr and not any(tmp_path.iterdir())
