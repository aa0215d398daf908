"""The DuckDB schema of an ncbench results database (documented in docs/schema.md).

Tables hold what was stored; views derive what users query most. This module only holds DDL: the
store (ncbench.store) applies it, the views (status, sql, report, tui) read through it.
"""

from __future__ import annotations

import re

# Bump when the DDL changes: a writer re-applies the DDL (tables IF NOT EXISTS, views replaced)
# to a database holding an older version; a database of a newer version is refused.
# 3: runs.start_epoch, runs.retry_requested_at; 4: 64-bit integer columns (BIGINT), runs.note;
# 5: the extra NC measures (EXTRA_NC_METRICS) as columns of `epochs` and `results` (views only).
SCHEMA_VERSION = 5

# Metric names a training run records at each evaluation (long format in `metrics`).
# Accuracies are fractions in [0, 1]. NC metrics without prefix are on the training split
# (no augmentation, eval mode); `test_` prefixed ones are the same metrics on the test split.
EPOCH_METRICS = (
    "train_loss", "train_acc", "val_acc", "test_acc", "test_loss", "lr", "wall_seconds",
    "nc1", "nc2", "nc3", "nc4", "nc2_centered", "nc3_centered",
    "test_nc1", "test_nc2", "test_nc3", "test_nc4", "test_nc2_centered", "test_nc3_centered",
    "eval_seconds", "epoch_seconds",
)
# The extra NC measures (ncbench.nc_measures, docs/metrics.md; off with `nc_extra = false`),
# train split and `test_` prefixed, appended to EPOCH_METRICS (schema version 5).
EXTRA_NC_METRICS = (
    "equinorm_means", "equinorm_classifier", "equiangular_means", "equiangular_classifier",
    "maxangle_means", "maxangle_classifier", "self_duality", "cdnv", "nc1_trace",
)
EPOCH_METRICS += EXTRA_NC_METRICS + tuple("test_" + m for m in EXTRA_NC_METRICS)

# Config columns copied from the run spec into `runs` (the rest lives in `config` JSON).
RUN_KEY_COLUMNS = ("experiment", "dataset", "model", "loss", "width", "epochs", "seed")

TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
CREATE TABLE IF NOT EXISTS runs (
    run_id        VARCHAR PRIMARY KEY,
    experiment    VARCHAR NOT NULL,
    dataset       VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    loss          VARCHAR NOT NULL,
    width         DOUBLE  NOT NULL,
    epochs        BIGINT  NOT NULL,
    seed          BIGINT  NOT NULL,
    status        VARCHAR NOT NULL,
    config        JSON    NOT NULL,
    created_at    TIMESTAMP,
    started_at    TIMESTAMP,
    finished_at   TIMESTAMP,
    host          VARCHAR,
    device        VARCHAR,
    error         VARCHAR,
    executor      VARCHAR,
    slot          VARCHAR,
    attempt       BIGINT  DEFAULT 0,
    slurm_job_id  VARCHAR,
    heartbeat_at  TIMESTAMP,
    pid           BIGINT ,
    last_epoch    BIGINT ,
    start_epoch   BIGINT ,
    retry_requested_at TIMESTAMP,
    note          VARCHAR
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id  VARCHAR NOT NULL,
    epoch   BIGINT  NOT NULL,
    name    VARCHAR NOT NULL,
    value   DOUBLE,
    PRIMARY KEY (run_id, epoch, name)
);
"""


def _wide_columns() -> str:
    return ",\n    ".join(
        f"max(value) FILTER (WHERE name = '{m}') AS {m}" for m in EPOCH_METRICS
    )


# The select list of `results` (`results_sql`) over `runs r`, `best b` and `final f`: the run's
# own columns, then those derived from its metrics.
_RESULTS_RUN_SELECT = """r.run_id, r.experiment, r.dataset, r.model, r.loss, r.width, r.epochs, r.seed, r.status,
    r.config,
    TRY_CAST(json_extract_string(r.config, '$.batch_size') AS BIGINT) AS batch_size,
    CAST(json_extract_string(r.config, '$.lr') AS DOUBLE) AS lr,
    CAST(json_extract_string(r.config, '$.weight_decay') AS DOUBLE) AS weight_decay,
    json_extract(r.config, '$.loss_params') AS loss_params,
    r.started_at, r.finished_at"""
_RESULTS_METRIC_SELECT = """b.best_epoch, b.best_val_acc, b.test_acc_at_best_val,
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
    f.test_nc1_trace AS final_test_nc1_trace"""
_RESULTS_SELECT = _RESULTS_RUN_SELECT + ",\n    " + _RESULTS_METRIC_SELECT

# The columns of `results` derived from a run's metrics (best_*, final_*, wall_seconds).
RESULTS_METRIC_COLUMNS = tuple(
    item.split(" AS ")[-1].split(".")[-1].strip() for item in _RESULTS_METRIC_SELECT.split(","))

# The metrics the `final` part of `results` reads (f.<name> in the select list).
_FINAL_METRICS = tuple(dict.fromkeys(
    m for m in re.findall(r"\bf\.(\w+)", _RESULTS_SELECT) if m != "epoch"))


def results_sql(run_filter: str = "TRUE", *, metrics: bool = True) -> str:
    """The `results` rows (one per run, all its columns) of the runs matching `run_filter` (an
    SQL predicate over the columns of `runs`; it may hold `?` parameters, which then come
    first). The one definition of `results`: the view is this query over all runs
    (``results_sql()``, see `VIEWS`).

    It selects the runs first and reads `metrics` restricted to them (no pivot of every metric
    of every run through `epochs`), and computes only what the columns need: the last epoch of
    each run and its values (final_*), and the epoch of the best finite validation accuracy,
    earliest on ties, with the test accuracy there (best_*); the epoch-0 evaluation (the untrained
    network) is never the best epoch. So `results_sql("experiment = ?")`
    reads only that experiment's metrics (ncbench.report uses it); tests/test_report.py checks
    the rows against a pivot of `epochs` written out independently.

    ``metrics=False``: only the columns that do not come from metrics (all but
    RESULTS_METRIC_COLUMNS), without reading `metrics` at all.
    """
    if not metrics:
        return f"SELECT\n    {_RESULTS_RUN_SELECT}\nFROM runs r WHERE ({run_filter})"
    final_cols = ",\n           ".join(
        f"max(value) FILTER (WHERE name = '{m}') AS {m}" for m in _FINAL_METRICS)
    return f"""
WITH sel AS (SELECT * FROM runs WHERE ({run_filter})),
last AS (
    SELECT run_id, max(epoch) AS epoch FROM metrics
    WHERE run_id IN (SELECT run_id FROM sel) GROUP BY run_id
),
final AS (
    SELECT run_id, epoch,
           {final_cols}
    FROM metrics SEMI JOIN last USING (run_id, epoch)
    GROUP BY run_id, epoch
),
val AS (
    SELECT run_id, arg_max(epoch, {{'acc': value, 'earlier': -epoch}}) AS best_epoch,
           max(value) AS best_val_acc
    FROM metrics
    WHERE run_id IN (SELECT run_id FROM sel) AND name = 'val_acc' AND epoch >= 1
          AND value IS NOT NULL AND NOT isnan(value)
    GROUP BY run_id
),
best AS (
    SELECT v.run_id, v.best_epoch, v.best_val_acc, t.value AS test_acc_at_best_val
    FROM val v LEFT JOIN (
        SELECT run_id, epoch, value FROM metrics
        WHERE run_id IN (SELECT run_id FROM sel) AND name = 'test_acc'
    ) t ON t.run_id = v.run_id AND t.epoch = v.best_epoch
)
SELECT
    {_RESULTS_SELECT}
FROM sel r
LEFT JOIN best b USING (run_id)
LEFT JOIN final f USING (run_id)"""


# `epochs`: one row per (run, evaluated epoch), one column per metric; `results`: one row per
# run, defined once, by `results_sql`.
VIEWS = f"""
CREATE OR REPLACE VIEW epochs AS
SELECT
    run_id,
    epoch,
    {_wide_columns()}
FROM metrics
GROUP BY run_id, epoch;

CREATE OR REPLACE VIEW results AS {results_sql()};
"""

#: Columns of `runs` added after version 1, with their type: `apply` adds them to an older database.
MIGRATIONS = (("start_epoch", "BIGINT"), ("retry_requested_at", "TIMESTAMP"), ("note", "VARCHAR"))

#: Integer columns that were INTEGER (32-bit) before version 4, by table: `apply` widens them to
#: BIGINT. `metrics.epoch` is in the primary key (DuckDB cannot change its type), so `metrics`
#: is copied into a new table instead.
WIDENED_COLUMNS = {
    "runs": ("epochs", "seed", "attempt", "pid", "last_epoch", "start_epoch"),
    "metrics": ("epoch",),
}

_METRICS_DDL = TABLES[TABLES.index("CREATE TABLE IF NOT EXISTS metrics"):].strip().rstrip(";")


def _column_types(con, table: str) -> dict[str, str]:
    rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'main' AND table_name = ?", [table]).fetchall()
    return {name: kind.upper() for name, kind in rows}


def _widen(con) -> None:
    """Widen the 32-bit integer columns of a database written before version 4 (no-op after)."""
    runs = _column_types(con, "runs")
    for column in WIDENED_COLUMNS["runs"]:
        if runs.get(column) == "INTEGER":
            con.execute(f"ALTER TABLE runs ALTER COLUMN {column} TYPE BIGINT")
    if _column_types(con, "metrics").get("epoch") == "INTEGER":
        con.execute("DROP VIEW IF EXISTS results")  # views over `metrics` (recreated by apply)
        con.execute("DROP VIEW IF EXISTS epochs")
        con.execute(_METRICS_DDL.replace("IF NOT EXISTS metrics", "metrics__v4"))
        con.execute("INSERT INTO metrics__v4 BY NAME SELECT * FROM metrics")
        con.execute("DROP TABLE metrics")
        con.execute("ALTER TABLE metrics__v4 RENAME TO metrics")


def apply(con) -> None:
    """Create the tables and (re)create the views on a read-write DuckDB connection; migrate a
    database of an older version (new columns, 64-bit integers) — in one transaction, unless the
    caller already holds one (then in the caller's)."""
    import duckdb

    try:
        con.execute("BEGIN TRANSACTION")
        own = True
    except duckdb.TransactionException:
        own = False  # the caller's transaction
    try:
        con.execute(TABLES)
        for column, kind in MIGRATIONS:  # columns added since a database was created
            con.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {column} {kind}")
        _widen(con)
        con.execute(VIEWS)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )
    except BaseException:
        if own:
            con.execute("ROLLBACK")
        raise
    if own:
        con.execute("COMMIT")
