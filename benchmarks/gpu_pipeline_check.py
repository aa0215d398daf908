"""GPU check of the execution pipeline (run it on a CUDA machine; prints one JSON report).

1. `train_run` on CUDA: digits + resnet18 (conv net, channels_last) and gaussian + mlp, with fp32,
   bf16 and fp16 — device, epoch time, finite metrics.
2. Resume on CUDA: 4 epochs straight vs 2 + interrupt + resume 2 — largest relative difference
   of the final metrics (bit-exact on the CPU; on CUDA float atomics may differ in the last bits).
3. `ncbench run` through the local executor with the real GPU: the default slots (one per GPU)
   and `--per-gpu 2` — each worker's device and CUDA_VISIBLE_DEVICES from its start event.

Usage: python benchmarks/gpu_pipeline_check.py OUT.json
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ncbench.events import read_events, read_spec
from ncbench.paths import default_workdir
from ncbench.rundir import run_dirs
from ncbench.runs import RunSpec
from ncbench.train import ListSink, train_run

TIMING = ("wall_seconds", "eval_seconds", "epoch_seconds")


def spec(**kw) -> RunSpec:
    base = dict(experiment="gpu", dataset="gaussian", model="mlp", loss="ce", width=0.5, epochs=4,
                seed=0, eval_every=2, device="auto",
                dataset_params={"num_classes": 10, "dim": 32, "n_train_per_class": 500,
                                "n_test_per_class": 100})
    base.update(kw)
    return RunSpec(**base)


def one(s: RunSpec, run_dir=None, should_stop=None) -> dict:
    sink = ListSink()
    t = time.perf_counter()
    status = train_run(s, sink, run_dir=run_dir, should_stop=should_stop)
    last = sink.evals[-1][1] if sink.evals else {}
    return {"status": status, "seconds": round(time.perf_counter() - t, 2),
            "start": sink.started[0] if sink.started else None,
            "epoch_seconds": last.get("epoch_seconds"), "finite": all(math.isfinite(v) for v in last.values()),
            "final": {k: last.get(k) for k in ("train_acc", "test_acc", "nc1", "nc4")}, "_all": last}


def main(out_path: str) -> None:
    report: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    # 1. train_run on CUDA
    runs = {}
    for name, s in {
        "digits_resnet18_fp32": spec(dataset="digits", model="resnet18", width=0.5, epochs=10, eval_every=5,
                                     dataset_params={}),
        "digits_resnet18_bf16": spec(dataset="digits", model="resnet18", width=0.5, epochs=10, eval_every=5,
                                     dataset_params={}, precision="bf16"),
        "digits_resnet18_fp16": spec(dataset="digits", model="resnet18", width=0.5, epochs=10, eval_every=5,
                                     dataset_params={}, precision="fp16"),
        "gaussian_mlp_fp32": spec(epochs=20, eval_every=10),
    }.items():
        r = one(s)
        r.pop("_all")
        runs[name] = r
    report["train_run"] = runs
    # 2. resume on CUDA
    with tempfile.TemporaryDirectory() as d:
        s = spec()
        a = one(s, run_dir=Path(d) / "a")["_all"]
        first = ListSink()
        train_run(s, first, run_dir=Path(d) / "b", should_stop=lambda: any(e == 2 for e, _ in first.evals))
        b = one(s, run_dir=Path(d) / "b")
        diffs = {k: abs(a[k] - b["_all"][k]) / max(abs(a[k]), 1e-12) for k in a if k not in TIMING}
        report["resume"] = {"resumed_from": b["start"]["resumed_from_epoch"],
                            "max_rel_diff": max(diffs.values()),
                            "worst": max(diffs, key=diffs.get), "bit_exact": max(diffs.values()) == 0}
    # 3. ncbench run with the local executor on the real GPU(s)
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "experiments.toml"
        cfg.write_text(
            '[experiments.one]\ndataset = "digits"\nmodel = "mlp"\nloss = ["ce", "mse", "ls"]\n'
            'epochs = 6\neval_every = 3\n'
            '[experiments.packed]\ndataset = "digits"\nmodel = "resnet18"\nwidth = 0.25\n'
            'loss = ["ce", "fl"]\nepochs = 4\neval_every = 2\n')
        out = {}
        for label, args in (("default", ["one"]), ("per_gpu_2", ["packed", "--per-gpu", "2"])):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "ncbench", "run", *args, "--config", str(cfg)],
                               capture_output=True, text=True, cwd=d)
            starts = []
            for rd in run_dirs(default_workdir(cfg)):
                ev = read_events(rd)
                st = [e for e in ev if e["type"] == "start"]
                if st and st[-1].get("time", "") >= "" and read_spec(rd).experiment == args[0]:
                    ends = [e for e in ev if e["type"] == "end"]
                    starts.append({k: st[-1].get(k) for k in ("device", "slot", "cuda_visible_devices",
                                                             "threads", "precision", "channels_last")}
                                  | {"end": ends[-1]["status"] if ends else None,
                                     "t_start": st[-1]["time"], "t_end": ends[-1]["time"] if ends else None})
            out[label] = {"rc": p.returncode, "seconds": round(time.perf_counter() - t, 1), "runs": starts,
                          "stdout_tail": p.stdout[-600:], "stderr_tail": p.stderr[-600:]}
        report["ncbench_run"] = out
    Path(out_path).write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, indent=1, default=str)[:6000])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gpu_check.json")
