"""Datasets, reachable by name: `make_dataset("cifar10", root="data", download=True)`.

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
- vector data and the digits are `float32` (already scaled; digits: pixel/16 in [0, 1]).
`mean`/`std` (float32 `[C]`, C = input_shape[0]; for vectors one entry per feature) are computed
on the delivered `train` split on the [0, 1] scale; `ncbench.batches` normalises with them,
x ↦ (x − mean)/std, on train, val and test alike. `augment`/`crop_padding`/`hflip` say what
training-time augmentation is standard for the dataset (random crop with zero padding
`crop_padding` + horizontal flip for CIFAR (4 px) and miniImageNet (8 px); none for digits and
gaussian).

Root: `root` argument, else env `NCBENCH_DATA`, else `./data`. Missing files with
`download=False` raise `DatasetNotFoundError` naming the expected path and the fix.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ncbench.errors import ConfigError, DatasetNotFoundError, closest
from ncbench.registry import Registry

DatasetFactory = Callable[..., "SplitDataset"]
DATASETS: Registry[DatasetFactory] = Registry("dataset")

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
    as the model sees it, (C, H, W) or (D,)); `mean`, `std` (float32 `[input_shape[0]]`, on the
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
    """Load dataset `name` and split it (see the module docstring for the conventions).

    `root`: data directory (default `default_root()`); `download`: fetch missing files where the
    dataset can be downloaded (CIFAR); `val_fraction`: stratified validation holdout of the
    training split, in [0, 1); `data_seed`: seed of the holdout and the `per_class` subset;
    `per_class`: balanced subset of n training examples per class, taken before the holdout.
    Extra keywords go to the dataset (e.g. `dim`, `separation` for `gaussian`; `verify` for CIFAR).
    """
    factory = DATASETS.get(name)
    if not (isinstance(val_fraction, (int, float)) and 0.0 <= float(val_fraction) < 1.0):
        raise ConfigError(None, f"val_fraction must be in [0, 1), got {val_fraction!r}", key="val_fraction")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ConfigError(None, f"per_class must be a positive integer, got {per_class!r}", key="per_class")
    check_keywords(factory, kw, f"dataset '{name}'", skip=("root", "download"))
    root_path = Path(root) if root is not None else default_root()
    raw = factory(root_path, download=download, **kw)
    return finalize(raw, val_fraction=float(val_fraction), data_seed=int(data_seed), per_class=per_class)


def check_keywords(factory: Callable, kw: dict, what: str, skip: tuple[str, ...] = ()) -> None:
    """ConfigError naming the first keyword of `kw` that `factory` does not take (closest suggested)."""
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
            hint = closest(key, known)
            raise ConfigError(None, f"{what} takes no option '{key}'"
                              + (f" (did you mean '{hint}'?)" if hint else "")
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


# --------------------------------------------------------------------------------------------
# Splitting and statistics
# --------------------------------------------------------------------------------------------


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices of `y` into (keep, holdout): per class, round(fraction · n_c) go to holdout.

    Chosen by a numpy PCG64 generator seeded with `seed` alone (no global RNG state is read or
    changed). Both index tensors are sorted (int64).
    """
    labels = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    rng = np.random.default_rng(seed)
    keep, hold = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(members.size)]
        n_hold = int(round(fraction * members.size))
        hold.append(members[:n_hold])
        keep.append(members[n_hold:])
    cat = lambda parts: torch.from_numpy(np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)).long()
    return cat(keep), cat(hold)


def balanced_subset(y: torch.Tensor, n: int, num_classes: int, seed: int, dataset: str = "") -> torch.Tensor:
    """Sorted indices of n examples of every class 0..num_classes−1, chosen with `seed`."""
    labels = y.numpy()
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < n:
        short = int(np.argmin(counts))
        raise ConfigError(None, f"per_class={n} but class {short} of dataset '{dataset}' has only "
                          f"{counts[short]} training examples", key="per_class")
    rng = np.random.default_rng([seed, 1])  # a stream distinct from the holdout's
    parts = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        parts.append(members[rng.permutation(members.size)[:n]])
    return torch.from_numpy(np.sort(np.concatenate(parts))).long()


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of `x` `[N, C, ...]` on the [0, 1] scale, float32 `[C]`.

    uint8 inputs are divided by 255. Accumulated in float64, in chunks (no full float copy).
    A channel with zero spread gets std 1 (so normalising never divides by zero).
    """
    n_ch = x.shape[1]
    s = torch.zeros(n_ch, dtype=torch.float64)
    ss = torch.zeros(n_ch, dtype=torch.float64)
    count = 0
    for i in range(0, x.shape[0], chunk):
        b = x[i:i + chunk].to(torch.float64)
        b = b.transpose(0, 1).reshape(n_ch, -1)
        s += b.sum(1)
        ss += (b * b).sum(1)
        count += b.shape[1]
    if count == 0:
        raise ConfigError(None, "cannot compute normalisation statistics of an empty training split")
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    mean = s / count
    var = (ss / count - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    mean, std = mean / scale, std / scale
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.float(), std.float()


# --------------------------------------------------------------------------------------------
# digits, gaussian (offline)
# --------------------------------------------------------------------------------------------


@DATASETS.register("digits")
def digits(root: Path, download: bool = False, *, test_fraction: float = 0.2) -> RawDataset:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes), as float32 `[N, 1, 8, 8]` = pixel/16.

    No official test split: a fixed stratified `test_fraction` (default 20 %) split seeded with
    `TEST_SPLIT_SEED`, independent of `data_seed`. No augmentation (8-px digits: crops and flips
    change the class).
    """
    from sklearn.datasets import load_digits

    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(None, f"digits dataset: test_fraction must be in (0, 1), got "
                                f"{test_fraction!r}", key="test_fraction")
    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    tr, te = stratified_split(y, test_fraction, seed=TEST_SPLIT_SEED)
    return RawDataset("digits", Split(x[tr], y[tr]), Split(x[te], y[te]), 10,
                      [str(i) for i in range(10)], info={"source": "sklearn.datasets.load_digits",
                                                         "test_fraction": test_fraction})


@DATASETS.register("gaussian")
def gaussian(root: Path, download: bool = False, *, num_classes: int = 10, dim: int = 32,
             n_train_per_class: int = 100, n_test_per_class: int = 100, separation: float = 3.0,
             seed: int = 0) -> RawDataset:
    """Synthetic Gaussian mixture: class k ~ N(μ_k, I_dim), μ_k = separation · u_k, u_k uniform on
    the unit sphere; float32 `[N, dim]`. Generated by a numpy generator seeded with `seed`
    (the data itself; the val holdout still follows `data_seed`)."""
    for key, v in (("num_classes", num_classes), ("dim", dim), ("n_train_per_class", n_train_per_class),
                   ("n_test_per_class", n_test_per_class)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(None, f"gaussian dataset: {key} must be a positive integer, got {v!r}", key=key)
    if num_classes < 2:
        raise ConfigError(None, "gaussian dataset: num_classes must be ≥ 2", key="num_classes")
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((num_classes, dim))
    mu = float(separation) * u / np.linalg.norm(u, axis=1, keepdims=True)

    def draw(n: int) -> Split:
        y = np.repeat(np.arange(num_classes), n)
        x = mu[y] + rng.standard_normal((y.size, dim))
        return Split(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)))

    train, test = draw(n_train_per_class), draw(n_test_per_class)
    return RawDataset("gaussian", train, test, num_classes, [str(i) for i in range(num_classes)],
                      info={"dim": dim, "separation": separation, "seed": seed,
                            "n_train_per_class": n_train_per_class, "n_test_per_class": n_test_per_class})


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (torchvision's loader)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# miniImageNet (100 classes × 600 images, 84×84)
# --------------------------------------------------------------------------------------------

MINI_SPLITS = ("train", "val", "test")
MINI_SIZE = 84


def _mini_dirs(root: Path) -> list[Path]:
    return [root / "miniimagenet", root / "mini-imagenet", root]


def _load_mini_pickles(base: Path) -> tuple[list[str], list[np.ndarray]]:
    classes: list[str] = []
    images: list[np.ndarray] = []
    for split in MINI_SPLITS:
        path = base / f"mini-imagenet-cache-{split}.pkl"
        with open(path, "rb") as f:
            try:
                blob = pickle.load(f)
            except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
                raise DatasetNotFoundError(f"dataset 'miniimagenet': cannot read {path}: {exc}") from None
        if not isinstance(blob, dict) or "image_data" not in blob or "class_dict" not in blob:
            raise DatasetNotFoundError(f"dataset 'miniimagenet': {path} lacks the keys 'image_data' "
                                       f"and 'class_dict'")
        data = np.asarray(blob["image_data"])
        if data.dtype != np.uint8 or data.ndim != 4 or data.shape[3] != 3:
            raise DatasetNotFoundError(f"dataset 'miniimagenet': {path}: 'image_data' must be uint8 "
                                       f"[N, H, W, 3], got {data.dtype} {list(data.shape)}")
        for cls, idx in blob["class_dict"].items():
            classes.append(str(cls))
            images.append(data[np.asarray(idx, dtype=np.int64)])
    return classes, images


def _mini_folder_listing(base: Path) -> list[tuple[str, str, list[Path]]]:
    """(split, class, image files) for every class folder, sorted."""
    exts = {".jpg", ".jpeg", ".png", ".bmp"}
    out = []
    for split in MINI_SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            continue
        for cdir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            out.append((split, cdir.name, sorted(p for p in cdir.iterdir() if p.suffix.lower() in exts)))
    return out


def _load_mini_folders(base: Path, size: int, cache: bool) -> tuple[list[str], list[np.ndarray]]:
    """Decode every image (RGB, resized to size×size with bicubic if it is not that size already).

    Decoding 60 000 JPEGs takes a minute, so with `cache` the decoded arrays are saved once to
    `base/.ncbench-cache-<size>-<hash>.npz`, the hash covering every file's path, size and mtime
    (a changed folder gets a new cache). Writing is atomic; if the folder is read-only, no cache.
    """
    import hashlib

    from PIL import Image

    listing = _mini_folder_listing(base)
    h = hashlib.sha1(str(size).encode())
    for split, cls, files in listing:
        for fp in files:
            st = fp.stat()
            h.update(f"{split}/{cls}/{fp.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    cache_path = base / f".ncbench-cache-{size}-{h.hexdigest()[:16]}.npz"
    if cache and cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as z:
                counts = z["counts"]
                images = np.split(z["images"], np.cumsum(counts)[:-1]) if len(counts) else []
                return [str(c) for c in z["classes"]], list(images)
        except (OSError, KeyError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable miniImageNet cache {cache_path}: {exc}", stacklevel=3)
    classes, images = [], []
    for _split, cls, files in listing:
        arr = np.empty((len(files), size, size, 3), dtype=np.uint8)
        for i, fp in enumerate(files):
            try:
                with Image.open(fp) as im:
                    im = im.convert("RGB")
                    if im.size != (size, size):
                        im = im.resize((size, size), Image.BICUBIC)
                    arr[i] = np.asarray(im)
            except OSError as exc:
                raise DatasetNotFoundError(f"dataset 'miniimagenet': cannot read image {fp}: {exc}") from None
        classes.append(cls)
        images.append(arr)
    if cache and images:
        tmp = cache_path.with_name(cache_path.name + f".tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, images=np.concatenate(images), counts=np.array([len(a) for a in images]),
                         classes=np.array(classes))
            os.replace(tmp, cache_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            warnings.warn(f"could not write miniImageNet cache {cache_path}: {exc}", stacklevel=3)
    return classes, images


@DATASETS.register("miniimagenet")
def miniimagenet(root: Path, download: bool = False, *, test_per_class: int = 100,
                 image_size: int = MINI_SIZE, cache: bool = True) -> RawDataset:
    """miniImageNet for 100-way classification, uint8 `[N, 3, 84, 84]`.

    Reads either the pickle cache `mini-imagenet-cache-{train,val,test}.pkl` (keys `image_data`
    uint8 [N, 84, 84, 3], `class_dict` {class: [indices]}) or folders
    `{train,val,test}/<class>/*.jpg` (resized to `image_size` if needed), from
    `root/miniimagenet/`, `root/mini-imagenet/` or `root/` (decoded folders are cached once in
    `.ncbench-cache-*.npz` there, see `_load_mini_folders`; `cache=False` disables it). The few-shot splits have disjoint
    classes, so all classes are merged (labels = sorted class names) and each class's images are
    split into `test_per_class` test images and the rest for training (500/100 for the standard
    600 per class), by a generator seeded with `TEST_SPLIT_SEED` (fixed, independent of
    `data_seed`). Augmentation: random crop with 8-px zero padding + horizontal flip.
    """
    if isinstance(test_per_class, bool) or not isinstance(test_per_class, int) or test_per_class < 1:
        raise ConfigError(None, f"miniimagenet dataset: test_per_class must be a positive integer, "
                                f"got {test_per_class!r}", key="test_per_class")
    found = None
    for base in _mini_dirs(root):
        if all((base / f"mini-imagenet-cache-{s}.pkl").is_file() for s in MINI_SPLITS):
            found = ("pickle", base)
            break
        if any((base / s).is_dir() and any(p.is_dir() for p in (base / s).iterdir()) for s in MINI_SPLITS):
            found = ("folders", base)
            break
    if found is None:
        raise DatasetNotFoundError(
            f"dataset 'miniimagenet' not found under {root / 'miniimagenet'}: expected "
            f"mini-imagenet-cache-{{train,val,test}}.pkl or folders {{train,val,test}}/<class>/*.jpg "
            f"there (or in {root}). miniImageNet cannot be downloaded automatically; place the files "
            f"there or set NCBENCH_DATA / root to the folder holding them."
        )
    kind, base = found
    classes, images = _load_mini_pickles(base) if kind == "pickle" else _load_mini_folders(base, image_size, cache)
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise DatasetNotFoundError(f"dataset 'miniimagenet' in {base}: class(es) {', '.join(dup[:5])} "
                                   f"appear in more than one split")
    order = sorted(range(len(classes)), key=lambda i: classes[i])
    rng = np.random.default_rng(TEST_SPLIT_SEED)
    xtr, ytr, xte, yte = [], [], [], []
    for label, i in enumerate(order):
        arr = images[i]
        if arr.shape[0] <= test_per_class:
            raise DatasetNotFoundError(f"dataset 'miniimagenet' in {base}: class {classes[i]} has "
                                       f"{arr.shape[0]} images, need more than test_per_class={test_per_class}")
        perm = rng.permutation(arr.shape[0])
        te, tr = np.sort(perm[:test_per_class]), np.sort(perm[test_per_class:])
        xtr.append(arr[tr]); ytr.append(np.full(tr.size, label))
        xte.append(arr[te]); yte.append(np.full(te.size, label))

    def to_split(xs, ys) -> Split:
        x = torch.from_numpy(np.concatenate(xs)).permute(0, 3, 1, 2).contiguous()
        return Split(x, torch.from_numpy(np.concatenate(ys).astype(np.int64)))

    names = [classes[i] for i in order]
    return RawDataset("miniimagenet", to_split(xtr, ytr), to_split(xte, yte), len(names), names,
                      augment=True, crop_padding=8, hflip=True,
                      info={"path": str(base), "format": kind, "test_per_class": test_per_class})
