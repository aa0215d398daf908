"""The CIFAR-10 / CIFAR-100 dataset families, read (and downloaded) by torchvision's loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ncbench.errors import DatasetNotFoundError
from ncbench.data.base import DATASETS, RawDataset, Split


def _unverified(cls):
    """A subclass of a torchvision CIFAR class whose file checks test presence, not md5."""
    return type(cls.__name__ + "Unverified", (cls,), {
        "train_list": [[f, None] for f, _ in cls.train_list],
        "test_list": [[f, None] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _cifar(name: str, tv_name: str, root: Path, download: bool, verify: bool) -> RawDataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_name)
    folder = root / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and not download:
        raise DatasetNotFoundError(
            f"dataset '{name}' not found: expected the python-format batches in {folder} "
            f"(missing: {', '.join(missing)}). Set download = true (ncbench fetches "
            f"{cls.filename} from {cls.url}) or extract {cls.filename} into {root}."
        )
    loader = cls if verify else _unverified(cls)
    try:
        tr = loader(str(root), train=True, download=download)
        te = loader(str(root), train=False, download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFoundError(
            f"dataset '{name}' in {folder} failed torchvision's md5 integrity check ({exc}). "
            f"Delete the folder and set download = true, or pass verify=False to load "
            f"the files as they are."
        ) from None
    except OSError as exc:  # network failure during download
        raise DatasetNotFoundError(
            f"dataset '{name}': download of {cls.url} failed ({exc}); place {cls.filename} "
            f"extracted in {root} instead."
        ) from None

    def split(d) -> Split:
        x = torch.from_numpy(np.ascontiguousarray(d.data)).permute(0, 3, 1, 2).contiguous()
        return Split(x, torch.as_tensor(d.targets, dtype=torch.int64))

    return RawDataset(name, split(tr), split(te), len(tr.classes), list(tr.classes), augment=True,
                      crop_padding=4, hflip=True, info={"path": str(folder), "verified": bool(verify)})


@DATASETS.register("cifar10")
def cifar10(root: Path, download: bool = False, *, verify: bool = True) -> RawDataset:
    """CIFAR-10 via `torchvision.datasets.CIFAR10` (`root/cifar-10-batches-py/`), uint8 `[N, 3, 32, 32]`.

    `verify=True` (default) keeps torchvision's md5 check of every batch file; `verify=False`
    reads the same files with torchvision's reader, checking only that they exist.
    """
    return _cifar("cifar10", "CIFAR10", root, download, verify)


@DATASETS.register("cifar100")
def cifar100(root: Path, download: bool = False, *, verify: bool = True) -> RawDataset:
    """CIFAR-100 (fine labels) via `torchvision.datasets.CIFAR100` (`root/cifar-100-python/`)."""
    return _cifar("cifar100", "CIFAR100", root, download, verify)
