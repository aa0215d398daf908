"""Run selection for the report: which runs, their `results` rows, the `--where` sandbox.

Everything the report reads from the database goes through here: `select_runs` (the `results`
rows of some experiments, plus the `runs`-only columns, filtered by a `--where` predicate),
`check_where` (a predicate is one SQL boolean expression, nothing else; it runs on a connection
sandboxed by `ncbench.usersql.sandbox`: the results tables only, no files), the typing of config
keys a predicate names (`--where "momentum = 0.9"`), the metric-name checks, and the per-epoch
values the curves are computed from (`epoch_values`).

The rows come from `schema.results_sql` restricted to the requested runs when the database's
views are this version's (`_restricted_ok`); a database with another version's views is read
through its own `results` and `epochs` views, as they say.

A run *counts* toward cells and curves when its status is ``done``, or always with
``include_unfinished=True`` (`is_counted`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ncbench.errors import ReportError, UnknownNameError
from ncbench.lifecycle import DONE
from ncbench.usersql import explain, sandbox


def columns(con, relation: str) -> list[str]:
    """Column names of a table or view (or a parenthesised query)."""
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
    res_cols = columns(con, "results")
    extra = [c for c in columns(con, "runs") if c not in set(res_cols)]
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
        raise ReportError(f"--where {_shown(where)} is not a valid SQL predicate: {first_line(exc)}") from None
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT or ";" in where:
        raise ReportError(
            f"--where {_shown(where)} must be one SQL predicate over run columns "
            "(e.g. \"width >= 1 AND loss IN ('ce', 'mse')\"), not a statement"
        )
    if where.count("(") != where.count(")"):
        raise ReportError(f"--where {_shown(where)} has unbalanced parentheses")
    # Stricter: apart from its WHERE clause, the parsed query must be exactly the template's
    # (no GROUP BY / ORDER BY / LIMIT / set operation smuggled in after a closing parenthesis).
    con = duckdb.connect()
    try:
        got = _parsed_without_where(con, sql)
        if got is not None and got != _parsed_without_where(con, "SELECT run_id FROM results WHERE (TRUE)"):
            raise ReportError(f"--where {_shown(where)} must be one SQL predicate over run columns, "
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


def _shown(where: str | None, limit: int = 200) -> str:
    """`where` as messages quote it: repr, cut to about `limit` characters."""
    text = repr(where)
    return text if len(text) <= limit else f"{text[:limit]}…' ({len(where or '')} characters)"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (DuckDB's errors run over several)."""
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


def is_counted(run: Mapping[str, Any], include_unfinished: bool = False) -> bool:
    """Whether `run` (a `select_runs` row) counts toward cells and curves: status ``done``, or
    any status with ``include_unfinished``."""
    return include_unfinished or run.get("status") == DONE


def key_runs(con, experiment: str, where: str | None, include_unfinished: bool,
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
    return [r for r in runs if is_counted(r, include_unfinished)]


def _select_runs(con, experiments: Sequence[str] | None, where: str | None, *,
                 metrics: bool = True) -> list[dict[str, Any]]:
    """`select_runs`; ``metrics=False`` may leave out RESULTS_METRIC_COLUMNS (see key_runs)."""
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
        sandbox(con)  # the user's text reads the results tables only
    sql += " ORDER BY experiment, run_id"
    try:
        cur = con.execute(sql, params)
    except duckdb.Error as exc:
        why = explain(exc)
        if why:
            raise ReportError(f"--where {_shown(where)} refused: {why}") from None
        lines = str(exc).strip().splitlines()
        hint = next((ln for ln in lines[1:] if ln.startswith("Candidate bindings")), "")
        raise ReportError(f"--where {_shown(where)} failed: {first_line(exc)}"
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


def check_result_columns(con, metrics: Sequence[str]) -> None:
    """Raise UnknownNameError unless every name in `metrics` is a column of `results`."""
    cols = [c for c in columns(con, "results") if c != "config"]
    for m in metrics:
        if m not in cols:
            raise UnknownNameError("results metric", m, cols)


def check_epoch_metrics(con, metrics: Sequence[str]) -> None:
    """Raise UnknownNameError unless every name in `metrics` is a metric column of `epochs`."""
    epoch_cols = [c for c in columns(con, "epochs") if c not in ("run_id", "epoch")]
    for metric in metrics:
        if metric not in epoch_cols:
            raise UnknownNameError("epoch metric", metric, epoch_cols)


def epoch_values(con, metrics: Sequence[str], run_ids: Sequence[str],
                 groups: Sequence[int]) -> list[tuple[str, int, int, list[float]]]:
    """The finite values of each metric at each epoch, per group of runs: rows (metric, group,
    epoch, [values of the runs of that group]), sorted. ``groups[k]`` is the group (an index)
    of ``run_ids[k]``; `metrics` are names checked by `check_epoch_metrics`."""
    import duckdb

    metrics = list(metrics)
    ids = list(run_ids)
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
    sql = (f"SELECT m.name, g.ix, m.epoch, list(m.value) FROM ({src}) m "
           "JOIN (SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::INTEGER[]) AS ix) g "
           "USING (run_id) WHERE isfinite(m.value) GROUP BY ALL ORDER BY ALL")
    try:
        return con.execute(sql, params + [ids, list(groups)]).fetchall()
    except duckdb.Error as exc:  # pragma: no cover - metric names are validated first
        raise ReportError(f"cannot read {', '.join(metrics)}: {first_line(exc)}") from None
