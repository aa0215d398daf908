"""Datasets, reachable by name: `make_dataset("cifar10", root="data", download=True)`.

The package's public face: `from ncbench.data import make_dataset`. Importing it imports every
dataset family, so the registry `DATASETS` is full. Its modules, one job each:

* `ncbench.data.base`         — the contract: `DATASETS`, `make_dataset`, `Split`,
  `SplitDataset`, `RawDataset`, `finalize`, `check_keywords`, `default_root`, and the split /
  representation conventions (its docstring).
* `ncbench.data.splits`       — `stratified_split`, `balanced_subset`, `channel_stats`.
* `ncbench.data.small`        — `digits`, `gaussian` (offline).
* `ncbench.data.cifar`        — `cifar10`, `cifar100` (torchvision).
* `ncbench.data.miniimagenet` — `miniimagenet` (local pickles or image folders).
* `ncbench.data.tvsets`       — `mnist`, `fashionmnist`, `svhn`, `stl10` (torchvision).
* `ncbench.data.imagefolder`  — `imagefolder` (a user's folder-per-class images).
* `ncbench.data.mnist1d`      — `mnist1d` (generated offline by the `mnist1d` package, cached).

Adding a dataset = one new family module that imports from `base` (and `splits`), never from
this package, registers its factory with `@DATASETS.register(name)` (the name declared in
`ncbench.names.DATASETS`), and is imported below.
"""

from __future__ import annotations

from ncbench.data.base import (DATASETS, TEST_SPLIT_SEED, DatasetFactory, RawDataset, Split,
                               SplitDataset, check_keywords, dataset_names, default_root,
                               finalize, make_dataset)
from ncbench.data.splits import balanced_subset, channel_stats, stratified_split

# The families: importing them registers their datasets.
from ncbench.data import cifar, imagefolder, miniimagenet, mnist1d, small, tvsets  # noqa: F401

__all__ = [
    "DATASETS", "TEST_SPLIT_SEED", "DatasetFactory", "RawDataset", "Split", "SplitDataset",
    "check_keywords", "dataset_names", "default_root", "finalize", "make_dataset",
    "balanced_subset", "channel_stats", "stratified_split",
]
