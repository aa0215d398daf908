"""The local executor's slots: the visible GPUs, the slots its options make, and their checks.

`detect_gpus` (the visible GPUs, respecting `CUDA_VISIBLE_DEVICES`; `NCBENCH_FAKE_GPUS=N` for
testing), `parse_gpus` (`--gpus` / `gpus`), `make_slots` (the slots of `gpus`, `per_gpu`,
`workers`: see `ncbench.executors.local`), `check_options` (every local option checked before
anything is registered or run) and `worker_cuda_devices` (what a worker will see, for the
pre-flight's `device` check). Bad options are ParameterErrors keyed by the option; the grid
names the flag or the config key the value came from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FAKE_GPUS_ENV", "Slot", "detect_gpus", "parse_gpus", "make_slots", "check_options",
           "worker_cuda_devices"]

FAKE_GPUS_ENV = "NCBENCH_FAKE_GPUS"


@dataclass(frozen=True)
class Slot:
    """A place a worker runs: `name` ("gpu0", "gpu0.1" when packed, "cpu0"), `env` (variables
    the worker gets: CUDA_VISIBLE_DEVICES, NCBENCH_THREADS)."""

    name: str
    env: tuple[tuple[str, str], ...] = ()


def detect_gpus() -> list[str]:
    """The visible GPUs as the values to put in a worker's CUDA_VISIBLE_DEVICES: the entries of
    CUDA_VISIBLE_DEVICES if set (`""` → none), else "0".."n−1" for torch.cuda.device_count().
    `NCBENCH_FAKE_GPUS=N` (testing) → "0".."N−1" without asking CUDA."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake:
        return [str(i) for i in range(int(fake))]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA
        n = 0
    if visible is not None:
        entries = [v.strip() for v in visible.split(",") if v.strip()]
        return entries[:n] if n < len(entries) else entries
    return [str(i) for i in range(n)]


def parse_gpus(value: Any) -> list[int] | None:
    """`--gpus` / `[executor.local] gpus`: "0,1,3" or [0, 1, 3] → [0, 1, 3]; "all" or None →
    None (every visible GPU); "none" or "" or [] → [] (CPU only). Bad values: ParameterError
    with key `gpus` (the grid names the flag or the config key it came from)."""
    from ncbench.errors import ParameterError

    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "all":
            return None
        if v in ("", "none", "cpu"):
            return []
        parts = [p.strip() for p in v.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    out = []
    for p in parts:
        try:
            if isinstance(p, bool):
                raise ValueError
            out.append(int(p))
        except (TypeError, ValueError):
            raise ParameterError(f"expected GPU indices like 0,1,3 (or 'all' / 'none'), "
                                 f"got {value!r}", key="gpus") from None
    return out


def make_slots(gpus: Sequence[int] | None = None, per_gpu: int = 1, workers: int | None = None,
               *, visible: Sequence[str] | None = None, cores: int | None = None) -> list[Slot]:
    """The slots for the given options (see module doc). `gpus=None`: every visible GPU;
    `gpus=[]`: CPU only. `workers` is for CPU-only use; with GPUs it is an error. Bad options
    (and GPUs not visible here) are ParameterErrors whose key is the option (`gpus`, `per_gpu`,
    `workers`): the grid names the flag or the config key the value came from."""
    from ncbench.errors import ParameterError

    if per_gpu < 1:
        raise ParameterError(f"must be ≥ 1, got {per_gpu}", key="per_gpu")
    if workers is not None and workers < 1:
        raise ParameterError(f"must be ≥ 1, got {workers}", key="workers")
    visible = list(detect_gpus() if visible is None else visible)
    cores = cores or os.cpu_count() or 1
    if gpus is None:
        chosen = visible if workers is None else []
    else:
        chosen = []
        for g in gpus:
            if not visible:
                raise ParameterError(f"GPU {g}: no GPU is visible here (torch finds no CUDA "
                                     "device); train on the CPU with --workers N instead", key="gpus")
            if not 0 <= int(g) < len(visible):
                raise ParameterError(f"GPU {g}: only {len(visible)} GPU(s) visible "
                                     f"({', '.join(visible)}; indices 0..{len(visible) - 1})",
                                     key="gpus")
            chosen.append(visible[int(g)])
        if workers is not None and chosen:
            raise ParameterError("for CPU-only runs; with GPUs use --per-gpu N (per_gpu = N) "
                                 "to run N workers per GPU", key="workers")
    if chosen:
        n = len(chosen) * per_gpu
        threads = str(max(1, cores // n))
        return [Slot(f"gpu{g}" + (f".{j}" if per_gpu > 1 else ""),
                     (("CUDA_VISIBLE_DEVICES", g), ("NCBENCH_THREADS", threads)))
                for g in chosen for j in range(per_gpu)]
    n = workers or 1
    threads = str(max(1, cores // n))
    hide = (("CUDA_VISIBLE_DEVICES", ""),) if visible else ()
    return [Slot(f"cpu{i}", hide + (("NCBENCH_THREADS", threads),)) for i in range(n)]


def check_options(options: dict[str, Any], *, visible: Sequence[str] | None = None) -> None:
    """Check the local executor's options (`workers`, `gpus`, `per_gpu`, `retries`, from
    `[executor.local]` and the command line) before anything is registered or run, as the
    executor would use them: types and ranges (`workers`, `per_gpu` integers ≥ 1, `retries` an
    integer ≥ 0), and the slots they make (GPUs visible here). Each problem is a ParameterError
    keyed by the option; the grid names the flag or the config key the value came from."""
    from ncbench.errors import ParameterError

    for key, minimum in (("workers", 1), ("per_gpu", 1), ("retries", 0)):
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"expected an integer ≥ {minimum}, got {value!r}", key=key)
        if value < minimum:
            raise ParameterError(f"must be ≥ {minimum}, got {value}", key=key)
    per_gpu = options.get("per_gpu")
    make_slots(parse_gpus(options.get("gpus")), 1 if per_gpu is None else per_gpu,
               options.get("workers"), visible=visible)


def worker_cuda_devices(options: dict[str, Any]) -> int:
    """The CUDA devices each worker of these (checked) options will see: 1 on a GPU slot (one
    GPU each, when torch finds one here: not with `NCBENCH_FAKE_GPUS` alone), 0 on a CPU slot."""
    per_gpu = options.get("per_gpu")
    slots = make_slots(parse_gpus(options.get("gpus")), 1 if per_gpu is None else per_gpu,
                       options.get("workers"))
    if not slots or not slots[0].name.startswith("gpu"):
        return 0
    try:
        import torch

        return 1 if torch.cuda.device_count() > 0 else 0
    except Exception:  # noqa: BLE001 - no usable CUDA
        return 0
