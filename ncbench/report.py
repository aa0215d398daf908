"""Comparison of losses across a grid: the paper's Figure 3 as a table, final NC metrics, curves.

Everything here is a pure function of a (read-only) DuckDB connection to an ncbench database and
returns plain data (dataclasses, lists, dicts); the renderers turn those into text. The report
command, the figures (`ncbench.figures`) and the TUI's compare view all call these functions, so
there is one implementation of "mean ± std over seeds per loss per cell".

Conventions (also in docs/readme/80-report.md):

- Only runs whose status is ``done`` count toward cells unless ``include_unfinished=True``; the
  number of runs left out is reported per block (``n_excluded``).
- A run's value for a metric is the value in the ``results`` view (``test_acc_at_best_val`` for
  accuracy tables, ``final_nc1`` ... for NC tables); NULL or NaN values are skipped, so
  ``n_seeds`` counts runs with a finite value.
- ``std`` is the sample standard deviation (ddof=1); with one seed it is ``None`` (shown as just
  the mean; ``null`` in json, empty in csv).
- The database stores accuracies as fractions in [0, 1]; json/csv keep fractions, the text
  formats (table, md, latex) show percent with one decimal (spread in percentage points).
- A cell is addressed by (block, loss, row value, column value). A block is one experiment plus
  the values of the keys that are neither rows, cols, loss nor seed but still distinguish runs of
  the same loss/row/col/seed (dataset and model always; e.g. ``lr`` if the experiment sweeps it).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from ncbench.errors import NcbenchError, UnknownNameError

# Metrics of the NC table: `results` column -> label.
NC_METRICS: dict[str, str] = {
    "final_nc1": "NC1",
    "final_nc2": "NC2",
    "final_nc3": "NC3",
    "final_nc4": "NC4",
    "final_test_nc1": "test NC1",
}
ACCURACY_METRIC = "test_acc_at_best_val"
FORMATS = ("table", "md", "csv", "latex", "json")
MISSING = "—"

# Config keys that never define a block (bookkeeping, or the seed/loss dimensions themselves).
_NEVER_BLOCK_KEYS = {"experiment", "loss", "seed", "run_id", "id", "device", "status", "name",
                     "data_root", "download", "compile"}
# Keys shown for every block even when they do not vary.
_ALWAYS_BLOCK_KEYS = ("dataset", "model")


class ReportError(NcbenchError):
    """A bad report request: an invalid --where predicate, an unusable --rows/--cols key, ..."""


# --------------------------------------------------------------------------------------------
# Data structures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStats:
    """Mean and sample std (ddof=1; None for one seed) over seeds of one metric in one cell."""

    mean: float
    std: float | None
    n_seeds: int


@dataclass
class AccuracyBlock:
    """One experiment/dataset/model (plus other distinguishing keys) as a rows × cols grid.

    ``cells[loss][i][j]`` holds the stats of ``metric`` at ``row_values[i]``, ``col_values[j]``
    (None when no counted run has a finite value there). ``spread[i][j]`` is max − min of the
    cell means across losses, None where fewer than two losses have a value.
    """

    experiment: str
    fixed: dict[str, Any]
    row_key: str
    col_key: str
    metric: str
    row_values: list[Any]
    col_values: list[Any]
    losses: list[str]
    cells: dict[str, list[list[CellStats | None]]]
    spread: list[list[float | None]]
    n_runs: int = 0
    n_excluded: int = 0

    @property
    def label(self) -> str:
        """"experiment · digits / mlp (lr=0.1)" — what the block holds, for titles."""
        return block_label(self.experiment, self.fixed)


@dataclass
class NCRow:
    """Final NC metrics of one loss in one configuration (row value, col value) of a block."""

    row_value: Any
    col_value: Any
    loss: str
    stats: dict[str, CellStats | None]


@dataclass
class NCBlock:
    """The NC table of one block: one NCRow per configuration and loss (rows × cols × losses)."""

    experiment: str
    fixed: dict[str, Any]
    row_key: str
    col_key: str
    metrics: list[str]
    rows: list[NCRow]
    n_runs: int = 0
    n_excluded: int = 0

    @property
    def label(self) -> str:
        return block_label(self.experiment, self.fixed)


class Curve(NamedTuple):
    """A metric against epoch for one group (loss), over the seeds that have it at each epoch."""

    epochs: list[int]
    mean: list[float]
    min: list[float]
    max: list[float]
    n_seeds: list[int]


@dataclass
class Report:
    """Everything `ncbench report` prints: accuracy blocks and NC blocks."""

    accuracy: list[AccuracyBlock] = field(default_factory=list)
    nc: list[NCBlock] = field(default_factory=list)
    include_unfinished: bool = False


# --------------------------------------------------------------------------------------------
# Selecting runs
# --------------------------------------------------------------------------------------------


def _columns(con, relation: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {relation}").fetchall()]


def _config_types() -> dict[str, str]:
    """Run key -> the SQL type its value has in `runs.config` (JSON for tables and lists)."""
    import dataclasses

    from ncbench.runs import RunSpec

    sql = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "str": "VARCHAR"}
    out = {}
    for f in dataclasses.fields(RunSpec):
        base = str(f.type).replace(" | None", "").strip()
        out[f.name] = sql.get(base, "JSON")
    return out


def _config_columns(where: str | None, have: Iterable[str]) -> dict[str, str]:
    """name -> SQL expression of the run keys that `where` names but that are no column
    (`have`): e.g. momentum, precision, per_class, lr_gamma — read from `config` with their
    type, so `--where "momentum = 0.9"` works like `--where "lr = 0.1"`."""
    if not (where and where.strip()):
        return {}
    have = set(have)
    out = {}
    for key, kind in _config_types().items():
        if key in have or not re.search(rf"(?<![\w.\"']){key}(?![\w\"'])", where):
            continue
        path = f"'$.{key}'"
        out[key] = (f"json_extract(ru.config, {path})" if kind == "JSON"
                    else f"TRY_CAST(json_extract_string(ru.config, {path}) AS {kind})")
    return out


def _run_relation(con, experiments: Sequence[str] | None = None, *, metrics: bool = True,
                  where: str | None = None) -> tuple[str, list[Any], list[str]]:
    """SQL (and its parameters) for the `results` rows of the runs of `experiments` (all when
    empty) joined with the `runs` columns that `results` lacks (host, error, ...), plus, as
    columns, the config keys that `where` names (`_config_columns`; their names come third).

    Normally `schema.results_sql` restricted to those runs: the same rows and columns as the
    view, without pivoting every run's metrics first (``metrics=False``: without the columns
    derived from metrics at all). A database whose views differ from this version's (an older
    schema) is read through its own `results` view, as it says, whatever `metrics` says."""
    res_cols = _columns(con, "results")
    extra = [c for c in _columns(con, "runs") if c not in set(res_cols)]
    config_keys = _config_columns(where, res_cols + extra)
    sel = ", ".join(["res.*"] + [f'ru."{c}"' for c in extra]
                    + [f'{expr} AS "{key}"' for key, expr in config_keys.items()])
    if not _restricted_ok(con):
        return f"(SELECT {sel} FROM results res JOIN runs ru USING (run_id))", [], list(config_keys)
    from ncbench.schema import results_sql

    names = list(dict.fromkeys(experiments or ()))
    flt = f"experiment IN ({', '.join('?' for _ in names)})" if names else "TRUE"
    return (f"(SELECT {sel} FROM ({results_sql(flt, metrics=metrics)}) res "
            "JOIN runs ru USING (run_id))", names, list(config_keys))


@functools.cache
def _our_views() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, type) of the columns of this version's `results` and `epochs` views."""
    import duckdb

    from ncbench import schema

    con = duckdb.connect()  # in memory
    try:
        schema.apply(con)
        return _described(con, "results"), _described(con, "epochs")
    finally:
        con.close()


def _described(con, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]


def _restricted_ok(con) -> bool:
    """Whether this database's `results` and `epochs` views are this version's, so the report
    may compute their rows from `runs` and `metrics` directly (`schema.results_sql`, and the
    `metrics` rows of the curves) instead of reading the views themselves."""
    try:
        return (_described(con, "results"), _described(con, "epochs")) == _our_views()
    except Exception:  # noqa: BLE001 - anything unexpected: use the views as they are
        return False


def check_where(where: str | None) -> None:
    """Raise ReportError unless `where` is a single SQL boolean expression (no statement tricks)."""
    if where is None or not where.strip():
        return
    import duckdb

    sql = f"SELECT run_id FROM results WHERE ({where})"
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReportError(f"--where {where!r} is not a valid SQL predicate: {_first_line(exc)}") from None
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT or ";" in where:
        raise ReportError(
            f"--where {where!r} must be one SQL predicate over run columns "
            "(e.g. \"width >= 1 AND loss IN ('ce', 'mse')\"), not a statement"
        )
    if where.count("(") != where.count(")"):
        raise ReportError(f"--where {where!r} has unbalanced parentheses")
    # Stricter: apart from its WHERE clause, the parsed query must be exactly the template's
    # (no GROUP BY / ORDER BY / LIMIT / set operation smuggled in after a closing parenthesis).
    con = duckdb.connect()
    try:
        got = _parsed_without_where(con, sql)
        if got is not None and got != _parsed_without_where(con, "SELECT run_id FROM results WHERE (TRUE)"):
            raise ReportError(f"--where {where!r} must be one SQL predicate over run columns, "
                              "not a query fragment")
    finally:
        con.close()


def _parsed_without_where(con, sql: str) -> Any:
    """DuckDB's parse tree of `sql` (json_serialize_sql) without the WHERE clause and source
    positions; None when the parser says no or the function is unavailable."""
    import duckdb

    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except (duckdb.Error, TypeError, ValueError):
        return None
    if tree.get("error"):
        raise ReportError(f"--where is not a valid SQL predicate: {tree.get('error_message', '')}")

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("query_location", "where_clause")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(tree.get("statements"))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def list_experiments(con) -> list[str]:
    """Names of the experiments present in the database, sorted."""
    return [r[0] for r in con.execute("SELECT DISTINCT experiment FROM runs ORDER BY 1").fetchall()]


def select_runs(
    con,
    experiments: Sequence[str] | None = None,
    where: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of `results` (plus runs-only columns) for the experiments, filtered by `where`.

    All statuses are returned (callers count or drop unfinished runs). ``config`` is parsed into
    a dict. Unknown experiment names raise UnknownNameError; a bad predicate raises ReportError.
    """
    return _select_runs(con, experiments, where)


def _key_runs(con, experiment: str, where: str | None, include_unfinished: bool,
              keys: Iterable[str]) -> list[dict[str, Any]]:
    """The counted runs of `experiment`, as `select_runs` gives them, for callers that only look
    up keys: `keys`, the run key columns and config keys (`configurations`, `curves_many`).

    Left without the columns derived from metrics (schema.RESULTS_METRIC_COLUMNS: reading them
    means reading every evaluation of the experiment) unless a lookup could land on one: a
    `where` predicate, one of `keys`, or a config key of the same name."""
    from ncbench.schema import RESULTS_METRIC_COLUMNS

    derived = set(RESULTS_METRIC_COLUMNS)
    light = not (where and where.strip()) and not derived & set(keys)
    runs = _select_runs(con, [experiment], where, metrics=not light)
    if light and any(derived & r["config"].keys() for r in runs):
        runs = _select_runs(con, [experiment], where)
    return [r for r in runs if include_unfinished or _is_done(r)]


def _select_runs(con, experiments: Sequence[str] | None, where: str | None, *,
                 metrics: bool = True) -> list[dict[str, Any]]:
    """`select_runs`; ``metrics=False`` may leave out RESULTS_METRIC_COLUMNS (see _key_runs)."""
    import duckdb

    check_where(where)
    if experiments:
        known = list_experiments(con)
        for name in experiments:
            if name not in known:
                raise UnknownNameError("experiment", name, known)
    rel, params, config_keys = _run_relation(con, experiments, metrics=metrics, where=where)
    sql = f"SELECT * FROM {rel} AS r WHERE 1=1"
    if experiments:
        sql += " AND experiment IN (" + ", ".join("?" for _ in experiments) + ")"
        params.extend(experiments)
    if where and where.strip():
        sql += f" AND ({where})"
    sql += " ORDER BY experiment, run_id"
    try:
        cur = con.execute(sql, params)
    except duckdb.Error as exc:
        lines = str(exc).strip().splitlines()
        hint = next((ln for ln in lines[1:] if ln.startswith("Candidate bindings")), "")
        raise ReportError(f"--where {where!r} failed: {_first_line(exc)}"
                          + (f" ({hint})" if hint else "")) from None
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    for row in rows:  # the config keys were columns only for the predicate
        for key in config_keys:
            row.pop(key, None)
    for row in rows:
        cfg = row.get("config")
        if isinstance(cfg, str):
            try:
                cfg = json.loads(cfg)
            except ValueError:
                cfg = {}
        row["config"] = cfg if isinstance(cfg, dict) else {}
    return rows


def run_value(run: Mapping[str, Any], key: str) -> Any:
    """The value of `key` for a run: a column of results/runs, else a (dotted) config key.

    Dict/list values are returned as compact JSON strings so they can be compared and shown."""
    if key in run and key != "config":
        return run[key]
    node: Any = run.get("config", {})
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, (dict, list)):
        return json.dumps(node, sort_keys=True, separators=(",", ":"))
    return node


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


def _is_done(run: Mapping[str, Any]) -> bool:
    return run.get("status") == "done"


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
    keys = [k for k in _ALWAYS_BLOCK_KEYS if k not in (rows, cols)]
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
        counted = [r for r in block_runs if include_unfinished or _is_done(r)]
        row_values = _sort_values(_hashable(run_value(r, rows)) for r in block_runs)
        col_values = _sort_values(_hashable(run_value(r, cols)) for r in block_runs)
        losses = _sort_values(run_value(r, "loss") for r in block_runs)
        yield exp, fixed, row_values, col_values, losses, counted, len(block_runs), len(block_runs) - len(counted)


def _check_result_columns(con, metrics: Sequence[str]) -> None:
    cols = [c for c in _columns(con, "results") if c != "config"]
    for m in metrics:
        if m not in cols:
            raise UnknownNameError("results metric", m, cols)


def _cell_index(counted, rows: str, cols: str) -> dict[tuple, list[Mapping[str, Any]]]:
    index: dict[tuple, list[Mapping[str, Any]]] = {}
    for run in counted:
        key = (run_value(run, "loss"), _hashable(run_value(run, rows)), _hashable(run_value(run, cols)))
        index.setdefault(key, []).append(run)
    return index


# --------------------------------------------------------------------------------------------
# The comparison computations
# --------------------------------------------------------------------------------------------


def accuracy_table(
    con,
    experiments: Sequence[str] | None = None,
    rows: str = "width",
    cols: str = "epochs",
    where: str | None = None,
    *,
    include_unfinished: bool = False,
    metric: str = ACCURACY_METRIC,
) -> list[AccuracyBlock]:
    """The paper's Figure 3 as data: per block and loss, a rows × cols grid of CellStats of
    `metric` (a `results` column, default test accuracy at the best-validation epoch) and the
    spread (max − min of the means) across losses."""
    _check_result_columns(con, [metric])
    return _accuracy_blocks(select_runs(con, experiments, where), rows, cols, include_unfinished,
                            metric)


def _accuracy_blocks(runs: Sequence[Mapping[str, Any]], rows: str, cols: str,
                     include_unfinished: bool, metric: str) -> list[AccuracyBlock]:
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
        out.append(AccuracyBlock(exp, fixed, rows, cols, metric, rvals, cvals, losses, cells,
                                 spread, n_runs, n_excl))
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
    _check_result_columns(con, metrics)
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
) -> Report:
    """Both tables of `ncbench report` (`accuracy_table` and `nc_table` with their default
    metrics), from one selection of the runs."""
    _check_result_columns(con, [ACCURACY_METRIC, *NC_METRICS])
    runs = select_runs(con, experiments, where)
    return Report(
        accuracy=_accuracy_blocks(runs, rows, cols, include_unfinished, ACCURACY_METRIC),
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
    return _configurations(_key_runs(con, experiment, where, include_unfinished, [group_by]),
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
    import duckdb

    epoch_cols = [c for c in _columns(con, "epochs") if c not in ("run_id", "epoch")]
    metrics = list(dict.fromkeys([metrics] if isinstance(metrics, str) else metrics))
    for metric in metrics:
        if metric not in epoch_cols:
            raise UnknownNameError("epoch metric", metric, epoch_cols)
    runs = _key_runs(con, experiment, where, include_unfinished, [group_by, *(select or {})])
    if not runs:
        return {m: {} for m in metrics}
    if select is None:
        configs = _configurations(runs, group_by)
        select = configs[-1] if configs else {}
    runs = [r for r in runs if all(_same(run_value(r, k), v) for k, v in select.items())]
    if not runs or not metrics:
        return {m: {} for m in metrics}
    groups = _sort_values(_hashable(run_value(r, group_by)) for r in runs)
    index = {g: k for k, g in enumerate(groups)}
    ids = [r["run_id"] for r in runs]
    group_ix = [index[_hashable(run_value(r, group_by))] for r in runs]
    if _restricted_ok(con):
        # The `epochs` view's column m at (run, epoch) is the `metrics` row named m there (one
        # at most: the primary key), NULL without one — and NULLs are skipped anyway.
        src = ("SELECT run_id, epoch, name, value FROM metrics "
               "WHERE name IN (SELECT unnest(?::VARCHAR[])) "
               "AND run_id IN (SELECT unnest(?::VARCHAR[]))")
        params: list[Any] = [metrics, ids]
    else:  # a database with another version's views: read the `epochs` view, as it says
        src = " UNION ALL ".join(
            f"SELECT run_id, epoch, '{m}' AS name, \"{m}\" AS value FROM epochs "
            "WHERE run_id IN (SELECT unnest(?::VARCHAR[]))" for m in metrics)
        params = [ids] * len(metrics)
    # The finite values of each (metric, group, epoch); the statistics are taken here, in
    # Python (math.fsum: exact, whatever the order), as for `cell_stats`.
    sql = (f"SELECT m.name, g.ix, m.epoch, list(m.value) FROM ({src}) m "
           "JOIN (SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::INTEGER[]) AS ix) g "
           "USING (run_id) WHERE isfinite(m.value) GROUP BY ALL ORDER BY ALL")
    try:
        data = con.execute(sql, params + [ids, group_ix]).fetchall()
    except duckdb.Error as exc:  # pragma: no cover - metric names are validated above
        raise ReportError(f"cannot read {', '.join(metrics)}: {_first_line(exc)}") from None
    per: dict[tuple[str, int], list[tuple[int, list[float]]]] = {}
    for name, ix, epoch, values in data:
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


def _same(a: Any, b: Any) -> bool:
    if _finite(a) and _finite(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b or str(a) == str(b)


# --------------------------------------------------------------------------------------------
# Formatting helpers (shared with the TUI)
# --------------------------------------------------------------------------------------------


def fmt_key(v: Any) -> str:
    """A swept value for display: 2.0 -> "2", 0.25 -> "0.25", None -> "—"."""
    if v is None:
        return MISSING
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def block_label(experiment: str, fixed: Mapping[str, Any]) -> str:
    """"demo · digits / mlp (lr=0.1)"."""
    main = [fmt_key(fixed[k]) for k in _ALWAYS_BLOCK_KEYS if k in fixed]
    rest = [f"{k}={fmt_key(v)}" for k, v in fixed.items() if k not in _ALWAYS_BLOCK_KEYS]
    label = experiment + (" · " + " / ".join(main) if main else "")
    return label + (f" ({', '.join(rest)})" if rest else "")


def fmt_pct(stats: CellStats | None, *, seeds: bool = True, pm: str = " ± ") -> str:
    """Accuracy stats as percent with one decimal: "81.2 ± 0.4 (3)"; one seed "81.2 (1)"."""
    if stats is None:
        return MISSING
    s = f"{100 * stats.mean:.1f}"
    if stats.std is not None:
        s += f"{pm}{100 * stats.std:.1f}"
    return s + (f" ({stats.n_seeds})" if seeds else "")


def fmt_num(x: float) -> str:
    """An NC value with 3 significant digits, scientific outside [1e-3, 1e4)."""
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def fmt_stats(stats: CellStats | None, *, seeds: bool = True, pm: str = " ± ") -> str:
    """NC stats: "0.0123 ± 0.002 (3)"; "—" when missing."""
    if stats is None:
        return MISSING
    s = fmt_num(stats.mean)
    if stats.std is not None:
        s += f"{pm}{fmt_num(stats.std)}"
    return s + (f" ({stats.n_seeds})" if seeds else "")


def fmt_spread(x: float | None) -> str:
    """Spread across losses in percentage points, one decimal."""
    return MISSING if x is None else f"{100 * x:.1f}"


_METRIC_TITLES = {
    "test_acc_at_best_val": "test accuracy at the best-validation epoch",
    "final_test_acc": "final test accuracy",
    "best_val_acc": "best validation accuracy",
    "final_train_acc": "final train accuracy",
}


def accuracy_title(block: AccuracyBlock) -> str:
    what = _METRIC_TITLES.get(block.metric, block.metric)
    return f"{block.label} — {what} (%)"


ACCURACY_LEGEND = ("cells: mean ± std over seeds in percent, (n) = seeds counted; "
                   "spread = max − min of the loss means, percentage points")
NC_LEGEND = ("NC1–NC4 on the training split, test NC1 on the test split, at the last evaluation; "
             "mean ± std over seeds, (n) = seeds counted")
NC_LEGEND_COMPACT = ("NC1–NC4 on the training split, test NC1 on the test split, at the last "
                     "evaluation; mean over ±std (seeds), n = seeds counted")


def nc_title(block: NCBlock) -> str:
    return f"{block.label} — final NC metrics"


def _excluded_note(n_excluded: int, include_unfinished: bool) -> str:
    if include_unfinished or not n_excluded:
        return ""
    return f"{n_excluded} unfinished run(s) not counted (only status 'done'; see --include-unfinished)"


# --------------------------------------------------------------------------------------------
# Tables as header + rows of strings (shared by table/md/latex renderers)
# --------------------------------------------------------------------------------------------


def accuracy_grid(block: AccuracyBlock, *, pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Header and text rows: one row per loss × row value, then one spread row per row value."""
    header = ["loss", block.row_key] + [f"{block.col_key}={fmt_key(c)}" for c in block.col_values]
    lines = []
    for loss in block.losses:
        for i, rv in enumerate(block.row_values):
            lines.append([loss, fmt_key(rv)] + [fmt_pct(s, pm=pm) for s in block.cells[loss][i]])
    for i, rv in enumerate(block.row_values):
        lines.append(["spread (max−min)", fmt_key(rv)] + [fmt_spread(x) for x in block.spread[i]])
    return header, lines


def nc_grid(block: NCBlock, *, pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    header = [block.row_key, block.col_key, "loss"] + [NC_METRICS.get(m, m) for m in block.metrics]
    lines = [
        [fmt_key(r.row_value), fmt_key(r.col_value), r.loss] + [fmt_stats(r.stats[m], pm=pm) for m in block.metrics]
        for r in block.rows
    ]
    return header, lines


# --------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------


def render(report: Report, fmt: str = "table", *, width: int | None = None) -> str:
    """The report as text in one of FORMATS ("table" is rich's box drawing, no colour codes)."""
    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, FORMATS)
    return {"table": render_table, "md": render_md, "csv": render_csv, "latex": render_latex,
            "json": render_json}[fmt](report, **({"width": width} if fmt == "table" else {}))


def rich_tables(report: Report) -> list:
    """The report as rich renderables (tables with titles and captions)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out: list = []
    if not report.accuracy and not report.nc:
        return [Text("No runs match (nothing to report).")]
    for block in report.accuracy:
        header, lines = accuracy_grid(block)
        note = _excluded_note(block.n_excluded, report.include_unfinished)
        t = Table(title=accuracy_title(block), title_justify="left", caption_justify="left",
                  caption=ACCURACY_LEGEND + (f"\n{note}" if note else ""))
        for k, h in enumerate(header):
            t.add_column(h, justify="left" if k < 1 else "right", no_wrap=k < 2)
        n_loss_lines = len(block.losses) * len(block.row_values)
        for idx, line in enumerate(lines):
            last_of_loss = (idx + 1) % max(1, len(block.row_values)) == 0
            t.add_row(*line, end_section=last_of_loss and idx < len(lines) - 1,
                      style="bold" if idx >= n_loss_lines else None)
        out.append(t)
    for block in report.nc:
        # Terminal cells stay on one line at 80 columns: "0.0889±0.0014", the seed count in its
        # own column (md/csv/latex/json keep the full form of nc_grid).
        header = [block.row_key, block.col_key, "loss", "n"] + [NC_METRICS.get(m, m) for m in block.metrics]
        t = Table(title=nc_title(block), title_justify="left", caption=NC_LEGEND_COMPACT,
                  caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        rows = []
        for r in block.rows:
            seeds = {st.n_seeds for st in r.stats.values() if st is not None}
            n = str(max(seeds)) if len(seeds) == 1 else ("–".join(map(str, (min(seeds), max(seeds))))
                                                        if seeds else MISSING)
            rows.append([fmt_key(r.row_value), fmt_key(r.col_value), r.loss, n]
                        + [_fmt_compact(r.stats[m]) for m in block.metrics])
        for k, h in enumerate(header):
            widest = max([len(h)] + [len(line) for row in rows for line in row[k].split("\n")])
            t.add_column(h, justify="left" if k < 3 else "right", no_wrap=True, min_width=widest)
        n_losses = len({r.loss for r in block.rows}) or 1
        for idx, cells in enumerate(rows):
            t.add_row(*cells, end_section=(idx + 1) % n_losses == 0 and idx < len(block.rows) - 1)
        out.append(t)
    return out


def _fmt_compact(stats: CellStats | None) -> str:
    """Mean to 3 significant digits over "±std" (2 digits) on a second line; "—" when missing."""
    if stats is None:
        return MISSING
    s = fmt_num(stats.mean)
    if stats.std is not None:
        s += "\n±" + (f"{stats.std:.2g}" if stats.std == 0 or 1e-3 <= abs(stats.std) < 1e4
                      else f"{stats.std:.1e}")
    return s


def render_table(report: Report, width: int | None = None) -> str:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width or 200, color_system=None, force_terminal=False)
    for t in rich_tables(report):
        console.print(t)
        console.print()
    return buf.getvalue()


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _md_table(header: list[str], lines: list[list[str]], right_from: int) -> str:
    align = ["---" if k < right_from else "---:" for k in range(len(header))]
    rows = [header, align] + lines
    return "\n".join("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows)


def render_md(report: Report) -> str:
    parts = []
    if not report.accuracy and not report.nc:
        return "No runs match (nothing to report).\n"
    for block in report.accuracy:
        header, lines = accuracy_grid(block)
        note = _excluded_note(block.n_excluded, report.include_unfinished)
        legend = ACCURACY_LEGEND + (f". {note}" if note else "")
        parts.append(f"### {accuracy_title(block)}\n\n{_md_table(header, lines, 2)}\n\n*{legend}*")
    for block in report.nc:
        header, lines = nc_grid(block)
        parts.append(f"### {nc_title(block)}\n\n{_md_table(header, lines, 3)}\n\n*{NC_LEGEND}*")
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def _tex(s: str) -> str:
    s = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)
    return (s.replace(MISSING, "--").replace("−", "-").replace("–", "--")
            .replace("·", r"$\cdot$").replace("±", r"$\pm$"))


def _latex_table(caption: str, header: list[str], lines: list[list[str]], left: int,
                 section: int) -> str:
    spec = "l" * left + "r" * (len(header) - left)
    out = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{_tex(caption)}}}",
           rf"\begin{{tabular}}{{{spec}}}", r"\hline",
           " & ".join(_tex(h) for h in header) + r" \\", r"\hline"]
    for idx, line in enumerate(lines):
        cells = [_tex(c).replace("PMSIGN", r"$\pm$") for c in line]
        out.append(" & ".join(cells) + r" \\")
        if section and (idx + 1) % section == 0 and idx < len(lines) - 1:
            out.append(r"\hline")
    out += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)


def render_latex(report: Report) -> str:
    parts = []
    for block in report.accuracy:
        header, lines = accuracy_grid(block, pm=" PMSIGN ")
        parts.append(_latex_table(f"{accuracy_title(block)}. {ACCURACY_LEGEND}.", header, lines, 2,
                                  max(1, len(block.row_values))))
    for block in report.nc:
        header, lines = nc_grid(block, pm=" PMSIGN ")
        parts.append(_latex_table(f"{nc_title(block)}. {NC_LEGEND}.", header, lines, 3,
                                  max(1, len({r.loss for r in block.rows}))))
    return "\n\n".join(parts) + "\n" if parts else "% no runs match\n"


CSV_COLUMNS = ("table", "experiment", "block", "loss", "row_key", "row", "col_key", "col",
               "metric", "mean", "std", "n_seeds", "spread")


def _csv_num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _csv_key(v: Any) -> str:
    return "" if v is None else fmt_key(v)


def csv_records(report: Report) -> list[dict[str, str]]:
    """Long format: one record per (block, loss, row, col, metric); fractions, not percent."""
    recs = []
    for b in report.accuracy:
        block = json.dumps(b.fixed, sort_keys=True, default=str)
        for loss in b.losses:
            for i, rv in enumerate(b.row_values):
                for j, cv in enumerate(b.col_values):
                    s = b.cells[loss][i][j]
                    recs.append(dict(table="accuracy", experiment=b.experiment, block=block, loss=loss,
                                     row_key=b.row_key, row=_csv_key(rv), col_key=b.col_key, col=_csv_key(cv),
                                     metric=b.metric, mean=_csv_num(s and s.mean),
                                     std=_csv_num(s and s.std), n_seeds=str(s.n_seeds if s else 0),
                                     spread=_csv_num(b.spread[i][j])))
    for b in report.nc:
        block = json.dumps(b.fixed, sort_keys=True, default=str)
        for r in b.rows:
            for m in b.metrics:
                s = r.stats[m]
                recs.append(dict(table="nc", experiment=b.experiment, block=block, loss=r.loss,
                                 row_key=b.row_key, row=_csv_key(r.row_value), col_key=b.col_key,
                                 col=_csv_key(r.col_value), metric=m, mean=_csv_num(s and s.mean),
                                 std=_csv_num(s and s.std), n_seeds=str(s.n_seeds if s else 0), spread=""))
    return recs


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_records(report))
    return buf.getvalue()


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-able data (fractions; NaN → null)."""
    return _jsonable({
        "include_unfinished": report.include_unfinished,
        "accuracy": [asdict(b) | {"label": b.label} for b in report.accuracy],
        "nc": [asdict(b) | {"label": b.label} for b in report.nc],
    })


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, allow_nan=False) + "\n"
