"""Synthetic results databases for the report/figure tests (plain INSERTs into the real schema).

Realistic shape: several losses, widths, epochs and seeds, per-epoch metrics with NaNs, one
unfinished run, one failed run, one cell with a single seed, and a second experiment that sweeps
`lr` (so blocks must split on it)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import duckdb

from ncbench import schema

LOSSES = ("ce", "fl", "mse")
WIDTHS = (0.5, 2.0)
EPOCHS = (4, 8)
SEEDS = (0, 1, 2)


def _insert_run(con, run_id, experiment, loss, width, epochs, seed, status, config_extra=None):
    cfg = {"experiment": experiment, "dataset": "digits", "model": "mlp", "loss": loss,
           "width": width, "epochs": epochs, "seed": seed, "lr": 0.1, "batch_size": 128,
           "lr_milestones": [epochs * 3 // 7, epochs * 5 // 7]}
    cfg.update(config_extra or {})
    con.execute(
        "INSERT INTO runs (run_id, experiment, dataset, model, loss, width, epochs, seed, status,"
        " config, host, device) VALUES (?, ?, 'digits', 'mlp', ?, ?, ?, ?, ?, ?, 'h', 'cpu')",
        [run_id, experiment, loss, width, epochs, seed, status, json.dumps(cfg)],
    )


def _insert_metrics(con, run_id, rng, n_epochs, *, nan_val=False, last_epoch=None):
    rows = []
    quality = rng.uniform(0.7, 0.95)
    for epoch in range(1, (last_epoch or n_epochs) + 1):
        t = epoch / n_epochs
        m = {
            "train_acc": min(1.0, quality + 0.3 * t),
            "val_acc": float("nan") if nan_val else quality * (0.8 + 0.2 * t) + rng.uniform(-0.02, 0.02),
            "test_acc": quality * (0.8 + 0.2 * t) + rng.uniform(-0.02, 0.02),
            "train_loss": 2.0 * (1 - t) + 0.01,
            "lr": 0.1,
            # NC1 hits 0 at the first epoch of some runs (log axes must cope)
            "nc1": 0.0 if (epoch == 1 and rng.random() < 0.3) else math.exp(-3 * t) * rng.uniform(0.5, 2),
            "nc2": 0.5 * (1 - t) + 0.05,
            "nc3": 0.6 * (1 - t) + 0.04,
            "nc4": 0.1 * (1 - t),
            "test_nc1": 1.5 + rng.random(),
        }
        if epoch == 2:
            m["nc2"] = float("nan")
        rows += [(run_id, epoch, k, v) for k, v in m.items()]
    # one multi-row INSERT (executemany is slow in DuckDB)
    con.execute("INSERT INTO metrics VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(rows)),
                [x for row in rows for x in row])


def make_synthetic_db(path: Path) -> Path:
    """Create the database at `path` and return it."""
    rng = random.Random(1234)
    con = duckdb.connect(str(path))
    schema.apply(con)
    n = 0
    for loss in LOSSES:
        for width in WIDTHS:
            for epochs in EPOCHS:
                for seed in SEEDS:
                    n += 1
                    run_id = f"g{n:03d}"
                    status = "done"
                    if (loss, width, epochs, seed) == ("mse", 2.0, 8, 2):
                        status = "running"  # unfinished: must not count by default
                    if (loss, width, epochs) == ("fl", 0.5, 4) and seed > 0:
                        continue  # a single-seed cell
                    if (loss, width, epochs, seed) == ("ce", 0.5, 8, 1):
                        status = "failed"
                    _insert_run(con, run_id, "grid", loss, width, epochs, seed, status)
                    _insert_metrics(con, run_id, rng, epochs,
                                    last_epoch=epochs // 2 if status != "done" else None)
    # one done run whose validation accuracy is NaN everywhere: no best epoch → no value
    _insert_run(con, "gnan", "grid", "ce", 2.0, 8, 3, "done")
    _insert_metrics(con, "gnan", rng, 8, nan_val=True)
    # a second experiment sweeping lr (blocks split on lr) with one loss only
    for lr in (0.1, 0.01):
        for seed in (0, 1):
            n += 1
            run_id = f"l{n:03d}"
            _insert_run(con, run_id, "lrsweep", "ce", 1.0, 4, seed, "done", {"lr": lr})
            _insert_metrics(con, run_id, rng, 4)
    con.close()
    return path
