"""The MNIST-1D dataset family (Greydanus, "Scaling down deep learning"): 10 classes of 1-D signals.

Generated offline by the `mnist1d` package's own generator (`mnist1d.data.make_dataset` with
`get_dataset_args()`'s defaults: 5000 samples, `train_split` 0.8 → 4000 train / 1000 test,
`seed` 42, signals of length 40). `get_dataset` is never used (it downloads a pickle). The
official split is the package's train/test split; `finalize` (val holdout, `per_class`,
normalisation) then applies as for every dataset.

Representation: float32 `[N, 1, L]` (channels, length; L = `final_seq_length`, 40), so
`input_shape = (1, 40)`, the (C, L) layout. The package already centres the whole dataset and
scales it to std 1 (x ↦ (x − mean)/std over all samples and positions); ncbench keeps those
values and then normalises per channel with the delivered train split's statistics, as for
every dataset. No augmentation.

Global random state: the package seeds `np.random` and `random` globally (`set_seed`). The
generator runs between a save and a restore of both states, so loading the dataset never
changes a training run's random numbers.

Cache: generating takes ~2.5 s (per process: the pre-flight and every worker), so the arrays are
cached as `<root>/mnist1d/<key>.npz`, key = SHA-256 of the generator arguments and the package
version. Written atomically (a temporary file, then `os.replace`); a file that cannot be read
(or holds other shapes) is generated again; a root that cannot be written is used without a
cache. `cache=False` turns it off. On a cache hit the `mnist1d` package (which imports
matplotlib and requests) is not imported at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncbench.errors import ParameterError
from ncbench.data.base import DATASETS, RawDataset, Split

#: The most samples one MNIST-1D dataset may have (generation costs ~0.5 ms per sample).
MAX_SAMPLES = 1_000_000
#: The longest signal (`final_seq_length`).
MAX_LENGTH = 4096
#: Length of the package's dilated template (`template_len + padding[-1]` = 12 + 60): the
#: largest useful `max_translation`.
_DILATED_LENGTH = 72
#: Files of the cache, under the data root.
CACHE_DIR = "mnist1d"


def _int(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(f"mnist1d dataset: {key} must be an integer in [{low}, {high}], "
                             f"got {value!r}", key=key)
    return int(value)


def _scale(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= float(value) <= 100.0:
        raise ParameterError(f"mnist1d dataset: {key} must be a number in [0, 100], got "
                             f"{value!r}", key=key)
    return float(value)


def generator_args(*, seed: int = 42, num_samples: int = 5000, train_split: float = 0.8,
                   final_seq_length: int = 40, shuffle_seq: bool = False,
                   max_translation: int = 48, scale_coeff: float = 0.4,
                   corr_noise_scale: float = 0.25, iid_noise_scale: float = 2e-2,
                   shear_scale: float = 0.75) -> dict:
    """The package's `get_dataset_args(as_dict=True)` with these options, checked (ParameterError
    naming the key). Defaults are the package's."""
    # `seed` is the data's, not the training seed: a bad one is located at dataset_params.
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise ParameterError(f"mnist1d dataset: seed must be an integer in [0, 2^32-1], got "
                             f"{seed!r}", key="dataset_params")
    num_samples = _int("num_samples", num_samples, 10, MAX_SAMPLES)
    if isinstance(train_split, bool) or not isinstance(train_split, (int, float)) \
            or not 0.0 < float(train_split) < 1.0:
        raise ParameterError(f"mnist1d dataset: train_split must be in (0, 1), got "
                             f"{train_split!r}", key="train_split")
    n = (num_samples // 10) * 10  # the generator makes num_samples // 10 per class
    split_ix = int(n * float(train_split))
    if not 0 < split_ix < n:
        raise ParameterError(f"mnist1d dataset: num_samples = {num_samples} with train_split = "
                             f"{train_split:g} leaves an empty train or test split",
                             key="num_samples")
    if not isinstance(shuffle_seq, bool):
        raise ParameterError(f"mnist1d dataset: shuffle_seq must be true or false, got "
                             f"{shuffle_seq!r}", key="shuffle_seq")
    args = {"num_samples": num_samples, "train_split": float(train_split),
            "final_seq_length": _int("final_seq_length", final_seq_length, 2, MAX_LENGTH),
            "shuffle_seq": shuffle_seq,
            "max_translation": _int("max_translation", max_translation, 1, _DILATED_LENGTH),
            "scale_coeff": _scale("scale_coeff", scale_coeff),
            "corr_noise_scale": _scale("corr_noise_scale", corr_noise_scale),
            "iid_noise_scale": _scale("iid_noise_scale", iid_noise_scale),
            "shear_scale": _scale("shear_scale", shear_scale), "seed": int(seed)}
    return args


def generate(args: dict) -> dict[str, np.ndarray]:
    """The package's `make_dataset` for `args` (a `generator_args` dict), with the global numpy
    and `random` states saved before and restored after. Returns x, y, x_test, y_test."""
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    full = get_dataset_args(as_dict=True)
    full.update(args)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        out = make_dataset(ObjectView(full))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(out[k]) for k in ("x", "y", "x_test", "y_test")}


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        return "unknown"


def cache_path(root: Path, args: dict) -> Path:
    """`<root>/mnist1d/<key>.npz`, key = SHA-256 of `args` and the package version (16 hex digits)."""
    blob = json.dumps({"args": args, "mnist1d": _package_version()}, sort_keys=True)
    return Path(root) / CACHE_DIR / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"


def _read_cache(path: Path, args: dict) -> dict[str, np.ndarray] | None:
    n = (args["num_samples"] // 10) * 10
    n_train = int(n * args["train_split"])
    want = {"x": (n_train, args["final_seq_length"]), "y": (n_train,),
            "x_test": (n - n_train, args["final_seq_length"]), "y_test": (n - n_train,)}
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in want}
    except Exception:  # missing, truncated, not an npz, a key short: generate again
        return None
    if any(arrays[k].shape != s for k, s in want.items()):
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Atomically write `arrays` to `path`; False (and no file) where the root is not writable."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


def load_arrays(root: Path, args: dict, cache: bool = True) -> tuple[dict[str, np.ndarray], str | None]:
    """The generated arrays of `args`, from the cache when it holds them; and the cache file used
    (None without cache)."""
    path = cache_path(root, args) if cache else None
    if path is not None:
        arrays = _read_cache(path, args)
        if arrays is not None:
            return arrays, str(path)
    arrays = generate(args)
    if path is not None and _write_cache(path, arrays):
        return arrays, str(path)
    return arrays, None


@DATASETS.register("mnist1d")
def mnist1d(root: Path, download: bool = False, *, seed: int = 42, num_samples: int = 5000,
            train_split: float = 0.8, final_seq_length: int = 40, shuffle_seq: bool = False,
            max_translation: int = 48, scale_coeff: float = 0.4, corr_noise_scale: float = 0.25,
            iid_noise_scale: float = 2e-2, shear_scale: float = 0.75,
            cache: bool = True) -> RawDataset:
    """MNIST-1D as float32 `[N, 1, final_seq_length]`, the package's train/test split.

    Options are the package's generator arguments (its defaults); `seed` is the data's (the val
    holdout still follows `data_seed`). `cache`: keep the generated arrays under `root`."""
    args = generator_args(seed=seed, num_samples=num_samples, train_split=train_split,
                          final_seq_length=final_seq_length, shuffle_seq=shuffle_seq,
                          max_translation=max_translation, scale_coeff=scale_coeff,
                          corr_noise_scale=corr_noise_scale, iid_noise_scale=iid_noise_scale,
                          shear_scale=shear_scale)
    if not isinstance(cache, bool):
        raise ParameterError(f"mnist1d dataset: cache must be true or false, got {cache!r}",
                             key="cache")
    arrays, used = load_arrays(Path(root), args, cache)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1),
                     torch.from_numpy(np.asarray(y, dtype=np.int64)))

    return RawDataset("mnist1d", split(arrays["x"], arrays["y"]),
                      split(arrays["x_test"], arrays["y_test"]), 10, [str(i) for i in range(10)],
                      info={"source": "mnist1d.data.make_dataset", "args": args, "cache": used})
