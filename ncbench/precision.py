"""How fast a run computes: numeric precision, memory layout and compilation.

The config keys `precision`, `channels_last` and `compile` (see docs/performance.md)
are turned into a `TrainSetup` by `setup_training(model, device, ...)`, which `ncbench.train`
calls once per run:

- `precision` ("fp32" | "bf16" | "fp16"): mixed-precision training with `torch.autocast` on
  **CUDA only**. On any other device the run trains in fp32, so that CPU runs (small studies,
  tests) give the same numbers on every CPU whether or not it has bf16 units (on an AVX512-BF16
  CPU, autocast bf16 did halve a resnet18-0.25 step: a possible later option), and the
  effective precision is what the run records (`TrainSetup.info()` goes into the run's `start`
  event). A CUDA device without native bf16 (before Ampere) falls back to fp32 too, with a note
  suggesting fp16. "fp16" adds a `torch.amp.GradScaler` (loss scaling); bf16 needs none.
  Parameters, optimiser state, the loss and the evaluation pass stay float32; the NC statistics
  accumulate in float64 whatever the precision.
- `channels_last` (default true): convolutional models (any `nn.Conv2d`) and their input
  batches use the NHWC memory format (`torch.channels_last`), which tensor-core convolutions
  need to avoid transposes; oneDNN's CPU convolutions are faster in it too (resnet18 on one
  core: 0.70–0.84× the step time, benchmarks/RESULTS.md). Ignored for models without
  convolutions (mlp) and on devices other than CUDA and CPU (mps: not measured).
- `compile` (default false): `torch.compile(model)` for the training forward pass. Compilation
  happens lazily at the first batch; if it fails there (no C++ compiler, an unsupported op, …)
  the run prints one clear message to stderr (the worker's log) and continues uncompiled
  (`CompileFallback`). The evaluation pass always runs the eager model. The backend is
  "inductor" unless `$NCBENCH_COMPILE_BACKEND` names another (e.g. "aot_eager").
- On CUDA, `torch.backends.cudnn.benchmark` is turned on (fixed input shapes: cuDNN picks the
  fastest convolution algorithm once per shape).

None of these change *what* is computed beyond float rounding, except `precision`, which is
part of the run id; `channels_last` and `compile` are placement keys (`RunSpec.PLACEMENT_KEYS`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ncbench.names import PRECISIONS  # the accepted values of the `precision` key

__all__ = ["PRECISIONS", "Precision", "resolve_precision", "uses_convolutions", "CompileFallback",
           "compile_model", "TrainSetup", "setup_training"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _say(message: str) -> None:
    print(f"ncbench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Precision:
    """The precision a run asked for (`requested`) and the one it trains in (`precision`),
    on `device_type`; `dtype` is the autocast dtype (None for fp32); `note` says why they
    differ (None when they do not)."""

    requested: str
    precision: str
    device_type: str
    note: str | None = None

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of a training forward pass (disabled for fp32)."""
        if self.dtype is None:
            return torch.autocast(self.device_type, enabled=False)
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 (None otherwise)."""
        return torch.amp.GradScaler(self.device_type) if self.precision == "fp16" else None


def _bf16_native(device: torch.device) -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch: no including_emulation argument
        return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(requested: str, device: str | torch.device) -> Precision:
    """The effective precision of a run asking for `requested` on `device` (see module doc).

    Raises ValueError for a value not in `PRECISIONS` (the config rejects those earlier)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    dev = torch.device(device)
    if requested == "fp32":
        return Precision("fp32", "fp32", dev.type)
    if dev.type != "cuda":
        return Precision(requested, "fp32", dev.type,
                         f"precision '{requested}' applies on CUDA only; this run on {dev.type} "
                         f"trains in fp32")
    if requested == "bf16" and not _bf16_native(dev):
        return Precision(requested, "fp32", dev.type,
                         f"this GPU ({torch.cuda.get_device_name(dev)}) has no native bf16; the "
                         f"run trains in fp32 (use precision = \"fp16\" for mixed precision)")
    return Precision(requested, requested, dev.type)


def uses_convolutions(model: nn.Module) -> bool:
    """True if `model` holds a 2-d convolution (so NHWC layout can matter)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _reason(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its innermost cause (torch wraps a
    backend's error in BackendCompilerFailed, whose own first line says little)."""
    root, seen = exc, set()
    while id(root) not in seen:
        seen.add(id(root))
        inner = getattr(root, "inner_exception", None) or root.__cause__
        if inner is None:
            break
        root = inner
    text = str(root).strip().splitlines()
    first = f"{type(root).__name__}: {text[0] if text else ''}".rstrip(": ")
    line = first if root is exc else f"{type(exc).__name__}, caused by {first}"
    return line[:300]


class CompileFallback(nn.Module):
    """`model` run through `compiled` (its `torch.compile` form) until that raises; then one
    message on stderr and the eager `model` from then on.

    Holds `model` (the eager module, registered: `parameters()`, `train()`, `state_dict()` are
    its), `failed` (the one-line reason, None while compiled runs) and `calls_ok` (forward
    calls the compiled module completed). A failure at the first call is a compile failure
    (nothing was computed yet); a later failure is also caught (a recompilation for a new
    input shape, e.g. the short last batch, can fail too) and that batch is recomputed eagerly.
    """

    def __init__(self, model: nn.Module, compiled: Callable[..., Any]):
        super().__init__()
        self.model = model
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: no double parameters
        self.failed: str | None = None
        self.calls_ok = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self._compiled
        if compiled is not None:
            try:
                out = compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compile error: fall back, say why
                self.failed = _reason(exc)
                object.__setattr__(self, "_compiled", None)
                _say(f"torch.compile failed ({self.failed}); training continues without "
                     f"compile (set compile = false to skip the attempt)")
            else:
                self.calls_ok += 1
                return out
        return self.model(*args, **kwargs)


def compile_model(model: nn.Module, *, backend: str | Callable = "inductor",
                  mode: str | None = None) -> CompileFallback | nn.Module:
    """`model` wrapped for compiled training with an eager fallback (`CompileFallback`).

    `torch.compile` itself only fails here when torch has no compile support at all (then the
    message is printed and `model` is returned as is)."""
    try:
        compiled = torch.compile(model, backend=backend, mode=mode)
    except Exception as exc:  # noqa: BLE001
        _say(f"torch.compile is unavailable ({type(exc).__name__}: {exc}); training continues "
             f"without compile")
        return model
    return CompileFallback(model, compiled)


@dataclass
class TrainSetup:
    """What `setup_training` decided: `precision` (a `Precision`), `channels_last` (whether
    model and inputs use NHWC), `compile` (whether a compiled forward is attempted),
    `train_model` (the module the training loop calls: the model itself or its
    `CompileFallback`), `scaler` (GradScaler for fp16, else None), `notes` (messages printed)."""

    precision: Precision
    channels_last: bool
    compile: bool
    train_model: nn.Module
    scaler: torch.amp.GradScaler | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def compile_failed(self) -> str | None:
        """Why compilation fell back to eager (None if it did not, or was not asked)."""
        return getattr(self.train_model, "failed", None)

    def info(self) -> dict[str, Any]:
        """Fields recorded in the run's `start` event: the effective settings. On CUDA also
        whether float32 convolutions / matmuls may use TF32 (PyTorch's switches, left at their
        defaults: cuDNN convolutions yes, matmuls no), which sets what "fp32" means there."""
        out = {"precision": self.precision.precision,
               "precision_requested": self.precision.requested,
               "channels_last": self.channels_last, "compile": self.compile}
        if self.precision.device_type == "cuda":
            out["tf32_conv"] = bool(torch.backends.cudnn.allow_tf32)
            out["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
        return out


def setup_training(model: nn.Module, device: str | torch.device, *, precision: str = "fp32",
                   channels_last: bool = True, compile: bool = False,
                   compile_backend: str | Callable | None = None) -> TrainSetup:
    """Prepare `model` (already on `device`) for training as the config asks (module doc):
    converts it to channels_last in place where that applies, wraps it for compile, turns on
    cuDNN autotuning on CUDA, and prints a note for every request that cannot be honoured.

    `compile_backend`: the `torch.compile` backend; None → `$NCBENCH_COMPILE_BACKEND` if set
    (e.g. "aot_eager" to check a model traces without generating code), else "inductor"."""
    dev = torch.device(device)
    if compile_backend is None:
        compile_backend = os.environ.get("NCBENCH_COMPILE_BACKEND") or "inductor"
    prec = resolve_precision(precision, dev)
    notes = [prec.note] if prec.note else []
    cl = bool(channels_last) and dev.type in ("cuda", "cpu") and uses_convolutions(model)
    if cl:
        model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_model = compile_model(model, backend=compile_backend) if compile else model
    for note in notes:
        _say(note)
    return TrainSetup(prec, cl, bool(compile), train_model, prec.grad_scaler(), notes)
