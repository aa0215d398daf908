"""The miniImageNet dataset family (100 classes × 600 images, 84×84), from pickles or image folders.

Local files only (it cannot be downloaded); decoded image folders are cached once next to them
(`_load_mini_folders`).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from ncbench.errors import DatasetNotFoundError, ParameterError
from ncbench.data.base import DATASETS, TEST_SPLIT_SEED, RawDataset, Split

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
        raise ParameterError(f"miniimagenet dataset: test_per_class must be a positive integer, "
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
