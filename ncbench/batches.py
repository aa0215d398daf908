"""Batches on the device: the data lives on the GPU, augmentation and normalisation run there.

`DeviceBatches` holds a whole split on the device (uint8 images stay uint8: CIFAR-10's training
set is 150 MB) and yields `(x, y)` batches: `x` float32 `[B, *input_shape]` normalised,
`y` int64 `[B]` (`input_shape` (C, H, W), (C, L) or (D,): mean/std per channel, or per feature
for vectors). Per batch, vectorised over the batch (no Python loop over samples):
gather by index → random crop with zero padding (offsets uniform in [0, 2·pad]) and horizontal
flip (p = 0.5) as one gather → /255 for uint8 → (x − mean)/std. This is exactly
`RandomCrop(H, padding=pad)` + `RandomHorizontalFlip()` + `ToTensor()` + `Normalize(mean, std)`
(padding is applied to the raw pixels, so padded pixels become (0 − mean)/std).

Randomness: the epoch's plan (permutation, crop offsets, flips) is drawn on the CPU by a
`torch.Generator` seeded from (seed, epoch) alone, then moved to the device. So batches are the
same on every device, epochs reshuffle, and resuming needs only `(seed, epoch)`:
`DeviceBatches(..., seed=s, epoch=e)` continues exactly as the original did at epoch e. Each
iteration advances `epoch` by one when it starts (`set_epoch` sets it).

`make_loader` is the fallback for data too large for device memory: a `torch.utils.data.DataLoader`
whose workers do the crop/flip on uint8 tensors from the same per-epoch plan (identical batches),
with normalisation on the device. `make_batches(ds, split, ...)` picks one: device-resident when
the split needs at most `max_device_bytes` (default `DEFAULT_MAX_DEVICE_BYTES`, 4 GiB, and at
most half the device's free memory on CUDA).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

#: default largest split (bytes as stored) kept on the device by `make_batches`.
DEFAULT_MAX_DEVICE_BYTES = 4 * 1024**3


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, epoch) (well mixed by SeedSequence)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, 0x6E63]).generate_state(2)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


@dataclass
class EpochPlan:
    """The random choices of one epoch (CPU tensors): `order` (int64 [N], sample at each
    position), `oy`, `ox` (int64 [N], crop offsets in [0, 2·pad] per position), `flip`
    (bool [N], per position)."""

    order: torch.Tensor
    oy: torch.Tensor
    ox: torch.Tensor
    flip: torch.Tensor


def epoch_plan(n: int, *, seed: int, epoch: int, shuffle: bool, pad: int, hflip: bool) -> EpochPlan:
    """Draw the plan of `epoch` for `n` samples (permutation, then offsets, then flips)."""
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    if pad > 0:
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    else:
        oy = ox = torch.zeros(n, dtype=torch.int64)
    flip = torch.rand(n, generator=g) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    return EpochPlan(order, oy, ox, flip)


def crop_flip(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor | None,
              pad: int) -> torch.Tensor:
    """Batch `x` `[B, C, H, W]` (any dtype) → crops `[B, C, H, W]` of the zero-padded images at
    offsets (oy, ox) ∈ [0, 2·pad]², mirrored left–right where `flip`; one gather, no loop.

    Output pixel (i, j) of sample b is padded[b, :, oy_b + i, ox_b + j'] with j' = W−1−j if
    flipped else j (flip after crop, as RandomCrop then RandomHorizontalFlip). The result has
    channels-last strides (a permuted view of a `[B, H, W, C]` gather).
    """
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = x.new_zeros((b, c, h + 2 * pad, w + 2 * pad))
        padded[:, :, pad:pad + h, pad:pad + w] = x
    else:
        padded = x
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy.to(dev).view(b, 1) + ar_h.view(1, h)                       # [B, H]
    cols_w = ar_w.view(1, w)
    if flip is not None:
        cols_w = torch.where(flip.to(dev).view(b, 1), (w - 1) - cols_w, cols_w)  # [B, W]
    cols = ox.to(dev).view(b, 1) + cols_w                                # [B, W]
    bidx = torch.arange(b, device=dev).view(b, 1, 1)
    out = padded[bidx, :, rows.view(b, h, 1), cols.view(b, 1, w)]       # [B, H, W, C]
    return out.permute(0, 3, 1, 2)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """float32 (x/255 if uint8 else x) − mean) / std, with mean/std `[C]` broadcast over dim 1."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    m = mean.to(x.device, torch.float32).view(shape)
    s = std.to(x.device, torch.float32).view(shape)
    if x.dtype == torch.uint8:
        xf = x.to(torch.float32).div_(255.0)
    else:
        xf = x.to(torch.float32, copy=True)
    xf = xf.sub_(m).div_(s)
    if x.dim() == 4:
        xf = xf.contiguous(memory_format=memory_format)
    return xf


class DeviceBatches:
    """Iterable of normalised `(x, y)` batches of a split held on `device`.

    Holds `x` (the split on the device, uint8 images or float data, `[N, *input_shape]`), `y`
    (int64 on the device), `batch_size`, `shuffle`, `augment`, `pad`, `hflip`, `mean`, `std`,
    `seed`, `epoch` (the epoch the next iteration draws; +1 when an iteration starts, so a loop
    `for epoch in ...: for xb, yb in batches:` walks epochs 0, 1, 2, …; call `set_epoch(e)` before
    iterating to pin it, e.g. when resuming at epoch e),
    `drop_last`, `channels_last`. `len()` is the number of batches per epoch.
    Crop applies only to 4-d (image) data with `pad > 0`; flip only to 4-d data.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = True,
                 augment: bool = False, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 device: str | torch.device = "cpu", seed: int = 0, epoch: int = 0, pad: int = 4,
                 hflip: bool = True, drop_last: bool = False, channels_last: bool = False):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device, torch.int64)
        c = x.shape[1] if x.dim() > 1 else 1
        self.mean = (torch.zeros(c) if mean is None else torch.as_tensor(mean, dtype=torch.float32)).to(self.device)
        self.std = (torch.ones(c) if std is None else torch.as_tensor(std, dtype=torch.float32)).to(self.device)
        for what, t in (("mean", self.mean), ("std", self.std)):
            if t.shape != (c,):
                raise ValueError(f"{what} must have one entry per channel ({c}), got shape {tuple(t.shape)}")
        if not bool((self.std > 0).all()):
            raise ValueError("std must be positive")
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        is_image = x.dim() == 4
        self.augment = bool(augment)
        self.pad = int(pad) if (augment and is_image) else 0
        self.hflip = bool(hflip and augment and is_image)
        self.seed, self.epoch = int(seed), int(epoch)
        self.channels_last = bool(channels_last)

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration draw epoch `epoch`'s plan (for resuming)."""
        self.epoch = int(epoch)

    def state(self) -> dict:
        """What resuming needs: {"seed", "epoch"}."""
        return {"seed": self.seed, "epoch": self.epoch}

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The plan of `epoch` (default: the next one) on the CPU."""
        return epoch_plan(self.num_samples, seed=self.seed, epoch=self.epoch if epoch is None else epoch,
                          shuffle=self.shuffle, pad=self.pad, hflip=self.hflip)

    def _format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = self.num_samples, self.batch_size
        needs_plan = self.shuffle or self.pad > 0 or self.hflip
        plan = self.plan() if needs_plan else None
        self.epoch += 1
        if plan is not None:
            order = plan.order.to(self.device, non_blocking=True)
            oy = plan.oy.to(self.device, non_blocking=True)
            ox = plan.ox.to(self.device, non_blocking=True)
            flip = plan.flip.to(self.device, non_blocking=True)
        stop = (n // bs) * bs if self.drop_last else n
        fmt = self._format()
        for start in range(0, stop, bs):
            end = min(start + bs, n)
            if plan is None:
                xb, yb = self.x[start:end], self.y[start:end]
            else:
                idx = order[start:end]
                xb, yb = self.x[idx], self.y[idx]
                if self.pad > 0 or self.hflip:
                    xb = crop_flip(xb, oy[start:end], ox[start:end],
                                   flip[start:end] if self.hflip else None, self.pad)
            yield normalize(xb, self.mean, self.std, memory_format=fmt), yb


def iterate_eval(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None, device: str | torch.device = "cpu",
                 channels_last: bool = False) -> DeviceBatches:
    """Evaluation batches: in order, no augmentation, every sample once (last batch may be short)."""
    return DeviceBatches(x, y, batch_size, shuffle=False, augment=False, mean=mean, std=std, device=device,
                         channels_last=channels_last)


# --------------------------------------------------------------------------------------------
# DataLoader fallback (data stays in host memory; workers crop/flip; device normalises)
# --------------------------------------------------------------------------------------------


class _PlannedCrops(Dataset):
    """Position p of the epoch → (uint8/float sample order[p] cropped/flipped per the plan, label)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, plan: EpochPlan, pad: int, hflip: bool):
        self.x, self.y, self.plan, self.pad, self.hflip = x, y, plan, pad, hflip

    def __len__(self) -> int:
        return int(self.plan.order.shape[0])

    def __getitem__(self, p: int):
        i = int(self.plan.order[p])
        xi = self.x[i]
        if self.pad > 0 or self.hflip:
            sl = slice(p, p + 1)
            xi = crop_flip(xi.unsqueeze(0), self.plan.oy[sl], self.plan.ox[sl],
                           self.plan.flip[sl] if self.hflip else None, self.pad)[0].contiguous()
        return xi, self.y[i]


class LoaderBatches:
    """Same contract and batches as `DeviceBatches`, but data stays on the host and a
    `DataLoader` with `num_workers` workers gathers/crops each epoch; the device normalises."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = True,
                 augment: bool = False, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 device: str | torch.device = "cpu", seed: int = 0, epoch: int = 0, pad: int = 4,
                 hflip: bool = True, drop_last: bool = False, channels_last: bool = False,
                 num_workers: int = 4):
        # Reuse DeviceBatches' argument handling, on the CPU (no copy of x: it is already there).
        self._spec = DeviceBatches(x.cpu(), y.cpu(), batch_size, shuffle=shuffle, augment=augment,
                                   mean=mean, std=std, device="cpu", seed=seed, epoch=epoch, pad=pad,
                                   hflip=hflip, drop_last=drop_last, channels_last=channels_last)
        self.device = torch.device(device)
        self.num_workers = int(num_workers)

    def __len__(self) -> int:
        return len(self._spec)

    def __getattr__(self, name):  # batch_size, epoch, seed, pad, ... come from the spec
        if name == "_spec":
            raise AttributeError(name)
        return getattr(self._spec, name)

    def set_epoch(self, epoch: int) -> None:
        self._spec.set_epoch(epoch)

    def state(self) -> dict:
        return self._spec.state()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        s = self._spec
        plan = s.plan()
        s.epoch += 1
        ds = _PlannedCrops(s.x, s.y, plan, s.pad, s.hflip)
        loader = DataLoader(ds, batch_size=s.batch_size, shuffle=False, drop_last=s.drop_last,
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=False)
        mean, std = s.mean.to(self.device), s.std.to(self.device)
        fmt = s._format()
        for xb, yb in loader:
            xb = xb.to(self.device, non_blocking=True)
            yield normalize(xb, mean, std, memory_format=fmt), yb.to(self.device, non_blocking=True)


def make_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, **kw) -> LoaderBatches:
    """DataLoader-backed batches (same arguments as `DeviceBatches`, plus `num_workers`)."""
    return LoaderBatches(x, y, batch_size, **kw)


def make_batches(ds, split: str, batch_size: int, device: str | torch.device = "cpu", *, train: bool,
                 seed: int = 0, epoch: int = 0, drop_last: bool = False, channels_last: bool = False,
                 max_device_bytes: int | None = None, num_workers: int = 4):
    """Batches of `ds.split(split)` (a `SplitDataset`) with its normalisation.

    `train=True`: shuffled, with the dataset's standard augmentation (`ds.augment`,
    `ds.crop_padding`, `ds.hflip`), reshuffled each epoch from (seed, epoch). `train=False`: in
    order, no augmentation. Device-resident (`DeviceBatches`) when the split's bytes fit
    `max_device_bytes` (default: 4 GiB, and ≤ half the free memory of a CUDA device), else the
    `make_loader` fallback. Device copies are made once per (split, device) and kept on `ds`, so
    the training and evaluation batches of one split share one copy.
    """
    data = ds.split(split)
    dev = torch.device(device)
    nbytes = data.x.numel() * data.x.element_size()
    limit = DEFAULT_MAX_DEVICE_BYTES if max_device_bytes is None else int(max_device_bytes)
    if dev.type == "cuda" and max_device_bytes is None:
        free, _ = torch.cuda.mem_get_info(dev)
        limit = min(limit, free // 2)
    kw = dict(shuffle=train, augment=train and ds.augment, mean=ds.mean, std=ds.std, device=dev,
              seed=seed, epoch=epoch, pad=ds.crop_padding, hflip=ds.hflip, drop_last=drop_last and train,
              channels_last=channels_last)
    if nbytes <= limit:
        # One device copy per (split, device), shared by the train and eval iterators of a run.
        copies = ds.__dict__.setdefault("_device_copies", {})
        key = (split, str(dev))
        if key not in copies:
            copies[key] = (data.x.to(dev), data.y.to(dev))
        x, y = copies[key]
        return DeviceBatches(x, y, batch_size, **kw)
    return make_loader(data.x, data.y, batch_size, num_workers=num_workers, **kw)
