"""Evaluation cost: one NC evaluation of ncbench's loop against one training epoch.

Runs the real `ncbench.train.train_run` (a `ListSink`, `eval_every = 1`) for `--epochs` epochs and
reads what it records at every evaluation: `epoch_seconds` (one training epoch) and
`eval_seconds` (the whole evaluation: the training split's forward pass with loss, accuracy and
the streaming NC statistics + their computation, the same on the test split, and the
validation accuracy). The last epoch's ratio is the steady state (the first pays cuDNN autotuning
and compilation); the amortised overhead at the default `eval_every = 5` is ratio / 5.

Then it loads the run's last checkpoint and times the three passes separately
(`ncbench.train.evaluate`, the 2nd call of each) to show where the evaluation time goes,
and the training split's pass without the NC statistics (their share of that pass) and without
the extra NC measures (`extra=False`: what `nc_extra` adds to that pass).

`--nc-only` times the NC statistics alone on random float32 features of a CIFAR-sized training
split (N = 45 000, d = 512, K = 10 and 100; `--nc-sizes`): `CollapseStats` update + compute as
`evaluate` runs them (features kept, and the two-pass default mode), with and without the extra
measures — the worst case for their share, since no forward pass is counted.

Data: scikit-learn's digits (real, for `mlp`) or a CIFAR-10-format fixture written to a
temporary folder (python pickles, class-dependent noisy images; `--n-train` training images
of which 10 % are the validation holdout, `--n-test` test images), read by ncbench's `cifar10`
dataset with `verify=False`.

    python benchmarks/eval_cost.py                        # CPU: digits/mlp-1, cifar-fixture/resnet18-0.25
    python benchmarks/eval_cost.py --device cuda          # wrn50 at widths 0.25 and 2, bf16, 50k images
    python benchmarks/eval_cost.py --write-fixture DIR --n-train 500 --n-test 100   # fixture only
    python benchmarks/eval_cost.py --nc-only                 # the extra measures' cost alone
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10_fixture(root: str | os.PathLike, n_train: int = 500, n_test: int = 100,
                          seed: int = 0) -> Path:
    """Write a CIFAR-10 python-format set (5 training batches + test batch + batches.meta) under
    `root/cifar-10-batches-py/`: balanced labels, each class a colour tint plus uniform noise
    (learnable, never constant). Returns the folder. Read it with dataset `cifar10`,
    `dataset_params = { verify = false }` and `data_root = root`."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    tints = rng.integers(40, 216, (10, 3))

    def images(n: int) -> tuple[np.ndarray, list[int]]:
        y = (np.arange(n) % 10)
        rng.shuffle(y)
        noise = rng.integers(-40, 41, (n, 32, 32, 3))
        x = np.clip(tints[y][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        rows = x.transpose(0, 3, 1, 2).reshape(n, -1)  # 1024 R, 1024 G, 1024 B per row
        return rows, [int(v) for v in y]

    per = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for i, n in enumerate(per, 1):
        rows, y = images(n)
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {i} of 5", "labels": y, "data": rows,
                         "filenames": [f"img_{i}_{j}.png" for j in range(n)]}, f, protocol=2)
    rows, y = images(n_test)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": y, "data": rows,
                     "filenames": [f"t{j}.png" for j in range(n_test)]}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": max(per), "label_names": CLASSES, "num_vis": 3072}, f,
                    protocol=2)
    return folder


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def clock(dev: torch.device):
    """The clock of the with/without-extras comparisons: on the CPU the process's CPU time (one
    torch thread: unaffected by other processes queueing for the cores of a shared machine),
    on accelerators wall time (after a sync)."""
    return time.process_time if dev.type == "cpu" else time.perf_counter


EXTRA_REPEATS = 7


def split_breakdown(spec, run_dir: Path) -> dict[str, float]:
    """Seconds of each evaluation pass of the checkpointed model (the 2nd call of each),
    the training split's pass also without the NC statistics, and `nc_share`: the fraction of
    the training split's pass that the NC statistics take; `extra_overhead`: the training
    split's pass with the extra NC measures over the pass without them, − 1 (alternating calls,
    best of EXTRA_REPEATS each)."""
    from ncbench.batches import make_batches
    from ncbench.checkpoint import checkpoint_path, load_checkpoint
    from ncbench.data import make_dataset
    from ncbench.losses import make_loss
    from ncbench.models import make_model
    from ncbench.precision import setup_training
    from ncbench.train import EVAL_BATCH_SIZE, evaluate, resolve_device

    dev = resolve_device(spec.device)
    ds = make_dataset(spec.dataset, root=spec.data_root, val_fraction=spec.val_fraction,
                      data_seed=spec.data_seed, **spec.dataset_params)
    model = make_model(spec.model, ds.num_classes, spec.width, input_shape=ds.input_shape).to(dev)
    setup = setup_training(model, dev, precision=spec.precision, channels_last=spec.channels_last)
    model.load_state_dict(load_checkpoint(checkpoint_path(run_dir), map_location=dev)["model"])
    loss_fn = make_loss(spec.loss, ds.num_classes).to(dev)
    bs = max(EVAL_BATCH_SIZE, spec.batch_size)
    out = {}

    def timed(batches, collapse: bool, extra: bool, now=time.perf_counter) -> float:
        sync(dev)
        t0 = now()
        evaluate(model, loss_fn, batches, ds.num_classes, collapse=collapse, extra=extra)
        sync(dev)
        return now() - t0

    for key, split, collapse in (("train", "train", True), ("test", "test", True),
                                 ("val", "val", False), ("train_no_nc", "train", False)):
        if len(ds.split(split)) == 0:
            continue
        batches = make_batches(ds, split, bs, dev, train=False, channels_last=setup.channels_last)
        # the shapes were autotuned by the run's evaluations already (same process)
        out[key] = min([timed(batches, collapse, True) for _ in range(2)][1:])
    # with and without the extra measures: alternating calls (a busy machine slows both
    # alike), best of `EXTRA_REPEATS` each
    batches = make_batches(ds, "train", bs, dev, train=False, channels_last=setup.channels_last)
    now = clock(dev)
    runs: dict[bool, list[float]] = {False: [], True: []}
    for i in range(EXTRA_REPEATS):  # alternating, in both orders
        for extra in ((False, True) if i % 2 == 0 else (True, False)):
            runs[extra].append(timed(batches, True, extra, now))
    out["train_no_extra"], out["train_extra"] = min(runs[False]), min(runs[True])
    if "train_no_nc" in out:  # what the NC statistics add to the training split's pass
        out["nc_share"] = max(0.0, out["train"] - out["train_no_nc"]) / out["train"]
    if "train_no_extra" in out:  # what the extra measures add to it (ratio − 1)
        out["extra_overhead"] = out["train_extra"] / out["train_no_extra"] - 1.0
    return out


def nc_extra_cost(n: int, d: int, k: int, dev: torch.device, repeats: int = 8) -> dict:
    """Seconds of the NC statistics alone (update over batches of 512 + compute) on random
    float32 features [n, d], K = k classes, with and without the extra measures: best of
    `repeats`, alternating, for both of `evaluate`'s modes (features kept; two passes); CPU
    seconds on the CPU (`clock`)."""
    from ncbench.nc import CollapseStats

    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, k, (n,), generator=gen)
    y[:k] = torch.arange(k)
    centres = 3 * torch.randn(k, d, generator=gen)
    h = (centres[y] + torch.randn(n, d, generator=gen)).to(dev)
    y = y.to(dev)
    w = (centres + torch.randn(k, d, generator=gen)).to(dev)
    b = torch.zeros(k, device=dev)
    logits = h @ w.T
    parts = [(h[i:i + 512], y[i:i + 512], logits[i:i + 512]) for i in range(0, n, 512)]

    now = clock(dev)

    def once(keep: bool, extra: bool) -> float:
        sync(dev)
        t0 = now()
        stats = CollapseStats(k, d, device=dev, keep_features=keep, extra=extra)
        for hb, yb, lb in parts:
            stats.update(hb, yb, lb)
        if stats.needs_second_pass:
            for hb, yb, lb in parts:
                stats.update_nc4(hb, yb, lb)
        stats.compute(w, b)
        sync(dev)
        return now() - t0

    out = {"n": n, "d": d, "k": k}
    for keep, mode in ((True, "kept"), (False, "two_pass")):
        once(keep, True)  # warm-up
        base, extra = [], []
        for i in range(repeats):  # alternating, in both orders
            for with_extra in ((False, True) if i % 2 == 0 else (True, False)):
                (extra if with_extra else base).append(once(keep, with_extra))
        out[mode] = {"without": min(base), "with": min(extra), "overhead": min(extra) / min(base) - 1}
    return out


def bench(model: str, width: float, dataset: str, args, data_root: str | None) -> dict:
    from ncbench.runs import RunSpec
    from ncbench.train import ListSink, train_run

    params = {"verify": False} if dataset == "cifar10" else {}
    spec = RunSpec(experiment="eval_cost", dataset=dataset, model=model, loss="ce", width=width,
                   epochs=args.epochs, seed=0, eval_every=1, batch_size=args.batch,
                   device=args.device, precision=args.precision, compile=args.compile,
                   data_root=data_root, dataset_params=params)
    sink = ListSink()
    with tempfile.TemporaryDirectory(prefix="ncbench-evalcost-") as tmp:
        t0 = time.perf_counter()
        status = train_run(spec, sink, run_dir=tmp)
        total = time.perf_counter() - t0
        if status != "done":
            raise SystemExit(f"{model}-{width:g}: the run ended {status}")
        parts = split_breakdown(spec, Path(tmp))
    trained = [m for epoch, m in sink.evals if epoch >= 1]  # not the epoch-0 evaluation
    ep = [m["epoch_seconds"] for m in trained]
    ev = [m["eval_seconds"] for m in trained]
    started = sink.started[0]
    return {"model": model, "width": width, "dataset": dataset, "batch": args.batch,
            "precision": started.get("precision"), "channels_last": started.get("channels_last"),
            "compile": started.get("compile"),
            "epoch_seconds": ep, "eval_seconds": ev, "fraction": ev[-1] / ep[-1],
            "fractions": [e / t for e, t in zip(ev, ep)], "parts": parts, "run_seconds": total,
            "train_acc": sink.metric("train_acc")[-1], "nc1": sink.metric("nc1")[-1]}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default=None,
                    help="comma list of model:width[:dataset] (cpu default: mlp:1:digits,"
                         "resnet18:0.25:cifar10; cuda: wrn50:0.25:cifar10,wrn50:2:cifar10)")
    ap.add_argument("--n-train", type=int, default=None,
                    help="fixture training images (cpu 1000, cuda 50000; 10 %% become val)")
    ap.add_argument("--n-test", type=int, default=None, help="fixture test images (cpu 200, cuda 10000)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="bf16", help="training precision (fp32 on cpu)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: $NCBENCH_THREADS, else 1 on cpu)")
    ap.add_argument("--json", default="")
    ap.add_argument("--write-fixture", default="", metavar="DIR",
                    help="only write the CIFAR-10-format fixture into DIR and exit")
    ap.add_argument("--nc-only", action="store_true",
                    help="only time the NC statistics with and without the extra measures")
    ap.add_argument("--nc-sizes", default="45000:512:10,45000:512:100", help="N:d:K list for --nc-only")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.n_train = args.n_train or (50_000 if cuda else 1000)
    args.n_test = args.n_test or (10_000 if cuda else 200)
    if args.write_fixture:
        folder = write_cifar10_fixture(args.write_fixture, args.n_train, args.n_test)
        print(f"wrote {folder} ({args.n_train} train, {args.n_test} test images)")
        return []
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    threads = args.threads or int(os.environ.get("NCBENCH_THREADS") or 0)
    if threads or not cuda:
        os.environ["NCBENCH_THREADS"] = str(threads or 1)  # train_run applies it
        torch.set_num_threads(threads or 1)
    if args.nc_only:
        dev = torch.device(args.device)
        print(f"NC statistics alone, {torch.get_num_threads()} torch thread(s), {dev}"
              + (" (CPU seconds)" if dev.type == "cpu" else ""))
        print(f"{'N':>6s} {'d':>5s} {'K':>4s}  mode      without s  with s  extra overhead")
        rows = []
        for item in args.nc_sizes.split(","):
            n, d, k = (int(v) for v in item.split(":"))
            r = nc_extra_cost(n, d, k, dev)
            rows.append(r)
            for mode in ("kept", "two_pass"):
                m = r[mode]
                print(f"{n:6d} {d:5d} {k:4d}  {mode:8s} {m['without']:9.3f} {m['with']:7.3f}  "
                      f"{m['overhead']:+.1%}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"nc_only": rows}, indent=1))
        return rows
    models = args.models or ("wrn50:0.25:cifar10,wrn50:2:cifar10" if cuda
                             else "mlp:1:digits,resnet18:0.25:cifar10")
    from train_throughput import environment

    print(f"eval_cost · {environment(torch.device('cuda' if cuda else 'cpu'))}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ncbench-fixture-") as root:
        wrote = False
        for item in models.split(","):
            name, width, dataset = (item.split(":") + ["1", "cifar10"])[:3]
            if dataset == "cifar10" and not wrote:
                write_cifar10_fixture(root, args.n_train, args.n_test)
                wrote = True
            r = bench(name, float(width), dataset, args, root if dataset == "cifar10" else None)
            rows.append(r)
            print(f"  {name}-{float(width):g} on {dataset}: run {r['run_seconds']:.1f} s, "
                  f"epochs {', '.join(f'{s:.2f}' for s in r['epoch_seconds'])} s, evals "
                  f"{', '.join(f'{s:.2f}' for s in r['eval_seconds'])} s", flush=True)
    print(f"{'model':14s} {'data':8s} {'prec':5s} {'epoch s':>8s} {'eval s':>8s} {'eval/epoch':>10s} "
          f"{'@every 5':>8s}   eval passes (s): train / test / val · NC share of train pass · "
          f"extra measures' overhead on it")
    for r in rows:
        p = r["parts"]
        parts = " / ".join(f"{p[k]:.2f}" if k in p else "—" for k in ("train", "test", "val"))
        print(f"{r['model'] + '-' + format(r['width'], 'g'):14s} {r['dataset']:8s} {r['precision']:5s} "
              f"{r['epoch_seconds'][-1]:8.2f} {r['eval_seconds'][-1]:8.2f} {r['fraction']:10.2f} "
              f"{r['fraction'] / 5:8.2f}   {parts} · {p.get('nc_share', float('nan')):.0%} · "
              f"{p.get('extra_overhead', float('nan')):+.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1, default=str))
    return rows


if __name__ == "__main__":
    main()
