"""`ncbench status` and `ncbench sql` as a user runs them (subprocesses), and every bad input of
the issue: exit code 2, one clear message naming file/experiment/key and reason, no traceback,
and the database left exactly as it was."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ncbench.events import EventLog, write_spec
from ncbench.rundir import run_dir_of
from ncbench.runs import RunSpec
from ncbench.store import Store

ROOT = Path(__file__).resolve().parents[1]

CONFIG = '''default = "demo"

[defaults]
eval_every = 5

[experiments.demo]
dataset = "digits"
model = "mlp"
loss = ["ce", "fl"]
width = [0.5, 2]
epochs = 10
seed = [0, 1]

[experiments.other]
dataset = "gaussian"
model = "mlp"
loss = "mse"
epochs = 3
'''


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def populate(tmp: Path) -> tuple[Path, list[RunSpec]]:
    """experiments.toml + a database where one demo run is done, one running (2 evals)."""
    from ncbench.config import expand, load_config

    cfg_path = tmp / "experiments.toml"
    cfg_path.write_text(CONFIG)
    specs = expand(load_config(cfg_path), ["demo"])
    store = Store(cfg_path.parent / "ncbench.duckdb")
    store.register_runs(specs)
    work = tmp / ".ncbench"
    for spec, end in ((specs[0], "done"), (specs[1], None)):
        run_dir = run_dir_of(work, spec.run_id)
        write_spec(run_dir, spec)
        log = EventLog(run_dir)
        log.start(1, device="cpu", pid=1)
        log.eval(5, {"train_acc": 0.9, "val_acc": 0.8, "test_acc": 0.75, "nc1": 1.5})
        log.eval(10, {"train_acc": 1.0, "val_acc": 0.85, "test_acc": 0.8125, "nc1": float("nan")})
        log.heartbeat(10)
        if end:
            log.end(end)
    store.sync(work)
    store.set_status(specs[1].run_id, "running", slot="cpu0", executor="local")
    return cfg_path, specs


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("populated")
    return tmp, *populate(tmp)


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------


def test_status_fresh_dir_all_queued_and_writes_nothing(tmp_path):
    (tmp_path / "experiments.toml").write_text(CONFIG)
    out = cli("status", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    # Unnamed: the default experiment and those with stored runs; "other" has neither.
    assert len(rows) == 8 and {r["status"] for r in rows} == {"queued"}
    assert [r["experiment"] for r in rows] == ["demo"] * 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments.toml"]  # nothing created
    table = cli("status", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("queued") == 8 + 1  # 8 rows + the count line
    assert "queued 8" in table.stdout and "not shown: other (1 run)" in table.stdout
    named = cli("status", "demo", "other", "--json", cwd=tmp_path)
    assert [r["experiment"] for r in json.loads(named.stdout)] == ["demo"] * 8 + ["other"]


def test_status_table_and_json_with_db(populated):
    tmp, cfg_path, specs = populated
    out = cli("status", "--json", cwd=tmp)
    assert out.returncode == 0, out.stderr
    rows = {r["run_id"]: r for r in json.loads(out.stdout)}
    done, running = rows[specs[0].run_id], rows[specs[1].run_id]
    assert (done["status"], done["progress"], done["test_acc"], done["nc1"]) == ("done", "10/10", 0.8125, None)
    assert (running["status"], running["slot"], running["device"]) == ("running", "cpu0", "cpu")
    assert running["heartbeat_age_s"] is not None and running["attempt"] == 1
    assert sum(r["status"] == "queued" for r in rows.values()) == 8 - 2
    table = cli("status", "demo", cwd=tmp)
    assert table.returncode == 0, table.stderr
    line = next(ln for ln in table.stdout.splitlines() if specs[0].run_id in ln)
    assert "done" in line and "10/10" in line and "nan" in line
    # percent, labelled (issue 14): the last evaluation's test accuracy, as the run's done line
    assert "81.2%" in line and "0.8125" not in line
    assert "final test" in table.stdout.splitlines()[0]
    assert "queued 6" in table.stdout and "running 1" in table.stdout and "done 1" in table.stdout
    only = cli("status", "--status", "done", "--json", cwd=tmp)
    assert [r["run_id"] for r in json.loads(only.stdout)] == [specs[0].run_id]


def test_status_db_only_without_config(populated, tmp_path):
    tmp, _, specs = populated
    out = cli("status", "--db", str(tmp / "ncbench.duckdb"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == len(specs)  # the stored runs only


# ---------------------------------------------------------------------------------------------
# sql
# ---------------------------------------------------------------------------------------------


def test_sql_formats(populated):
    tmp, _, specs = populated
    q = "SELECT run_id, epoch, test_acc, nc1 FROM epochs WHERE run_id = '%s' ORDER BY epoch" % specs[0].run_id
    js = cli("sql", q, "--format", "json", cwd=tmp)
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == [
        {"run_id": specs[0].run_id, "epoch": 5, "test_acc": 0.75, "nc1": 1.5},
        {"run_id": specs[0].run_id, "epoch": 10, "test_acc": 0.8125, "nc1": None},  # NaN -> null
    ]
    c = cli("sql", q, "--format", "csv", cwd=tmp)
    assert list(csv.reader(io.StringIO(c.stdout))) == [
        ["run_id", "epoch", "test_acc", "nc1"], [specs[0].run_id, "5", "0.75", "1.5"],
        [specs[0].run_id, "10", "0.8125", "nan"]]
    t = cli("sql", "SELECT status, count(*) AS n FROM runs GROUP BY status ORDER BY status", cwd=tmp)
    assert t.returncode == 0 and "queued" in t.stdout and "3 rows" in t.stdout
    r = cli("sql", "SELECT test_acc_at_best_val, best_epoch FROM results WHERE status = 'done'",
            "-f", "json", cwd=tmp)
    assert json.loads(r.stdout) == [{"test_acc_at_best_val": 0.8125, "best_epoch": 10}]


SQL_BAD = [
    ("SELEC 1", "syntax error"),
    ("SELECT nope FROM runs", "nope"),
    ("SELECT * FROM missing_table", "missing_table"),
    ("DELETE FROM runs", "read-only"),
    ("DROP TABLE metrics", "read-only"),
    ("INSERT INTO metrics VALUES ('x', 1, 'a', 1.0)", "read-only"),
    ("", "empty query"),
]


def run_parallel(jobs: list[tuple[list[str], Path]]) -> list[subprocess.CompletedProcess]:
    """Run `python -m ncbench ARGS` in CWD for each job, all at once; results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "ncbench", *args], cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args, cwd in jobs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.fixture(scope="module")
def sql_bad_results(populated):
    tmp = populated[0]
    before = (tmp / "ncbench.duckdb").read_bytes()
    results = run_parallel([(["sql", q], tmp) for q, _ in SQL_BAD])
    return before, dict(zip((q for q, _ in SQL_BAD), results))


@pytest.mark.parametrize("query,fragment", SQL_BAD)
def test_sql_errors_clear_and_db_unchanged(populated, sql_bad_results, query, fragment):
    tmp = populated[0]
    before, results = sql_bad_results
    out = results[query]
    assert out.returncode == 2
    assert fragment in out.stderr and out.stderr.startswith("error:")
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert (tmp / "ncbench.duckdb").read_bytes() == before


def test_sql_bad_format_and_missing_db(tmp_path):
    out = cli("sql", "SELECT 1", "--format", "xml", cwd=tmp_path)
    assert out.returncode == 2 and "unknown format 'xml'" in out.stderr
    out = cli("sql", "SELECT 1", cwd=tmp_path)
    assert out.returncode == 2 and "no results yet" in out.stderr and "ncbench run" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_status_explicit_db_must_exist(tmp_path):
    """`status --db typo.duckdb` is an error like `sql`'s (issue #17 item 7), not a listing of
    every run as queued; without --db a fresh project still lists its runs as queued."""
    (tmp_path / "experiments.toml").write_text(CONFIG)
    out = cli("status", "--db", "typo.duckdb", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "typo.duckdb does not exist" in out.stderr and "Traceback" not in out.stderr
    assert "queued" not in out.stdout
    fresh = cli("status", cwd=tmp_path)
    assert fresh.returncode == 0 and "queued 8" in fresh.stdout, fresh.stdout + fresh.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments.toml"]


# ---------------------------------------------------------------------------------------------
# bad input (issue item 5): message, exit code, database untouched
# ---------------------------------------------------------------------------------------------

GOOD_EXP = CONFIG.split("[experiments.other]")[0]

# name -> (config text or None for "missing file", extra CLI args, fragments of the message)
BAD_INPUTS = {
    "missing config": (None, [], ["nope.toml", "config file not found"]),
    "toml syntax": (GOOD_EXP.replace("epochs = 10", "epochs = 10 10"), [],
                    ["bad.toml:11", "invalid TOML", "column 13"]),
    "unknown experiment": (GOOD_EXP, ["dmeo"], ["bad.toml", "unknown experiment 'dmeo'",
                                                "did you mean 'demo'"]),
    "unknown key": (GOOD_EXP + "weight_decai = 1e-4\n", [],
                    ["bad.toml:14", "experiment 'demo'", "key 'weight_decai'",
                     "did you mean 'weight_decay'"]),
    "unknown loss": (GOOD_EXP.replace('"fl"]', '"focal"]'), [],
                     ["bad.toml:9", "experiment 'demo'", "key 'loss'", "unknown loss 'focal'"]),
    "unknown model": (GOOD_EXP.replace('"mlp"', '"wrn5"'), [],
                      ["experiment 'demo'", "key 'model'", "unknown model 'wrn5'",
                       "did you mean 'wrn50'"]),
    "unknown dataset": (GOOD_EXP.replace('"digits"', '"cifar"'), [],
                        ["experiment 'demo'", "key 'dataset'", "unknown dataset 'cifar'"]),
    "wrong type": (GOOD_EXP.replace("epochs = 10", 'epochs = "ten"'), [],
                   ["key 'epochs'", "expected an integer, got 'ten'"]),
    "wrong type bool": (GOOD_EXP.replace("width = [0.5, 2]", "width = true"), [],
                        ["key 'width'", "expected a number, got True"]),
    "non-positive epochs": (GOOD_EXP.replace("epochs = 10", "epochs = 0"), [],
                            ["key 'epochs'", "must be >= 1"]),
    "empty sweep list": (GOOD_EXP.replace("seed = [0, 1]", "seed = []"), [],
                         ["key 'seed'", "empty sweep list"]),
    "bad defaults": (GOOD_EXP.replace("eval_every = 5", "eval_every = 0"), [],
                     ["key 'defaults.eval_every'", "must be >= 1"]),
}


def _launch_all(tmp: Path) -> dict[str, subprocess.CompletedProcess]:
    """Run every bad input at once (subprocesses in parallel; each has its own copy of the
    populated directory) and collect the results."""
    import shutil

    jobs = []
    for i, (name, (text, args, _)) in enumerate(BAD_INPUTS.items()):
        d = tmp / f"case{i}"
        shutil.copytree(tmp / "base", d)
        if text is not None:
            (d / "bad.toml").write_text(text)
            cfg = "bad.toml"
        else:
            cfg = "nope.toml"
        jobs.append((["status", "--config", cfg, "--db", "ncbench.duckdb", *args], d))
    return dict(zip(BAD_INPUTS, run_parallel(jobs)))


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "base").mkdir()
    populate(tmp / "base")
    return tmp, _launch_all(tmp)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input(bad_results, name):
    tmp, results = bad_results
    out = results[name]
    fragments = BAD_INPUTS[name][2]
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith("error:") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    for frag in fragments:
        assert frag in out.stderr, (frag, out.stderr)
    assert "Traceback" not in out.stderr and out.stdout == ""
    case = tmp / f"case{list(BAD_INPUTS).index(name)}"
    assert (case / "ncbench.duckdb").read_bytes() == (tmp / "base" / "ncbench.duckdb").read_bytes()
    assert sorted(p.name for p in case.iterdir()) == sorted(
        [p.name for p in (tmp / "base").iterdir()] + (["bad.toml"] if BAD_INPUTS[name][0] else []))


@pytest.mark.slow
def test_run_dataset_absent_with_download_off(tmp_path):
    """`ncbench run` validates with the same code and checks datasets before any training."""
    cfg_path, _ = populate(tmp_path)
    db = tmp_path / "ncbench.duckdb"
    before = db.read_bytes()
    text = CONFIG.replace('"gaussian"', '"cifar10"') + f'data_root = "{tmp_path / "nodata"}"\n'
    (tmp_path / "bad.toml").write_text(text)
    out = cli("run", "other", "--config", "bad.toml", "--db", "ncbench.duckdb", cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "dataset 'cifar10' not found" in out.stderr and str(tmp_path / "nodata") in out.stderr
    assert "Traceback" not in out.stderr
    assert db.read_bytes() == before
    bad = cli("run", "--config", "bad.toml", "--db", "ncbench.duckdb", "dmeo", cwd=tmp_path)
    assert bad.returncode == 2 and "did you mean 'demo'" in bad.stderr
    assert db.read_bytes() == before


def test_readme_schema_examples_run(populated):
    """Every ```sql example of docs/schema.md runs on a populated database."""
    import re

    from ncbench.store import run_sql

    tmp = populated[0]
    text = (ROOT / "docs" / "schema.md").read_text()
    queries = re.findall(r"```sql\n(.+?)```", text, flags=re.S)
    assert len(queries) >= 8
    for q in queries:
        cols, rows = run_sql(tmp / "ncbench.duckdb", q)
        assert cols, q
    cols, rows = run_sql(tmp / "ncbench.duckdb", queries[1])  # the Figure 3 table
    assert rows and rows[0][cols.index("test_acc")] == 0.8125
