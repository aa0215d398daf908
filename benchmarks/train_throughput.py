"""Training throughput: ncbench's training loop vs a reference-style loop, same model and batch.

- reference (the paper code's style): `torch.utils.data.DataLoader` over PIL images with
  torchvision transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize),
  `--workers` workers, pinned memory on CUDA; fp32, NCHW; per step: forward, cross-entropy,
  backward, gradient-norm clip at 2, SGD (momentum 0.9, weight decay 5e-4), and the usual
  running `loss.item()` / accuracy `.item()` bookkeeping (two host syncs per step);
- ncbench: `ncbench.batches.DeviceBatches` (data on the device, crop/flip/normalise there),
  `ncbench.precision.setup_training` (autocast bf16 on CUDA, channels_last for convnets on CUDA,
  optional torch.compile) and `ncbench.train.train_epoch` (the real loop: no host sync per step).

Same synthetic CIFAR-shaped data (uint8 3×32×32, 10 classes), same initial weights, same
optimiser. Each variant is timed over `--steps` steps after `--warmup` steps (worker start-up,
cuDNN autotuning and compilation excluded, which favours the reference); variants alternate for
`--rounds` rounds and the median images/s is reported with its ratio to the reference measured in
the same run. cuDNN autotuning (`cudnn.benchmark`) is on for every variant, the reference too.

    python benchmarks/train_throughput.py                       # CPU: resnet18-0.25, mlp-1 (< 2 min)
    python benchmarks/train_throughput.py --threads 2           # CPU with 2 torch threads
    python benchmarks/train_throughput.py --device cuda         # wrn50 at widths 0.25 and 2
    python benchmarks/train_throughput.py --device cuda --compile --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ncbench.batches import DeviceBatches  # noqa: E402
from ncbench.models import make_model  # noqa: E402
from ncbench.precision import setup_training  # noqa: E402
from ncbench.train import train_epoch  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
K = 10
GRAD_CLIP = 2.0
#: upper bound of the calibrated number of timed steps per round (cpu)
MAX_CALIBRATED_STEPS = 100


def environment(dev: torch.device) -> str:
    """One line: device name, date, torch/torchvision versions, CPU threads."""
    import torchvision

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
    if dev.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return (f"{dt.date.today().isoformat()} · {dev.type}: {name} · {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads · torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class PILDataset(torch.utils.data.Dataset):
    """HWC uint8 images as PIL images through torchvision transforms (the reference pipeline)."""

    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.t = x_hwc, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.t(Image.fromarray(self.x[i])), int(self.y[i])


def forever(batches) -> Iterator:
    """The batches of epoch after epoch."""
    while True:
        yield from batches


class Take:
    """`n` batches from a shared iterator, as a sized iterable (what train_epoch expects)."""

    def __init__(self, it: Iterator, n: int):
        self.it, self.n = it, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield next(self.it)


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x_hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, K, n)
    return x_hwc, y


def new_model(name: str, width: float, dev: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return make_model(name, K, width, input_shape=(3, 32, 32)).to(dev)


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


class Reference:
    """The reference-style loop: DataLoader + PIL transforms, fp32, NCHW, `.item()` per step."""

    label = "reference: DataLoader+PIL, fp32"

    def __init__(self, model_name, width, dev, x_hwc, y, batch, workers):
        import torchvision.transforms as T

        self.dev = dev
        self.model = new_model(model_name, width, dev)
        self.opt = sgd(self.model)
        tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize(MEAN, STD)])
        loader = torch.utils.data.DataLoader(
            PILDataset(x_hwc, y, tf), batch_size=batch, shuffle=True, num_workers=workers,
            pin_memory=dev.type == "cuda", persistent_workers=workers > 0, drop_last=True)
        self.it = forever(loader)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def steps(self, n: int) -> None:
        model, opt, dev = self.model, self.opt, self.dev
        model.train()
        running, correct = 0.0, 0
        for _ in range(n):
            x, y = next(self.it)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            out = model(x)
            loss = self.loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            opt.step()
            running += loss.item()
            correct += (out.argmax(1) == y).sum().item()


class Ncbench:
    """ncbench's loop: DeviceBatches + setup_training + train_epoch."""

    def __init__(self, model_name, width, dev, x_hwc, y, batch, *, precision="bf16",
                 channels_last=True, compile=False):
        self.dev = dev
        self.model = new_model(model_name, width, dev)
        self.setup = setup_training(self.model, dev, precision=precision,
                                    channels_last=channels_last, compile=compile)
        s = self.setup
        bits = [s.precision.precision, "channels_last" if s.channels_last else "NCHW"]
        if s.compile:
            bits.append("compile")
        self.label = "ncbench: device data, " + ", ".join(bits)
        self.opt = sgd(self.model)
        x = torch.from_numpy(x_hwc).permute(0, 3, 1, 2).contiguous()
        batches = DeviceBatches(x, torch.from_numpy(y), batch, shuffle=True, augment=True,
                                mean=torch.tensor(MEAN), std=torch.tensor(STD), device=dev, pad=4,
                                drop_last=True, channels_last=s.channels_last)
        self.it = forever(batches)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def steps(self, n: int) -> None:
        r = train_epoch(self.setup.train_model, self.loss_fn, self.opt, Take(self.it, n),
                        grad_clip=GRAD_CLIP, autocast=self.setup.precision.autocast,
                        scaler=self.setup.scaler)
        float(r["loss_sum"])  # one host sync per measured block, as train_run does per epoch


def measure(runner, steps: int, batch: int, dev: torch.device) -> float:
    sync(dev)
    t0 = time.perf_counter()
    runner.steps(steps)
    sync(dev)
    return steps * batch / (time.perf_counter() - t0)


def bench_model(model_name: str, width: float, dev: torch.device, args, variants) -> list[dict]:
    # enough images that no runner crosses an epoch boundary (the reference's DataLoader would
    # restart its prefetching there, once per few dozen steps instead of once per epoch)
    max_steps = args.steps or MAX_CALIBRATED_STEPS
    n = max(args.n, (args.warmup + 2 + max_steps * args.rounds + 1) * args.batch)
    x_hwc, y = make_data(n)
    runners = [Reference(model_name, width, dev, x_hwc, y, args.batch, args.workers)]
    for kw in variants:
        runners.append(Ncbench(model_name, width, dev, x_hwc, y, args.batch, **kw))
    t_warm = time.perf_counter()
    for r in runners:
        r.steps(args.warmup)
        sync(dev)
    warm_s = time.perf_counter() - t_warm
    steps = args.steps
    if not steps:  # calibrate: about args.seconds per round of the reference
        per_step = args.batch / measure(runners[0], 2, args.batch, dev)
        steps = max(4, min(MAX_CALIBRATED_STEPS, round(args.seconds / per_step)))
    rates: list[list[float]] = [[] for _ in runners]
    for _ in range(args.rounds):
        for i, r in enumerate(runners):
            rates[i].append(measure(r, steps, args.batch, dev))
    base = statistics.median(rates[0])
    rows = []
    for r, rs in zip(runners, rates):
        med = statistics.median(rs)
        rows.append({"model": model_name, "width": width, "batch": args.batch, "steps": steps,
                     "variant": r.label,
                     "images_per_s": med, "ratio": med / base, "rounds": [round(v, 1) for v in rs],
                     "compile_failed": getattr(getattr(r, "setup", None), "compile_failed", None)})
    for r in runners:  # free device memory before the next model
        del r.model
    del runners
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    print(f"  ({model_name}-{width:g}: warm-up {warm_s:.1f} s, {steps} timed steps per round)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--models", default=None,
                    help="comma list of model:width (default cpu: resnet18:0.25,mlp:1; "
                         "cuda: wrn50:0.25,wrn50:2)")
    ap.add_argument("--batch", type=int, default=None, help="default 32 on cpu, 128 on cuda")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per round (cuda 50; cpu: calibrated to --seconds)")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="cpu: target seconds of the reference per round when --steps is not given")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (cpu 2, cuda 15)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (cpu 3, cuda 2)")
    ap.add_argument("--n", type=int, default=0, help="images in the synthetic set (default: just enough)")
    ap.add_argument("--workers", type=int, default=None,
                    help="reference DataLoader workers (cpu: min(2, cores), cuda: min(8, cores))")
    ap.add_argument("--precision", default="bf16", help="ncbench's precision (bf16; fp32 on cpu)")
    ap.add_argument("--compile", action="store_true", help="also time ncbench with torch.compile")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: $NCBENCH_THREADS, else 1 on cpu — on a "
                         "shared, busy machine more threads than free cores is many times slower)")
    ap.add_argument("--json", default="", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    threads = args.threads or int(os.environ.get("NCBENCH_THREADS") or 0)
    if threads or args.device == "cpu":
        torch.set_num_threads(threads or 1)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    cores = os.cpu_count() or 1
    args.batch = args.batch or (128 if cuda else 32)
    args.steps = args.steps or (50 if cuda else 0)
    args.warmup = args.warmup if args.warmup is not None else (15 if cuda else 2)
    args.rounds = args.rounds or (2 if cuda else 3)
    args.workers = args.workers if args.workers is not None else min(8 if cuda else 2, cores)
    models = args.models or ("wrn50:0.25,wrn50:2" if cuda else "resnet18:0.25,mlp:1")
    torch.backends.cudnn.benchmark = True

    variants: list[dict] = []
    if cuda:
        variants.append(dict(precision="fp32", channels_last=True))
    variants.append(dict(precision=args.precision, channels_last=True))
    if args.compile:
        variants.append(dict(precision=args.precision, channels_last=True, compile=True))

    print(f"train_throughput · {environment(dev)}")
    steps = args.steps or f"~{args.seconds:g} s of"
    print(f"batch {args.batch}, {steps} timed steps × {args.rounds} rounds after {args.warmup} "
          f"warm-up steps, reference DataLoader workers = {args.workers}", flush=True)
    rows: list[dict] = []
    for item in models.split(","):
        name, _, width = item.partition(":")
        rows += bench_model(name, float(width or 1), dev, args, variants)

    print(f"{'model':14s} {'variant':52s} {'images/s':>10s} {'× ref':>7s}")
    for r in rows:
        model = f"{r['model']}-{r['width']:g}"
        print(f"{model:14s} {r['variant']:52s} {r['images_per_s']:10,.1f} {r['ratio']:7.2f}")
        if r["compile_failed"]:
            print(f"{'':14s}   (compile fell back to eager: {r['compile_failed']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": environment(dev), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
