"""`ncbench report --metric`: every metric in its own unit (issue #16).

Accuracies (`*_acc`, `*_acc_at_best_val`) are fractions shown as percent, differences and the
`--margin` in percentage points; any other `results` column (NC1, CDNV, ...) is shown as it is
stored (3 significant digits), its spread, differences and margin in its own units. On a real
DuckDB written through the real schema, with NC1 values chosen per loss and seed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from _report_data import _insert_run
from ncbench import report, schema
from ncbench.report.blocks import is_percent
from ncbench.report.stats_tables import stats_grid

ROOT = Path(__file__).resolve().parents[1]

# final NC1 per seed; ls differs from ce by ~0.003 at every seed, mse by ~0.5
CE_NC1 = [0.0150, 0.0170, 0.0140, 0.0160]
LS_SHIFT = [0.0030, 0.0031, 0.0029, 0.0030]
MSE_SHIFT = [0.50, 0.52, 0.49, 0.51]
ONE_SEED_NC1 = 0.0123  # the only run of the width-2 cell
ACC = {"ce": 0.91, "ls": 0.92, "mse": 0.90}


def _nc1(loss, seed):
    return CE_NC1[seed] + {"ce": 0.0, "ls": LS_SHIFT[seed], "mse": MSE_SHIFT[seed]}[loss]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("units") / "ncbench.duckdb"
    con = duckdb.connect(str(path))
    schema.apply(con)
    n = 0
    cells = [(1.0, loss, seed, _nc1(loss, seed)) for loss in ACC for seed in range(4)]
    cells.append((2.0, "ce", 0, ONE_SEED_NC1))
    for width, loss, seed, nc1 in cells:
        n += 1
        rid = f"u{n:03d}"
        _insert_run(con, rid, "u", loss, width, 1, seed, "done")
        con.execute("INSERT INTO metrics VALUES (?, 1, 'val_acc', 0.5), (?, 1, 'test_acc', ?), "
                    "(?, 1, 'nc1', ?)", [rid, rid, ACC[loss] + 0.01 * seed, rid, nc1])
    con.close()
    return path


@pytest.fixture()
def con(db):
    c = duckdb.connect(str(db), read_only=True)
    yield c
    c.close()


def _nc_report(con, margin=0.01) -> report.Report:
    return report.Report(accuracy=report.accuracy_table(con, ["u"], metric="final_nc1",
                                                        margin=margin))


def _no_percent(text: str) -> None:
    """No percent sign but the confidence level's ("95 %", "95%"), no "percent", no "pp"."""
    assert "percent" not in text and not re.search(r"\bpp\b", text), text
    assert "%" not in re.sub(r"95 ?(\\)?%", "", text), text


def test_is_percent_is_the_accuracy_columns(con):
    accs = ("best_val_acc", "test_acc_at_best_val", "final_train_acc", "final_val_acc",
            "final_test_acc")
    assert all(is_percent(m) for m in accs)
    assert not any(is_percent(m) for m in ("final_nc1", "final_cdnv", "final_equinorm_means",
                                           "final_train_loss", "wall_seconds", "best_epoch"))
    cols = {r[0] for r in con.execute("DESCRIBE results").fetchall()}
    assert set(accs) == {c for c in cols if is_percent(c)}  # exactly the accuracies


def test_nc_metric_values_are_unscaled_in_every_human_format(con):
    rep = _nc_report(con)
    (block,) = rep.accuracy
    ce = block.cells["ce"][0][0]
    want_ce = report.fmt_num(ce.mean)
    assert block.cells["ce"][1][0].mean == ONE_SEED_NC1
    header, lines = report.accuracy_grid(block)
    rows = {(r[0], r[1]): r[2:] for r in lines}
    assert rows["ce", "2"] == ["0.0123 (1)"]
    assert rows["ce", "1"] == [f"{want_ce} ± {report.fmt_num(ce.std)} (4)"]
    spread = block.spread[0][0]
    assert rows["spread (max−min)", "1"] == [report.fmt_num(spread)]
    assert 0.4 < spread < 0.6
    md = report.render(rep, "md")
    table = report.render(rep, "table", width=200)
    latex = report.render(rep, "latex")
    for text in (md, table, latex):
        assert "0.0123" in text and want_ce in text
        assert "1.2 (1)" not in text and "1.23" not in text  # never scaled by 100
        assert report.fmt_num(spread) in text
    for title in (report.accuracy_title(block), report.stats_title(block)):
        assert "final_nc1" in title
        _no_percent(title)
    for legend in (report.renderers.accuracy_legend(block),
                   report.renderers.accuracy_legend(block, pane=True),
                   report.stats_legend(block), report.stats_tables.stats_legend_pane(block)):
        _no_percent(legend)
    _no_percent(md.replace("95% CI", ""))  # the accuracy and statistics tables only
    _no_percent(latex.replace(r"95\% CI", ""))


def test_nc_metric_statistics_and_margin_in_its_units(con):
    (block,) = _nc_report(con, margin=0.01).accuracy
    assert block.margin == 0.01
    cell = block.comparison(0, 0)
    ls, mse, ce = cell.get("ls"), cell.get("mse"), cell.get("ce")
    assert ls.vs_reference.mean == pytest.approx(0.003, abs=1e-4)
    assert ls.vs_reference.verdict == "equal"       # 0.003 is within ±0.01 (own units)
    assert mse.vs_reference.verdict == "different"  # 0.5 is not
    header, lines = stats_grid(block)
    rows = {(r[0], r[2]): r for r in lines}
    assert rows["1", "ce"][4] == (f"{report.fmt_num(ce.ci.mean)} "
                                  f"[{report.fmt_num(ce.ci.low)}, {report.fmt_num(ce.ci.high)}]")
    d = ls.vs_reference
    assert rows["1", "ls"][5] == (f"+{report.fmt_num(d.mean)} "
                                  f"[{report.fmt_num(d.low)}, {report.fmt_num(d.high)}]")
    assert rows["1", "ls"][5].startswith("+0.003")
    assert rows["2", "ce"][4] == "0.0123"
    assert "±0.01" in report.stats_legend(block) and "±1 pp" not in report.stats_legend(block)
    # the terminal form fits 80 columns: the longer intervals wrap rather than being cropped
    text = report.render(report.Report(accuracy=[block]), "table", width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "different" in text and "not all equal" in text and "reference" in text
    # a margin that the difference exceeds: the verdict follows the margin's units
    (tight,) = report.accuracy_table(con, ["u"], metric="final_nc1", margin=0.002)
    assert tight.comparison(0, 0).get("ls").vs_reference.verdict == "different"


def test_default_accuracy_table_is_percent(con):
    (block,) = report.accuracy_table(con, ["u"])
    assert is_percent(block.metric) and block.margin == 0.005
    md = report.render(report.Report(accuracy=[block]), "md")
    assert report.accuracy_title(block).endswith("(%)")
    assert report.ACCURACY_LEGEND in md and "±0.5 pp" in md
    ce = block.cells["ce"][0][0]
    assert f"{100 * ce.mean:.1f} ± {100 * ce.std:.1f} (4)" in md


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", "report", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_cli_metric_nc1_md_and_margin(db):
    out = cli("--db", str(db), "u", "--metric", "final_nc1", "--format", "md", "--margin", "0.01")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "### u · digits / mlp — final_nc1\n" in text
    assert "| ce | 2 | 0.0123 (1) |" in text
    assert "TOST within ±0.01;" not in text and "equivalence within ±0.01;" in text
    ls_row = next(line for line in text.splitlines() if line.startswith("| 1 | 1 | ls |"))
    assert "equal (n = 4)" in ls_row and "+0.003" in ls_row
    _no_percent(text[:text.index("final NC metrics")].replace("95% CI", ""))
    js = cli("--db", str(db), "u", "--metric", "final_nc1", "--format", "json", "--margin", "0.01")
    (b,) = json.loads(js.stdout)["accuracy"]
    assert (b["metric"], b["margin"], b["unit"]) == ("final_nc1", 0.01, None)
    js = cli("--db", str(db), "u", "--format", "json")
    (b,) = json.loads(js.stdout)["accuracy"]
    assert (b["margin"], b["unit"]) == (0.005, "fraction")


def test_nc_metric_without_margin_has_no_equivalence_verdict(con, db):
    """For a metric that is not an accuracy there is no natural margin (0.5 would be ±0.5 NC1
    units, calling almost anything equal): without --margin no TOST is run, no loss is called
    equal, and the legend says how to get one; the paired test still decides 'different'."""
    (block,) = report.accuracy_table(con, ["u"], metric="final_nc1", margin=None)
    cell = block.comparison(0, 0)
    ls, mse = cell.get("ls").vs_reference, cell.get("mse").vs_reference
    assert ls.tost_p is None and ls.verdict != "equal"
    assert mse.verdict == "different"
    assert "--margin" in report.stats_legend(block)
    out = cli("--db", str(db), "u", "--metric", "final_nc1", "--format", "md")
    assert out.returncode == 0, out.stderr
    assert "equal (n" not in out.stdout and "none given: --margin" in out.stdout
    js = cli("--db", str(db), "u", "--metric", "final_nc1", "--format", "json")
    assert json.loads(js.stdout)["accuracy"][0]["margin"] is None
    csv = cli("--db", str(db), "u", "--metric", "final_nc1", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    bad = cli("--db", str(db), "u", "--metric", "final_nc1", "--margin", "-1")
    assert bad.returncode == 2 and "--margin" in bad.stderr
