"""The MNIST, Fashion-MNIST, SVHN and STL-10 dataset families, read (and downloaded) by torchvision's classes.

Each factory checks for the files torchvision reads, raises `DatasetNotFoundError` naming the
folder, the missing files and the fix when they are absent and `download` is off, and otherwise
lets torchvision's own class download (md5-checking the archives), check and read them. The
images come out as uint8 `[N, C, H, W]`: MNIST-like data keeps its one grey channel (the conv
nets take `in_channels` from `input_shape`). Normalisation statistics are not set here:
`ncbench.data.base.finalize` computes them on the delivered training split, as for every dataset.

- `mnist`, `fashionmnist`: `root/MNIST/raw/`, `root/FashionMNIST/raw/` (the four gunzipped
  idx-ubyte files; torchvision checks md5 of the downloaded `.gz` archives only); no augmentation.
- `svhn`: `root/svhn/{train,test}_32x32.mat` (md5-checked on every load unless `verify=False`;
  label 10 is digit 0, as torchvision maps it); random crop with 4-px padding, no flip (digits).
- `stl10`: the labelled 5,000 / 8,000 images of `root/stl10_binary/` (`train_X.bin`,
  `train_y.bin`, `test_X.bin`, `test_y.bin`, md5-checked unless `verify=False`); the unlabelled
  part is neither read nor required. Random crop with 12-px padding + horizontal flip.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ncbench.errors import DatasetNotFoundError
from ncbench.data.base import DATASETS, RawDataset, Split

#: STL-10's class names, as its `class_names.txt` lists them (used if that file is absent).
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _one_line(exc: BaseException) -> str:
    """`exc`'s message on one line (torchvision's download errors span several)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _missing(folder: Path, files: list[str]) -> list[str]:
    return [f for f in files if not (folder / f).is_file()]


def _load(name: str, folder: Path, files: list[str], source: str, download: bool,
          build: Callable[[bool], tuple], *, verified: bool) -> tuple:
    """`build(download)` — torchvision's train and test objects — with ncbench's errors.

    Missing files with download off: DatasetNotFoundError naming `folder`, the missing files and
    the fix (`source` says what ncbench would fetch). Download failures name `source`; files
    failing torchvision's md5 check (`verified`) or unreadable ones name `folder`."""
    missing = _missing(folder, files)
    if missing and not download:
        raise DatasetNotFoundError(
            f"dataset '{name}' not found: expected {', '.join(files)} in {folder} (missing: "
            f"{', '.join(missing)}). Set download = true (ncbench fetches {source}) or place "
            f"the files there.")
    fetching = bool(missing) and download
    try:
        return build(fetching)
    except OSError as exc:  # the network (URLError, HTTPError) during the download
        if not fetching:
            raise DatasetNotFoundError(f"dataset '{name}': cannot read the files in {folder} "
                                       f"({_one_line(exc)})") from None
        raise DatasetNotFoundError(
            f"dataset '{name}': download of {source} failed ({_one_line(exc)}); place "
            f"{', '.join(missing)} in {folder} instead.") from None
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted", download errors
        text = _one_line(exc)
        corrupted = "corrupted" in text
        if fetching and _missing(folder, files):
            raise DatasetNotFoundError(
                f"dataset '{name}': download of {source} into {folder} failed ({text}"
                + ("; a downloaded file failed torchvision's md5 check" if corrupted else "")
                + f"); place {', '.join(missing)} there instead.") from None
        if corrupted:
            raise DatasetNotFoundError(
                f"dataset '{name}' in {folder} failed torchvision's md5 integrity check ({text}). "
                f"Delete the files and set download = true"
                + (", or pass verify=False to load the files as they are." if verified else ".")
            ) from None
        raise DatasetNotFoundError(f"dataset '{name}': cannot read the files in {folder} "
                                   f"({text})") from None
    except (AssertionError, ValueError, TypeError, IndexError, KeyError) as exc:
        # torchvision's readers on a malformed file: a failed assert, a reshape, a dtype
        raise DatasetNotFoundError(f"dataset '{name}': cannot read the files in {folder} "
                                   f"({_one_line(exc)}); delete them and download again") from None


def _split(name: str, folder: Path, x: np.ndarray | torch.Tensor, y, num_classes: int) -> Split:
    """Split(uint8 [N, C, H, W], int64 [N]) after checking that the counts and labels agree."""
    xt = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64) if not isinstance(y, torch.Tensor) else y,
                         dtype=torch.int64).reshape(-1)
    if xt.shape[0] != yt.shape[0]:
        raise DatasetNotFoundError(f"dataset '{name}' in {folder}: {xt.shape[0]} images but "
                                   f"{yt.shape[0]} labels")
    if yt.numel() and (int(yt.min()) < 0 or int(yt.max()) >= num_classes):
        raise DatasetNotFoundError(f"dataset '{name}' in {folder}: labels must lie in 0..{num_classes - 1}, "
                                   f"found {int(yt.min())}..{int(yt.max())}")
    return Split(xt.to(torch.uint8).contiguous(), yt)


def _mnist(name: str, tv_name: str, root: Path, download: bool) -> RawDataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_name)
    folder = root / tv_name / "raw"
    archives = [f for f, _ in cls.resources]
    files = [os.path.splitext(f)[0] for f in archives]
    source = f"{', '.join(archives)} from {cls.mirrors[0]}, md5-checked"

    def build(fetch: bool) -> tuple:
        return (cls(str(root), train=True, download=fetch), cls(str(root), train=False))

    tr, te = _load(name, folder, files, source, download, build, verified=False)
    split = lambda d: _split(name, folder, d.data.unsqueeze(1), d.targets, 10)  # noqa: E731
    return RawDataset(name, split(tr), split(te), 10, list(cls.classes),
                      info={"path": str(folder)})


@DATASETS.register("mnist")
def mnist(root: Path, download: bool = False) -> RawDataset:
    """MNIST via `torchvision.datasets.MNIST` (`root/MNIST/raw/`), uint8 `[N, 1, 28, 28]`, 60,000 / 10,000.

    No augmentation (shifted or flipped digits change meaning)."""
    return _mnist("mnist", "MNIST", root, download)


@DATASETS.register("fashionmnist")
def fashionmnist(root: Path, download: bool = False) -> RawDataset:
    """Fashion-MNIST via `torchvision.datasets.FashionMNIST` (`root/FashionMNIST/raw/`), uint8 `[N, 1, 28, 28]`.

    No augmentation (as for MNIST)."""
    return _mnist("fashionmnist", "FashionMNIST", root, download)


def _svhn_class(verify: bool):
    import torchvision.datasets as tvd

    if verify:
        return tvd.SVHN
    return type("SVHNUnverified", (tvd.SVHN,), {
        "split_list": {k: [url, f, None] for k, (url, f, _md5) in tvd.SVHN.split_list.items()}})


@DATASETS.register("svhn")
def svhn(root: Path, download: bool = False, *, verify: bool = True) -> RawDataset:
    """SVHN (cropped digits, train + test; not `extra`) via `torchvision.datasets.SVHN`, uint8 `[N, 3, 32, 32]`.

    Files `root/svhn/train_32x32.mat` and `test_32x32.mat` (73,257 / 26,032 images); label 10
    means digit 0 and becomes 0, as torchvision does. `verify=True` keeps torchvision's md5 check
    of both files on every load; `verify=False` only checks that they exist. Augmentation: random
    crop with 4-px zero padding, no flip (digits)."""
    cls = _svhn_class(bool(verify))
    folder = root / "svhn"
    files = [cls.split_list[s][1] for s in ("train", "test")]
    source = " and ".join(cls.split_list[s][0] for s in ("train", "test"))

    def build(fetch: bool) -> tuple:
        from scipy.io.matlab import MatReadError

        try:
            return (cls(str(folder), split="train", download=fetch),
                    cls(str(folder), split="test", download=fetch))
        except MatReadError as exc:  # scipy's, not a ValueError: a file that is no .mat
            raise ValueError(f"not a MATLAB file: {exc}") from None

    tr, te = _load("svhn", folder, files, source, download, build, verified=bool(verify))
    split = lambda d: _split("svhn", folder, d.data, d.labels, 10)  # noqa: E731
    return RawDataset("svhn", split(tr), split(te), 10, [str(i) for i in range(10)], augment=True,
                      crop_padding=4, hflip=False, info={"path": str(folder), "verified": bool(verify)})


def _stl10_class(verify: bool):
    """torchvision's STL10 checking (and needing) only the labelled files."""
    import torchvision.datasets as tvd

    labelled = [[f, md5 if verify else None] for f, md5 in tvd.STL10.train_list
                if not f.startswith("unlabeled")]
    return type("STL10Labelled", (tvd.STL10,), {
        "train_list": labelled,
        "test_list": [[f, md5 if verify else None] for f, md5 in tvd.STL10.test_list]})


@DATASETS.register("stl10")
def stl10(root: Path, download: bool = False, *, verify: bool = True) -> RawDataset:
    """STL-10's labelled split via `torchvision.datasets.STL10` (`root/stl10_binary/`), uint8 `[N, 3, 96, 96]`.

    Train = the 5,000 labelled training images (all ten folds together), test = the 8,000 test
    images; `unlabeled_X.bin` is not read (nor needed). `verify=True` keeps torchvision's md5
    check of the four labelled files; `verify=False` only checks that they exist. Augmentation:
    random crop with 12-px zero padding + horizontal flip."""
    cls = _stl10_class(bool(verify))
    folder = root / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list]
    source = f"{cls.filename} (2.6 GB) from {cls.url}"

    def build(fetch: bool) -> tuple:
        return (cls(str(root), split="train", download=fetch), cls(str(root), split="test"))

    tr, te = _load("stl10", folder, files, source, download, build, verified=bool(verify))
    classes = list(getattr(tr, "classes", None) or [])
    if len(classes) != 10:
        classes = list(STL10_CLASSES)
    split = lambda d: _split("stl10", folder, d.data, d.labels, 10)  # noqa: E731
    return RawDataset("stl10", split(tr), split(te), 10, classes, augment=True, crop_padding=12,
                      hflip=True, info={"path": str(folder), "verified": bool(verify)})
