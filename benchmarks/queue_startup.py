"""Local queue throughput for short runs: standby workers + passive OpenMP vs the plain queue.

A queue of short CPU runs (digits, mlp, 30 epochs — the demo's kind) on one CPU slot, run twice
in this process on fresh directories:

- baseline: each worker started only when the slot is free (`standby=False`) and OpenMP's
  default spinning threads (`OMP_WAIT_POLICY=ACTIVE`);
- ncbench's default: the next run's worker imports torch and loads its data while the current
  run trains (`standby=True`), and `OMP_WAIT_POLICY=PASSIVE`.

Prints both wall times and their ratio. Usage: python benchmarks/queue_startup.py [N_RUNS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from ncbench.config import expand, load_config
from ncbench.executors.base import NullUI
from ncbench.executors.local import LocalExecutor
from ncbench.paths import default_db_path, default_workdir
from ncbench.store import Store

CONFIG = """
[experiments.q]
dataset = "digits"
model = "mlp"
loss = ["ce", "fl", "ls", "mse"]
width = [0.5, 2]
epochs = 30
eval_every = 5
seed = [0, 1, 2]
"""


def one(n: int, **executor) -> float:
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "experiments.toml"
        cfg.write_text(CONFIG)
        specs = expand(load_config(cfg))[:n]
        store = Store(default_db_path(cfg))
        store.register_runs(specs)
        t = time.perf_counter()
        results = LocalExecutor(workers=1, **executor).run(specs, default_workdir(cfg), store, NullUI())
        wall = time.perf_counter() - t
        assert set(results.values()) == {"done"}, results
        return wall


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    os.environ.pop("OMP_WAIT_POLICY", None)
    base = one(n, standby=False, env={"OMP_WAIT_POLICY": "ACTIVE"})
    new = one(n, standby=True)
    print(f"{n} short runs on 1 CPU slot ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}):")
    print(f"  baseline (start on free slot, spinning OpenMP): {base:6.1f} s  ({base / n:.1f} s/run)")
    print(f"  standby workers + passive OpenMP:               {new:6.1f} s  ({new / n:.1f} s/run)")
    print(f"  speed-up: {base / new:.2f}x")


if __name__ == "__main__":
    main()
