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

    from ncbench.store import Store

    (here / "res").mkdir()
    with Store(here / "res" / "r.duckdb").write():  # an (empty) ncbench database: the TUI
        pass                                        # checks that it can read it
    assert resolve_paths(None, Path("res/r.duckdb"), None, None) == (
        None, Path("res/r.duckdb"), Path("res/.ncbench"), [])
    with pytest.raises(UsageError, match="no experiments.toml here"):
        resolve_paths(None, None, None, None)


def test_status_without_config_and_db_says_what_to_pass(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ncbench", "status"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no experiments.toml here and no --db given" in out.stderr
    assert "Traceback" not in out.stderr and not any(tmp_path.iterdir())


# -- the paths a command names are checked before anything uses them -----------------------------

LONG = "x" * 300  # longer than a file name may be (ENAMETOOLONG)


def test_path_problem_names_the_path_and_what_is_wrong(tmp_path):
    from ncbench.paths import path_problem

    afile = tmp_path / "afile"
    afile.write_text("")
    assert path_problem(tmp_path) is None and path_problem(afile, kind="file", write=True) is None
    assert path_problem(afile) == f"{afile}: is a file, not a folder"
    assert path_problem(tmp_path, kind="file") == f"{tmp_path}: is a folder, not a file"
    assert path_problem(afile / "sub", create=True) == f"{afile / 'sub'}: {afile} is a file, not a folder"
    assert "name is too long" in path_problem(tmp_path / LONG)
    assert "name is too long" in path_problem(tmp_path / LONG / "x.duckdb", kind="file", write=True)
    # missing: fine to read (whoever reads says "not found"), fine to create under a folder
    assert path_problem(tmp_path / "new" / "deeper", create=True) is None
    assert path_problem(tmp_path / "nothing.toml", kind="file") is None
    assert not (tmp_path / "new").exists()  # nothing is created


def test_run_checks_its_paths_first_naming_the_option(tmp_path):
    """`ncbench run` (and `--dry-run`): a workdir that is a file (FileExistsError before), one
    under a file, a name too long (OSError before), a database in a folder that is a file or a
    folder itself → UsageError naming the option and the path; nothing is created."""
    from ncbench.grid import run_grid

    cfg = tmp_path / "experiments.toml"
    cfg.write_text('[experiments.a]\ndataset = "digits"\nmodel = "mlp"\nloss = "ce"\nepochs = 1\n')
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [({"workdir": afile}, f"--workdir: {afile}: is a file, not a folder"),
             ({"workdir": afile / "w"}, f"--workdir: {afile / 'w'}: {afile} is a file, not a folder"),
             ({"workdir": tmp_path / LONG}, "--workdir: "),
             ({"db_path": afile / "r.duckdb"}, f"--db: {afile / 'r.duckdb'}: {afile} is a file"),
             ({"db_path": tmp_path}, f"--db: {tmp_path}: is a folder, not a file"),
             ({"db_path": tmp_path / (LONG + ".duckdb")}, "--db: ")]
    before = sorted(p.name for p in tmp_path.iterdir())
    for kw, message in cases:
        for dry_run in (True, False):
            with pytest.raises(UsageError) as info:
                run_grid(cfg, dry_run=dry_run, preflight=False, **kw)
            assert str(info.value).startswith(message), (kw, str(info.value))
    with pytest.raises(UsageError, match=r"^--config: .*: is a folder, not a file"):
        run_grid(tmp_path, dry_run=True, preflight=False)
    # the default workdir (beside the config) is a file: said so
    (tmp_path / WORKDIR_NAME).write_text("")
    with pytest.raises(UsageError, match=r"is a file, not a folder \(the default --workdir"):
        run_grid(cfg, dry_run=True, preflight=False)
    (tmp_path / WORKDIR_NAME).unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_bad_data_root_is_a_config_error_naming_key_and_path(tmp_path):
    from ncbench.errors import ConfigError
    from ncbench.grid import run_grid

    afile = tmp_path / "afile"
    afile.write_text("")
    cfg = tmp_path / "experiments.toml"
    base = '[experiments.a]\ndataset = "digits"\nmodel = "mlp"\nloss = "ce"\nepochs = 1\n'
    for root, why in (("afile", "is a file, not a folder"), (LONG, "name is too long"),
                      ("afile/sub", f"{afile} is a file, not a folder")):
        cfg.write_text(base + f'data_root = "{root}"\n')
        with pytest.raises(ConfigError) as info:
            run_grid(cfg, dry_run=True, preflight=False)
        e = info.value
        assert (e.file, e.experiment, e.key, e.line) == (str(cfg), "a", "data_root", 6)
        assert str(tmp_path / root) in e.reason and why in e.reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "experiments.toml"]


_AS_USER = '''
import json, sys
from ncbench.errors import NcbenchError
from ncbench.grid import run_grid
out = []
for kw in json.loads(sys.argv[1]):
    try:
        run_grid(kw.pop("config"), dry_run=True, preflight=False, **kw)
        out.append("ok")
    except NcbenchError as exc:
        out.append(str(exc))
print(json.dumps(out))
'''


def test_permission_bits_are_checked_for_a_user(tmp_path):
    """As a user the permission bits apply to (tests run as root: a process that drops its
    privileges, as in test_sync): a data_root it cannot read, a workdir or a database in a
    folder it cannot write, a database file it cannot write → errors naming key/option and path."""
    import json
    import os
    import shutil
    import tempfile

    from _runkit import NOBODY, env, unprivileged

    safe = Path(tempfile.mkdtemp(prefix="ncbench-perm-"))  # outside pytest's 0700 tmp folders
    try:
        preexec, how = unprivileged(safe)
        cfg = safe / "experiments.toml"
        cfg.write_text('[experiments.a]\ndataset = "digits"\nmodel = "mlp"\nloss = "ce"\n'
                       'epochs = 1\ndata_root = "closed"\n')
        (safe / "closed").mkdir()
        (safe / "ro").mkdir()
        (safe / "ro" / "r.duckdb").write_bytes(b"")
        (safe / "open").mkdir()
        os.chmod(safe / "open", 0o777)
        (safe / "open" / "r.duckdb").write_bytes(b"")
        os.chmod(safe / "closed", 0o000)
        os.chmod(safe / "ro", 0o555)
        os.chmod(safe / "open" / "r.duckdb", 0o444)
        if how == "root-without-capabilities":  # root is then "others" for these
            for p in (safe, safe / "closed", safe / "ro", safe / "open", safe / "open" / "r.duckdb"):
                os.chown(p, NOBODY, NOBODY)
        os.chmod(safe, 0o755)
        good = cfg.with_name("good.toml")
        good.write_text(cfg.read_text().replace('data_root = "closed"\n', ""))
        writable = {"db_path": str(safe / "open" / "new.duckdb"), "workdir": str(safe / "open" / "w")}
        cases = [{**writable, **case} for case in (
                 {"config": str(cfg)},
                 {"config": str(good), "workdir": str(safe / "ro" / "w")},
                 {"config": str(good), "db_path": str(safe / "ro" / "new.duckdb")},
                 {"config": str(good), "db_path": str(safe / "open" / "r.duckdb")},
                 {"config": str(good), "db_path": str(safe / "ro" / "r.duckdb")},
                 {"config": str(good)})]
        out = subprocess.run([sys.executable, "-c", _AS_USER, json.dumps(cases)], preexec_fn=preexec,
                             capture_output=True, text=True, cwd=safe, timeout=120,
                             env={**env(), "PYTHONDONTWRITEBYTECODE": "1"})
        assert out.returncode == 0, f"{how}: {out.stderr}"
        got = json.loads(out.stdout)
        assert got[0].startswith(f"{cfg}:6, experiment 'a', key 'data_root': {safe / 'closed'}: "
                                 "the folder is not readable"), got[0]
        assert got[1] == f"--workdir: {safe / 'ro' / 'w'}: cannot create it: the folder {safe / 'ro'} is not writable"
        assert got[2] == f"--db: {safe / 'ro' / 'new.duckdb'}: cannot create it: the folder {safe / 'ro'} is not writable"
        assert got[3] == f"--db: {safe / 'open' / 'r.duckdb'}: the file is not writable (permission denied)"
        assert got[4].startswith(f"--db: {safe / 'ro' / 'r.duckdb'}: its folder {safe / 'ro'} is not writable")
        assert got[5] == "ok"  # and all is well where the user may write
    finally:
        for p in (safe / "closed", safe / "ro", safe):
            if p.exists():
                os.chmod(p, 0o755)
        shutil.rmtree(safe, ignore_errors=True)
