"""Training checkpoints: one file per run, written atomically, loaded with `weights_only=True`.

A checkpoint (`<run_dir>/checkpoint.pt`) is a plain dict that `torch.load(..., weights_only=True)`
can read back — tensors, numbers, strings, lists, tuples, dicts only:

    {"format": 1, "epoch": E,                      # epochs completed (1-based), E ≥ 1
     "model": state_dict, "optimizer": state_dict, "scheduler": state_dict,
     "scaler": state_dict | None,                  # the fp16 GradScaler's (None without one)
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, …], "numpy": {...}, "python": {...},
             "data": ByteTensor},                  # "data": only with a data generator
     "best": {"epoch": E*, "val_acc": …, "test_acc": …} | None,
     "wall_seconds": float,                        # the run's wall time so far, all attempts
     "run_id": str}

`ncbench.train` writes it after the evaluation of epoch E was emitted, and after an epoch
between evaluations when `CHECKPOINT_SECONDS` passed since the last one (that epoch was not
evaluated): a resumed run starts at epoch E + 1 and never re-logs an epoch. Its data order
comes from (seed, epoch) alone, so it saves no "data" state. Writes go to a temporary file in
the same directory, are fsync'd, then `os.replace`d over the old checkpoint, and the directory
is fsync'd: a crash leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncbench.events import atomic_write_bytes
from ncbench.rundir import CHECKPOINT_FILE

FORMAT = 1


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """`<run_dir>/checkpoint.pt` (the name is `ncbench.rundir.CHECKPOINT_FILE`)."""
    return Path(run_dir) / CHECKPOINT_FILE


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise `state` with `torch.save` and write it atomically to `path`."""
    import io

    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue(), sync_dir=True)


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
