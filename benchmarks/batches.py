"""Device-resident batches vs the torchvision DataLoader pipeline (same augmentation).

Times one epoch of CIFAR-10-sized training batches (random uint8 data, 3×32×32, batch 128,
RandomCrop(32, padding=4) — or `--size 84 --pad 8` for miniImageNet — + RandomHorizontalFlip + ToTensor + Normalize) delivered on the device:

- baseline: `torch.utils.data.DataLoader` over PIL images with torchvision transforms,
  `--workers` workers, pinned memory, non-blocking copies (the usual recipe);
- `DeviceBatches` (ncbench.batches): data on the device, crop/flip/normalise there;
- `make_loader` (ncbench's fallback): workers crop uint8 tensors, device normalises.

Prints images/s and the ratio against the baseline measured in the same run. Optionally
(`--model`) times a training step of a model so the data time can be compared with it.

    python benchmarks/batches.py --device cuda --n 50000 --workers 8 --model wrn50 --width 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ncbench.batches import DeviceBatches, make_loader  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.t = x_hwc, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.t(Image.fromarray(self.x[i])), int(self.y[i])


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_epoch(batches, dev: torch.device, max_batches: int | None) -> tuple[float, int]:
    """Seconds and images for one pass (the batches are touched on the device)."""
    sync(dev)
    t0 = time.perf_counter()
    n = 0
    acc = torch.zeros((), device=dev)
    for i, (xb, yb) in enumerate(batches):
        xb = xb.to(dev, non_blocking=True)
        acc += xb[:, 0, 0, 0].sum()  # consume the batch on the device
        n += xb.shape[0]
        if max_batches and i + 1 >= max_batches:
            break
    sync(dev)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32, help="image side (84 for miniImageNet)")
    ap.add_argument("--pad", type=int, default=4, help="crop padding (8 for miniImageNet)")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--max-batches", type=int, default=0, help="stop each pass after this many (0 = epoch)")
    ap.add_argument("--model", default="", help="also time a training step of this model")
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()
    dev = torch.device(args.device)
    import torchvision.transforms as T

    rng = np.random.default_rng(0)
    x_hwc = rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, args.n)
    x = torch.from_numpy(x_hwc).permute(0, 3, 1, 2).contiguous()
    yt = torch.from_numpy(y)
    mb = args.max_batches or None

    tf = T.Compose([T.RandomCrop(args.size, padding=args.pad), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    base = torch.utils.data.DataLoader(PILDataset(x_hwc, y, tf), batch_size=args.batch, shuffle=True,
                                       num_workers=args.workers, pin_memory=dev.type == "cuda",
                                       persistent_workers=args.workers > 0)
    kw = dict(augment=True, pad=args.pad, mean=torch.tensor(MEAN), std=torch.tensor(STD), seed=0)
    dbat = DeviceBatches(x, yt, args.batch, device=dev, **kw)
    dbat_cl = DeviceBatches(x, yt, args.batch, device=dev, channels_last=True, **kw)
    ldr = make_loader(x, yt, args.batch, device=dev, num_workers=args.workers, **kw)

    rows = []
    for name, it in (("torchvision DataLoader (baseline)", base), ("ncbench DeviceBatches", dbat),
                     ("ncbench DeviceBatches channels_last", dbat_cl), ("ncbench make_loader fallback", ldr)):
        time_epoch(it, dev, 5)  # warm-up (worker start, kernels)
        secs, n = time_epoch(it, dev, mb)
        rows.append((name, n / secs, secs))
    base_rate = rows[0][1]
    print(f"device={dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
          f"N={args.n}, {args.size}px pad {args.pad}, batch={args.batch}, workers={args.workers}, torch {torch.__version__}")
    print(f"{'pipeline':40s} {'images/s':>12s} {'s/epoch':>9s} {'× baseline':>11s}")
    for name, rate, secs in rows:
        print(f"{name:40s} {rate:12,.0f} {secs:9.3f} {rate / base_rate:11.1f}")

    if args.model:
        from ncbench.models import make_model

        model = make_model(args.model, 10, args.width, input_shape=(3, args.size, args.size)).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for cl in (False, True):
            m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            it = DeviceBatches(x, yt, args.batch, device=dev, channels_last=cl, **kw)
            steps, t_steps = 0, 0.0
            for i, (xb, yb) in enumerate(it):
                if i == 5:
                    sync(dev)
                    t0 = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(m(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if i >= 5:
                    steps += 1
                if i == 25:
                    break
            sync(dev)
            t_steps = (time.perf_counter() - t0) / steps
            data_ms = 1000 * args.batch / rows[2 if cl else 1][1]
            print(f"{args.model}-{args.width:g} train step (fp32, channels_last={cl}): {1000 * t_steps:.1f} ms "
                  f"incl. data; device batches cost ≈ {data_ms:.2f} ms/batch, the DataLoader "
                  f"baseline ≈ {1000 * args.batch / base_rate:.2f} ms/batch")


if __name__ == "__main__":
    main()
