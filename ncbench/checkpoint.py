"""Training checkpoints: verified files (run id, epoch, SHA-256), the previous one kept as fallback.

A run directory holds up to two checkpoints (names: `ncbench.rundir`): `checkpoint.pt`, the
latest, and `checkpoint.prev.pt`, the one written before it. Each file is

    b"NCBENCH-CHECKPOINT 2\\n"                                  # MAGIC
    {"format": 2, "run_id": …, "epoch": E, "bytes": N, "sha256": …}\\n   # header, one JSON line
    N bytes: torch.save of the payload                          # checked against "sha256"

and the payload is a plain dict that `torch.load(..., weights_only=True)` reads back (tensors,
numbers, strings, lists, tuples, dicts only):

    {"format": 2, "run_id": str, "epoch": E,       # epochs completed (1-based), E ≥ 1
     "model": state_dict, "optimizer": state_dict, "scheduler": state_dict,
     "scaler": state_dict | None,                  # the fp16 GradScaler's (None without one)
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, …], "numpy": {...}, "python": {...},
             "data": ByteTensor},                  # "data": only with a data generator
     "best": {"epoch": E*, "val_acc": …, "test_acc": …} | None,
     "wall_seconds": float}                        # the run's wall time so far, all attempts

`ncbench.train` writes one after the evaluation of epoch E was emitted, and after an epoch
between evaluations when `CHECKPOINT_SECONDS` passed since the last one (that epoch was not
evaluated): a resumed run starts at epoch E + 1 and never re-logs an epoch. `save_checkpoint`
writes the new file to a temporary name and fsyncs it, renames `checkpoint.pt` to
`checkpoint.prev.pt`, renames the new file to `checkpoint.pt` and fsyncs the directory: a crash
leaves whole files only (at worst just `checkpoint.prev.pt`, which a resume then uses).

`resume_checkpoint` picks what a run resumes from: `checkpoint.pt` if it verifies, else
`checkpoint.prev.pt`, else nothing (a fresh start). Verifying means: the magic and header read,
the payload has its length and SHA-256 (checked before `torch.load` sees a byte of it), loads with
`weights_only=True`, and its run id and epoch are the header's, the run's and within 1..epochs.
A file that fails is damaged: it is moved aside (`checkpoint.damaged.pt`,
`checkpoint.prev.damaged.pt`) so the next save cannot rotate it over the good previous one, and
what happened is returned as one line (the worker logs it and puts it in its `start` event).

Files of format 1 (the previous version: a bare `torch.save`, no header, no checksum) are still
resumed from when they load and their run id and epoch fit, noted as *unverified*; the next
save writes format 2.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncbench.events import fsync_dir
from ncbench.rundir import (
    CHECKPOINT_DAMAGED_FILE, CHECKPOINT_FILE, CHECKPOINT_PREV_DAMAGED_FILE, CHECKPOINT_PREV_FILE,
)

__all__ = ["FORMAT", "MAGIC", "CheckpointDamaged", "Resume", "checkpoint_path", "prev_checkpoint_path",
           "encode_checkpoint", "write_checkpoint", "read_checkpoint", "load_checkpoint",
           "save_checkpoint", "resume_checkpoint", "rng_state", "set_rng_state"]

FORMAT = 2
#: The first bytes of a checkpoint file of format 2 (format 1 files are zip archives: b"PK…").
MAGIC = b"NCBENCH-CHECKPOINT 2\n"
_ZIP = b"PK\x03\x04"
#: Longest header line read (it is ~150 bytes).
_HEADER_MAX = 4096


class CheckpointDamaged(ValueError):
    """A checkpoint file that must not be resumed from; the message says why (one line). Never
    reaches the user as an exception: `resume_checkpoint` turns it into a fallback and a note."""


@dataclass
class Resume:
    """What a run resumes from: `state` (the payload; None: a fresh start), `file` (its path),
    `verified` (False for a format-1 file), `note` (one line on what went wrong, or None)."""

    state: dict[str, Any] | None = None
    file: Path | None = None
    verified: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        return "; ".join(self.notes) if self.notes else None


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """`<run_dir>/checkpoint.pt` (the name is `ncbench.rundir.CHECKPOINT_FILE`)."""
    return Path(run_dir) / CHECKPOINT_FILE


def prev_checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """`<run_dir>/checkpoint.prev.pt`: the checkpoint written before the latest one."""
    return Path(run_dir) / CHECKPOINT_PREV_FILE


# ----------------------------------------------------------------------------------------------
# one file: encode, write, read and verify
# ----------------------------------------------------------------------------------------------


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint file of `state` (which holds "run_id" and "epoch")."""
    buf = io.BytesIO()
    torch.save({**state, "format": FORMAT}, buf)
    payload = buf.getvalue()
    header = {"format": FORMAT, "run_id": str(state["run_id"]), "epoch": int(state["epoch"]),
              "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def _write_temp(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def write_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write one checkpoint file atomically (temporary file, fsync, os.replace, fsync of the
    folder). No rotation: that is `save_checkpoint`'s."""
    path = Path(path)
    os.replace(_write_temp(path, encode_checkpoint(state)), path)
    fsync_dir(path.parent)


def _check_identity(what: dict, run_id: str | None, max_epoch: int | None) -> None:
    rid, epoch = what.get("run_id"), what.get("epoch")
    if run_id is not None and rid != run_id:
        raise CheckpointDamaged(f"it is another run's (run id {rid})")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1 or (
            max_epoch is not None and epoch > max_epoch):
        bound = f"1..{max_epoch}" if max_epoch is not None else "≥ 1"
        raise CheckpointDamaged(f"epoch {epoch!r} is outside {bound}")


def _torch_load(source, map_location) -> dict[str, Any]:
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is damage
        msg = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointDamaged(f"torch.load failed: {type(exc).__name__}: {msg}"[:300]) from exc
    if not isinstance(state, dict):
        raise CheckpointDamaged(f"it holds a {type(state).__name__}, not a dict")
    return state


def read_checkpoint(path: str | os.PathLike, *, run_id: str | None = None, max_epoch: int | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The verified payload of the checkpoint file at `path`. Raises FileNotFoundError when there
    is none and `CheckpointDamaged` (saying why) when it must not be used: unreadable, truncated,
    a bad checksum, header and payload disagreeing, another run id than `run_id`, an epoch outside
    1..`max_epoch`. A format-1 file (no checksum) is returned with `"verified": False` added."""
    data = Path(path).read_bytes()
    if data.startswith(_ZIP):  # format 1: a bare torch.save (nothing to verify it against)
        state = _torch_load(io.BytesIO(data), map_location)
        _check_identity(state, run_id, max_epoch)
        state["verified"] = False
        return state
    if not data.startswith(MAGIC):
        raise CheckpointDamaged("it is not a checkpoint (no header)" if data else "it is empty")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + _HEADER_MAX)
    try:
        if end < 0:
            raise ValueError("no end of line")
        header = json.loads(data[len(MAGIC):end])
        size, digest = int(header["bytes"]), str(header["sha256"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointDamaged(f"its header does not read ({exc})") from exc
    payload = memoryview(data)[end + 1:]
    if len(payload) != size:
        raise CheckpointDamaged(f"it is truncated ({len(payload)} of {size} payload bytes)"
                                if len(payload) < size else
                                f"it has {len(payload) - size} bytes more than its header says")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointDamaged("its checksum does not match (SHA-256 of the payload)")
    _check_identity(header, run_id, max_epoch)
    buf = io.BytesIO(payload)  # a copy: the file's bytes can go before the tensors are built
    del payload, data
    state = _torch_load(buf, map_location)
    if state.get("run_id") != header.get("run_id") or state.get("epoch") != header.get("epoch"):
        raise CheckpointDamaged("its header and payload disagree on run id or epoch")
    state["verified"] = True
    return state


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The payload of the checkpoint file at `path` (verified, see `read_checkpoint`; the run id
    is not compared), or None if there is none."""
    try:
        return read_checkpoint(path, map_location=map_location)
    except FileNotFoundError:
        return None


# ----------------------------------------------------------------------------------------------
# a run's checkpoints: save (keeping the previous one) and resume (falling back)
# ----------------------------------------------------------------------------------------------


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write `state` (with "run_id" and "epoch") as the run's latest checkpoint; the one it
    replaces becomes `checkpoint.prev.pt` (see the module doc for the crash safety)."""
    run_dir = Path(run_dir)
    current, prev = checkpoint_path(run_dir), prev_checkpoint_path(run_dir)
    tmp = _write_temp(current, encode_checkpoint(state))
    if current.exists():
        os.replace(current, prev)
    os.replace(tmp, current)
    fsync_dir(run_dir)


def _move_aside(path: Path, to: Path) -> str:
    try:
        os.replace(path, to)
        return f"moved to {to.name}"
    except OSError:
        try:
            path.unlink()
            return "deleted"
        except OSError:  # pragma: no cover - a read-only run directory
            return "left in place"


def resume_checkpoint(run_dir: str | os.PathLike, *, run_id: str, max_epoch: int | None = None,
                      check=None, map_location: str | torch.device = "cpu") -> Resume:
    """What the run `run_id` resumes from (see the module doc): the first of checkpoint.pt and
    checkpoint.prev.pt that verifies, else a fresh start. `check(state)`, if given, may raise
    `CheckpointDamaged` too (the trainer checks that the tensors fit its model). Damaged files
    are moved aside; never raises for a damaged file."""
    run_dir = Path(run_dir)
    out = Resume()
    candidates = [(checkpoint_path(run_dir), run_dir / CHECKPOINT_DAMAGED_FILE),
                  (prev_checkpoint_path(run_dir), run_dir / CHECKPOINT_PREV_DAMAGED_FILE)]
    tried = False
    for path, aside in candidates:
        try:
            state = read_checkpoint(path, run_id=run_id, max_epoch=max_epoch, map_location=map_location)
            if check is not None:
                check(state)
        except FileNotFoundError:
            if path.name == CHECKPOINT_FILE and prev_checkpoint_path(run_dir).exists():
                out.notes.append(f"{CHECKPOINT_FILE} is missing")
                tried = True
            continue
        except (CheckpointDamaged, OSError) as exc:
            out.notes.append(f"{path.name} is damaged: {exc} ({_move_aside(path, aside)})")
            tried = True
            continue
        out.state, out.file, out.verified = state, path, bool(state.pop("verified", True))
        if not out.verified:
            out.notes.append(f"resuming from {path.name} (epoch {state['epoch']}) unverified: "
                             f"an older ncbench's checkpoint, without checksum")
        elif tried:
            out.notes.append(f"resuming from {path.name} (epoch {state['epoch']})")
        return out
    if tried:
        out.notes.append("no usable checkpoint: fresh start from epoch 1")
    return out


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
