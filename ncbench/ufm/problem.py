"""The unconstrained feature model of eq. (7): its settings, its objective, and its NC-ansatz optimum.

    min_{W, H, b}  f(W, H, b) = (1/N) Σ_{k,i} L(W h_{k,i} + b, y_k)
                               + (λ_W/2)‖W‖²_F + (λ_H/2)‖H‖²_F + (λ_b/2)‖b‖²

with W ∈ R^{K×d}, H ∈ R^{d×N} (N = nK, n samples per class), b ∈ R^K and L any loss of
`ncbench.losses` (its batch mean is exactly the 1/N Σ term). Everything is float64.

Sample order: column j of H (and labels[j]) is sample i = j // K of class k = j % K, i.e.
H = [H_1 … H_n] with H_i = [h_{1,i} … h_{K,i}] as in the paper.

* `settings_problem` / `validate_ufm_settings` — which settings are valid (K, d, n, λ's, tol,
  max_iter), named by their `solve_ufm` argument.
* `Objective` — f and ∇f on the flat vector x = [vec(W), vec(H), b]; `initial_point` its seeded
  random start.
* `nc_ansatz_optimum` — the smallest objective over neural-collapse-structured points (a
  3-variable problem): the value Theorem 1 says the global minimum has, an independent check of
  the solver.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ncbench.errors import NcbenchError, ParameterError
from ncbench.losses import make_loss
from ncbench.ufm.lbfgs import LBFGSOutcome, minimize, torch_threads

__all__ = ["Objective", "initial_point", "make_ufm_loss", "nc_ansatz_optimum", "settings_problem",
           "validate_ufm_settings"]

#: An invalid setting: (the `solve_ufm` argument, what is wrong with its value).
Problem = tuple[str, str]


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------


def _integer(arg: str, value: Any, minimum: int) -> Problem | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return arg, f"must be an integer, got {value!r}"
    if value < minimum:
        return arg, f"must be at least {minimum}, got {value}"
    return None


def _finite(arg: str, value: Any) -> Problem | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return arg, f"must be a finite number, got {value!r}"
    return None


def settings_problem(num_classes: Any, dim: Any, per_class: Any, lambda_w: Any, lambda_h: Any,
                     lambda_b: Any, tol: Any = 1e-9, max_iter: Any = 10_000) -> Problem | None:
    """The first invalid setting as (`solve_ufm` argument, reason), or None when all are valid.

    Held: K ≥ 2; d ≥ K (Theorem 1 assumes K < d; d = K is allowed but outside the theorem);
    n ≥ 1; λ_W > 0 and λ_H > 0 (else the infimum is not attained: W, H grow without bound);
    λ_b ≥ 0 (0 = an unpenalised bias, which Theorem 1 also covers); 0 < tol < 1; max_iter ≥ 1.
    """
    if problem := _integer("num_classes", num_classes, 2) or _integer("dim", dim, 1):
        return problem
    if dim < num_classes:
        return "dim", (f"the feature dimension d = {dim} is smaller than the number of classes "
                       f"K = {num_classes}; the unconstrained feature model needs d ≥ K (Theorem 1 "
                       f"assumes K < d)")
    if problem := _integer("per_class", per_class, 1):
        return problem
    for arg, value in (("lambda_w", lambda_w), ("lambda_h", lambda_h)):
        if problem := _finite(arg, value):
            return problem
        if float(value) <= 0:
            return arg, (f"must be > 0, got {value!r} (without weight decay on W and H the objective "
                         f"has no minimiser: the loss keeps falling as the norms grow)")
    if problem := _finite("lambda_b", lambda_b):
        return problem
    if float(lambda_b) < 0:
        return "lambda_b", f"must be ≥ 0 (0 = unpenalised bias), got {lambda_b!r}"
    if problem := _finite("tol", tol):
        return problem
    if not 0 < float(tol) < 1:
        return "tol", f"must be in (0, 1), got {tol!r}"
    return _integer("max_iter", max_iter, 1)


def validate_ufm_settings(num_classes: Any, dim: Any, per_class: Any, lambda_w: Any, lambda_h: Any,
                          lambda_b: Any, tol: Any = 1e-9, max_iter: Any = 10_000) -> None:
    """Raise `ParameterError` (its `key` the `solve_ufm` argument, e.g. 'per_class') for the first
    invalid setting (see `settings_problem`)."""
    problem = settings_problem(num_classes, dim, per_class, lambda_w, lambda_h, lambda_b, tol, max_iter)
    if problem is not None:
        arg, reason = problem
        raise ParameterError(f"UFM setting '{arg}': {reason}", key=arg)


def make_ufm_loss(loss: str, num_classes: int, loss_params: Mapping[str, Any] | None) -> torch.nn.Module:
    """`ncbench.losses.make_loss(loss, num_classes, **loss_params)`: `UnknownNameError` for an
    unknown name, `ParameterError` for bad parameters (a user loss's own ValueError included)."""
    try:
        return make_loss(loss, num_classes, **dict(loss_params or {}))
    except NcbenchError:
        raise
    except ValueError as exc:  # a user loss refusing its parameters
        raise ParameterError(str(exc), key="loss_params") from exc


# --------------------------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------------------------


class Objective:
    """f(x) and ∇f(x) for the flat parameter vector x = [vec(W), vec(H), b] (float64).

    Holds the loss module, K, d, n, N = nK, the λ's, `labels` [N] (j % K), `sizes` (the lengths
    of vec(W), vec(H), b) and `evaluations` (calls so far)."""

    def __init__(self, loss: torch.nn.Module, num_classes: int, dim: int, per_class: int,
                 lambda_w: float, lambda_h: float, lambda_b: float, device: torch.device):
        self.loss, self.K, self.d, self.n = loss, num_classes, dim, per_class
        self.N = num_classes * per_class
        self.lw, self.lh, self.lb = lambda_w, lambda_h, lambda_b
        self.labels = torch.arange(self.N, device=device) % num_classes
        self.sizes = (num_classes * dim, dim * self.N, num_classes)
        self.evaluations = 0

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views W [K, d], H [d, N], b [K] of the flat vector x."""
        nw, nh, _ = self.sizes
        return x[:nw].view(self.K, self.d), x[nw:nw + nh].view(self.d, self.N), x[nw + nh:]

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) as a 0-dim tensor (differentiable)."""
        W, H, b = self.split(x)
        logits = (W @ H).T + b  # [N, K]
        return (self.loss(logits, self.labels) + 0.5 * self.lw * W.square().sum()
                + 0.5 * self.lh * H.square().sum() + 0.5 * self.lb * b.square().sum())

    def __call__(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        self.evaluations += 1
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            f = self.value(xr)
            (g,) = torch.autograd.grad(f, xr)
        return float(f.detach()), g


def initial_point(obj: Objective, seed: int, init_scale: float, device: torch.device) -> torch.Tensor:
    """Entries of W and H i.i.d. N(0, init_scale²/d), of b i.i.d. N(0, (0.1·init_scale)²); drawn on
    the CPU from `seed` so every device starts from the same point."""
    gen = torch.Generator().manual_seed(int(seed))
    nw, nh, nb = obj.sizes
    s = init_scale / math.sqrt(obj.d)
    x0 = torch.cat([
        torch.randn(nw, generator=gen, dtype=torch.float64) * s,
        torch.randn(nh, generator=gen, dtype=torch.float64) * s,
        torch.randn(nb, generator=gen, dtype=torch.float64) * (0.1 * init_scale),
    ])
    return x0.to(device)


# --------------------------------------------------------------------------------------------
# the neural-collapse ansatz: the objective's value on NC-structured points
# --------------------------------------------------------------------------------------------


def nc_ansatz_optimum(loss: str | torch.nn.Module, num_classes: int, per_class: int,
                      lambda_w: float, lambda_h: float, lambda_b: float,
                      loss_params: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The minimum of f over points with the structure Theorem 1 describes, plus a shared shift.

    Ansatz: W = W_c + 1aᵀ with W_c W_cᵀ = ρ·K/(K−1)·(I − 11ᵀ/K) (a simplex ETF with row norms √ρ),
    a ⟂ rows of W_c; h_{k,i} = c·w_k with c = √(λ_W/(λ_H n)); b = b̄·1. Then every sample of class
    k has logits z = cρK/(K−1)(e_k − 1/K) + (p + b̄)·1 with p = c‖a‖² ≥ 0, and

        f = (1/K) Σ_k L(z^{(k)}, k) + λ_W K ρ + K√(n λ_W λ_H)·p + (λ_b K/2)·b̄².

    For CE, FL and LS (shift-invariant) p = b̄ = 0 at the minimum and, by Theorem 1, this minimum is
    the global minimum of eq. (7). The 3 variables are minimised with the same L-BFGS
    (ρ = r², p = q²). Returns {"objective", "rho", "shift_p", "bias"}.
    """
    K, n = int(num_classes), int(per_class)
    loss_mod = make_ufm_loss(loss, K, loss_params) if isinstance(loss, str) else loss
    lw, lh, lb = float(lambda_w), float(lambda_h), float(lambda_b)
    c = math.sqrt(lw / (lh * n))
    eye = torch.eye(K, dtype=torch.float64)
    centred = (eye - 1.0 / K) * (K / (K - 1))
    labels = torch.arange(K)
    shrink = K * math.sqrt(n * lw * lh)

    def value(v: torch.Tensor) -> torch.Tensor:
        rho, p, bias = v[0].square(), v[1].square(), v[2]
        z = c * rho * centred + (p + bias)
        return loss_mod(z, labels) + lw * K * rho + shrink * p + 0.5 * lb * K * bias.square()

    def fg(v: torch.Tensor) -> tuple[float, torch.Tensor]:
        with torch.enable_grad():
            vr = v.detach().requires_grad_(True)
            f = value(vr)
            (g,) = torch.autograd.grad(f, vr)
        return float(f.detach()), g

    best: LBFGSOutcome | None = None
    with torch_threads(1):
        outs = [minimize(fg, torch.tensor(start, dtype=torch.float64), 1e-13, 5_000)
                for start in ([1.0, 1.0, 0.0], [3.0, 0.1, 1.0], [0.3, 2.0, -1.0])]
    for out in outs:
        if best is None or out.f < best.f:
            best = out
    assert best is not None
    v = best.x
    return {"objective": best.f, "rho": float(v[0] ** 2), "shift_p": float(v[1] ** 2),
            "bias": float(v[2])}
