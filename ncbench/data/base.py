"""The dataset contract: the name registry, `make_dataset`, and the in-memory split types.

A dataset is loaded whole into memory as tensors (`SplitDataset`), split three ways:
- `test`: the dataset's official test split (digits / miniImageNet have none: a fixed, seeded,
  stratified split that never depends on `data_seed`);
- `val`: a stratified holdout of `val_fraction` of the training split, chosen by `data_seed`
  (a seed independent of the training seed, so every training seed sees the same holdout);
- `train`: the rest.
If `per_class=n`, a balanced, seeded (by `data_seed`) subset of n examples per class is taken from
the training split *first*, and the validation holdout is then taken from those n per class
(so train + val hold n per class together).

Representation (`Split(x, y)`): `y` is int64 `[N]` in 0..K−1. `x` has the model's layout
`[N, *input_shape]`:
- images are `uint8 [N, C, H, W]` (the value/255 is the [0, 1] pixel, as `ToTensor` gives);
- 1-D signals are `float32 [N, C, L]` (channels, length; MNIST-1D: `[N, 1, 40]`);
- vector data and the digits are `float32` (already scaled; digits: pixel/16 in [0, 1]).
`mean`/`std` (float32 `[C]`, C = input_shape[0]: per channel for images and signals; for vectors
one entry per feature) are computed
on the delivered `train` split on the [0, 1] scale; `ncbench.batches` normalises with them,
x ↦ (x − mean)/std, on train, val and test alike. `augment`/`crop_padding`/`hflip` say what
training-time augmentation is standard for the dataset (random crop with zero padding
`crop_padding` + horizontal flip for CIFAR (4 px) and miniImageNet (8 px); none for digits and
gaussian; none for MNIST-1D either).

A dataset family registers a factory `f(root, download=False, *, options...) -> RawDataset`
(its official train/test data) with `@DATASETS.register(name)`; `make_dataset` checks the
options, calls it and `finalize`s the result (subset, holdout, statistics). This module never
imports the families (`ncbench.data` does).

Root: `root` argument, else env `NCBENCH_DATA`, else `./data`. Missing files with
`download=False` raise `DatasetNotFoundError` naming the expected path and the fix; bad arguments
(a fraction out of range, an option the dataset does not take) raise `ParameterError` naming the
key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ncbench.errors import ParameterError, did_you_mean
from ncbench import names
from ncbench.registry import Registry
from ncbench.data.splits import balanced_subset, channel_stats, stratified_split

DatasetFactory = Callable[..., "RawDataset"]
DATASETS: Registry[DatasetFactory] = Registry("dataset", declared=names.DATASETS)

#: seed of the fixed train/test splits of datasets without an official test split.
TEST_SPLIT_SEED = 0


@dataclass
class Split:
    """One split: `x` (`uint8 [N, C, H, W]` images or `float32 [N, *input_shape]`), `y` (int64 [N])."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """Examples per class, int64 `[num_classes]`."""
        return torch.bincount(self.y, minlength=num_classes)


@dataclass
class SplitDataset:
    """A dataset in memory, split into train / val / test, with its preprocessing conventions.

    Fields: `name`; `train`, `val`, `test` (`Split`); `num_classes` K; `input_shape` (one sample
    as the model sees it, (C, H, W), (C, L) or (D,)); `mean`, `std` (float32 `[input_shape[0]]`, on the
    [0, 1] scale, computed on `train`); `augment` (whether standard training augmentation
    applies); `crop_padding` (zero padding of the random crop, 0 = no crop); `hflip` (random
    horizontal flip); `classes` (class names, index = label); `info` (provenance: paths, seeds,
    split sizes).
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    mean: torch.Tensor
    std: torch.Tensor
    augment: bool = False
    crop_padding: int = 0
    hflip: bool = False
    classes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        """True for uint8 image data (`x / 255` is the pixel value)."""
        return self.train.x.dtype == torch.uint8

    def split(self, name: str) -> Split:
        """The split called `name` ("train", "val" or "test")."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
        return getattr(self, name)

    def to(self, device: str | torch.device) -> "SplitDataset":
        """A copy whose split tensors live on `device` (mean/std too); other fields shared.

        Move a dataset once and hand its splits to several `DeviceBatches` (train, eval):
        tensors already on the device are not copied again."""
        mv = lambda sp: Split(sp.x.to(device), sp.y.to(device))
        return replace(self, train=mv(self.train), val=mv(self.val), test=mv(self.test),
                       mean=self.mean.to(device), std=self.std.to(device))

    def __repr__(self) -> str:
        return (f"SplitDataset({self.name!r}, K={self.num_classes}, input_shape={self.input_shape}, "
                f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
                f"dtype={self.train.x.dtype}, augment={self.augment})")


def default_root() -> Path:
    """`$NCBENCH_DATA` if set, else `./data`."""
    return Path(os.environ.get("NCBENCH_DATA") or "data")


def dataset_names() -> list[str]:
    """The registered dataset names."""
    return DATASETS.names()


def make_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False,
                 val_fraction: float = 0.1, data_seed: int = 0, per_class: int | None = None,
                 **kw) -> SplitDataset:
    """Load dataset `name` and split it (the conventions: this module's docstring).

    `root`: data directory (default `default_root()`); `download`: fetch missing files where the
    dataset can be downloaded (CIFAR, MNIST, SVHN, STL-10, ...); `val_fraction`: stratified validation holdout of the
    training split, in [0, 1); `data_seed`: seed of the holdout and the `per_class` subset;
    `per_class`: balanced subset of n training examples per class, taken before the holdout.
    Extra keywords go to the dataset (e.g. `dim`, `separation` for `gaussian`; `verify` for CIFAR).
    """
    factory = DATASETS.get(name)
    if not (isinstance(val_fraction, (int, float)) and 0.0 <= float(val_fraction) < 1.0):
        raise ParameterError(f"val_fraction must be in [0, 1), got {val_fraction!r}", key="val_fraction")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ParameterError(f"per_class must be a positive integer, got {per_class!r}", key="per_class")
    check_keywords(factory, kw, f"dataset '{name}'", skip=("root", "download"))
    root_path = Path(root) if root is not None else default_root()
    raw = factory(root_path, download=download, **kw)
    if not isinstance(raw, RawDataset):
        raise ParameterError(f"'{name}' is not a dataset factory: it returned "
                             f"{type(raw).__name__}, not a ncbench.data.RawDataset", key="dataset")
    return finalize(raw, val_fraction=float(val_fraction), data_seed=int(data_seed), per_class=per_class)


def check_keywords(factory: Callable, kw: dict, what: str, skip: tuple[str, ...] = ()) -> None:
    """ParameterError naming the first keyword of `kw` that `factory` does not take (closest suggested)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if n not in skip and p.kind in
             (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for key in kw:
        if key not in known:
            raise ParameterError(f"{what} takes no option '{key}'" + did_you_mean(key, known)
                                 + (f"; its options: {', '.join(known)}" if known else ""), key=key)


@dataclass
class RawDataset:
    """What a dataset factory returns: official train/test data before holdout and statistics."""

    name: str
    train: Split
    test: Split
    num_classes: int
    classes: list[str]
    augment: bool = False
    crop_padding: int = 0
    hflip: bool = False
    info: dict = field(default_factory=dict)


def finalize(raw: RawDataset, *, val_fraction: float, data_seed: int,
             per_class: int | None) -> SplitDataset:
    """per_class subset → stratified val holdout → normalisation statistics on `train`."""
    train = raw.train
    info = dict(raw.info)
    if per_class is not None:
        idx = balanced_subset(train.y, per_class, raw.num_classes, seed=data_seed, dataset=raw.name)
        train = Split(train.x[idx], train.y[idx])
    tr_idx, va_idx = stratified_split(train.y, val_fraction, seed=data_seed)
    if len(tr_idx) == 0:
        given = (f"per_class = {per_class} with val_fraction = {val_fraction:g}" if per_class
                 else f"val_fraction = {val_fraction:g}")
        raise ParameterError(f"{given} leaves no training examples of dataset '{raw.name}' (the "
                             f"validation holdout takes all {len(train)} of them): lower "
                             "val_fraction" + (" or raise per_class" if per_class else ""),
                             key="val_fraction")
    val = Split(train.x[va_idx], train.y[va_idx])
    train = Split(train.x[tr_idx], train.y[tr_idx])
    mean, std = channel_stats(train.x)
    info.update(val_fraction=val_fraction, data_seed=data_seed, per_class=per_class,
                sizes={"train": len(train), "val": len(val), "test": len(raw.test)})
    return SplitDataset(
        name=raw.name, train=train, val=val, test=raw.test, num_classes=raw.num_classes,
        input_shape=tuple(int(s) for s in train.x.shape[1:]), mean=mean, std=std,
        augment=raw.augment, crop_padding=raw.crop_padding, hflip=raw.hflip,
        classes=list(raw.classes), info=info,
    )
