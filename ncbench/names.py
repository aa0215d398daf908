"""The built-in names a config may use: losses, models, datasets, precisions, executors.

The one declaration of each list. `ncbench.registry.Registry` is given its list
(`Registry("loss", declared=names.LOSSES)`) and refuses to register a name that is not declared
here, so adding a loss/model/dataset means adding its name here first; `ncbench.config` checks
experiments.toml against the same lists without importing torch. A name outside these lists is
accepted only as `"package.module:callable"` (`ncbench.registry.is_import_path`).

This module imports nothing from ncbench (it sits at the bottom of the import graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["LOSSES", "MODELS", "DATASETS", "BUILTIN", "PRECISIONS", "EXECUTORS"]

#: Losses of `ncbench.losses` (cross-entropy, focal, label smoothing, rescaled MSE).
LOSSES: tuple[str, ...] = ("ce", "fl", "ls", "mse")
#: Models of `ncbench.models`.
MODELS: tuple[str, ...] = ("cnn1d", "mlp", "resnet18", "wrn18", "wrn50",
                           # torchvision's, by ncbench.models_tv
                           "densenet121", "resnet34", "resnet50", "vgg11_bn", "vgg13_bn")
#: Datasets of `ncbench.data`.
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "digits", "gaussian", "miniimagenet", "mnist1d",
                              "mnist", "fashionmnist", "svhn", "stl10", "imagefolder")

#: The registry kind (also the experiments.toml key) -> its declared names.
BUILTIN: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"loss": LOSSES, "model": MODELS, "dataset": DATASETS})

#: Values of the `precision` key (`ncbench.precision` implements them).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: Executors of `ncbench.executors` (`[executor.<name>]` tables, `--executor`).
EXECUTORS: tuple[str, ...] = ("local", "slurm")
