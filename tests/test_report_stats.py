"""The report's statistics (`ncbench.report.stats`): every number against `scipy.stats` and an
independent float64 formula on fixed numbers, the edge cases (one seed, ties, NaN, missing
seeds, no reference), and the statistics in every report format, the CLI and the TUI.

The database tests use a real DuckDB written through the real schema (like
tests/_report_data.py) whose accuracies are chosen per loss and seed, so each verdict is known.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import duckdb
import pytest
from scipy import stats as sps

from _report_data import _insert_run
from ncbench import report, schema
from ncbench.report import stats
from ncbench.report.stats_tables import stats_grid

ROOT = Path(__file__).resolve().parents[1]

# df = 2 (n = 3) in closed form: the t distribution's CDF is 1/2 + t / (2 sqrt(2 + t²)).
T975_DF2 = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))


def _t_sf_df2(t: float) -> float:
    return 0.5 - t / (2 * math.sqrt(2 + t * t))


def _mean_sd(xs):
    n = len(xs)
    m = math.fsum(xs) / n
    return m, math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (n - 1))


A = [0.81, 0.84, 0.80]
B = [0.79, 0.83, 0.80]


# ------------------------------------------------------------------------------------------
# the statistics on fixed numbers
# ------------------------------------------------------------------------------------------


def test_mean_ci_is_scipy_and_the_t_formula():
    ci = stats.mean_ci(A)
    m, sd = _mean_sd(A)
    lo, hi = sps.t.interval(0.95, len(A) - 1, loc=m, scale=sd / math.sqrt(len(A)))
    assert (ci.n, ci.mean) == (3, pytest.approx(m, abs=1e-15))
    assert (ci.low, ci.high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    half = T975_DF2 * sd / math.sqrt(3)  # independent of scipy
    assert (ci.low, ci.high) == (pytest.approx(m - half, rel=1e-12), pytest.approx(m + half, rel=1e-12))


def test_paired_is_ttest_rel_and_the_formula():
    margin = 0.05
    r = stats.paired(dict(enumerate(A)), dict(enumerate(B)), margin)
    ref = sps.ttest_rel(A, B)
    ref_ci = ref.confidence_interval(0.95)
    assert r.n == 3 and r.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert (r.low, r.high) == (pytest.approx(ref_ci.low, rel=1e-12), pytest.approx(ref_ci.high, rel=1e-12))
    d = [a - b for a, b in zip(A, B)]
    m, sd = _mean_sd(d)
    se = sd / math.sqrt(3)
    assert r.mean == pytest.approx(m, rel=1e-12)
    assert r.p == pytest.approx(2 * _t_sf_df2(abs(m / se)), rel=1e-9)
    assert (r.low, r.high) == (pytest.approx(m - T975_DF2 * se, rel=1e-9), pytest.approx(m + T975_DF2 * se, rel=1e-9))
    # TOST: the larger of the two one-sided p-values, three ways
    lower = sps.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = sps.ttest_1samp(d, margin, alternative="less").pvalue
    assert r.tost_p == pytest.approx(max(lower, upper), rel=1e-9)
    by_hand = max(_t_sf_df2((m + margin) / se), _t_sf_df2((margin - m) / se))
    assert r.tost_p == pytest.approx(by_hand, rel=1e-9)
    assert r.margin == margin


def test_friedman_is_scipy_and_the_rank_formula():
    groups = {"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 1.0, 5.0, 6.0], "c": [3.0, 4.0, 4.5, 5.0]}
    f = stats.friedman({k: dict(enumerate(v)) for k, v in groups.items()})
    ref = sps.friedmanchisquare(*groups.values())
    assert (f.n_losses, f.n_blocks, f.test) == (3, 4, "friedman")
    assert f.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert f.p == pytest.approx(ref.pvalue, rel=1e-12)
    # no ties: chi² = 12 / (n k (k+1)) Σ R² − 3 n (k+1); df = 2: p = exp(−chi²/2)
    n, k = 4, 3
    ranks = [0.0] * k
    for block in zip(*groups.values()):
        order = sorted(range(k), key=lambda j: block[j])
        for rank, j in enumerate(order, 1):
            ranks[j] += rank
    chi2 = 12 / (n * k * (k + 1)) * sum(r * r for r in ranks) - 3 * n * (k + 1)
    assert f.statistic == pytest.approx(chi2, rel=1e-12)
    assert f.p == pytest.approx(math.exp(-chi2 / 2), rel=1e-12)


def test_verdict_rule():
    ref = {s: 0.9 + 0.01 * s for s in range(4)}
    # a tiny but consistent difference: TOST passes and so does the paired test -> equal
    tiny = {s: v + 0.001 + 0.0001 * (s % 2) for s, v in ref.items()}
    r = stats.paired(tiny, ref, 0.005)
    assert r.p < 0.05 and r.tost_p < 0.05 and r.verdict == stats.EQUAL
    big = {s: v + 0.03 + 0.002 * (s % 2) for s, v in ref.items()}
    r = stats.paired(big, ref, 0.005)
    assert r.p < 0.05 and r.tost_p >= 0.05 and r.verdict == stats.DIFFERENT
    noisy = {s: v + d for (s, v), d in zip(ref.items(), (0.02, -0.03, 0.01, -0.015))}
    r = stats.paired(noisy, ref, 0.005)
    assert r.p >= 0.05 and r.tost_p >= 0.05 and r.verdict == stats.INCONCLUSIVE
    # two pairs: the tests are computed, the verdict says the n is too small
    two = stats.paired({0: 0.93, 1: 0.95}, {0: 0.9, 1: 0.91}, 0.005)
    assert two.n == 2 and two.p == pytest.approx(sps.ttest_rel([0.93, 0.95], [0.9, 0.91]).pvalue)
    assert two.tost_p is not None and two.verdict == stats.TOO_FEW
    assert stats.verdict(3, 0.01, 0.01) == stats.EQUAL
    assert stats.verdict(3, 0.01, 0.2) == stats.DIFFERENT
    assert stats.verdict(3, 0.2, None) == stats.INCONCLUSIVE
    assert stats.verdict(2, 0.0, 0.0) == stats.TOO_FEW
    with pytest.raises(ValueError):
        stats.paired(ref, ref, 0.0)


def test_one_seed_gives_no_interval_no_test_and_says_so():
    assert stats.mean_ci([0.9]) == stats.MeanCI(0.9, None, None, 1)
    assert stats.mean_ci([]) is None and stats.mean_ci([float("nan"), None]) is None
    r = stats.paired({0: 0.91}, {0: 0.9}, 0.005)
    assert (r.n, r.low, r.high, r.p, r.tost_p, r.verdict) == (1, None, None, None, None, stats.TOO_FEW)
    assert r.mean == pytest.approx(0.01)
    none = stats.paired({0: 0.91}, {1: 0.9}, 0.005)  # no shared seed
    assert (none.n, none.mean, none.verdict) == (0, None, stats.TOO_FEW)
    f = stats.friedman({k: {0: v} for k, v in zip("abc", (1.0, 2.0, 3.0))})
    assert f.p is None and f.n_blocks == 1 and "seeds" in f.note


def test_ties_zero_variance_do_not_crash_or_warn():
    ref = {s: 0.9 + 0.01 * s for s in range(3)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = stats.paired(dict(ref), ref, 0.005)
        # all differences 0: the paired t is 0/0 (no p), TOST t = ±inf (p = 0): equal
        assert (same.mean, same.low, same.high, same.p, same.tost_p) == (0.0, 0.0, 0.0, None, 0.0)
        assert same.verdict == stats.EQUAL
        const = {0: 0.5, 1: 0.5, 2: 0.5}
        shifted = stats.paired({s: 0.52 for s in const}, const, 0.005)  # d = 2 pp, every seed
        assert shifted.p == 0.0 and shifted.tost_p == 1.0 and shifted.verdict == stats.DIFFERENT
        inside = stats.paired({s: 0.5 + 2 ** -9 for s in const}, const, 0.005)  # d ≈ 0.2 pp
        assert inside.tost_p == 0.0 and inside.verdict == stats.EQUAL
        assert stats.mean_ci([0.97, 0.97, 0.97]) == stats.MeanCI(0.97, 0.97, 0.97, 3)
        tied = stats.friedman({k: dict(enumerate([0.5, 0.6, 0.7])) for k in "abc"})
        assert tied.p is None and tied.note == "all tied"
    with warnings.catch_warnings():  # what scipy itself says about all-zero differences: nan
        warnings.simplefilter("ignore", RuntimeWarning)
        assert math.isnan(sps.ttest_rel(list(ref.values()), list(ref.values())).pvalue)


def test_nan_is_skipped_and_only_shared_seeds_pair():
    a = {0: 0.81, 1: 0.84, 2: float("nan"), 3: 0.80, 4: 0.82}
    b = {0: 0.79, 1: 0.83, 2: 0.85, 3: 0.80}  # no seed 4
    r = stats.paired(a, b, 0.005)
    ref = sps.ttest_rel([0.81, 0.84, 0.80], [0.79, 0.83, 0.80])
    assert r.n == 3 and r.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert stats.mean_ci(a.values()).n == 4
    assert stats.seed_values([(0, 0.5), (0, 0.7), (1, float("inf")), (2, None)]) == {0: 0.6}
    # Friedman over the complete blocks only (seeds 0, 1, 3 here)
    f = stats.friedman({"a": a, "b": b, "c": {0: 0.7, 1: 0.9, 2: 0.8, 3: 0.75}})
    want = sps.friedmanchisquare([0.81, 0.84, 0.80], [0.79, 0.83, 0.80], [0.7, 0.9, 0.75])
    assert f.n_blocks == 3 and f.p == pytest.approx(want.pvalue, rel=1e-12)
    few = stats.friedman({"a": a, "b": b})
    assert few.p is None and few.note == "< 3 losses"


# ------------------------------------------------------------------------------------------
# the report, on a real DuckDB with chosen accuracies
# ------------------------------------------------------------------------------------------

CE = [0.900, 0.920, 0.940, 0.910]
ADD = {  # loss -> difference to ce per seed (None: no run; nan: a run without a value)
    "ls": [0.001, -0.001, 0.0005, 0.0],          # equal within 0.5 pp
    "mse": [0.030, 0.035, 0.028, 0.032],         # different
    "fl": [0.02, -0.03, 0.01, -0.015],           # inconclusive
    "tie": [0.0, 0.0, 0.0, 0.0],                 # identical to ce: equal
    "few": [0.01, 0.02, None, None],             # two seeds: too few
    "one": [0.01, None, None, None],             # one seed
    "nan": [0.002, 0.001, 0.0, float("nan")],    # NaN at seed 3: three pairs
}
WIDE = ("ce", "ls", "mse", "fl", "nan")  # the losses of the width-2 cell


def _value(loss, seed):
    if loss == "ce":
        return CE[seed]
    d = ADD[loss][seed]
    return None if d is None else CE[seed] + d


def _insert(con, run_id, experiment, loss, width, seed, value):
    _insert_run(con, run_id, experiment, loss, width, 1, seed, "done")
    con.execute("INSERT INTO metrics VALUES (?, 1, 'val_acc', 0.5), (?, 1, 'test_acc', ?)",
                [run_id, run_id, value])


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stats") / "ncbench.duckdb"
    con = duckdb.connect(str(path))
    schema.apply(con)
    n = 0
    for width, losses in ((1.0, ("ce", *ADD)), (2.0, WIDE)):
        for loss in losses:
            for seed in range(4):
                value = _value(loss, seed)
                if value is not None:
                    n += 1
                    _insert(con, f"s{n:03d}", "st", loss, width, seed, value)
    for loss, shift in (("ls", 0.0), ("mse", 0.01)):  # an experiment without the reference
        for seed in range(3):
            n += 1
            _insert(con, f"s{n:03d}", "noref", loss, 1.0, seed, CE[seed] + shift)
    con.close()
    return path


@pytest.fixture()
def con(db):
    c = duckdb.connect(str(db), read_only=True)
    yield c
    c.close()


def _by_seed(con, loss, width):
    """{seed: test_acc_at_best_val} straight from `results` (finite values only)."""
    rows = con.execute("SELECT seed, test_acc_at_best_val FROM results WHERE experiment = 'st' "
                       "AND loss = ? AND width = ? AND NOT isnan(test_acc_at_best_val)",
                       [loss, width]).fetchall()
    return dict(rows)


def test_report_statistics_match_scipy_on_the_database(con):
    (block,) = report.accuracy_table(con, ["st"])
    assert (block.reference, block.margin) == ("ce", 0.005)
    verdicts = {}
    for i, width in enumerate(block.row_values):
        cell = block.comparison(i, 0)
        ce = _by_seed(con, "ce", width)
        for item in cell.losses:
            mine = _by_seed(con, item.loss, width)
            xs = list(mine.values())
            assert item.ci.n == len(xs) == block.cells[item.loss][i][0].n_seeds
            assert item.ci.mean == pytest.approx(block.cells[item.loss][i][0].mean, rel=1e-12)
            if len(xs) > 1:
                m, sd = _mean_sd(xs)
                lo, hi = sps.t.interval(0.95, len(xs) - 1, loc=m, scale=sd / math.sqrt(len(xs)))
                assert (item.ci.low, item.ci.high) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
            if item.loss == "ce":
                assert item.vs_reference is None
                continue
            vs = item.vs_reference
            shared = sorted(set(mine) & set(ce))
            assert vs.n == len(shared)
            if len(shared) >= 2 and item.loss != "tie":
                ref = sps.ttest_rel([mine[s] for s in shared], [ce[s] for s in shared])
                assert vs.p == pytest.approx(ref.pvalue, rel=1e-9)
            verdicts[item.loss, width] = vs.verdict
        if width == 2.0:  # Friedman over the seeds every loss has: 0, 1, 2 (nan lacks 3)
            want = sps.friedmanchisquare(*[[_value(l, s) for s in range(3)] for l in WIDE])
            assert cell.friedman.n_blocks == 3 and cell.friedman.n_losses == 5
            assert cell.friedman.p == pytest.approx(want.pvalue, rel=1e-12)
        else:  # "one" has a single seed: no complete blocks to speak of
            assert cell.friedman.p is None and cell.friedman.n_blocks == 1
    assert verdicts == {
        ("ls", 1.0): "equal", ("mse", 1.0): "different", ("fl", 1.0): "inconclusive",
        ("tie", 1.0): "equal", ("few", 1.0): "too few seeds", ("one", 1.0): "too few seeds",
        ("nan", 1.0): "equal", ("ls", 2.0): "equal", ("mse", 2.0): "different",
        ("fl", 2.0): "inconclusive", ("nan", 2.0): "equal"}


def test_reference_and_margin_are_parameters(con):
    (block,) = report.accuracy_table(con, ["st"], reference="mse", margin=0.05)
    cell = block.comparison(0, 0)
    assert cell.get("mse").vs_reference is None and cell.get("ce").vs_reference.margin == 0.05
    assert cell.get("ce").vs_reference.mean == pytest.approx(-math.fsum(ADD["mse"]) / 4)
    assert cell.get("ce").vs_reference.verdict == "equal"  # within ±5 pp


def test_reference_absent_omits_the_paired_columns(con):
    (block,) = report.accuracy_table(con, ["noref"])
    assert block.losses == ["ls", "mse"]
    cell = block.comparison(0, 0)
    assert all(item.vs_reference is None for item in cell.losses)
    header, lines = stats_grid(block)
    assert header == ["width", "epochs", "loss", "n", "mean [95% CI]", "p", "verdict"]
    assert "no paired comparison" in report.stats_legend(block)
    text = report.render(report.build_report(con, ["noref"]), "table", width=80)
    assert "has no runs here" in " ".join(text.split()) and "Δ vs" not in text


def _md_tables(text):
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_every_format_shows_the_statistics(con):
    rep = report.build_report(con, ["st"])
    block = rep.accuracy[0]
    ls = block.comparison(0, 0).get("ls")
    # table: fits 80 columns, a CI under each mean, verdicts, the legend
    text = report.render(rep, "table", width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    stats_part = text[text.index("statistics over seeds vs ce"):]
    for word in ("reference", "equal", "different", "inconclusive", "too few", "Friedman",
                 report.fmt_ci(ls.ci.low, ls.ci.high), "±0.5 pp"):
        assert word in stats_part, word
    # md: the statistics table under the accuracy table
    _acc, st, _nc = _md_tables(report.render(rep, "md"))
    assert st[0] == ["width", "epochs", "loss", "n", "mean [95% CI]", "Δ vs ce [95% CI]", "p",
                     "TOST p", "verdict"]
    rows = {(r[0], r[2]): r for r in st[2:]}
    assert rows["1", "ls"][4] == f"{100 * ls.ci.mean:.1f} {report.fmt_ci(ls.ci.low, ls.ci.high)}"
    assert rows["1", "ls"][8] == "equal (n = 4)" and rows["1", "nan"][8] == "equal (n = 3)"
    assert rows["1", "one"][8] == "too few seeds (n = 1)" and rows["1", "one"][4] == "91.0"
    assert rows["1", "tie"][6] == report.MISSING  # 0/0: no paired p
    assert rows["1", "ce"][8] == "reference"
    assert rows["2", "all (5)"][3] == "3" and rows["2", "all (5)"][6] == report.fmt_p(
        block.comparison(1, 0).friedman.p)
    # latex: one more tabular, the same columns
    latex = report.render(rep, "latex")
    assert latex.count(r"\begin{tabular}") == 3
    assert "equal (n = 4)" in latex and r"$\Delta$ vs ce" in latex and r"$\chi^2$" in latex
    assert "Δ" not in latex and "χ" not in latex
    # json: the data structures, fractions
    data = json.loads(report.render(rep, "json"))
    (jb,) = data["accuracy"]
    assert (jb["reference"], jb["margin"]) == ("ce", 0.005)
    jls = next(c for c in jb["comparisons"][0]["losses"] if c["loss"] == "ls")
    assert jls["ci"]["low"] == pytest.approx(ls.ci.low)
    assert jls["vs_reference"]["verdict"] == "equal"
    assert jls["vs_reference"]["p"] == pytest.approx(ls.vs_reference.p)
    tie = next(c for c in jb["comparisons"][0]["losses"] if c["loss"] == "tie")
    assert tie["vs_reference"]["p"] is None and tie["vs_reference"]["tost_p"] == 0.0
    assert jb["comparisons"][1]["friedman"]["test"] == "friedman"
    # csv: the statistics columns of each accuracy record, fractions
    recs = list(csv.DictReader(io.StringIO(report.render(rep, "csv"))))
    assert tuple(recs[0]) == report.CSV_COLUMNS
    rec = next(r for r in recs if r["table"] == "accuracy" and r["loss"] == "ls" and r["row"] == "1")
    assert float(rec["ci_low"]) == pytest.approx(ls.ci.low) and rec["verdict"] == "equal"
    assert float(rec["diff"]) == pytest.approx(ls.vs_reference.mean) and rec["n_pairs"] == "4"
    assert float(rec["margin"]) == 0.005 and rec["reference"] == "ce"
    assert float(rec["p_tost"]) == pytest.approx(ls.vs_reference.tost_p)
    ref_rec = next(r for r in recs if r["table"] == "accuracy" and r["loss"] == "ce" and r["row"] == "2")
    assert ref_rec["verdict"] == "reference" and ref_rec["diff"] == ""
    assert float(ref_rec["friedman_p"]) == pytest.approx(block.comparison(1, 0).friedman.p)
    assert all(r["verdict"] == "" for r in recs if r["table"] == "nc")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", "report", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_cli_reference_and_margin(db):
    out = cli("--db", str(db), "st", "--format", "json", "--reference", "mse", "--margin", "5")
    assert out.returncode == 0, out.stderr
    (b,) = json.loads(out.stdout)["accuracy"]
    assert (b["reference"], b["margin"]) == ("mse", 0.05)
    ce = next(c for c in b["comparisons"][0]["losses"] if c["loss"] == "ce")
    assert ce["vs_reference"]["verdict"] == "equal"
    # the default reference missing from a block is no error: that block's table says so
    out = cli("--db", str(db), "st", "noref", "--format", "md")
    assert out.returncode == 0, out.stderr
    assert "Δ vs ce [95% CI]" in out.stdout and "±0.5 pp" in out.stdout
    assert "reference loss 'ce' has no runs here" in out.stdout
    bad = cli("--db", str(db), "--reference", "cee", "--margin", "1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--reference" in bad.stderr and "did you mean 'ce'" in bad.stderr
    assert "ce, few, fl, ls, mse, nan, one, tie" in bad.stderr
    bad = cli("--db", str(db), "--margin", "nan")  # 0, -1, inf: the same check
    assert bad.returncode == 2 and "--margin" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("margin", ["0", "-1", "inf", "1e400"])
def test_margin_must_be_a_positive_number(db, margin):
    from typer.testing import CliRunner

    import ncbench.cli  # noqa: F401 - registers the commands
    from ncbench.cli.app import app
    from ncbench.errors import UsageError

    res = CliRunner().invoke(app, ["report", "--db", str(db), "--margin", margin])
    assert isinstance(res.exception, UsageError) and res.exception.option == "--margin"


def test_tui_compare_view_shows_ci_and_verdicts(db):
    from tests.test_tui import async_test, fresh_poll, make_app, screen_text, wait_for
    from ncbench.tui.screens import CompareScreen

    @async_test
    async def run():
        app = make_app(db)
        async with app.run_test(size=(160, 60)) as pilot:
            await fresh_poll(pilot)
            app.push_screen(CompareScreen("st"))
            await wait_for(pilot, lambda: app.screen.loads >= 1 and not app.screen._loading)
            await pilot.pause()
            text = screen_text(app)
            assert "statistics over seeds vs ce" in text, text
            block = app.screen.data["acc"][0]
            ls = block.comparison(0, 0).get("ls")
            assert report.fmt_ci(ls.ci.low, ls.ci.high) in text
            assert "reference" in text and "inconclusive" in text and "different" in text

    run()
