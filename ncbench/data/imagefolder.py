"""The `imagefolder` dataset: a user's own images, one folder per class, decoded into memory.

Two layouts of `root` (the folder given as `data_root`):
- `root/train/<class>/*.png` and `root/test/<class>/*.png`: the user's own train/test split
  (every test class must also be a training class);
- `root/<class>/*.png`: one pool, split into train and test by a fixed stratified split of
  `test_fraction` (default 0.2) seeded with `TEST_SPLIT_SEED`, independent of `data_seed` (as
  for `digits`).
Class names are the folder names, labels their rank in sorted order. Files whose extension is one
of torchvision's `IMG_EXTENSIONS` are images (others, and hidden entries, are ignored); they are
decoded with PIL, converted to RGB (3 channels) or grey (1; `channels`, default: grey when every
image is grey, else RGB) and resized to `image_size`×`image_size` (bicubic) when given — without
it every image must have the same size. Result: uint8 `[N, C, H, W]`, like the other image sets.
No augmentation unless asked for (`crop_padding`, `hflip`): ncbench cannot know what suits the
images. Errors (`DatasetNotFoundError`) name the folder or the file: no folder, no class
folders, one class, a class without images, an unreadable image, mixed sizes without
`image_size`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ncbench.errors import DatasetNotFoundError, ParameterError
from ncbench.data.base import DATASETS, TEST_SPLIT_SEED, RawDataset, Split
from ncbench.data.splits import stratified_split

#: PIL modes that hold grey images (no colour).
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
#: grey modes of more than 8 bits (scaled to 8 bits when decoded).
_WIDE_GREY = {"I", "I;16", "I;16B", "I;16L"}


def _image_suffixes() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(IMG_EXTENSIONS)


def _listing(folder: Path) -> dict[str, list[Path]]:
    """{class name: sorted image files} for the class folders of `folder` (hidden ones skipped)."""
    if not folder.is_dir():
        raise DatasetNotFoundError(f"dataset 'imagefolder': {folder} is not a folder; set data_root "
                                   f"to a folder of class folders (<class>/*.png), or one with "
                                   f"train/ and test/ holding such folders")
    suffixes = _image_suffixes()
    out: dict[str, list[Path]] = {}
    for cdir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in cdir.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in suffixes)
        if not files:
            raise DatasetNotFoundError(f"dataset 'imagefolder': class folder {cdir} holds no images "
                                       f"(extensions {', '.join(suffixes)})")
        out[cdir.name] = files
    if not out:
        raise DatasetNotFoundError(f"dataset 'imagefolder': {folder} holds no class folders; expected "
                                   f"{folder}/<class>/<image> (one folder per class)")
    return out


def _decode(files: list[Path], image_size: int | None, channels: int | None) -> np.ndarray:
    """uint8 `[N, H, W, C]` of `files` (C = `channels`, or 1 if every image is grey else 3)."""
    from PIL import Image

    def bad(fp: Path, exc: BaseException) -> DatasetNotFoundError:
        return DatasetNotFoundError(f"dataset 'imagefolder': cannot read image {fp}: {exc}")

    errors = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
    c = channels
    if c is None:  # the headers alone say whether every image is grey
        c = 1
        for fp in files:
            try:
                with Image.open(fp) as im:
                    if im.mode not in _GREY_MODES:
                        c = 3
                        break
            except errors as exc:
                raise bad(fp, exc) from None
    out: np.ndarray | None = None
    first: tuple[tuple[int, int], Path] | None = None
    for i, fp in enumerate(files):
        try:
            with Image.open(fp) as im:
                im.load()
                if im.mode in _WIDE_GREY:  # 16-bit grey: scaled to 8 bits, not clipped
                    arr = np.asarray(im, dtype=np.float64)
                    arr = arr / 257.0 if im.mode.startswith("I;16") or arr.max() > 255 else arr
                    im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
                im = im.convert("L" if c == 1 else "RGB")
        except errors as exc:
            raise bad(fp, exc) from None
        if image_size is not None:
            if im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.BICUBIC)
        elif first is None:
            first = (im.size, fp)
        elif im.size != first[0]:
            raise DatasetNotFoundError(
                f"dataset 'imagefolder': image {fp} is {im.size[0]}×{im.size[1]} but {first[1]} is "
                f"{first[0][0]}×{first[0][1]}; set image_size (dataset_params) to resize every "
                f"image to one square size")
        arr = np.asarray(im, dtype=np.uint8)
        if out is None:
            out = np.empty((len(files), arr.shape[0], arr.shape[1], c), dtype=np.uint8)
        out[i] = arr[:, :, None] if arr.ndim == 2 else arr
    return out if out is not None else np.zeros((0, 1, 1, c), np.uint8)


def _positive_int(value, key: str, *, allow_none: bool = True, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"imagefolder dataset: {key} must be an integer ≥ {minimum}, got "
                             f"{value!r}", key=key)


@DATASETS.register("imagefolder")
def imagefolder(root: Path, download: bool = False, *, image_size: int | None = None,
                channels: int | None = None, test_fraction: float | None = None,
                crop_padding: int = 0, hflip: bool = False) -> RawDataset:
    """A user's folder-per-class images (layouts and conventions: this module's docstring).

    `image_size`: resize every image to a square of that side; `channels`: 1 (grey) or 3 (RGB),
    default grey if every image is grey; `test_fraction`: size of the fixed test split when
    `root` has no `train/`+`test/` (default 0.2; an error with them); `crop_padding`, `hflip`:
    the training augmentation (random crop with that zero padding, horizontal flip), off by
    default. Nothing is downloaded."""
    _positive_int(image_size, "image_size")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ParameterError(f"imagefolder dataset: channels must be 1 (grey) or 3 (RGB), got "
                             f"{channels!r}", key="channels")
    _positive_int(crop_padding, "crop_padding", allow_none=False, minimum=0)
    if not isinstance(hflip, bool):
        raise ParameterError(f"imagefolder dataset: hflip must be true or false, got {hflip!r}",
                             key="hflip")
    if test_fraction is not None and (isinstance(test_fraction, bool) or not isinstance(
            test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0):
        raise ParameterError(f"imagefolder dataset: test_fraction must be in (0, 1), got "
                             f"{test_fraction!r}", key="test_fraction")
    root = Path(root)
    split_layout = (root / "train").is_dir() or (root / "test").is_dir()
    if split_layout:
        if test_fraction is not None:
            raise ParameterError(f"imagefolder dataset: {root} has its own train/ and test/ "
                                 f"folders, so test_fraction does not apply; remove it",
                                 key="test_fraction")
        for part in ("train", "test"):
            if not (root / part).is_dir():
                raise DatasetNotFoundError(f"dataset 'imagefolder': {root} has "
                                           f"{'test' if part == 'train' else 'train'}/ but no "
                                           f"{part}/ folder; give both, or put the class folders "
                                           f"in {root} directly (a test split is then drawn)")
        train_list, test_list = _listing(root / "train"), _listing(root / "test")
        extra = sorted(set(test_list) - set(train_list))
        if extra:
            raise DatasetNotFoundError(f"dataset 'imagefolder': test class folder(s) "
                                       f"{', '.join(extra[:5])} in {root / 'test'} have no "
                                       f"training folder in {root / 'train'}")
    else:
        train_list, test_list = _listing(root), {}
    classes = sorted(train_list)
    if len(classes) < 2:
        where = root / "train" if split_layout else root
        raise DatasetNotFoundError(f"dataset 'imagefolder': {where} holds one class folder "
                                   f"({classes[0]}); classification needs at least two")
    label = {c: i for i, c in enumerate(classes)}

    def load(listing: dict[str, list[Path]], c: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        files = [f for name in sorted(listing) for f in listing[name]]
        ys = [label[name] for name in sorted(listing) for _ in listing[name]]
        arr = _decode(files, image_size, c)
        return (torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(ys, dtype=torch.int64))

    x, y = load(train_list, channels)
    if split_layout:
        xt, yt = load(test_list, int(x.shape[1]))  # the training images decide the channels
        if xt.shape[1:] != x.shape[1:]:
            raise DatasetNotFoundError(f"dataset 'imagefolder': the test images in {root / 'test'} "
                                       f"are {tuple(xt.shape[2:])} but the training images "
                                       f"{tuple(x.shape[2:])}; set image_size to resize both")
        train, test = Split(x, y), Split(xt, yt)
    else:
        frac = 0.2 if test_fraction is None else float(test_fraction)
        tr, te = stratified_split(y, frac, seed=TEST_SPLIT_SEED)
        if len(te) == 0 or len(tr) == 0:
            raise DatasetNotFoundError(f"dataset 'imagefolder': test_fraction = {frac:g} of the "
                                       f"{len(y)} images in {root} leaves an empty "
                                       f"{'test' if len(te) == 0 else 'training'} split; add images "
                                       f"or change test_fraction")
        train, test = Split(x[tr], y[tr]), Split(x[te], y[te])
    return RawDataset("imagefolder", train, test, len(classes), classes,
                      augment=bool(crop_padding or hflip), crop_padding=int(crop_padding),
                      hflip=hflip, info={"path": str(root),
                                         "layout": "train/test" if split_layout else "one folder",
                                         "image_size": image_size, "channels": int(x.shape[1])})
