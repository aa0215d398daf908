"""`ncbench.report.figures`: the paper's Figures 1–3, checked through the matplotlib objects (axes,
lines, images, scales, labels) against `ncbench.report` / direct SQL, plus the files written."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from _report_data import LOSSES, make_synthetic_db
from ncbench import report
from ncbench.report import figures


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return make_synthetic_db(tmp_path_factory.mktemp("figures") / "ncbench.duckdb")


@pytest.fixture()
def con(db):
    c = duckdb.connect(str(db), read_only=True)
    yield c
    c.close()


def test_fig1_nc_lines_log_scale_and_masking(con):
    fig = figures.figure_nc(con, "grid")
    axes = fig.get_axes()
    assert len(axes) == 3
    assert [ax.get_yscale() for ax in axes] == ["log", "linear", "linear"]
    assert "NC$_1$" in axes[0].get_ylabel() and "log" in axes[0].get_ylabel()
    assert all(ax.get_xlabel() == "epoch" for ax in axes)
    assert ["NC1" in axes[0].get_title(), "NC2" in axes[1].get_title(), "NC3" in axes[2].get_title()] == [True] * 3
    title = fig._suptitle.get_text()
    assert "grid" in title and "width=2" in title and "epochs=8" in title and "min–max" in title
    for ax, metric in zip(axes, ("nc1", "nc2", "nc3")):
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == list(LOSSES)  # one line per loss
        assert len(ax.collections) == len(LOSSES)  # one min–max band per loss
        ref = report.curves(con, "grid", metric)
        for ln in lines:
            c = ref[ln.get_label()]
            y = np.asarray(ln.get_ydata(), dtype=float)
            assert list(ln.get_xdata()) == c.epochs
            expect = np.array(c.mean)
            if metric == "nc1":  # non-positive means are masked on the log axis
                expect = np.where(expect > 0, expect, np.nan)
            np.testing.assert_allclose(y, expect, equal_nan=True)
    legend = axes[0].get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == list(LOSSES)


def test_fig1_log_axis_survives_zero_nc1(con):
    # width 0.5 / 4 epochs: some seeds have NC1 = 0 at epoch 1; min of the band hits 0
    sel = {"width": 0.5, "epochs": 4}
    c = report.curves(con, "grid", "nc1", select=sel)
    assert any(v == 0 for cv in c.values() for v in cv.min)
    fig = figures.figure_nc(con, "grid", select=sel)
    ax = fig.get_axes()[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert lo > 0 and math.isfinite(hi)
    fig.savefig(Path("/dev/null"), format="png")  # renders without error


def test_fig2_accuracy_percent(con):
    fig = figures.figure_accuracy(con, "grid", where="loss <> 'mse'")
    axes = fig.get_axes()
    assert len(axes) == 3
    assert [ax.get_ylabel() for ax in axes] == [
        "training accuracy (%)", "validation accuracy (%)", "test accuracy (%)"]
    for ax, metric in zip(axes, ("train_acc", "val_acc", "test_acc")):
        assert [ln.get_label() for ln in ax.get_lines()] == ["ce", "fl"]
        ref = report.curves(con, "grid", metric, where="loss <> 'mse'")
        for ln in ax.get_lines():
            np.testing.assert_allclose(ln.get_ydata(), 100 * np.array(ref[ln.get_label()].mean))
    # the validation accuracy of the all-NaN run is skipped, not plotted as NaN
    ce_val = axes[1].get_lines()[0].get_ydata()
    assert np.isfinite(ce_val).all()


def test_fig3_heatmap_values_and_spread(con):
    fig = figures.figure_heatmap(con, "grid")
    (block,) = report.accuracy_table(con, ["grid"])
    image_axes = [ax for ax in fig.get_axes() if ax.get_images()]
    assert len(image_axes) == len(LOSSES) + 1
    for ax, loss in zip(image_axes, LOSSES):
        assert loss in ax.get_title()
        assert ax.get_xlabel() == "epochs" and ax.get_ylabel() == "width"
        arr = ax.get_images()[0].get_array()
        expect = np.array([[100 * c.mean for c in line] for line in block.cells[loss]])
        np.testing.assert_allclose(np.ma.filled(arr, np.nan), expect)
        texts = sorted(t.get_text() for t in ax.texts)
        assert texts == sorted(f"{v:.1f}" for v in expect.ravel())
    sp = image_axes[-1]
    assert "spread" in sp.get_title()
    np.testing.assert_allclose(np.ma.filled(sp.get_images()[0].get_array(), np.nan),
                               100 * np.array(block.spread, dtype=float))
    assert "Test accuracy at the best-validation epoch" in fig._suptitle.get_text()
    # colour bars say what they measure
    labels = {ax.get_ylabel() for ax in fig.get_axes() if not ax.get_images()}
    assert {"test accuracy (%)", "percentage points"} <= labels


def test_fig3_missing_cell_and_single_loss(con):
    fig = figures.figure_heatmap(con, "grid", where="NOT (loss = 'ce' AND width = 2)")
    ce = [ax for ax in fig.get_axes() if ax.get_images()][0]
    arr = ce.get_images()[0].get_array()
    assert np.ma.getmaskarray(arr)[1].all()  # width 2 row masked (grey), not a crash
    assert sum(t.get_text() == report.MISSING for t in ce.texts) == 2
    fig = figures.figure_heatmap(con, "lrsweep")  # one loss, two lr blocks
    image_axes = [ax for ax in fig.get_axes() if ax.get_images()]
    assert len(image_axes) == 4
    assert all(t.get_text() == report.MISSING for t in image_axes[1].texts)


def test_no_finished_runs_gives_a_figure(con):
    fig = figures.figure_nc(con, "grid", where="status = 'running'")
    assert all(not ax.get_lines() for ax in fig.get_axes())
    assert any("no finished runs" in t.get_text() for ax in fig.get_axes() for t in ax.texts)
    fig = figures.figure_heatmap(con, "grid", where="status = 'running'")
    texts = [t.get_text() for ax in fig.get_axes() for t in ax.texts]
    assert texts and set(texts) == {report.MISSING}


def test_write_figures_all_experiments(db, tmp_path):
    c = duckdb.connect(str(db), read_only=True)
    figs = figures.make_figures(c)
    c.close()  # rendering needs no database (the CLI closes it before saving)
    paths = figures.save_figures(figs, tmp_path / "figs")
    names = sorted(p.name for p in paths)
    expect = sorted(f"{exp}_{stem}.{fmt}" for exp in ("grid", "lrsweep")
                    for stem in ("fig1_nc", "fig2_accuracy", "fig3_heatmap") for fmt in ("png", "pdf"))
    assert names == expect
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 5000
        assert data.startswith(b"\x89PNG") if p.suffix == ".png" else data.startswith(b"%PDF")


# ------------------------------------------------------------------------------------------
# issue 14 item 9: ticks on evaluated epochs; the centred NC2/NC3
# ------------------------------------------------------------------------------------------


def _eval_db(path: Path, evals, *, centred: bool = True) -> Path:
    """One experiment 'ev', losses ce and mse, evaluated at the epochs `evals` only."""
    from _report_data import _insert_run
    from ncbench import schema

    c = duckdb.connect(str(path))
    schema.apply(c)
    rows = []
    for k, loss in enumerate(("ce", "mse")):
        _insert_run(c, f"e{k}", "ev", loss, 1.0, max(evals), 0, "done")
        for e in evals:
            m = {"train_acc": 0.9, "val_acc": 0.8, "test_acc": 0.8, "nc1": 1.0 / e, "nc2": 0.5,
                 "nc3": 0.4}
            if centred:
                m |= {"nc2_centered": 0.05 / e, "nc3_centered": 0.04 / e}
            rows += [(f"e{k}", e, key, v) for key, v in m.items()]
    c.execute("INSERT INTO metrics VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(rows)),
              [x for row in rows for x in row])
    c.close()
    return path


def _ticks(ax) -> list[float]:
    return [float(t) for t in ax.get_xticks()]


def test_x_ticks_fall_on_evaluated_epochs(tmp_path):
    path = _eval_db(tmp_path / "a.duckdb", [5, 10, 15])
    with duckdb.connect(str(path), read_only=True) as c:
        for fig in (figures.figure_nc(c, "ev"), figures.figure_accuracy(c, "ev")):
            for ax in fig.get_axes():
                assert _ticks(ax) == [5.0, 10.0, 15.0]


def test_single_evaluation_has_one_tick(tmp_path):
    path = _eval_db(tmp_path / "one.duckdb", [5])
    with duckdb.connect(str(path), read_only=True) as c:
        for ax in figures.figure_accuracy(c, "ev").get_axes():
            assert _ticks(ax) == [5.0]


def test_many_evaluations_ticks_are_a_subset_of_them(tmp_path):
    evals = list(range(5, 205, 5))  # 40 evaluations
    path = _eval_db(tmp_path / "many.duckdb", evals)
    with duckdb.connect(str(path), read_only=True) as c:
        ticks = _ticks(figures.figure_nc(c, "ev").get_axes()[0])
    assert len(ticks) <= figures.MAX_XTICKS and 200.0 in ticks
    assert set(ticks) <= {float(e) for e in evals}
    assert ticks == [20.0 * k for k in range(1, 11)]  # round spacing, the last epoch ticked


def test_ticks_start_at_epoch_zero_and_end_at_the_last():
    """With the epoch-0 evaluation, every 5 epochs to 125: 0, 25, ..., 125 (the ticks were
    5, 20, 35, ..., 125, missing the start of training)."""
    from ncbench.report.blocks import Curve

    def ticks(evals):
        return figures._epoch_ticks({"ce": Curve(list(evals), [1.0] * len(evals), [1.0] * len(evals),
                                                 [1.0] * len(evals), [3] * len(evals))})
    assert ticks(range(0, 130, 5)) == [0, 25, 50, 75, 100, 125]
    assert ticks(range(0, 805, 5)) == list(range(0, 900, 100))
    assert ticks(range(0, 38)) == [0, 5, 10, 15, 20, 25, 30, 35]  # no round step ends at 37
    assert ticks([0, 5]) == [0, 5]
    odd = [0, 3, 7, 11, 13, 17, 19, 23, 29, 31, 37]  # no round spacing: every k-th, from the end
    assert ticks(odd)[-1] == 37 and len(ticks(odd)) <= figures.MAX_XTICKS


def test_fig1_plots_centred_nc2_nc3_and_labels_them(tmp_path):
    path = _eval_db(tmp_path / "c.duckdb", [5, 10, 15])
    with duckdb.connect(str(path), read_only=True) as c:
        axes = figures.figure_nc(c, "ev").get_axes()
        for ax, metric in zip(axes[1:], ("nc2_centered", "nc3_centered")):
            assert "centred W" in ax.get_title() and "centred W" in ax.get_ylabel()
            ref = report.curves(c, "ev", metric)
            for ln in ax.get_lines():
                np.testing.assert_allclose(ln.get_ydata(), ref[ln.get_label()].mean)
    # a database without centred values: the uncentred metric, labelled as such
    path = _eval_db(tmp_path / "u.duckdb", [5, 10, 15], centred=False)
    with duckdb.connect(str(path), read_only=True) as c:
        axes = figures.figure_nc(c, "ev").get_axes()
        assert "uncentred W" in axes[1].get_title()
        assert all(list(ln.get_ydata()) == [0.5, 0.5, 0.5] for ln in axes[1].get_lines())
