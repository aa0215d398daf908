"""A hang or a traceback is a bug (issue #15, Deliver 4): the view commands — `sql`, `report`,
`status`, `ufm`, `models`, `tui --help`, `sync` — on a corpus of hostile command lines (bad flags
and values, missing or garbage files for --db / --config, huge numbers, NaN, empty strings,
unicode, very long strings), each run as a real subprocess with a timeout: exit code 0 or 2, no
"Traceback", and an answer within seconds.

The whole corpus runs once, a few processes at a time (`outcomes`); each case is then its own
test, so a failure names its command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from _report_data import make_synthetic_db

#: Seconds one command may take (generous for a loaded machine; a healthy one needs 1–5 s).
LIMIT_S = 45

CONFIG = '''default = "demo"

[experiments.demo]
dataset = "gaussian"
model = "mlp"
loss = ["ce", "fl"]
epochs = 2
'''

LONG = "x" * 100_000
DEEP = "SELECT " + "(" * 3000 + "1" + ")" * 3000
UNI = "ünï😀✓\u202e"
BIG = "9" * 30

# (case id, arguments): files below are the `place` fixture's (paths relative to it).
CORPUS: list[tuple[str, list[str]]] = [
    # sql
    ("sql-no-query", ["sql"]),
    ("sql-empty", ["sql", "", "--db", "good.duckdb"]),
    ("sql-blank", ["sql", "   ", "--db", "good.duckdb"]),
    ("sql-syntax", ["sql", "SELEKT 1", "--db", "good.duckdb"]),
    ("sql-bad-format", ["sql", "SELECT 1", "--format", "xml", "--db", "good.duckdb"]),
    ("sql-missing-db", ["sql", "SELECT 1", "--db", "nope.duckdb"]),
    ("sql-dir-db", ["sql", "SELECT 1", "--db", "adir"]),
    ("sql-garbage-db", ["sql", "SELECT 1", "--db", "garbage.duckdb"]),
    ("sql-garbage-config", ["sql", "SELECT 1", "--config", "garbage.toml"]),
    ("sql-long", ["sql", "SELECT '" + LONG + "' AS x", "--db", "good.duckdb", "--format", "csv"]),
    ("sql-deep", ["sql", DEEP, "--db", "good.duckdb"]),
    ("sql-unicode", ["sql", f"SELECT '{UNI}' AS \"{UNI}\"", "--db", "good.duckdb", "--format", "json"]),
    ("sql-huge-number", ["sql", f"SELECT {BIG}{BIG} * {BIG} AS x, 1e400 AS y", "--db", "good.duckdb"]),
    ("sql-nan-json", ["sql", "SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b", "--db", "good.duckdb",
                      "--format", "json"]),
    ("sql-copy", ["sql", "COPY runs TO 'out.csv'", "--db", "good.duckdb"]),
    ("sql-passwd", ["sql", "SELECT * FROM read_text('/etc/passwd')", "--db", "good.duckdb"]),
    # report
    ("report-bad-format", ["report", "--db", "good.duckdb", "--format", "pdf"]),
    ("report-where-statement", ["report", "--db", "good.duckdb", "--where", "1=1; DROP TABLE runs"]),
    ("report-where-empty", ["report", "--db", "good.duckdb", "--where", "", "--format", "csv"]),
    ("report-where-huge", ["report", "--db", "good.duckdb", "--where", f"width > {BIG}e400",
                           "--format", "json"]),
    ("report-where-unicode", ["report", "--db", "good.duckdb", "--where", f"loss = '{UNI * 500}'"]),
    ("report-where-long", ["report", "--db", "good.duckdb", "--where", "width > 0 AND " * 2000 + "TRUE",
                           "--format", "csv"]),
    ("report-where-deep", ["report", "--db", "good.duckdb", "--where", "(" * 3000 + "TRUE" + ")" * 3000]),
    ("report-unknown-exp", ["report", "nosuch", "--db", "good.duckdb"]),
    ("report-unknown-rows", ["report", "--db", "good.duckdb", "--rows", "nosuch"]),
    ("report-unknown-metric", ["report", "--db", "good.duckdb", "--metric", "nosuch"]),
    ("report-output-dir", ["report", "--db", "good.duckdb", "--output", "adir"]),
    ("report-output-under-file", ["report", "--db", "good.duckdb", "--output", "afile/x.md"]),
    ("report-output-unwritable", ["report", "--db", "good.duckdb", "--output", "/proc/ncbench.md"]),
    ("report-output-long-name", ["report", "--db", "good.duckdb", "--output", "y" * 5000]),
    ("report-output-empty", ["report", "--db", "good.duckdb", "--output", ""]),
    ("report-figures-file", ["report", "--db", "good.duckdb", "--figures", "afile"]),
    ("report-figures-under-file", ["report", "--db", "good.duckdb", "--figures", "afile/figs"]),
    ("report-garbage-db", ["report", "--db", "garbage.duckdb"]),
    ("report-foreign-db", ["report", "--db", "foreign.duckdb"]),
    # status
    ("status-bad-status", ["status", "--db", "good.duckdb", "--status", "bogus"]),
    ("status-garbage-config", ["status", "--config", "garbage.toml"]),
    ("status-empty-config", ["status", "--config", "empty.toml"]),
    ("status-dir-config", ["status", "--config", "adir"]),
    ("status-unknown-exp", ["status", "nosuch", "--config", "good.toml"]),
    ("status-unicode-exp", ["status", UNI * 200, "--config", "good.toml", "--json"]),
    ("status-garbage-db", ["status", "--db", "garbage.duckdb", "--json"]),
    ("status-dir-db", ["status", "--db", "adir"]),
    # ufm and models (these import torch: a few here, the rest in-process below)
    ("ufm-nan", ["ufm", "--lambda-w", "nan"]),
    ("ufm-not-int", ["ufm", "--classes", "two"]),
    ("ufm-huge-size", ["ufm", "--loss", "ce", "--classes", "100000", "--dim", "100000"]),
    ("ufm-callable", ["ufm", "--loss", "builtins:dict", "--classes", "2", "--dim", "3"]),
    ("models-zero-classes", ["models", "--classes", "0"]),
    ("models-huge-classes", ["models", "--model", "mlp", "--classes", BIG]),
    ("models-nan-width", ["models", "--width", "nan"]),
    ("models-huge-width", ["models", "--model", "mlp", "--width", "1e308"]),
    ("models-huge-shape", ["models", "--model", "mlp", "--input-shape", BIG]),
    ("models-bad-shape", ["models", "--input-shape", "3,x,3"]),
    ("models-unknown", ["models", "--model", UNI]),
    ("models-bad-format", ["models", "--format", "xml"]),
    # tui (arguments only: never the interactive app)
    ("tui-help", ["tui", "--help"]),
    ("tui-bad-flag", ["tui", "--bogus"]),
    # sync
    ("sync-workdir-file", ["sync", "--workdir", "afile", "--db", "new.duckdb"]),
    ("sync-db-dir", ["sync", "--db", "adir", "--workdir", "emptywd"]),
    ("sync-garbage-config", ["sync", "--config", "garbage.toml"]),
    ("sync-long-workdir", ["sync", "--workdir", "w" * 5000, "--db", "new2.duckdb"]),
    ("sync-garbage-db", ["sync", "--db", "garbage.duckdb", "--workdir", "emptywd"]),
    # anywhere
    ("unknown-command", ["frobnicate"]),
    ("bad-flag", ["report", "--frobnicate"]),
]

#: Cases left to the engineer doing corrupt / foreign database files (doctor, rebuild); they
#: must still pass once that work lands (xfail is not strict).
DB_WORK = set()


def _run(place: Path, args: list[str]) -> tuple[int, str, float]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    start = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "ncbench", *args], cwd=place, env=env,
                           capture_output=True, text=True, timeout=LIMIT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {LIMIT_S} s", LIMIT_S
    return p.returncode, p.stdout[-3000:] + p.stderr[-6000:], time.monotonic() - start


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    import duckdb

    tmp = tmp_path_factory.mktemp("hostile")
    make_synthetic_db(tmp / "good.duckdb")
    (tmp / "good.toml").write_text(CONFIG)
    (tmp / "garbage.toml").write_bytes(bytes(range(256)) * 4)
    (tmp / "empty.toml").write_text("")
    (tmp / "garbage.duckdb").write_bytes(os.urandom(64 * 1024))
    con = duckdb.connect(str(tmp / "foreign.duckdb"))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    (tmp / "adir").mkdir()
    (tmp / "emptywd").mkdir()
    (tmp / "afile").write_text("not a folder\n")
    return tmp


@pytest.fixture(scope="module")
def outcomes(place) -> dict[str, tuple[int, str, float]]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case: pool.submit(_run, place, args) for case, args in CORPUS}
        return {case: f.result() for case, f in futures.items()}


@pytest.mark.slow  # the corpus: ~60 processes, three at a time (~20 s on a quiet 2-core machine)
@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(strict=False, reason="doctor/rebuild work in progress"))
    if c in DB_WORK else c for c, _ in CORPUS])
def test_hostile_command_line(outcomes, case):
    rc, out, seconds = outcomes[case]
    assert rc in (0, 2), f"{case}: exit {rc}\n{out}"
    assert "Traceback" not in out, f"{case}:\n{out}"
    assert seconds < LIMIT_S, f"{case}: {seconds:.1f} s"
    assert "root:x:" not in out  # the password file is never printed


#: More `ufm` / `models` command lines, run in this process (torch is imported once, not per
#: case): each must end in exit code 0 or 2 with no exception escaping `ncbench.cli.main`.
IN_PROCESS: list[tuple[str, list[str]]] = [
    ("ufm-inf-tol", ["ufm", "--tol", "inf"]),
    ("ufm-empty-loss", ["ufm", "--loss", ""]),
    ("ufm-huge-classes", ["ufm", "--classes", BIG, "--dim", BIG]),
    ("ufm-huge-per-class", ["ufm", "--loss", "ce", "--classes", "10", "--dim", "20",
                            "--per-class", "1000000000"]),
    ("ufm-huge-seed", ["ufm", "--loss", "ce", "--classes", "2", "--dim", "3", "--seed", BIG]),
    ("ufm-bad-loss-params", ["ufm", "--loss", "fl", "--loss-params", "gamma=inf"]),
    ("ufm-device", ["ufm", "--device", UNI]),
    ("ufm-trajectory-dir", ["ufm", "--loss", "ce", "--trajectory", "nodir/sub/x.csv"]),
    ("models-huge-width-all", ["models", "--width", "1e6", "--classes", "2147483647"]),
    ("models-tiny-width", ["models", "--model", "mlp", "--width", "1e-300"]),
]


@pytest.mark.parametrize("case,args", IN_PROCESS, ids=[c for c, _ in IN_PROCESS])
def test_hostile_in_process(case, args, tmp_path, monkeypatch, capsys):
    from ncbench.cli import main

    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    with pytest.raises(SystemExit) as info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    assert info.value.code in (0, 2, None), f"{case}: exit {info.value.code}\n{out.err}"
    assert time.monotonic() - start < 20, case
    assert "Traceback" not in out.out + out.err


def test_corpus_is_large():
    assert len(CORPUS) >= 30
    assert {args[0] for _, args in CORPUS} >= {"sql", "report", "status", "ufm", "models", "tui", "sync"}
