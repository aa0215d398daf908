"""The extra NC measures (`ncbench.nc_measures`, issue #16 items 3–4): against straightforward
float64 formulas, exactly collapsed inputs, streaming == one-shot, NaN for non-finite features;
the `nc_extra` key, the schema columns, `report --metric`, the TUI table and the figure."""

from __future__ import annotations

import math
from itertools import combinations, permutations
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from ncbench.nc import EXTRA_KEYS, METRIC_KEYS, CollapseStats, collapse_metrics


def naive_extra(H: np.ndarray, y: np.ndarray, W: np.ndarray) -> dict[str, float]:
    """docs/metrics.md's definitions written out literally (loops over samples and pairs)."""
    H, W = H.astype(np.float64), W.astype(np.float64)
    N = H.shape[0]
    K = W.shape[0]
    mu = np.stack([H[y == k].mean(axis=0) for k in range(K)])
    h_g = H.mean(axis=0)
    M = mu - h_g  # rows μ_k − h_G (= M̄ᵀ)

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    def cv(vectors):
        norms = np.array([np.linalg.norm(v) for v in vectors])
        return float(np.std(norms, ddof=1) / np.mean(norms))

    def angles(vectors):
        pairs = [cos(vectors[i], vectors[j]) for i, j in combinations(range(K), 2)]
        ordered = [abs(cos(vectors[i], vectors[j]) + 1 / (K - 1)) for i, j in permutations(range(K), 2)]
        return float(np.std(pairs)), float(np.mean(ordered))

    var = np.zeros(K)
    for i in range(N):
        var[y[i]] += float(np.sum((H[i] - mu[y[i]]) ** 2))
    tr_w = var.sum() / N
    var /= np.bincount(y, minlength=K)
    tr_b = sum(float(np.sum(M[k] ** 2)) for k in range(K)) / K
    cdnv = np.mean([(var[i] + var[j]) / (2 * float(np.sum((mu[i] - mu[j]) ** 2)))
                    for i, j in combinations(range(K), 2)])
    eqa_m, max_m = angles(M)
    eqa_w, max_w = angles(W)
    return {
        "equinorm_means": cv(M), "equinorm_classifier": cv(W),
        "equiangular_means": eqa_m, "equiangular_classifier": eqa_w,
        "maxangle_means": max_m, "maxangle_classifier": max_w,
        "self_duality": float(np.linalg.norm(W / np.linalg.norm(W) - M / np.linalg.norm(M))),
        "cdnv": float(cdnv), "nc1_trace": tr_w / tr_b,
    }


def make_data(K: int, d: int, N: int, seed: int, *, spread: float = 1.0, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(K))
    y = np.concatenate([np.arange(K), rng.choice(K, size=N - K, p=weights)])
    rng.shuffle(y)
    centers = rng.normal(size=(K, d)) * 2
    H = offset + centers[y] + spread * rng.normal(size=(N, d))
    W = centers + rng.normal(size=(K, d))
    return H, y, W, rng.normal(size=K)


def close(got: dict, ref: dict, rtol=1e-9, atol=1e-12):
    for key in EXTRA_KEYS:
        assert math.isclose(got[key], ref[key], rel_tol=rtol, abs_tol=atol), (key, got[key], ref[key])


SHAPES = [(2, 3, 30), (3, 2, 60), (5, 8, 100), (10, 4, 200), (10, 25, 300)]


@pytest.mark.parametrize("K,d,N", SHAPES, ids=[f"K{k}-d{d}-N{n}" for k, d, n in SHAPES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_extra_measures_match_the_formulas(K, d, N, dtype):
    H, y, W, b = make_data(K, d, N, seed=K * 100 + d + N)
    Ht, Wt = torch.tensor(H, dtype=dtype), torch.tensor(W, dtype=dtype)
    ref = naive_extra(Ht.double().numpy(), y, Wt.double().numpy())
    got = collapse_metrics(Ht, torch.tensor(y), Wt, torch.tensor(b, dtype=dtype), extra=True)
    assert list(got) == list(METRIC_KEYS) + list(EXTRA_KEYS)
    close(got, ref)
    # none is trivially 0 on these inputs (K = 2: one pair, of opposite centred means)
    assert all(v > 0 for k, v in ref.items() if K > 2 or k not in ("equiangular_means",
               "equiangular_classifier", "maxangle_means"))


def test_without_extra_the_keys_are_the_six_metrics():
    H, y, W, b = make_data(3, 4, 50, seed=1)
    assert list(collapse_metrics(H, y, W, b)) == list(METRIC_KEYS)
    stats = CollapseStats(3, 4)
    stats.update(torch.tensor(H), torch.tensor(y))
    assert set(stats.compute(torch.tensor(W), nc4=False)) == set(METRIC_KEYS) - {"nc4"}


@pytest.mark.parametrize("K,d,N", [(3, 7, 61), (10, 25, 300)])
def test_the_six_metrics_do_not_change_with_extra(K, d, N):
    """With `extra` the second pass centres on the class means instead of h_G: nc1–nc4 stay."""
    from test_nc import assert_metrics_close, naive_metrics

    H, y, W, b = make_data(K, d, N, seed=N + 1)
    Ht, yt, Wt, bt = (torch.tensor(a) for a in (H, y, W, b))
    ref = naive_metrics(H, y, W, b)
    assert 0 < ref["nc4"] < 1
    logits = Ht @ Wt.T + bt
    for got in (collapse_metrics(Ht, yt, Wt, bt, extra=True),
                collapse_metrics(Ht, yt, Wt, bt, logits=logits, extra=True)):
        assert_metrics_close(got, ref)
    stats = CollapseStats(K, d, extra=True)
    stats.update(Ht, yt, logits)
    stats.update_nc4(Ht, yt, logits)
    assert_metrics_close(stats.compute(Wt, bt), ref)


def _etf(K: int, d: int, seed: int) -> np.ndarray:
    """K × d rows forming a simplex ETF (unit norm, pairwise cosine −1/(K−1), summing to 0)."""
    rng = np.random.default_rng(seed)
    centred = np.eye(K) - 1.0 / K
    rows = centred @ np.linalg.eigh(centred)[1][:, 1:]
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0][:, : K - 1]
    rows = rows @ rotation.T
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("K,d", [(2, 1), (3, 2), (4, 8), (10, 9), (10, 32)])
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_exact_collapse_gives_zero(K, d, offset):
    """Features = class means forming a simplex ETF (balanced, so h_G = offset), W = M̄ᵀ."""
    means = 3.0 * _etf(K, d, seed=K + d)
    y = np.random.default_rng(K).permutation(np.repeat(np.arange(K), 4))
    H = offset + means[y]
    Ht, yt, Wt = torch.tensor(H), torch.tensor(y), torch.tensor(means)
    results = [collapse_metrics(Ht, yt, Wt, extra=True)]
    for keep in (False, True):
        stats = CollapseStats(K, d, keep_features=keep, extra=True)
        for rows in np.array_split(np.arange(len(y)), 3):
            stats.update(Ht[rows], yt[rows])
        results.append(stats.compute(Wt, nc4=False) if not keep else stats.compute(Wt))
    for got in results:
        for key in EXTRA_KEYS:
            assert got[key] == pytest.approx(0.0, abs=1e-7), (key, got[key])
        assert got["cdnv"] == pytest.approx(0.0, abs=1e-20) and got["nc1_trace"] == pytest.approx(0.0, abs=1e-20)


def _batches(N: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(N)
    return [perm[:1]] + [p for p in np.array_split(perm[1:], 5) if len(p)]


@pytest.mark.parametrize("K,d,N", [(3, 7, 61), (10, 25, 300)])
def test_streaming_equals_one_shot(K, d, N):
    H, y, W, b = make_data(K, d, N, seed=N)
    Ht, yt, Wt, bt = (torch.tensor(a) for a in (H, y, W, b))
    one_shot = collapse_metrics(Ht, yt, Wt, bt, extra=True)
    parts = _batches(N, seed=N)
    one_pass = CollapseStats(K, d, extra=True)  # default mode, nc4=False: the shifted SS_k
    two_pass = CollapseStats(K, d, extra=True)
    kept = CollapseStats(K, d, keep_features=True, extra=True)
    for rows in parts:
        for stats in (one_pass, two_pass, kept):
            stats.update(Ht[rows], yt[rows], Ht[rows] @ Wt.T + bt)
    for rows in reversed(parts):  # the second pass in another order
        two_pass.update_nc4(Ht[rows], yt[rows], Ht[rows] @ Wt.T + bt)
    for got in (one_pass.compute(Wt, bt, nc4=False), two_pass.compute(Wt, bt), kept.compute(Wt, bt)):
        close(got, one_shot, rtol=1e-10)


def test_variances_stay_accurate_under_a_large_common_offset():
    """Tiny within-class spread on a huge common mean (late training): the one-pass SS_k (about
    the shifts) and the second pass (exact centring) both match the formulas; Σ‖h‖² − n‖μ‖²
    would have lost every digit here."""
    H, y, W, _ = make_data(4, 6, 120, seed=11, spread=1e-4, offset=1e5)
    ref = naive_extra(H, y, W)
    assert ref["cdnv"] < 1e-8
    Ht, yt, Wt = torch.tensor(H), torch.tensor(y), torch.tensor(W)
    close(collapse_metrics(Ht, yt, Wt, extra=True), ref, rtol=1e-6)
    stats = CollapseStats(4, 6, extra=True)
    for rows in np.array_split(np.arange(120), 7):
        stats.update(Ht[rows], yt[rows])
    close(stats.compute(Wt, nc4=False), ref, rtol=1e-6)
    mu = np.stack([H[y == k].mean(0) for k in range(4)])
    naive_ss = sum(float((H[y == k] ** 2).sum() - (y == k).sum() * (mu[k] ** 2).sum()) for k in range(4))
    true_ss = sum(float(((H[y == k] - mu[k]) ** 2).sum()) for k in range(4))
    assert abs(naive_ss - true_ss) > 10 * true_ss  # (the cancellation the shifted form avoids)


@pytest.mark.parametrize("mode", ["one_shot", "one_pass", "two_pass", "kept"])
def test_non_finite_features_give_nan(mode):
    H, y, W, b = make_data(3, 4, 40, seed=5)
    H[7, 2] = np.nan if mode != "kept" else np.inf
    Ht, yt, Wt = torch.tensor(H), torch.tensor(y), torch.tensor(W)
    if mode == "one_shot":
        got = collapse_metrics(Ht, yt, Wt, extra=True)
    else:
        stats = CollapseStats(3, 4, keep_features=mode == "kept", extra=True)
        stats.update(Ht, yt, Ht @ Wt.T)
        if mode == "two_pass":
            stats.update_nc4(Ht, yt, Ht @ Wt.T)
        got = stats.compute(Wt, nc4=mode != "one_pass")
    assert set(EXTRA_KEYS) <= set(got) and all(math.isnan(got[k]) for k in EXTRA_KEYS)


def test_degenerate_geometry_is_nan_or_inf_not_an_error():
    """Two classes with the same mean: their cosines are undefined (centred mean 0 when K = 2),
    cdnv is inf; a zero classifier row: its cosines are NaN."""
    H = np.array([[1.0, 2.0], [-1.0, -2.0], [2.0, 0.0], [-2.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    W = np.array([[1.0, 0.0], [0.0, 0.0]])
    got = collapse_metrics(H, y, W, extra=True)
    assert got["cdnv"] == math.inf and got["nc1_trace"] == math.inf
    assert math.isnan(got["equinorm_means"]) and math.isnan(got["equiangular_means"])
    assert math.isnan(got["maxangle_classifier"]) and math.isnan(got["self_duality"])
    assert got["equinorm_classifier"] == pytest.approx(math.sqrt(0.5) / 0.5)


def test_schema_names_are_the_measures():
    from ncbench import schema

    assert schema.EXTRA_NC_METRICS == EXTRA_KEYS
    for key in EXTRA_KEYS:
        assert key in schema.EPOCH_METRICS and "test_" + key in schema.EPOCH_METRICS
        assert "final_" + key in schema.RESULTS_METRIC_COLUMNS


# ------------------------------------------------------------------------------------------
# nc_extra: the config key, run ids, the training loop
# ------------------------------------------------------------------------------------------


def _config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "experiments.toml"
    cfg.write_text('[experiments.x]\ndataset = "digits"\nmodel = "mlp"\nloss = "ce"\nepochs = 1\n'
                   + extra)
    return cfg


def test_nc_extra_default_keeps_run_ids_and_false_changes_them(tmp_path):
    from ncbench.config import expand, load_config
    from ncbench.runs import RunSpec

    default = expand(load_config(_config(tmp_path)))[0]
    assert default.nc_extra is True and "nc_extra" not in default.identity()
    base = RunSpec(experiment="x", dataset="digits", model="mlp", loss="ce", width=1, epochs=1, seed=0)
    assert default.run_id == base.run_id
    # the id of a run as it was before the key existed (computed from the spec without it)
    legacy = base.identity()
    assert "nc_extra" not in legacy
    off = expand(load_config(_config(tmp_path, "nc_extra = false\n")))[0]
    assert off.nc_extra is False and off.run_id != default.run_id
    assert RunSpec.from_json(off.to_json()).nc_extra is False


@pytest.mark.parametrize("value", ['"no"', "1", "[1]"])
def test_nc_extra_must_be_a_boolean(tmp_path, value):
    from ncbench.config import load_config
    from ncbench.errors import ConfigError

    with pytest.raises(ConfigError, match="nc_extra"):
        load_config(_config(tmp_path, f"nc_extra = {value}\n"))


def test_training_records_the_measures_unless_switched_off():
    from ncbench.runs import RunSpec
    from ncbench.train import ListSink, train_run

    base = dict(experiment="x", dataset="digits", model="mlp", loss="ce", width=0.5, epochs=1,
                seed=0, device="cpu", per_class=20)
    on, off = ListSink(), ListSink()
    assert train_run(RunSpec(**base), on) == "done"
    assert train_run(RunSpec(**base, nc_extra=False), off) == "done"
    for epoch, metrics in on.evals:
        for key in EXTRA_KEYS:
            assert math.isfinite(metrics[key]) and math.isfinite(metrics["test_" + key]), key
    for epoch, metrics in off.evals:
        assert not any(key in metrics or "test_" + key in metrics for key in EXTRA_KEYS)
        assert "nc1" in metrics and "test_nc1" in metrics
    # the rest is the same with and without: the measures do not touch training
    assert on.metric("train_loss") == off.metric("train_loss")


# ------------------------------------------------------------------------------------------
# the store: columns, migration from version 4, report --metric
# ------------------------------------------------------------------------------------------


def _db_with_measures(path: Path) -> Path:
    from _report_data import _insert_run

    from ncbench import schema

    c = duckdb.connect(str(path))
    schema.apply(c)
    rows = []
    for k, (loss, seed) in enumerate([("ce", 0), ("ce", 1), ("mse", 0)]):
        _insert_run(c, f"r{k}", "ev", loss, 1.0, 10, seed, "done")
        for e in (5, 10):
            m = {"train_acc": 0.9, "val_acc": 0.8, "test_acc": 0.8, "nc1": 1.0 / e}
            m |= {key: (k + 1) / e for key in EXTRA_KEYS}
            m |= {"test_" + key: 2.0 * (k + 1) / e for key in EXTRA_KEYS}
            rows += [(f"r{k}", e, key, v) for key, v in m.items()]
    c.execute("INSERT INTO metrics VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(rows)),
              [x for row in rows for x in row])
    c.close()
    return path


def test_epochs_and_results_hold_the_measures(tmp_path):
    db = _db_with_measures(tmp_path / "a.duckdb")
    with duckdb.connect(str(db), read_only=True) as c:
        got = c.execute("SELECT cdnv, test_self_duality FROM epochs WHERE run_id = 'r2' AND epoch = 5").fetchall()
        assert got == [(3 / 5, 6 / 5)]
        row = c.execute("SELECT final_equinorm_means, final_nc1_trace, final_test_cdnv FROM results "
                        "WHERE run_id = 'r0'").fetchone()
        assert row == pytest.approx((0.1, 0.1, 0.2))


def test_a_version_4_database_gets_the_new_columns_keeping_its_rows(tmp_path):
    from ncbench import schema
    from ncbench.store import Store

    db = _db_with_measures(tmp_path / "old.duckdb")
    c = duckdb.connect(str(db))
    old = [m for m in schema.EPOCH_METRICS if m not in EXTRA_KEYS and m[5:] not in EXTRA_KEYS]
    c.execute("DROP VIEW results")
    c.execute("CREATE OR REPLACE VIEW epochs AS SELECT run_id, epoch, "
              + ", ".join(f"max(value) FILTER (WHERE name = '{m}') AS {m}" for m in old)
              + " FROM metrics GROUP BY run_id, epoch")
    c.execute("CREATE VIEW results AS SELECT * FROM runs")  # (any older form)
    c.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    before = c.execute("SELECT * FROM metrics ORDER BY ALL").fetchall()
    assert "cdnv" not in [r[0] for r in c.execute("DESCRIBE epochs").fetchall()]
    c.close()
    Store(db).register_runs([])  # any write session migrates
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(schema.SCHEMA_VERSION),)
        assert c.execute("SELECT * FROM metrics ORDER BY ALL").fetchall() == before
        assert c.execute("SELECT cdnv FROM epochs WHERE run_id = 'r1' AND epoch = 10").fetchone() == (0.2,)
        assert c.execute("SELECT final_cdnv FROM results WHERE run_id = 'r1'").fetchone() == (0.2,)


def test_report_metric_accepts_the_measures(tmp_path):
    from _runkit import ncbench

    db = _db_with_measures(tmp_path / "r.duckdb")
    out = ncbench("report", "--db", str(db), "--metric", "final_self_duality", "--format", "csv",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "final_self_duality" in ln]
    # ce: the mean of 0.1 and 0.2 over its two seeds
    assert lines and any(",ce," in ln and "final_self_duality,0.15" in ln for ln in lines)
    bad = ncbench("report", "--db", str(db), "--metric", "final_cdnvv", cwd=tmp_path)
    assert bad.returncode == 2 and "final_cdnv" in bad.stderr + bad.stdout


# ------------------------------------------------------------------------------------------
# views: the TUI detail table, the figure
# ------------------------------------------------------------------------------------------


def test_detail_view_table_of_the_latest_values():
    from ncbench.tui.data import RunSeries
    from ncbench.tui.screens.detail import MEASURE_LABELS, measures_table

    assert tuple(MEASURE_LABELS) == EXTRA_KEYS

    series = RunSeries("r")
    assert measures_table(series) is None  # nothing stored (old runs, nc_extra = false)
    series.metrics["cdnv"] = ([5, 10], [0.5, 0.25])
    series.metrics["test_cdnv"] = ([5, 10], [0.75, 1.5])
    series.metrics["self_duality"] = ([5], [0.125])
    text = measures_table(series).plain
    assert "epoch 10" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("CDNV"))
    assert "0.25" in line and "1.5" in line and "0.5 " not in line
    assert "self-duality" in text and "equinorm" in text  # every measure has its row


def test_report_figure_of_the_geometry(tmp_path):
    from ncbench import report
    from ncbench.report import figures

    db = _db_with_measures(tmp_path / "f.duckdb")
    with duckdb.connect(str(db), read_only=True) as c:
        fig = figures.figure_geometry(c, "ev")
        axes = fig.get_axes()
        assert [m for m, _, _ in figures.FIG4_METRICS] == [
            "equinorm_means", "equiangular_means", "maxangle_means", "self_duality"]
        assert len(axes) == 4
        for ax, (metric, _, _) in zip(axes, figures.FIG4_METRICS):
            assert ax.get_xlabel() == "epoch"
            ref = report.curves(c, "ev", metric)
            assert [ln.get_label() for ln in ax.get_lines()] == ["ce", "mse"]
            for ln in ax.get_lines():
                np.testing.assert_allclose(ln.get_ydata(), ref[ln.get_label()].mean)
        np.testing.assert_allclose(axes[3].get_lines()[0].get_ydata(), [0.3, 0.15])  # seeds 0, 1
        names = sorted(figures.make_figures(c))
    assert "ev_fig4_geometry" in names
    paths = figures.save_figures({"x": fig}, tmp_path / "out")
    assert all(p.stat().st_size > 5000 for p in paths)
    # a database without the measures (older runs) gets no such figure
    from _report_data import make_synthetic_db

    old = make_synthetic_db(tmp_path / "old.duckdb")
    with duckdb.connect(str(old), read_only=True) as c:
        assert not any(n.endswith("_fig4_geometry") for n in figures.make_figures(c))


def test_detail_view_shows_the_table_in_the_app(tmp_path):
    """The real app: a run that stored the measures shows the table, one that did not hides it."""
    import asyncio

    from tests._tui_data import make_tui_db
    from tests.test_tui import fresh_poll, make_app

    db = tmp_path / "t.duckdb"
    make_tui_db(db)
    with duckdb.connect(str(db)) as c:
        c.executemany("INSERT INTO metrics VALUES ('demo-ce-s0', 10, ?, ?)",
                      [(key, 0.125) for key in EXTRA_KEYS] + [("test_cdnv", 2.5)])

    async def main():
        from textual.widgets import Static

        from ncbench.tui.screens import RunDetailScreen

        app = make_app(db)
        async with app.run_test(size=(160, 48)) as pilot:
            await fresh_poll(pilot)
            shown = {}
            for rid in ("demo-ce-s0", "demo-fl-s1"):
                app.push_screen(RunDetailScreen(rid))
                await fresh_poll(pilot)
                await pilot.pause()
                static = app.screen.query_one("#run-measures", Static)
                shown[rid] = (static.display, str(static.render()))
                app.pop_screen()
                await pilot.pause()
        return shown

    shown = asyncio.run(main())
    visible, text = shown["demo-ce-s0"]
    assert visible and "epoch 10" in text and "2.5" in text and "0.125" in text
    assert shown["demo-fl-s1"][0] is False
