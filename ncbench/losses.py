"""Training losses of the paper (eqs. 3–6), reachable by name through a small registry.

`make_loss(name, num_classes, **params)` returns an `nn.Module`; calling it as
`loss(logits, target)` with logits `[B, K]` (floating) and integer targets `[B]` in `0..K-1`
returns the **mean over the batch** of the per-sample loss. For a sample of class k, with
p = softmax(z):

=======  ==========================================================  =========================
name     per-sample loss                                             parameters (default)
=======  ==========================================================  =========================
``ce``   −log p_k                                                    –
``fl``   −(1 − p_k)^γ · log p_k                                      ``gamma`` ≥ 0 (3)
``ls``   −Σ_ℓ y^smooth_ℓ log p_ℓ,  y^smooth = (1−α)e_k + (α/K)·1     ``alpha`` ∈ [0, 1] (0.1)
``mse``  κ (z_k − β)² + Σ_{ℓ≠k} z_ℓ²   (÷ K if ``class_mean``)      ``kappa`` > 0 (1),
                                                                     ``beta`` > 0 (15),
                                                                     ``class_mean`` (False)
=======  ==========================================================  =========================

Every built-in loss also offers `per_sample(logits, target) -> [B]`. All are stable for logits
of magnitude ~1e3 (finite values and finite, correct gradients): u = −log p_k is computed from the
logit differences z_j − z_k (`_nll`, accurate even when p_k rounds to 1), and the focal factor
(1 − p_k)^γ = (−expm1(−u))^γ has a hand-written derivative (`_FocalFromNLL`), so γ < 1 and
p_k → 1 are safe; γ = 0 (fl) and α = 0 (ls) return exactly the ce values and gradients.

A name of the form ``"package.module:callable"`` is resolved by import; the callable is called as
``callable(num_classes=K, **params)`` and must return an `nn.Module` or a plain callable
``f(logits, target) -> scalar tensor``; either is wrapped so inputs are validated the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ncbench.errors import ParameterError, did_you_mean
from ncbench import names
from ncbench.registry import Registry, is_import_path

__all__ = [
    "LOSSES",
    "LOSS_DEFAULTS",
    "CrossEntropyLoss",
    "FocalLoss",
    "LabelSmoothingLoss",
    "RescaledMSELoss",
    "UserLoss",
    "loss_names",
    "make_loss",
    "validate_inputs",
]

#: name -> factory(num_classes, **params) -> nn.Module
LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss", declared=names.LOSSES)

#: Default parameters of each built-in loss (the paper's §4 values). Copies are handed out by
#: `make_loss`; mutate nothing here.
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "ce": {},
    "fl": {"gamma": 3.0},
    "ls": {"alpha": 0.1},
    "mse": {"kappa": 1.0, "beta": 15.0, "class_mean": False},
}


def loss_names() -> list[str]:
    """The built-in loss names, sorted (user losses are named "package.module:callable")."""
    return LOSSES.names()


# --------------------------------------------------------------------------------------------
# input validation (shared by every loss)
# --------------------------------------------------------------------------------------------


def validate_inputs(logits: torch.Tensor, target: torch.Tensor, num_classes: int, name: str) -> None:
    """Raise ValueError (naming the loss) unless logits is a floating [B, K] tensor and target an
    integer [B] tensor with values in 0..K-1, B ≥ 1 (values are range-checked on CPU tensors only:
    on an accelerator the check would cost a host sync per training step)."""
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(
            f"loss '{name}': logits and target must be torch tensors, got "
            f"{type(logits).__name__} and {type(target).__name__}"
        )
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"loss '{name}': logits must have shape [B, {num_classes}] (num_classes={num_classes}), "
            f"got {list(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"loss '{name}': logits must be floating point, got {logits.dtype}")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"loss '{name}': target must have shape [B] = [{logits.shape[0]}] matching the logits' "
            f"batch size, got {list(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise ValueError(f"loss '{name}': target must hold integer class indices, got {target.dtype}")
    if target.shape[0] == 0:
        raise ValueError(f"loss '{name}': empty batch (B = 0); the mean over the batch is undefined")
    if target.device.type != "cpu":
        # The range check needs the values on the host: a device→host sync per training step,
        # which stalls an accelerator's queue. Off the CPU an out-of-range index fails in the
        # gather/one_hot below anyway (a device-side assert), so the check is left to the CPU.
        return
    outside = (target < 0) | (target >= num_classes)
    if bool(outside.any()):
        bad = int(target[outside][0])
        raise ValueError(
            f"loss '{name}': target value {bad} is out of range; class indices must be in "
            f"0..{num_classes - 1} (num_classes={num_classes})"
        )


def _nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """u = −log softmax(z)_k per sample, [B], accurate to relative rounding even when p_k → 1.

    With d_j = z_j − z_k and m = max_j d_j ≥ 0 (d_k = 0), S = Σ_{j≠k} e^{d_j − m}:
    u = log1p(S) when m = 0 (k is a top logit), else u = m + log(e^{−m} + S). `log_softmax` would
    give u = lse(z) − z_k, whose absolute error eps·|z| swamps u ≈ e^{−margin} for a confident
    sample (and so the focal loss and all small gradients); here autograd also yields the accurate
    derivatives du/dz_j = p_j − δ_jk.
    """
    t = target.long().unsqueeze(1)
    d = logits - logits.gather(1, t)
    m = d.max(dim=1).values.clamp_min(0.0)  # d_k = 0, so m ≥ 0 already; clamp guards −0/NaN order
    others = torch.exp(d - m.unsqueeze(1)).scatter(1, t, 0.0).sum(dim=1)
    top = m == 0
    return torch.where(top, torch.log1p(others), m + torch.log(torch.exp(-m) + others))


# --------------------------------------------------------------------------------------------
# built-in losses
# --------------------------------------------------------------------------------------------


class _Loss(nn.Module):
    """Base: validates the inputs, then averages `per_sample` over the batch."""

    name = "?"

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = int(num_classes)

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample loss [B] (inputs validated)."""
        validate_inputs(logits, target, self.num_classes, self.name)
        return self._per_sample(logits, target.long())

    def _per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the per-sample loss (a 0-dim tensor)."""
        return self.per_sample(logits, target).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class CrossEntropyLoss(_Loss):
    """ce: −log softmax(z)_k (eq. 3)."""

    name = "ce"

    def _per_sample(self, logits, target):
        return _nll(logits, target)


class _FocalFromNLL(torch.autograd.Function):
    """L(u) = u · (1 − e^{−u})^γ for u = −log p_k ≥ 0, with a derivative that stays finite.

    With t = 1 − e^{−u} = −expm1(−u) and r = u / t (r → 1 as u → 0):
        dL/du = t^γ + γ u e^{−u} t^{γ−1} = t^γ · (1 + γ · e^{−u} · r).
    Autograd on u · t^γ would evaluate γ t^{γ−1}, which is infinite when t underflows to 0 (a
    confidently correct sample) and γ < 1, and then multiply it by 0 → NaN. Here every factor is
    bounded: t^γ ∈ [0, 1], e^{−u} r ≤ 1. At u = 0: dL/du = 1 if γ = 0 (CE), else 0 (the limit).
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, gamma: float) -> torch.Tensor:
        u = u.clamp_min(0.0)  # −log p ≥ 0; guards rounding to −0/−tiny
        t = -torch.expm1(-u)
        ctx.save_for_backward(u)
        ctx.gamma = gamma
        return u * t.pow(gamma)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (u,) = ctx.saved_tensors
        gamma = ctx.gamma
        t = -torch.expm1(-u)
        positive = t > 0
        r = torch.where(positive, u / torch.where(positive, t, torch.ones_like(t)), torch.ones_like(u))
        dldu = t.pow(gamma) * (1.0 + gamma * torch.exp(-u) * r)
        return grad_out * dldu, None


class FocalLoss(_Loss):
    """fl: −(1 − p_k)^γ · log p_k (eq. 4); γ = 0 is exactly ce."""

    name = "fl"

    def __init__(self, num_classes: int, gamma: float = 3.0):
        super().__init__(num_classes)
        self.gamma = float(gamma)

    def _per_sample(self, logits, target):
        u = _nll(logits, target)
        if self.gamma == 0.0:
            return u
        return _FocalFromNLL.apply(u, self.gamma)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, gamma={self.gamma}"


class LabelSmoothingLoss(_Loss):
    """ls: −Σ_ℓ y^smooth_ℓ log p_ℓ with y^smooth = (1−α) e_k + (α/K)·1 (eq. 5); α = 0 is ce."""

    name = "ls"

    def __init__(self, num_classes: int, alpha: float = 0.1):
        super().__init__(num_classes)
        self.alpha = float(alpha)

    def _per_sample(self, logits, target):
        nll_k = _nll(logits, target)
        if self.alpha == 0.0:
            return nll_k
        uniform = -F.log_softmax(logits, dim=1).sum(dim=1) / self.num_classes
        return (1.0 - self.alpha) * nll_k + self.alpha * uniform

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}"


class RescaledMSELoss(_Loss):
    """mse: κ (z_k − β)² + Σ_{ℓ≠k} z_ℓ² (eq. 6); divided by K when `class_mean` (the paper's code)."""

    name = "mse"

    def __init__(self, num_classes: int, kappa: float = 1.0, beta: float = 15.0, class_mean: bool = False):
        super().__init__(num_classes)
        self.kappa, self.beta, self.class_mean = float(kappa), float(beta), bool(class_mean)

    def _per_sample(self, logits, target):
        onehot = F.one_hot(target, self.num_classes).to(logits.dtype)
        others = (logits * (1.0 - onehot)).square().sum(dim=1)  # no z² − z_k² cancellation
        z_k = logits.gather(1, target.unsqueeze(1)).squeeze(1)
        per = self.kappa * (z_k - self.beta).square() + others
        return per / self.num_classes if self.class_mean else per

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, kappa={self.kappa}, beta={self.beta}, "
                f"class_mean={self.class_mean}")


class UserLoss(nn.Module):
    """Wraps a user loss (an nn.Module or a callable f(logits, target) -> scalar) resolved from
    "package.module:callable": validates inputs like the built-ins and checks a scalar comes back."""

    def __init__(self, name: str, num_classes: int, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.name, self.num_classes = name, int(num_classes)
        if isinstance(fn, nn.Module):
            self.inner = fn  # registered as a submodule: its parameters/buffers follow .to()
        else:
            self._fn = fn

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        validate_inputs(logits, target, self.num_classes, self.name)
        fn = self.inner if "inner" in self._modules else self._fn
        out = fn(logits, target)
        if not isinstance(out, torch.Tensor) or out.dim() != 0:
            shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"loss '{self.name}' returned {shape}; a loss must return the batch mean as a "
                f"0-dim tensor"
            )
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_classes={self.num_classes}"


# --------------------------------------------------------------------------------------------
# parameter validation and the registry
# --------------------------------------------------------------------------------------------


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ParameterError(f"loss '{name}': parameter '{key}' must be a finite number, got {value!r}",
                             key="loss_params")
    return float(value)


def _check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `params` over the defaults of built-in loss `name`, rejecting unknown keys and bad values."""
    defaults = LOSS_DEFAULTS[name]
    unknown = [k for k in params if k not in defaults]
    if unknown:
        valid = ", ".join(defaults) if defaults else "(none)"
        hint = did_you_mean(unknown[0], defaults) if defaults and len(unknown) == 1 else ""
        raise ParameterError(
            f"loss '{name}': unknown parameter(s) {', '.join(repr(k) for k in unknown)}{hint}; "
            f"valid parameters: {valid}", key="loss_params"
        )
    merged = {**defaults, **params}
    if name == "fl":
        g = _number(name, "gamma", merged["gamma"])
        if g < 0:
            raise ParameterError(f"loss 'fl': parameter 'gamma' must be ≥ 0, got {g}", key="loss_params")
        merged["gamma"] = g
    elif name == "ls":
        a = _number(name, "alpha", merged["alpha"])
        if not 0.0 <= a <= 1.0:
            raise ParameterError(f"loss 'ls': parameter 'alpha' must be in [0, 1], got {a}",
                                 key="loss_params")
        merged["alpha"] = a
    elif name == "mse":
        for key in ("kappa", "beta"):
            v = _number(name, key, merged[key])
            if v <= 0:
                raise ParameterError(f"loss 'mse': parameter '{key}' must be > 0, got {v}",
                                     key="loss_params")
            merged[key] = v
        if not isinstance(merged["class_mean"], bool):
            raise ParameterError(
                f"loss 'mse': parameter 'class_mean' must be true or false, got {merged['class_mean']!r}",
                key="loss_params"
            )
    return merged


@LOSSES.register("ce")
def _make_ce(num_classes: int, **params: Any) -> nn.Module:
    _check_params("ce", params)
    return CrossEntropyLoss(num_classes)


@LOSSES.register("fl")
def _make_fl(num_classes: int, **params: Any) -> nn.Module:
    return FocalLoss(num_classes, **_check_params("fl", params))


@LOSSES.register("ls")
def _make_ls(num_classes: int, **params: Any) -> nn.Module:
    return LabelSmoothingLoss(num_classes, **_check_params("ls", params))


@LOSSES.register("mse")
def _make_mse(num_classes: int, **params: Any) -> nn.Module:
    return RescaledMSELoss(num_classes, **_check_params("mse", params))


def make_loss(name: str, num_classes: int, **params: Any) -> nn.Module:
    """The loss called `name` for `num_classes` classes, with `params` over its defaults.

    Raises `ncbench.errors.UnknownNameError` for an unknown name (with the closest known one) and
    `ncbench.errors.ParameterError` (a ValueError) for a bad `num_classes`, bad/unknown parameters
    or a user loss that cannot be built with them.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ParameterError(f"loss '{name}': num_classes must be an integer ≥ 2, got {num_classes!r}")
    factory = LOSSES.get(name)  # UnknownNameError for unknown names / unimportable paths
    if not is_import_path(name) or name in LOSSES.names():
        return factory(num_classes, **params)
    try:
        made = factory(num_classes=num_classes, **params)
    except TypeError as exc:
        raise ParameterError(
            f"loss '{name}': calling it as {name}(num_classes={num_classes}"
            + "".join(f", {k}={v!r}" for k, v in params.items())
            + f") failed: {exc}", key="loss_params"
        ) from exc
    if not callable(made):
        raise ParameterError(
            f"loss '{name}' returned {type(made).__name__}; it must return an nn.Module or a "
            f"callable f(logits, target) -> scalar tensor", key="loss"
        )
    return UserLoss(name, num_classes, made)
