"""`ncbench.report` and `ncbench report`: numbers against direct SQL over `results`, output shapes.

Most tests use a synthetic database built with the real schema and INSERTs (tests/_report_data.py:
several losses, widths, epochs and seeds, an unfinished and a failed run, NaN metrics, a
single-seed cell, a second experiment sweeping lr). `test_real_runs_*` build the database from
real tiny `ncbench run` runs.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from _report_data import LOSSES, make_synthetic_db
from ncbench import report, schema
from ncbench.report import query
from ncbench.errors import NcbenchError, UnknownNameError
from ncbench.rundir import EVENTS_FILE, SPEC_FILE, run_dirs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return make_synthetic_db(tmp_path_factory.mktemp("report") / "ncbench.duckdb")


@pytest.fixture()
def con(db):
    c = duckdb.connect(str(db), read_only=True)
    yield c
    c.close()


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", "report", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=120)


def sql_cell(con, experiment, loss, width, epochs, metric="test_acc_at_best_val", statuses=("done",),
             extra=""):
    """Mean, sample std, count of `metric` straight from `results` — the reference."""
    st = ", ".join(f"'{s}'" for s in statuses)
    return con.execute(
        f"SELECT avg({metric}), stddev_samp({metric}), count({metric}) FROM results "
        f"WHERE experiment = ? AND loss = ? AND width = ? AND epochs = ? AND status IN ({st}) "
        f"AND {metric} IS NOT NULL AND NOT isnan({metric}) {extra}",
        [experiment, loss, width, epochs],
    ).fetchone()


def assert_stats_match(stats, ref):
    mean, std, n = ref
    if n == 0:
        assert stats is None
        return
    assert stats.n_seeds == n
    assert stats.mean == pytest.approx(mean, rel=1e-12, abs=1e-15)
    if n == 1:
        assert stats.std is None
    else:
        assert stats.std == pytest.approx(std, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------------------------
# the data API
# ------------------------------------------------------------------------------------------


def test_accuracy_table_matches_sql(con):
    (block,) = report.accuracy_table(con, ["grid"])
    assert block.experiment == "grid" and block.fixed == {"dataset": "digits", "model": "mlp"}
    assert block.row_key == "width" and block.col_key == "epochs"
    assert block.row_values == [0.5, 2.0] and block.col_values == [4, 8]
    assert block.losses == list(LOSSES)
    checked = 0
    for loss in LOSSES:
        for i, w in enumerate(block.row_values):
            for j, e in enumerate(block.col_values):
                assert_stats_match(block.cells[loss][i][j], sql_cell(con, "grid", loss, w, e))
                checked += 1
    assert checked == 12
    # spread = max − min of the cell means across losses
    for i in range(2):
        for j in range(2):
            means = [block.cells[l][i][j].mean for l in LOSSES]
            assert block.spread[i][j] == pytest.approx(max(means) - min(means))
    # the running and the failed run are not counted
    assert block.n_excluded == 2
    assert block.n_runs == con.execute("SELECT count(*) FROM runs WHERE experiment='grid'").fetchone()[0]


def test_unfinished_nan_and_single_seed_cells(con):
    (block,) = report.accuracy_table(con, ["grid"])
    rows, cols = block.row_values, block.col_values
    # mse / width 2 / 8 epochs: seed 2 is still running → 2 seeds
    assert block.cells["mse"][rows.index(2.0)][cols.index(8)].n_seeds == 2
    # ce / 2 / 8 has 4 done runs, one with NaN validation accuracy (no best epoch) → 3 counted
    assert block.cells["ce"][rows.index(2.0)][cols.index(8)].n_seeds == 3
    # fl / 0.5 / 4 has one seed: std is None, shown as the mean alone
    single = block.cells["fl"][rows.index(0.5)][cols.index(4)]
    assert single.n_seeds == 1 and single.std is None
    assert report.fmt_pct(single) == f"{100 * single.mean:.1f} (1)"
    # --include-unfinished counts the running mse run (its partial best-val test accuracy)
    (incl,) = report.accuracy_table(con, ["grid"], include_unfinished=True)
    ref = sql_cell(con, "grid", "mse", 2.0, 8, statuses=("done", "running"))
    assert_stats_match(incl.cells["mse"][rows.index(2.0)][cols.index(8)], ref)
    assert incl.n_excluded == 0


def test_cell_stats_is_sample_std():
    xs = [0.81, 0.83, 0.86]
    s = report.cell_stats(xs + [float("nan"), None])
    assert s.n_seeds == 3
    assert s.mean == pytest.approx(statistics.fmean(xs))
    assert s.std == pytest.approx(statistics.stdev(xs))
    assert report.cell_stats([float("nan")]) is None
    assert report.cell_stats([0.5, 0.5]) == report.CellStats(0.5, 0.0, 2)


def test_blocks_split_on_swept_config_key(con):
    blocks = report.accuracy_table(con, ["lrsweep"])
    assert [b.fixed["lr"] for b in blocks] == [0.01, 0.1]
    for b in blocks:
        ref = sql_cell(con, "lrsweep", "ce", 1.0, 4,
                       extra=f"AND (config->>'lr')::DOUBLE = {b.fixed['lr']}")
        assert_stats_match(b.cells["ce"][0][0], ref)
        assert b.spread == [[None]]  # one loss: no spread
    # the swept key as rows: one block, lr becomes the row axis
    (b,) = report.accuracy_table(con, ["lrsweep"], rows="lr", cols="width")
    assert b.row_values == [0.01, 0.1] and b.col_values == [1.0] and "lr" not in b.fixed


def test_derived_config_values_do_not_split_blocks(con):
    # lr_milestones follows epochs in the synthetic configs: still one grid block
    assert len(report.accuracy_table(con, ["grid"])) == 1
    assert report.configurations(con, "grid") == [
        {"width": w, "epochs": e} for w in (0.5, 2.0) for e in (4, 8)]


def test_rows_cols_any_keys(con):
    (b,) = report.accuracy_table(con, ["grid"], rows="epochs", cols="width")
    assert b.row_values == [4, 8] and b.col_values == [0.5, 2.0]
    # a key that was not swept gives a single row; width, no longer an axis, is never pooled
    # across as if it were seeds: it splits the table into one block per width
    blocks = report.accuracy_table(con, ["grid"], rows="batch_size", cols="epochs")
    assert [b2.fixed["width"] for b2 in blocks] == [0.5, 2.0]
    for b2 in blocks:
        assert b2.row_values == [128] and b2.col_values == [4, 8]
        assert_stats_match(b2.cells["ce"][0][0], sql_cell(con, "grid", "ce", b2.fixed["width"], 4))
    assert "width=2" in blocks[1].label
    with pytest.raises(UnknownNameError, match="did you mean 'width'"):
        report.accuracy_table(con, rows="widht")
    with pytest.raises(NcbenchError, match="loss"):
        report.accuracy_table(con, rows="loss")
    with pytest.raises(NcbenchError, match="different"):
        report.accuracy_table(con, rows="width", cols="width")


def test_where_filters_and_guards(con):
    (b,) = report.accuracy_table(con, ["grid"], where="loss <> 'fl' AND width >= 1")
    assert b.losses == ["ce", "mse"] and b.row_values == [2.0]
    # runs-only columns (not in `results`) are usable too
    assert report.accuracy_table(con, where="host = 'nohost'") == []
    for bad in ("width > 1; DROP TABLE runs", "1=1) UNION SELECT 1 --", "widht > 1", "width >",
                "1=1) GROUP BY (run_id", "TRUE) LIMIT (1"):
        with pytest.raises(NcbenchError):
            report.accuracy_table(con, where=bad)
    with pytest.raises(UnknownNameError, match="grid"):
        report.accuracy_table(con, ["gird"])


def test_where_names_config_keys_that_are_no_column(tmp_path):
    """Run keys kept only in `config` (momentum, precision, per_class, grad_clip, ...) are usable
    in --where by name, typed as in experiments.toml; they do not leak into the returned rows."""
    from ncbench.runs import RunSpec
    from ncbench.store import Store

    base = dict(experiment="k", dataset="digits", model="mlp", loss="ce", width=1.0, epochs=2, seed=0)
    specs = [RunSpec(**base), RunSpec(**{**base, "seed": 1}, momentum=0.5, precision="bf16"),
             RunSpec(**{**base, "seed": 2}, per_class=50, grad_clip=None, channels_last=False)]
    db = tmp_path / "k.duckdb"
    Store(db).register_runs(specs)
    c = duckdb.connect(str(db), read_only=True)
    try:
        def seeds(where):
            return sorted(r["seed"] for r in report.select_runs(c, ["k"], where))

        assert seeds("momentum = 0.5 AND precision = 'bf16'") == [1]
        assert seeds("momentum > 0.6") == [0, 2]
        assert seeds("per_class IS NULL") == [0, 1] and seeds("per_class >= 50") == [2]
        assert seeds("grad_clip IS NULL OR NOT channels_last") == [2]
        assert seeds("lr = 0.1 AND momentum = 0.9 AND seed <> 0") == [2]  # with real columns
        assert seeds("loss = 'momentum'") == []  # a word inside a string is no key
        (row,) = report.select_runs(c, ["k"], "precision = 'bf16'")
        assert "precision" not in row and row["config"]["precision"] == "bf16"
        with pytest.raises(NcbenchError, match="momentun"):
            report.select_runs(c, ["k"], "momentun = 0.5")
    finally:
        c.close()


def test_nc_table_matches_sql(con):
    (block,) = report.nc_table(con, ["grid"])
    assert block.metrics == list(report.NC_METRICS)
    assert len(block.rows) == 2 * 2 * 3
    for r in block.rows:
        for m in block.metrics:
            assert_stats_match(r.stats[m], sql_cell(con, "grid", r.loss, r.row_value, r.col_value, m))
    # NC2 was NaN at epoch 2 only: the final value is finite
    assert all(r.stats["final_nc2"] is not None for r in block.rows)


def test_curves_match_sql(con):
    data = report.curves(con, "grid", "nc1")
    assert list(data) == list(LOSSES)
    for loss, c in data.items():
        assert isinstance(c, report.Curve)
        ref = con.execute(
            "SELECT e.epoch, avg(e.nc1), min(e.nc1), max(e.nc1), count(*) FROM epochs e "
            "JOIN runs r USING (run_id) WHERE r.experiment='grid' AND r.loss=? AND r.width=2 "
            "AND r.epochs=8 AND r.status='done' AND NOT isnan(e.nc1) GROUP BY 1 ORDER BY 1",
            [loss]).fetchall()
        assert c.epochs == [r[0] for r in ref]
        assert c.mean == pytest.approx([r[1] for r in ref])
        assert c.min == pytest.approx([r[2] for r in ref])
        assert c.max == pytest.approx([r[3] for r in ref])
        assert c.n_seeds == [r[4] for r in ref]
    # NaN entries (nc2 at epoch 2) are skipped, not averaged
    nc2 = report.curves(con, "grid", "nc2", select={"width": 0.5, "epochs": 4})
    assert 2 not in nc2["ce"].epochs and nc2["ce"].epochs == [1, 3, 4]
    # live view: running runs included
    live = report.curves(con, "grid", "test_acc", include_unfinished=True)
    assert max(live["mse"].n_seeds) == 3
    with pytest.raises(UnknownNameError):
        report.curves(con, "grid", "nc9")


def test_empty_database(tmp_path):
    path = tmp_path / "empty.duckdb"
    c = duckdb.connect(str(path))
    schema.apply(c)
    c.close()
    with duckdb.connect(str(path), read_only=True) as c:
        rep = report.build_report(c)
        assert rep.accuracy == [] and rep.nc == []
        for fmt in report.FORMATS:
            assert isinstance(report.render(rep, fmt), str)
        with pytest.raises(UnknownNameError, match="experiment 'x'"):
            report.curves(c, "x", "nc1")
    out = cli("--db", str(path), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["accuracy"] == []


# ------------------------------------------------------------------------------------------
# renderers and the CLI
# ------------------------------------------------------------------------------------------


def test_cli_json_matches_sql(db, con):
    out = cli("--db", str(db), "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    grid = [b for b in data["accuracy"] if b["experiment"] == "grid"][0]
    for loss in grid["losses"]:
        for i, w in enumerate(grid["row_values"]):
            for j, e in enumerate(grid["col_values"]):
                cell = grid["cells"][loss][i][j]
                ref = sql_cell(con, "grid", loss, w, e)
                assert cell["n_seeds"] == ref[2]
                assert cell["mean"] == pytest.approx(ref[0])  # fractions, not percent
                assert (cell["std"] is None) == (ref[2] == 1)
    nc = [b for b in data["nc"] if b["experiment"] == "grid"][0]
    row = nc["rows"][0]
    ref = sql_cell(con, "grid", row["loss"], row["row_value"], row["col_value"], "final_nc1")
    assert row["stats"]["final_nc1"]["mean"] == pytest.approx(ref[0])


def test_cli_csv_matches_sql(db, con, tmp_path):
    target = tmp_path / "out" / "report.csv"
    out = cli("--db", str(db), "grid", "--format", "csv", "--output", str(target))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    recs = list(csv.DictReader(io.StringIO(target.read_text())))
    assert tuple(recs[0]) == report.CSV_COLUMNS
    acc = [r for r in recs if r["table"] == "accuracy"]
    assert len(acc) == 3 * 2 * 2
    for r in acc:
        ref = sql_cell(con, "grid", r["loss"], float(r["row"]), int(r["col"]))
        assert int(r["n_seeds"]) == ref[2]
        assert float(r["mean"]) == pytest.approx(ref[0])
        assert (r["std"] == "") == (ref[2] == 1)
        assert r["spread"] != ""
    ncr = [r for r in recs if r["table"] == "nc"]
    assert {r["metric"] for r in ncr} == set(report.NC_METRICS)
    for r in ncr:
        ref = sql_cell(con, "grid", r["loss"], float(r["row"]), int(r["col"]), r["metric"])
        assert float(r["mean"]) == pytest.approx(ref[0])


def _md_tables(text: str) -> list[list[list[str]]]:
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_md_shape(con):
    rep = report.build_report(con, ["grid"])
    text = report.render(rep, "md")
    acc, _stats, nc = _md_tables(text)  # the statistics table: tests/test_report_stats.py
    assert acc[0] == ["loss", "width", "epochs=4", "epochs=8"]
    assert set(acc[1]) <= {"---", "---:"}
    body = acc[2:]
    assert len(body) == 3 * 2 + 2 and all(len(r) == 4 for r in body)
    assert [r[0] for r in body[-2:]] == ["spread (max−min)"] * 2
    # the cell text is the percent of the SQL mean with one decimal
    ref = sql_cell(con, "grid", "ce", 0.5, 4)
    assert body[0][2].startswith(f"{100 * ref[0]:.1f} ± {100 * ref[1]:.1f} ({ref[2]})")
    assert nc[0] == ["width", "epochs", "loss", "NC1", "NC2", "NC3", "NC4", "test NC1"]
    assert len(nc) - 2 == 12 and all(len(r) == 8 for r in nc[2:])
    assert "unfinished run(s) not counted" in text


def test_missing_cell_shows_dash(con):
    (b,) = report.accuracy_table(con, ["grid"], where="NOT (loss = 'ce' AND width = 2 AND epochs = 4)")
    header, lines = report.accuracy_grid(b)
    ce_w2 = [ln for ln in lines if ln[0] == "ce" and ln[1] == "2"][0]
    assert ce_w2[2] == report.MISSING
    assert b.cells["ce"][1][0] is None
    # spread over the two remaining losses only
    assert b.spread[1][0] == pytest.approx(abs(b.cells["fl"][1][0].mean - b.cells["mse"][1][0].mean))


def test_latex_shape(con):
    text = report.render(report.build_report(con), "latex")
    # 3 accuracy blocks, each with its statistics table, and 3 NC blocks
    assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 9
    for env in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", text, re.S):
        spec, body = env
        rows = [ln for ln in body.splitlines() if ln.endswith(r"\\")]
        assert rows
        for ln in rows:
            assert ln.count(" & ") + 1 == len(spec), ln
    assert "±" not in text and "—" not in text and r"$\pm$" in text
    assert "%" not in text.replace(r"\%", "")


def _text(renderable, width: int = 200) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(renderable)
    return buf.getvalue()


def test_rich_tables_one_per_block(con):
    """rich_tables is accuracy_rich_table / nc_rich_table of each block; the pane form (the TUI's
    compare view) keeps every cell on one line and leaves the unfinished-runs note to the caller."""
    rep = report.build_report(con, ["grid", "lrsweep"])
    tables = report.rich_tables(rep)
    # each accuracy table is followed by its statistics table (tests/test_report_stats.py)
    assert len(tables) == 2 * len(rep.accuracy) + len(rep.nc) == 2 * 3 + 3
    for got, block in zip(tables[:2 * len(rep.accuracy):2], rep.accuracy):
        assert _text(got) == _text(report.accuracy_rich_table(block))
    for got, block in zip(tables[1:2 * len(rep.accuracy):2], rep.accuracy):
        assert _text(got) == _text(report.stats_rich_table(block))
    for got, block in zip(tables[2 * len(rep.accuracy):], rep.nc):
        assert _text(got) == _text(report.nc_rich_table(block))
    grid_acc, grid_nc = rep.accuracy[0], rep.nc[0]
    assert grid_acc.n_excluded == 2  # the running and the failed run
    note = report.excluded_note(grid_acc.n_excluded, False)
    assert note == "2 unfinished run(s) not counted (only status 'done'; see --include-unfinished)"
    assert report.excluded_note(2, False, hint="u: include them").endswith("; u: include them)")
    assert report.excluded_note(2, True) == report.excluded_note(0, False) == ""

    full = report.accuracy_rich_table(grid_acc)
    assert full.caption == report.ACCURACY_LEGEND + "\n" + note
    pane = report.accuracy_rich_table(grid_acc, pane=True)
    assert pane.caption == report.ACCURACY_LEGEND_PANE
    assert all(col.no_wrap for col in pane.columns)
    assert [c.justify for c in pane.columns[:3]] == ["left", "left", "right"]
    assert [c.justify for c in full.columns[:3]] == ["left", "right", "right"]
    header, lines = report.accuracy_grid(grid_acc)
    assert [c.header for c in pane.columns] == [c.header for c in full.columns] == header
    # a rule after each loss in the report, only before the spread rows in the pane
    n_loss_lines = len(grid_acc.losses) * len(grid_acc.row_values)
    assert [r.end_section for r in pane.rows] == [i == n_loss_lines - 1 for i in range(len(lines))]
    assert sum(r.end_section for r in full.rows) == len(grid_acc.losses)
    assert all(cell in _text(pane) for line in lines for cell in line)
    # NC: the report's form splits "mean ± std (n)" into mean / ±std and a seed column
    nc_header, nc_lines = report.nc_grid(grid_nc)
    nc_pane = report.nc_rich_table(grid_nc, pane=True)
    assert [c.header for c in nc_pane.columns] == nc_header and nc_pane.caption is None
    assert all(cell in _text(nc_pane) for line in nc_lines for cell in line)
    nc_full = report.nc_rich_table(grid_nc)
    assert [c.header for c in nc_full.columns] == nc_header[:3] + ["n"] + nc_header[3:]
    assert nc_full.caption == report.NC_LEGEND_COMPACT
    assert _text(report.rich_tables(report.Report())[0]).strip() == \
        "No runs match (nothing to report)."


def test_cli_table_default_and_bad_input(db):
    out = cli("--db", str(db), "grid")
    assert out.returncode == 0, out.stderr
    assert "spread (max−min)" in out.stdout and "test accuracy" in out.stdout
    bad = cli("--db", str(db), "--where", "width > 1; DROP TABLE runs")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--where" in bad.stderr
    bad = cli("--db", str(db), "--where", "widht > 1")
    assert bad.returncode == 2 and "width" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("--db", str(db), "--format", "xlsx")
    assert bad.returncode == 2 and "format" in bad.stderr
    bad = cli("--db", str(db.parent / "nope.duckdb"))
    assert bad.returncode == 2 and "no results yet" in bad.stderr
    with duckdb.connect(str(db), read_only=True) as c:  # nothing was dropped
        assert c.execute("SELECT count(*) FROM runs").fetchone()[0] > 0


def test_views_never_import_torch(db, tmp_path):
    code = (
        "import sys\n"
        "from ncbench.cli import main\n"
        f"try:\n    main(['report', 'lrsweep', '--db', {str(db)!r}, '-f', 'md', '--figures', {str(tmp_path)!r}])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "import ncbench.report, ncbench.report.figures\n"
        "print('torch' in sys.modules, 'ncbench.train' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"
    assert list(tmp_path.glob("*_fig1_nc.png"))


# ------------------------------------------------------------------------------------------
# a database built by real tiny `ncbench run` runs
# ------------------------------------------------------------------------------------------

TINY = """
[defaults]
eval_every = 1

[experiments.tiny]
dataset = "gaussian"
dataset_params = { num_classes = 4, dim = 8, n_train_per_class = 30, n_test_per_class = 20 }
model = "mlp"
batch_size = 32
"""
GRID = TINY + 'loss = ["ce", "ls", "mse"]\nwidth = [0.5, 1]\nepochs = 2\nseed = [0, 1]\n'
# one more run of the same experiment, long enough to be interrupted (Ctrl-C) after an eval
LONG = TINY + 'loss = "ce"\nwidth = 1\nepochs = 2000\nseed = 0\n'


@pytest.fixture(scope="module")
def real_db(tmp_path_factory) -> Path:
    """12 done runs (3 losses × 2 widths × 2 seeds, 2 epochs) plus one interrupted run."""
    import signal
    import time

    root = tmp_path_factory.mktemp("real")
    (root / "grid.toml").write_text(GRID)
    (root / "long.toml").write_text(LONG)
    db = root / "ncbench.duckdb"
    run = [sys.executable, "-m", "ncbench", "run", "--db", str(db), "--workdir", str(root / ".ncbench")]
    out = subprocess.run(run + ["-c", str(root / "grid.toml"), "--workers", "2"], capture_output=True,
                         text=True, cwd=root, timeout=500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    proc = subprocess.Popen(run + ["-c", str(root / "long.toml")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=root)
    deadline = time.monotonic() + 200
    try:
        while time.monotonic() < deadline:  # wait for the long run's first evaluation
            logs = [d / EVENTS_FILE for d in run_dirs(root / ".ncbench")
                    if (d / EVENTS_FILE).exists() and '"epochs": 2000' in (d / SPEC_FILE).read_text()]
            if logs and '"eval"' in logs[0].read_text():
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, log[-3000:]
    return db


@pytest.mark.slow
def test_real_runs_json_and_csv_match_sql(real_db):
    with duckdb.connect(str(real_db), read_only=True) as c:
        statuses = dict(c.execute("SELECT status, count(*) FROM runs GROUP BY 1").fetchall())
        assert statuses == {"done": 12, "interrupted": 1}
        out = cli("--db", str(real_db), "--format", "json")
        assert out.returncode == 0, out.stderr
        (block,) = json.loads(out.stdout)["accuracy"]
        assert block["losses"] == ["ce", "ls", "mse"] and block["row_values"] == [0.5, 1.0]
        assert block["col_values"] == [2, 2000] and block["n_excluded"] == 1
        for loss in block["losses"]:
            for i, w in enumerate(block["row_values"]):
                ref = sql_cell(c, "tiny", loss, w, 2)
                cell = block["cells"][loss][i][0]
                assert cell["n_seeds"] == ref[2] == 2
                assert cell["mean"] == pytest.approx(ref[0]) and cell["std"] == pytest.approx(ref[1])
                assert block["cells"][loss][i][1] is None  # the interrupted run is not counted
        for i in range(2):
            means = [block["cells"][l][i][0]["mean"] for l in block["losses"]]
            assert block["spread"][i][0] == pytest.approx(max(means) - min(means))
            assert block["spread"][i][1] is None
        out = cli("--db", str(real_db), "--format", "csv")
        recs = list(csv.DictReader(io.StringIO(out.stdout)))
        for r in recs:
            if r["col"] == "2000":
                assert r["mean"] == "" and r["n_seeds"] == "0"
                continue
            ref = sql_cell(c, "tiny", r["loss"], float(r["row"]), int(r["col"]), r["metric"])
            assert float(r["mean"]) == pytest.approx(ref[0]) and int(r["n_seeds"]) == ref[2]
        # --include-unfinished counts the interrupted run at its best-validation epoch so far
        (b,) = report.accuracy_table(c, include_unfinished=True)
        ref = sql_cell(c, "tiny", "ce", 1.0, 2000, statuses=("interrupted",))
        assert_stats_match(b.cells["ce"][1][1], ref)


@pytest.mark.slow
def test_real_runs_md_latex_and_figures(real_db, tmp_path):
    out = cli("--db", str(real_db), "tiny", "--format", "md", "--figures", str(tmp_path / "figs"))
    assert out.returncode == 0, out.stderr
    acc, _stats, nc = _md_tables(out.stdout)
    assert acc[0] == ["loss", "width", "epochs=2", "epochs=2000"]
    assert len(acc) - 2 == 3 * 2 + 2
    assert all(r[3] == report.MISSING for r in acc[2:])
    assert len(nc) - 2 == 3 * 2  # configurations with counted runs only
    latex = cli("--db", str(real_db), "--format", "latex").stdout
    for spec, body in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", latex, re.S):
        for ln in (ln for ln in body.splitlines() if ln.endswith(r"\\")):
            assert ln.count(" & ") + 1 == len(spec)
    files = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert files == sorted(f"tiny_{s}.{f}" for s in ("fig1_nc", "fig2_accuracy", "fig3_heatmap",
                                                     "fig4_geometry")  # real runs record the extras
                           for f in ("png", "pdf"))
    assert all((tmp_path / "figs" / f).stat().st_size > 5000 for f in files)
    from ncbench.report import figures

    with duckdb.connect(str(real_db), read_only=True) as c:
        fig1 = figures.figure_nc(c, "tiny")
        assert [len(ax.get_lines()) for ax in fig1.get_axes()] == [3, 3, 3]
        assert fig1.get_axes()[0].get_yscale() == "log"
        x = fig1.get_axes()[0].get_lines()[0].get_xdata()
        assert list(x) == [0, 1, 2]  # epoch 0 (untrained), eval_every = 1, 2 epochs; the width-1, 2-epoch runs
        fig3 = figures.figure_heatmap(c, "tiny")
        assert len([ax for ax in fig3.get_axes() if ax.get_images()]) == 4


# ------------------------------------------------------------------------------------------
# per-experiment queries (schema.results_sql) against the global views
# ------------------------------------------------------------------------------------------


def _rows_equal(a, b) -> bool:
    """Row lists equal value by value and type, NaN equal to NaN."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
                continue
            if type(x) is not type(y) or x != y:
                return False
    return True


@pytest.fixture(scope="module")
def edge_db(tmp_path_factory) -> Path:
    """Runs whose best/final values are easy to get wrong (each metric row written by hand)."""
    path = tmp_path_factory.mktemp("edge") / "ncbench.duckdb"
    con = duckdb.connect(str(path))
    schema.apply(con)
    rows: dict[str, list[tuple]] = {
        # val_acc ties at 0.8 (epochs 2 and 3): the earlier epoch is best; test_acc follows it
        "tie": [(1, "val_acc", 0.5), (2, "val_acc", 0.8), (3, "val_acc", 0.8), (1, "test_acc", 0.4),
                (2, "test_acc", 0.7), (3, "test_acc", 0.9), (3, "nc1", 2.0)],
        # the best epoch has no test_acc row; the last epoch (4) holds only `lr`
        "gap": [(1, "val_acc", 0.9), (2, "val_acc", 0.6), (2, "test_acc", 0.5), (4, "lr", 0.01),
                (1, "nc1", 3.0), (2, "nc1", 1.0)],
        # NaN and NULL validation accuracies are skipped, +inf is the best; a stored NULL at the
        # last epoch stays NULL (not the previous value)
        "odd": [(1, "val_acc", float("nan")), (2, "val_acc", None), (3, "val_acc", float("inf")),
                (4, "val_acc", 0.2), (3, "test_acc", 0.3), (4, "test_acc", None), (3, "nc2", 5.0),
                (4, "nc2", None), (4, "test_nc1", -1.5)],
        # no metrics at all yet (queued): every derived column is NULL
        "none": [],
        # validation accuracy NaN everywhere: no best epoch, but a final one
        "allnan": [(1, "val_acc", float("nan")), (2, "val_acc", float("nan")), (2, "nc1", 0.0)],
        # the epoch-0 evaluation (untrained network) is never the best epoch, even when higher
        "zero": [(0, "val_acc", 0.95), (0, "test_acc", 0.9), (1, "val_acc", 0.3),
                 (1, "test_acc", 0.2), (0, "nc1", 9.0)],
    }
    # experiment "c": two runs alike but for a config key named like a `results` column
    # (best_epoch) whose column values differ — so they are not seeds of one configuration
    rows["c1"] = [(1, "val_acc", 0.9), (2, "val_acc", 0.5)]
    rows["c2"] = [(1, "val_acc", 0.5), (2, "val_acc", 0.9)]
    for k, (run_id, metrics) in enumerate(rows.items()):
        exp = run_id[0] if run_id in ("c1", "c2") else "a" if k % 2 == 0 else "b"
        cfg = {"lr": 0.1 * (k + 1), "batch_size": 32, "loss_params": {"eps": k}}
        if exp == "c":
            cfg = {"best_epoch": 1}
        con.execute("INSERT INTO runs (run_id, experiment, dataset, model, loss, width, epochs, "
                    "seed, status, config) VALUES (?, ?, 'd', 'm', 'ce', 1.0, 4, ?, 'done', ?)",
                    [run_id, exp, 0 if exp == "c" else k, json.dumps(cfg)])
        for epoch, name, value in metrics:
            con.execute("INSERT INTO metrics VALUES (?, ?, ?, ?)", [run_id, epoch, name, value])
    con.close()
    return path


# What `results` means, written out independently of schema.results_sql: the wide `epochs`
# view, the best epoch by a window (highest finite val_acc after epoch 0, earliest on ties), the final epoch by
# a join on the last one (this was the view's own DDL before the view became results_sql()).
REFERENCE_RESULTS = """
WITH best AS (
    SELECT run_id, epoch AS best_epoch, val_acc AS best_val_acc, test_acc AS test_acc_at_best_val
    FROM (
        SELECT run_id, epoch, val_acc, test_acc,
               row_number() OVER (PARTITION BY run_id ORDER BY val_acc DESC, epoch ASC) AS rk
        FROM epochs WHERE epoch >= 1 AND val_acc IS NOT NULL AND NOT isnan(val_acc)
    ) WHERE rk = 1
),
final AS (
    SELECT e.* FROM epochs e
    JOIN (SELECT run_id, max(epoch) AS epoch FROM epochs GROUP BY run_id) m USING (run_id, epoch)
)
SELECT
    r.run_id, r.experiment, r.dataset, r.model, r.loss, r.width, r.epochs, r.seed, r.status,
    r.config,
    TRY_CAST(json_extract_string(r.config, '$.batch_size') AS BIGINT) AS batch_size,
    CAST(json_extract_string(r.config, '$.lr') AS DOUBLE) AS lr,
    CAST(json_extract_string(r.config, '$.weight_decay') AS DOUBLE) AS weight_decay,
    json_extract(r.config, '$.loss_params') AS loss_params,
    r.started_at, r.finished_at,
    b.best_epoch, b.best_val_acc, b.test_acc_at_best_val,
    f.epoch AS final_epoch,
    f.train_acc AS final_train_acc, f.val_acc AS final_val_acc, f.test_acc AS final_test_acc,
    f.train_loss AS final_train_loss, f.test_loss AS final_test_loss,
    f.wall_seconds AS wall_seconds,
    f.nc1 AS final_nc1, f.nc2 AS final_nc2, f.nc3 AS final_nc3, f.nc4 AS final_nc4,
    f.nc2_centered AS final_nc2_centered, f.nc3_centered AS final_nc3_centered,
    f.test_nc1 AS final_test_nc1, f.test_nc2 AS final_test_nc2, f.test_nc3 AS final_test_nc3,
    f.test_nc4 AS final_test_nc4,
    f.equinorm_means AS final_equinorm_means, f.equinorm_classifier AS final_equinorm_classifier,
    f.equiangular_means AS final_equiangular_means,
    f.equiangular_classifier AS final_equiangular_classifier,
    f.maxangle_means AS final_maxangle_means, f.maxangle_classifier AS final_maxangle_classifier,
    f.self_duality AS final_self_duality, f.cdnv AS final_cdnv, f.nc1_trace AS final_nc1_trace,
    f.test_equinorm_means AS final_test_equinorm_means,
    f.test_equiangular_means AS final_test_equiangular_means,
    f.test_maxangle_means AS final_test_maxangle_means,
    f.test_self_duality AS final_test_self_duality, f.test_cdnv AS final_test_cdnv,
    f.test_nc1_trace AS final_test_nc1_trace
FROM runs r
LEFT JOIN best b USING (run_id)
LEFT JOIN final f USING (run_id)"""


def test_results_view_is_defined_once():
    """The `results` view's DDL is results_sql() over every run, not a second spelling."""
    ddl = schema.VIEWS.split("CREATE OR REPLACE VIEW results AS", 1)[1]
    assert ddl.strip().rstrip(";").strip() == schema.results_sql().strip()
    assert schema.VIEWS.count("CREATE OR REPLACE VIEW") == 2  # epochs and results


@pytest.mark.parametrize("which", ["edge", "synthetic"])
def test_results_sql_is_the_results_view(which, edge_db, db):
    path = edge_db if which == "edge" else db
    with duckdb.connect(str(path), read_only=True) as c:
        described = c.execute("DESCRIBE results").fetchall()
        assert described == c.execute(f"DESCRIBE {schema.results_sql()}").fetchall()
        assert described == c.execute(f"DESCRIBE ({REFERENCE_RESULTS})").fetchall()
        view = c.execute("SELECT * FROM results ORDER BY run_id").fetchall()
        ref_all = c.execute(REFERENCE_RESULTS + " ORDER BY run_id").fetchall()
        assert len(view) == c.execute("SELECT count(*) FROM runs").fetchone()[0]
        assert _rows_equal(view, ref_all)
        assert _rows_equal(c.execute(schema.results_sql() + " ORDER BY run_id").fetchall(), view)
        for exp in report.list_experiments(c):
            ref = [r for r in view if r[1] == exp]
            got = c.execute(schema.results_sql("experiment = ?") + " ORDER BY run_id", [exp]).fetchall()
            assert got and _rows_equal(got, ref)
        assert c.execute(schema.results_sql("FALSE")).fetchall() == []
    if which == "edge":  # the cases written above, spelled out
        with duckdb.connect(str(path), read_only=True) as c:
            got = {r[0]: r[1:] for r in c.execute(
                "SELECT run_id, best_epoch, best_val_acc, test_acc_at_best_val, final_epoch, "
                "final_nc1, final_nc2, final_test_nc1 FROM results").fetchall()}
        assert got["tie"] == (2, 0.8, 0.7, 3, 2.0, None, None)
        assert got["gap"] == (1, 0.9, None, 4, None, None, None)
        assert got["odd"] == (3, float("inf"), 0.3, 4, None, None, -1.5)
        assert got["none"] == (None,) * 7
        assert got["allnan"] == (None, None, None, 2, 0.0, None, None)
        assert got["zero"] == (1, 0.3, 0.2, 1, None, None, None)
    with duckdb.connect(str(path), read_only=True) as c:  # what metrics=False leaves out
        cols = [r[0] for r in c.execute("DESCRIBE results").fetchall()]
        light = [r[0] for r in c.execute(f"DESCRIBE {schema.results_sql(metrics=False)}").fetchall()]
        assert light == [n for n in cols if n not in schema.RESULTS_METRIC_COLUMNS]
        assert len(light) + len(schema.RESULTS_METRIC_COLUMNS) == len(cols)


def _as_view_reader(src: Path, dst: Path) -> Path:
    """A copy of `src` whose `results` view has one more column, as another version's would:
    ncbench.report then reads the views themselves (the pre-results_sql way)."""
    import shutil

    shutil.copy(src, dst)
    with duckdb.connect(str(dst)) as c:
        c.execute("CREATE OR REPLACE VIEW results AS SELECT *, 1 AS other_version "
                  f"FROM ({schema.results_sql()})")
    return dst


def test_report_same_through_views_and_per_experiment_queries(db, tmp_path):
    old = _as_view_reader(db, tmp_path / "views.duckdb")
    with duckdb.connect(str(db), read_only=True) as new_c, \
            duckdb.connect(str(old), read_only=True) as old_c:
        assert query._restricted_ok(new_c) and not query._restricted_ok(old_c)
        # the view really is what the old database is read through
        assert {r["other_version"] for r in report.select_runs(old_c, ["grid"])} == {1}
        for exps, where in [(None, None), (["grid"], None), (["lrsweep", "grid"], "final_nc1 < 1"),
                            (["grid"], "host = 'h' AND width > 1")]:
            got = report.select_runs(new_c, exps, where)
            ref = [{k: v for k, v in r.items() if k != "other_version"}
                   for r in report.select_runs(old_c, exps, where)]
            assert [r["run_id"] for r in got] == [r["run_id"] for r in ref] and got
            assert _rows_equal([list(r.values()) for r in got], [list(r.values()) for r in ref])
            assert [list(r) for r in got] == [list(r) for r in ref]  # same columns, same order
            for kw in ({}, {"include_unfinished": True}):
                assert report.build_report(new_c, exps, where=where, **kw) == \
                    report.build_report(old_c, exps, where=where, **kw)
        for kw in ({}, {"include_unfinished": True}, {"where": "seed < 2"}):
            assert report.configurations(new_c, "grid", **kw) == \
                report.configurations(old_c, "grid", **kw)
            for metric in ("nc1", "nc2", "test_acc", "val_acc"):
                assert report.curves(new_c, "grid", metric, **kw) == \
                    report.curves(old_c, "grid", metric, **kw)
        sel = {"width": 0.5, "epochs": 4}
        assert report.curves_many(new_c, "grid", ["nc2", "lr"], select=sel) == \
            report.curves_many(old_c, "grid", ["nc2", "lr"], select=sel)
        # keys derived from metrics (group, select): those lookups need the full rows
        for kw in ({"group_by": "final_epoch"}, {"select": {"width": 2.0, "epochs": 8,
                                                            "best_epoch": 8}}):
            got = report.curves(new_c, "grid", "nc1", **kw)
            assert got and got == report.curves(old_c, "grid", "nc1", **kw)
        assert report.configurations(new_c, "grid", group_by="final_epoch", include_unfinished=True) \
            == report.configurations(old_c, "grid", group_by="final_epoch", include_unfinished=True)
        # the where predicate narrows the experiment's runs in both
        assert report.nc_table(new_c, ["grid"], where="final_nc1 < 1") == \
            report.nc_table(old_c, ["grid"], where="final_nc1 < 1")


def test_run_keys_without_metric_columns(edge_db, tmp_path):
    """configurations / curves read no metrics unless a key they look up is derived from them."""
    old = _as_view_reader(edge_db, tmp_path / "views.duckdb")
    with duckdb.connect(str(edge_db), read_only=True) as c, \
            duckdb.connect(str(old), read_only=True) as old_c:
        light = query.key_runs(c, "a", None, False, ["loss"])
        assert light and not set(schema.RESULTS_METRIC_COLUMNS) & set(light[0])
        full = report.select_runs(c, ["a"])
        assert [{k: r[k] for k in light[0]} for r in full] == light
        assert "final_nc1" in query.key_runs(c, "a", "final_nc1 > 0", False, ["loss"])[0]
        assert "final_nc1" in query.key_runs(c, "a", None, False, ["loss", "final_epoch"])[0]
        # a config key named best_epoch: the column's values (1 and 2) tell c1 and c2 apart
        assert "final_nc1" in query.key_runs(c, "c", None, False, ["loss"])[0]
        configs = report.configurations(c, "c")
        assert configs == [{"best_epoch": 1}, {"best_epoch": 2}]
        assert configs == report.configurations(old_c, "c")
        assert report.curves(c, "c", "val_acc") == report.curves(old_c, "c", "val_acc")
        assert report.configurations(c, "a") == report.configurations(old_c, "a")


def test_curves_many_is_curves_of_each_metric(con):
    metrics = ["nc1", "nc2", "test_acc", "train_loss", "test_nc1"]
    for kw in ({}, {"include_unfinished": True, "select": {"width": 0.5, "epochs": 8}},
               {"group_by": "seed"}):
        many = report.curves_many(con, "grid", metrics, **kw)
        assert list(many) == metrics
        for m in metrics:
            assert many[m] == report.curves(con, "grid", m, **kw)
            assert many[m]  # every loss / seed has a curve
    # against plain SQL: mean / min / max / count of nc1 over the width-0.5, 8-epoch seeds
    c = report.curves_many(con, "grid", ["nc1", "test_acc"], select={"width": 0.5, "epochs": 8})
    for loss, curve in c["nc1"].items():
        ref = con.execute(
            "SELECT m.epoch, avg(m.value), min(m.value), max(m.value), count(*) FROM metrics m "
            "JOIN runs r USING (run_id) WHERE r.experiment = 'grid' AND r.loss = ? AND r.width = 0.5 "
            "AND r.epochs = 8 AND r.status = 'done' AND m.name = 'nc1' AND isfinite(m.value) "
            "GROUP BY 1 ORDER BY 1", [loss]).fetchall()
        assert curve == report.Curve([r[0] for r in ref], pytest.approx([r[1] for r in ref]),
                                     [r[2] for r in ref], [r[3] for r in ref], [r[4] for r in ref])
    assert report.curves_many(con, "grid", ["nc1"], where="seed > 99") == {"nc1": {}}
    with pytest.raises(UnknownNameError, match="nc9"):
        report.curves_many(con, "grid", ["nc1", "nc9"])


# ------------------------------------------------------------------------------------------
# issue 14: LaTeX numbers, the NC caption, a declared experiment without runs
# ------------------------------------------------------------------------------------------


def test_latex_prints_scientific_numbers_as_math():
    from ncbench.report.blocks import CellStats, NCBlock, NCRow, Report

    stats = {"final_nc1": CellStats(1.02e-4, 3e-5, 3), "final_nc2": CellStats(0.25, None, 1)}
    block = NCBlock("x", {"dataset": "digits", "model": "mlp"}, "width", "epochs",
                    ["final_nc1", "final_nc2"], [NCRow(1.0, 4, "ce", stats)])
    text = report.render(Report(accuracy=[], nc=[block]), "latex")
    assert "e-04" not in text and "e-05" not in text
    assert r"$1.02\times10^{-4}$ $\pm$ $3.00\times10^{-5}$ (3)" in text
    assert "0.25 (1)" in text


def test_nc_caption_wording():
    assert "mean over ±std" not in report.NC_LEGEND_COMPACT
    assert "mean over seeds" in report.NC_LEGEND_COMPACT and "±std below" in report.NC_LEGEND_COMPACT


def test_declared_experiment_without_runs_says_so(db, tmp_path):
    """`report NAME` for an experiment of the config with nothing stored: "no finished runs"
    and how many are declared (queued), not "unknown experiment"; a typo stays unknown."""
    from _runkit import experiment, write_config

    cfg = write_config(tmp_path, experiment("cifar", losses=("ce", "mse", "fl")))
    out = cli("cifar", "--config", str(cfg), "--db", str(db))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown experiment" not in out.stderr
    assert "'cifar' has no finished runs" in out.stderr and "3 runs declared" in out.stderr
    assert "queued" in out.stderr and "ncbench run cifar" in out.stderr
    typo = cli("cifra", "--config", str(cfg), "--db", str(db))
    assert typo.returncode == 2 and "unknown experiment 'cifra'" in typo.stderr
