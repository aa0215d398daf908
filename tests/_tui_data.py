"""A small, fixed results database for the TUI tests and snapshots (no clocks, no randomness).

`make_tui_db(path)` writes, through the real schema (`ncbench.schema.apply`), two experiments:

* `demo` (digits / mlp, losses ce, fl, mse, seeds 0 and 1, 10 epochs, evaluated every epoch):
  done, running (4 of 10), failed (with an error), diverged (loss inf and NaN metrics) and a
  queued run, plus one done run whose NC1 is 0 or NaN at every epoch (log-scale trouble);
* `wide` (one done run with a single evaluation: a one-point chart).

`METRICS[run_id][epoch][name]` holds every value written, so tests can compute expectations
with plain Python.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

T0 = datetime(2025, 1, 1, 12, 0, 0)
NOW = datetime(2025, 1, 1, 12, 10, 0)  # the frozen clock of the tests

# run_id, experiment, loss, width, epochs, seed, status, evaluated epochs, error
RUNS = [
    ("demo-ce-s0", "demo", "ce", 1.0, 10, 0, "done", 10, None),
    ("demo-ce-s1", "demo", "ce", 1.0, 10, 1, "done", 10, None),
    ("demo-fl-s0", "demo", "fl", 1.0, 10, 0, "running", 4, None),
    ("demo-fl-s1", "demo", "fl", 1.0, 10, 1, "failed", 3,
     "Traceback (most recent call last):\nRuntimeError: CUDA out of memory"),
    ("demo-mse-s0", "demo", "mse", 1.0, 10, 0, "done", 10, None),
    ("demo-mse-s1", "demo", "mse", 1.0, 10, 1, "diverged", 2, "loss is inf at epoch 2"),
    ("demo-ls-s0", "demo", "ls", 1.0, 10, 0, "queued", 0, None),
    ("wide-ce-s0", "wide", "ce", 2.0, 1, 0, "done", 1, None),
]


def _metrics(run_id: str, loss: str, seed: int, epoch: int, status: str) -> dict[str, float]:
    k = {"ce": 1.0, "fl": 1.3, "mse": 0.8, "ls": 1.1}[loss] * (1 + 0.1 * seed)
    m = {
        "nc1": 10 * k * math.exp(-epoch / 2),
        "nc2": 0.5 * k / epoch, "nc3": 0.4 * k / epoch, "nc4": 0.1 * k / epoch,
        "test_nc1": 4 + 0.5 * epoch * k,
        "train_acc": 1 - 0.5 / (epoch * k), "val_acc": 0.9 - 0.4 / (epoch * k),
        "test_acc": 0.88 - 0.4 / (epoch * k),
        "train_loss": 2 / (epoch * k), "test_loss": 2.2 / (epoch * k),
        "lr": 0.1 if epoch <= 4 else (0.01 if epoch <= 7 else 0.001),
    }
    if run_id == "demo-mse-s0":  # NC1 exactly 0 at odd epochs, NaN at even ones
        m["nc1"] = 0.0 if epoch % 2 else math.nan
    if status == "diverged" and epoch == 2:
        m.update(train_loss=math.inf, nc1=math.nan, nc2=math.nan, test_acc=0.1)
    return m


def make_tui_db(path: str | Path) -> dict[str, dict[int, dict[str, float]]]:
    """Write the fixed database at `path` (a new file); returns METRICS."""
    import duckdb

    from ncbench import schema

    metrics: dict[str, dict[int, dict[str, float]]] = {}
    con = duckdb.connect(str(path))
    try:
        schema.apply(con)
        for i, (rid, exp, loss, width, epochs, seed, status, n, error) in enumerate(RUNS):
            started = None if status == "queued" else T0 + timedelta(seconds=30 * i)
            finished = (started + timedelta(minutes=5)
                        if status in ("done", "failed", "diverged") else None)
            cfg = {"experiment": exp, "dataset": "digits", "model": "mlp", "loss": loss,
                   "width": width, "epochs": epochs, "seed": seed, "lr": 0.1, "batch_size": 128,
                   "weight_decay": 5e-4, "momentum": 0.9, "precision": "fp32",
                   "loss_params": {"gamma": 2.0} if loss == "fl" else {}}
            con.execute(
                "INSERT INTO runs (run_id, experiment, dataset, model, loss, width, epochs, seed,"
                " status, config, created_at, started_at, finished_at, host, device, error,"
                " attempt, last_epoch) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [rid, exp, "digits", "mlp", loss, width, epochs, seed, status, json.dumps(cfg),
                 T0, started, finished, None if status == "queued" else "node1",
                 None if status == "queued" else "cpu", error,
                 0 if status == "queued" else 1, n or None],
            )
            metrics[rid] = {}
            rows = []
            for e in range(1, n + 1):
                m = _metrics(rid, loss, seed, e, status)
                metrics[rid][e] = m
                rows += [(rid, e, name, value) for name, value in m.items()]
            if rows:
                con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", rows)
    finally:
        con.close()
    return metrics
