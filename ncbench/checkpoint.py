"""Training checkpoints: one file per run, written atomically, loaded with `weights_only=True`.

A checkpoint (`<run_dir>/checkpoint.pt`) is a plain dict that `torch.load(..., weights_only=True)`
can read back — tensors, numbers, strings, lists, tuples, dicts only:

    {"format": 1, "epoch": E,                      # epochs completed (1-based), E ≥ 1
     "model": state_dict, "optimizer": state_dict, "scheduler": state_dict,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, …], "numpy": {...}, "python": [...],
             "data": ByteTensor},                  # the data-order/augmentation generator
     "best": {"epoch": E*, "val_acc": …, "test_acc": …} | None,
     "run_id": str}

It is written only after the evaluation of epoch E was emitted (so a resumed run starts at
epoch E + 1 and never re-logs an epoch). Writes go to a temporary file in the same directory,
are fsync'd, then `os.replace`d over the old checkpoint, and the directory is fsync'd: a crash
leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """`<run_dir>/checkpoint.pt`."""
    return Path(run_dir) / CHECKPOINT_NAME


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (tmp file in the same dir, fsync, os.replace, fsync dir)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise `state` with `torch.save` and write it atomically to `path`."""
    import io

    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The checkpoint at `path` (loaded with `weights_only=True`), or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)


# ----------------------------------------------------------------------------------------------
# RNG state as weights_only-loadable values
# ----------------------------------------------------------------------------------------------


def rng_state(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG a run draws from (torch CPU/CUDA, numpy, python, the data generator) as tensors,
    numbers and lists, so that `torch.load(weights_only=True)` can read it back."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "internal": list(py_internal), "gauss": py_gauss},
    }
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], data_generator: torch.Generator | None = None) -> None:
    """Restore what `rng_state` captured (CUDA states only where the same devices exist)."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if data_generator is not None and "data" in state:
        data_generator.set_state(state["data"].cpu())
