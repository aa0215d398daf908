"""The report's computations: mean ± std over seeds per loss per cell, NC tables, curves.

Every function is a pure function of a (read-only) DuckDB connection to an ncbench database (read
through `ncbench.report.query`) and returns the data structures of `ncbench.report.blocks`. The
report command, the figures and the TUI's compare view all call these, so there is one
implementation of "mean ± std over seeds per loss per cell".

Conventions (also in docs/report.md):

- Only runs whose status is ``done`` count toward cells unless ``include_unfinished=True``; the
  number of runs left out is reported per block (``n_excluded``).
- A run's value for a metric is the value in the ``results`` view (``test_acc_at_best_val`` for
  accuracy tables, ``final_nc1`` ... for NC tables); NULL or NaN values are skipped, so
  ``n_seeds`` counts runs with a finite value.
- ``std`` is the sample standard deviation (ddof=1); with one seed it is ``None``.
- Each accuracy cell also gets its statistics (`ncbench.report.stats`): every loss's mean with
  a 95 % t interval, its paired difference to the reference loss (paired by seed) with the
  TOST verdict for ``margin`` (in the metric's units), and the Friedman test over the losses.
- A cell is addressed by (block, loss, row value, column value); see `ncbench.report.blocks`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ncbench.errors import ReportError, UnknownNameError
from ncbench.report.blocks import (ACCURACY_METRIC, ALWAYS_BLOCK_KEYS, NC_METRICS, AccuracyBlock,
                                   CellComparison, CellStats, Curve, LossComparison, NCBlock,
                                   NCRow, Report)
from ncbench.report.query import (check_epoch_metrics, check_result_columns, epoch_values,
                                  is_counted, key_runs, run_value, select_runs)
from ncbench.report.stats import (DEFAULT_MARGIN_PP, DEFAULT_REFERENCE, friedman, mean_ci, paired,
                                  seed_values)

# Config keys that never define a block (bookkeeping, or the seed/loss dimensions themselves).
_NEVER_BLOCK_KEYS = {"experiment", "loss", "seed", "run_id", "id", "device", "status", "name",
                     "data_root", "download", "compile", "plugin_dir"}


def _available_keys(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys a table can be laid out by: the run key columns and the config keys."""
    from ncbench.schema import RUN_KEY_COLUMNS

    keys: set[str] = set(RUN_KEY_COLUMNS) - {"experiment", "loss", "seed"}
    for run in runs:
        keys.update(run.get("config", {}).keys())
    return sorted(keys - _NEVER_BLOCK_KEYS)


def _check_key(key: str, runs: Sequence[Mapping[str, Any]], what: str) -> None:
    if key in ("loss", "seed"):
        raise ReportError(f"{what} cannot be '{key}': losses are the blocks and seeds are averaged")
    if not runs:
        return
    if all(run_value(r, key) is None for r in runs):
        raise UnknownNameError(f"{what} key", key, _available_keys(runs))


def _sort_values(values: Iterable[Any]) -> list[Any]:
    vals = list(dict.fromkeys(values))
    try:
        return sorted(vals, key=lambda v: (v is None, v))
    except TypeError:
        return sorted(vals, key=lambda v: (v is None, str(v)))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def cell_stats(values: Iterable[Any]) -> CellStats | None:
    """Mean and sample std (ddof=1) of the finite values; None when there are none."""
    xs = [float(v) for v in values if _finite(v)]
    if not xs:
        return None
    n = len(xs)
    if max(xs) == min(xs):  # exact, no rounding noise such as 8e-18
        return CellStats(xs[0], 0.0 if n > 1 else None, n)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return CellStats(mean, std, n)


def _block_keys(runs: Sequence[Mapping[str, Any]], rows: str, cols: str) -> list[str]:
    """Keys that separate blocks: dataset/model, plus any key that takes different values among
    runs sharing (loss, row, col, seed) — those runs must not be averaged as seeds."""
    keys = [k for k in ALWAYS_BLOCK_KEYS if k not in (rows, cols)]
    candidates = set()
    for run in runs:
        candidates.update(run.get("config", {}).keys())
    candidates.update(("width", "epochs"))
    candidates -= _NEVER_BLOCK_KEYS | {rows, cols} | set(keys)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for run in runs:
        ident = (run_value(run, "loss"), _hashable(run_value(run, rows)),
                 _hashable(run_value(run, cols)), run_value(run, "seed"))
        groups.setdefault(ident, []).append(run)
    for key in sorted(candidates):
        for members in groups.values():
            if len(members) > 1 and len({_hashable(run_value(m, key)) for m in members}) > 1:
                keys.append(key)
                break
    return keys


def _hashable(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return json.dumps(v, sort_keys=True, default=str)


def _blocks(
    runs: Sequence[Mapping[str, Any]], rows: str, cols: str
) -> list[tuple[str, dict[str, Any], list[Mapping[str, Any]]]]:
    """Split runs into (experiment, fixed-values, runs) blocks, in a stable order."""
    out = []
    by_exp: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_exp.setdefault(run["experiment"], []).append(run)
    for exp in sorted(by_exp):
        exp_runs = by_exp[exp]
        keys = _block_keys(exp_runs, rows, cols)
        groups: dict[tuple, list[Mapping[str, Any]]] = {}
        for run in exp_runs:
            groups.setdefault(tuple(_hashable(run_value(run, k)) for k in keys), []).append(run)
        for ident in _sort_values(groups):
            out.append((exp, dict(zip(keys, ident)), groups[ident]))
    return out


def _grid(
    runs: Sequence[Mapping[str, Any]],
    rows: str,
    cols: str,
    include_unfinished: bool,
):
    """Yield (experiment, fixed, row_values, col_values, losses, counted runs, n_runs, n_excluded)
    for `runs` (from `select_runs`)."""
    _check_key(rows, runs, "rows")
    _check_key(cols, runs, "cols")
    if rows == cols:
        raise ReportError(f"rows and cols are both '{rows}'; pick two different keys")
    for exp, fixed, block_runs in _blocks(runs, rows, cols):
        counted = [r for r in block_runs if is_counted(r, include_unfinished)]
        row_values = _sort_values(_hashable(run_value(r, rows)) for r in block_runs)
        col_values = _sort_values(_hashable(run_value(r, cols)) for r in block_runs)
        losses = _sort_values(run_value(r, "loss") for r in block_runs)
        yield exp, fixed, row_values, col_values, losses, counted, len(block_runs), len(block_runs) - len(counted)


def _cell_index(counted, rows: str, cols: str) -> dict[tuple, list[Mapping[str, Any]]]:
    index: dict[tuple, list[Mapping[str, Any]]] = {}
    for run in counted:
        key = (run_value(run, "loss"), _hashable(run_value(run, rows)), _hashable(run_value(run, cols)))
        index.setdefault(key, []).append(run)
    return index


def accuracy_table(
    con,
    experiments: Sequence[str] | None = None,
    rows: str = "width",
    cols: str = "epochs",
    where: str | None = None,
    *,
    include_unfinished: bool = False,
    metric: str = ACCURACY_METRIC,
    reference: str = DEFAULT_REFERENCE,
    margin: float | None = DEFAULT_MARGIN_PP / 100,
) -> list[AccuracyBlock]:
    """The paper's Figure 3 as data: per block and loss, a rows × cols grid of CellStats of
    `metric` (a `results` column, default test accuracy at the best-validation epoch) and the
    spread (max − min of the means) across losses; per cell the statistics against the loss
    `reference` with the equivalence `margin` (in the metric's units: 0.005 = 0.5 pp)."""
    check_result_columns(con, [metric])
    return _accuracy_blocks(select_runs(con, experiments, where), rows, cols, include_unfinished,
                            metric, reference, margin)


def _comparisons(index, losses: Sequence[str], rvals, cvals, metric: str, reference: str,
                 margin: float | None) -> list[CellComparison]:
    """The statistics of every cell (rows × cols, row-major): each loss with a value there, its
    mean's t interval and its difference to `reference` paired by seed; Friedman over all."""
    out = []
    for rv in rvals:
        for cv in cvals:
            members = {loss: index.get((loss, rv, cv), []) for loss in losses}
            by_seed = {loss: seed_values((run_value(r, "seed"), run_value(r, metric)) for r in rs)
                       for loss, rs in members.items()}
            ref = by_seed.get(reference) or None
            items = []
            for loss in losses:
                ci = mean_ci(run_value(r, metric) for r in members[loss])
                if ci is None:
                    continue
                vs = paired(by_seed[loss], ref, margin) if ref and loss != reference else None
                items.append(LossComparison(loss, ci, vs))
            out.append(CellComparison(rv, cv, items, friedman(by_seed)))
    return out


def _accuracy_blocks(runs: Sequence[Mapping[str, Any]], rows: str, cols: str,
                     include_unfinished: bool, metric: str,
                     reference: str = DEFAULT_REFERENCE,
                     margin: float | None = DEFAULT_MARGIN_PP / 100) -> list[AccuracyBlock]:
    out = []
    for exp, fixed, rvals, cvals, losses, counted, n_runs, n_excl in _grid(
        runs, rows, cols, include_unfinished
    ):
        index = _cell_index(counted, rows, cols)
        cells = {
            loss: [[cell_stats(run_value(r, metric) for r in index.get((loss, rv, cv), []))
                    for cv in cvals] for rv in rvals]
            for loss in losses
        }
        spread: list[list[float | None]] = []
        for i in range(len(rvals)):
            line = []
            for j in range(len(cvals)):
                means = [cells[loss][i][j].mean for loss in losses if cells[loss][i][j] is not None]
                line.append(max(means) - min(means) if len(means) >= 2 else None)
            spread.append(line)
        comparisons = _comparisons(index, losses, rvals, cvals, metric, reference, margin)
        out.append(AccuracyBlock(exp, fixed, rows, cols, metric, rvals, cvals, losses, cells,
                                 spread, n_runs, n_excl, reference, margin, comparisons))
    return out


def nc_table(
    con,
    experiments: Sequence[str] | None = None,
    rows: str = "width",
    cols: str = "epochs",
    where: str | None = None,
    *,
    include_unfinished: bool = False,
    metrics: Sequence[str] = tuple(NC_METRICS),
) -> list[NCBlock]:
    """Final NC1–NC4 (train) and test NC1 per loss per configuration (row value, col value),
    mean ± std over seeds. Configurations with no counted run are left out."""
    check_result_columns(con, metrics)
    return _nc_blocks(select_runs(con, experiments, where), rows, cols, include_unfinished,
                      metrics)


def _nc_blocks(runs: Sequence[Mapping[str, Any]], rows: str, cols: str,
               include_unfinished: bool, metrics: Sequence[str]) -> list[NCBlock]:
    out = []
    for exp, fixed, rvals, cvals, losses, counted, n_runs, n_excl in _grid(
        runs, rows, cols, include_unfinished
    ):
        index = _cell_index(counted, rows, cols)
        nc_rows = []
        for rv in rvals:
            for cv in cvals:
                for loss in losses:
                    members = index.get((loss, rv, cv))
                    if not members:
                        continue
                    stats = {m: cell_stats(run_value(r, m) for r in members) for m in metrics}
                    nc_rows.append(NCRow(rv, cv, loss, stats))
        out.append(NCBlock(exp, fixed, rows, cols, list(metrics), nc_rows, n_runs, n_excl))
    return out


def build_report(
    con,
    experiments: Sequence[str] | None = None,
    rows: str = "width",
    cols: str = "epochs",
    where: str | None = None,
    *,
    include_unfinished: bool = False,
    metric: str = ACCURACY_METRIC,
    reference: str = DEFAULT_REFERENCE,
    margin: float | None = DEFAULT_MARGIN_PP / 100,
) -> Report:
    """Both tables of `ncbench report` (`accuracy_table` of `metric` with its statistics
    against `reference` with `margin`, and `nc_table` with its default metrics), from one
    selection of the runs."""
    check_result_columns(con, [metric, *NC_METRICS])
    runs = select_runs(con, experiments, where)
    return Report(
        accuracy=_accuracy_blocks(runs, rows, cols, include_unfinished, metric,
                                  reference, margin),
        nc=_nc_blocks(runs, rows, cols, include_unfinished, tuple(NC_METRICS)),
        include_unfinished=include_unfinished,
    )


def configurations(
    con,
    experiment: str,
    where: str | None = None,
    *,
    group_by: str = "loss",
    include_unfinished: bool = False,
) -> list[dict[str, Any]]:
    """The distinct configurations of an experiment's counted runs: the values of every key
    that varies among them other than `group_by` and seed (e.g. {"width": 2.0, "epochs": 40}).
    Sorted ascending; the last one is the default of `curves` (widest, longest)."""
    return _configurations(key_runs(con, experiment, where, include_unfinished, [group_by]),
                           group_by)


def _configurations(runs: Sequence[Mapping[str, Any]], group_by: str) -> list[dict[str, Any]]:
    """`configurations` of these (already selected and counted) runs."""
    keys = _config_keys(runs, group_by)
    configs = {tuple(_hashable(run_value(r, k)) for k in keys) for r in runs}
    return [dict(zip(keys, c)) for c in _sort_values(configs)]


def _config_keys(runs: Sequence[Mapping[str, Any]], group_by: str) -> list[str]:
    """Keys that tell configurations apart (width, epochs first): the run key columns other than
    `group_by` and seed, plus the keys that split blocks (see `_block_keys`); only those with
    more than one value among the runs. Derived config values (e.g. lr milestones that follow
    epochs) do not count."""
    keys = ["width", "epochs", "model", "dataset", "loss"]
    keys += [k for k in _block_keys(runs, "width", "epochs") if k not in keys]
    keys = [k for k in keys if k not in (group_by, "seed")]
    return [k for k in keys if len({_hashable(run_value(r, k)) for r in runs}) > 1]


def in_configuration(run: Mapping[str, Any], select: Mapping[str, Any]) -> bool:
    """Whether `run` has the configuration `select` (key → value, as `configurations` gives
    them): equal values, floats equal up to rounding."""
    return all(_same(run_value(run, k), v) for k, v in select.items())


def _same(a: Any, b: Any) -> bool:
    if _finite(a) and _finite(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b or str(a) == str(b)


def curves(
    con,
    experiment: str,
    metric: str,
    group_by: str = "loss",
    where: str | None = None,
    *,
    select: Mapping[str, Any] | None = None,
    include_unfinished: bool = False,
) -> dict[Any, Curve]:
    """`metric` (a column of the `epochs` view, e.g. "nc1", "test_acc") against epoch, one
    Curve per value of `group_by`: mean, min and max over the runs (seeds) with a finite value
    at each epoch. Runs are those of one configuration of the experiment: the one matching
    `select` (key → value; see `configurations`), by default the last of `configurations`
    (largest width, then most epochs). Returns {} when no run qualifies."""
    return curves_many(con, experiment, [metric], group_by, where, select=select,
                       include_unfinished=include_unfinished)[metric]


def curves_many(
    con,
    experiment: str,
    metrics: Sequence[str],
    group_by: str = "loss",
    where: str | None = None,
    *,
    select: Mapping[str, Any] | None = None,
    include_unfinished: bool = False,
) -> dict[str, dict[Any, Curve]]:
    """`curves` of several metrics of the same runs at once: {metric: {group: Curve}}, each
    equal to `curves(con, experiment, metric, ...)`, from one selection of the runs and one
    read of their metrics (what the TUI's compare view and the figures need)."""
    metrics = list(dict.fromkeys([metrics] if isinstance(metrics, str) else metrics))
    check_epoch_metrics(con, metrics)
    runs = key_runs(con, experiment, where, include_unfinished, [group_by, *(select or {})])
    if not runs:
        return {m: {} for m in metrics}
    if select is None:
        configs = _configurations(runs, group_by)
        select = configs[-1] if configs else {}
    runs = [r for r in runs if in_configuration(r, select)]
    if not runs or not metrics:
        return {m: {} for m in metrics}
    groups = _sort_values(_hashable(run_value(r, group_by)) for r in runs)
    index = {g: k for k, g in enumerate(groups)}
    ids = [r["run_id"] for r in runs]
    group_ix = [index[_hashable(run_value(r, group_by))] for r in runs]
    # The finite values of each (metric, group, epoch); the statistics are taken here, in
    # Python (math.fsum: exact, whatever the order), as for `cell_stats`.
    per: dict[tuple[str, int], list[tuple[int, list[float]]]] = {}
    for name, ix, epoch, values in epoch_values(con, metrics, ids, group_ix):
        per.setdefault((name, ix), []).append((int(epoch), [float(v) for v in values]))
    out: dict[str, dict[Any, Curve]] = {}
    for metric in metrics:
        out[metric] = {}
        for ix, group in enumerate(groups):
            points = per.get((metric, ix), [])
            out[metric][group] = Curve(
                [e for e, _ in points],
                [math.fsum(vs) / len(vs) for _, vs in points],
                [min(vs) for _, vs in points],
                [max(vs) for _, vs in points],
                [len(vs) for _, vs in points],
            )
    return out
