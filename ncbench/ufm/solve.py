"""`solve_ufm`: eq. (7) solved from a seeded random start to a true stationary point, as a `UFMResult`.

Convergence criterion ("relative gradient norm"):
    rel_grad_norm = ‖∇f(W, H, b)‖₂ / max(1, |f(W, H, b)|)  ≤  tol   (default 1e-9),
where ‖∇f‖₂ is the Euclidean norm of the full gradient (all K·d + d·N + K entries). The
optimiser is `ncbench.ufm.lbfgs.minimize` on `ncbench.ufm.problem.Objective`; it runs on any
torch device. Also here: `is_zero_solution`, whether a result is W = H = 0 (its summary says so
and the Theorem-1 checks judge it by absolute sizes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ncbench.nc import collapse_metrics
from ncbench.ufm.lbfgs import minimize, torch_threads
from ncbench.ufm.problem import Objective, initial_point, make_ufm_loss, validate_ufm_settings

__all__ = ["SINGLE_THREAD_BELOW", "SUMMARY_KEYS", "UFMResult", "ZERO_SOLUTION_NORM_SQ",
           "is_zero_solution", "solve_ufm"]

#: Keys of `UFMResult.summary()` (also the JSON of `ncbench ufm --json`).
SUMMARY_KEYS = (
    "loss", "loss_params", "classes", "dim", "per_class", "lambda_w", "lambda_h", "lambda_b", "seed",
    "objective", "nc1", "nc2", "nc3", "nc4", "nc2_centered", "nc3_centered", "w_norm_sq",
    "h_norm_sq", "b_norm", "grad_norm", "rel_grad_norm", "converged", "stop_reason", "iterations",
    "evaluations", "seconds", "device", "zero_solution",
)

#: ‖W‖²_F + ‖H‖²_F at or below this counts as the zero solution W = H = 0.
ZERO_SOLUTION_NORM_SQ = 1e-8

#: Below this many entries of W·H (K·d·N) the CPU solve runs single-threaded: the per-op work is
#: tiny, and on a busy machine OpenMP threads that wait for each other slow it down 10–100×.
SINGLE_THREAD_BELOW = 1 << 22


@dataclass
class UFMResult:
    """A solved instance of eq. (7). Tensors are float64 on the CPU.

    W [K, d], H [d, N], b [K], labels [N] (labels[j] = j % K). `objective` = f(W, H, b);
    `grad_norm` = ‖∇f‖₂ (absolute), `rel_grad_norm` = grad_norm / max(1, |objective|);
    `converged` is rel_grad_norm ≤ tol. `metrics` = `ncbench.nc.collapse_metrics(Hᵀ, labels, W, b)`.
    `seconds` is the solver's wall time (excluding the per-iteration metrics of a trajectory).
    `trajectory` (if asked for): one dict per iteration (0 = the random start) with iteration,
    seconds, objective, grad_norm, rel_grad_norm, nc1, nc2, nc3, nc2_centered, nc3_centered.
    """

    loss: str
    loss_params: dict[str, Any]
    num_classes: int
    dim: int
    per_class: int
    lambda_w: float
    lambda_h: float
    lambda_b: float
    seed: int
    tol: float
    W: torch.Tensor
    H: torch.Tensor
    b: torch.Tensor
    labels: torch.Tensor
    objective: float
    grad_norm: float
    rel_grad_norm: float
    converged: bool
    stop_reason: str
    iterations: int
    evaluations: int
    seconds: float
    device: str
    metrics: dict[str, float]
    trajectory: list[dict[str, float]] = field(default_factory=list)

    @property
    def w_norm_sq(self) -> float:
        return float(self.W.square().sum())

    @property
    def h_norm_sq(self) -> float:
        return float(self.H.square().sum())

    @property
    def b_norm(self) -> float:
        return float(self.b.norm())

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars (the keys in `SUMMARY_KEYS`)."""
        m = self.metrics
        return {
            "loss": self.loss, "loss_params": dict(self.loss_params), "classes": self.num_classes,
            "dim": self.dim, "per_class": self.per_class, "lambda_w": self.lambda_w,
            "lambda_h": self.lambda_h, "lambda_b": self.lambda_b, "seed": self.seed,
            "objective": self.objective, "nc1": m.get("nc1"), "nc2": m.get("nc2"),
            "nc3": m.get("nc3"), "nc4": m.get("nc4"), "nc2_centered": m.get("nc2_centered"),
            "nc3_centered": m.get("nc3_centered"), "w_norm_sq": self.w_norm_sq,
            "h_norm_sq": self.h_norm_sq, "b_norm": self.b_norm, "grad_norm": self.grad_norm,
            "rel_grad_norm": self.rel_grad_norm, "converged": self.converged,
            "stop_reason": self.stop_reason, "iterations": self.iterations,
            "evaluations": self.evaluations, "seconds": self.seconds, "device": self.device,
            "zero_solution": is_zero_solution(self),
        }


def is_zero_solution(result: UFMResult) -> bool:
    """True when the solution is W = H = 0 (numerically): the weight decay is too strong for any
    nonzero logits to pay off. The NC metrics are then undefined (0/0)."""
    return result.w_norm_sq + result.h_norm_sq <= ZERO_SOLUTION_NORM_SQ


def _metrics(W: torch.Tensor, H: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    m = collapse_metrics(H.T.detach().double().cpu(), labels.cpu(), W.detach().double().cpu(),
                         b.detach().double().cpu())
    return {k: float(v) for k, v in m.items()}


def solve_ufm(loss: str, num_classes: int, dim: int, per_class: int, lambda_w: float,
              lambda_h: float, lambda_b: float, loss_params: Mapping[str, Any] | None = None,
              seed: int = 0, tol: float = 1e-9, max_iter: int = 10_000, device: str = "cpu",
              trajectory: bool = False, init_scale: float = 1.0, history: int = 10,
              progress: Callable[[int, float, float], None] | None = None,
              num_threads: int | None = None) -> UFMResult:
    """Minimise eq. (7) from a seeded random start until ‖∇f‖ ≤ tol·max(1, |f|).

    `loss` is any name `ncbench.losses.make_loss` accepts, with `loss_params` over its defaults.
    `progress(iteration, objective, rel_grad_norm)` is called after every iteration (for a
    progress display). Raises `ParameterError` for invalid settings or loss parameters,
    `UnknownNameError` for an unknown loss. A run that stops before the tolerance (max_iter,
    line-search failure) returns with `converged=False` and the reason in `stop_reason`.
    `num_threads`: torch CPU threads for the solve (default: 1 when K·d·N < 2^22 on the CPU,
    else torch's current setting).
    """
    validate_ufm_settings(num_classes, dim, per_class, lambda_w, lambda_h, lambda_b, tol, max_iter)
    dev = torch.device(device)
    loss_mod = make_ufm_loss(loss, num_classes, loss_params).to(dev)
    obj = Objective(loss_mod, num_classes, dim, per_class, float(lambda_w), float(lambda_h),
                    float(lambda_b), dev)
    x0 = initial_point(obj, seed, init_scale, dev)

    traj: list[dict[str, float]] = []
    excluded = 0.0  # time spent recording the trajectory, not counted as solver time
    start = time.perf_counter()

    def on_iter(it: int, x: torch.Tensor, f: float, gnorm: float) -> None:
        nonlocal excluded
        rel = gnorm / max(1.0, abs(f))
        if trajectory:
            t_in = time.perf_counter()
            W, H, b = obj.split(x)
            row = {"iteration": it, "seconds": t_in - start - excluded, "objective": f,
                   "grad_norm": gnorm, "rel_grad_norm": rel}
            m = _metrics(W, H, b, obj.labels)
            row.update({k: m.get(k, math.nan) for k in ("nc1", "nc2", "nc3", "nc2_centered", "nc3_centered")})
            traj.append(row)
            excluded += time.perf_counter() - t_in
        if progress is not None and it > 0:
            progress(it, f, rel)

    if num_threads is None and dev.type == "cpu" and num_classes * dim * obj.N < SINGLE_THREAD_BELOW:
        num_threads = 1
    with torch.no_grad(), torch_threads(num_threads):
        out = minimize(obj, x0, float(tol), int(max_iter), history=history, on_iter=on_iter)
        seconds = time.perf_counter() - start - excluded
        W, H, b = (t.detach().cpu().clone() for t in obj.split(out.x))
        metrics = _metrics(W, H, b, obj.labels)
    gnorm = float(out.g.norm())
    return UFMResult(
        loss=loss, loss_params=dict(loss_params or {}), num_classes=num_classes, dim=dim,
        per_class=per_class, lambda_w=float(lambda_w), lambda_h=float(lambda_h),
        lambda_b=float(lambda_b), seed=int(seed), tol=float(tol), W=W, H=H, b=b,
        labels=obj.labels.cpu(), objective=out.f, grad_norm=gnorm,
        rel_grad_norm=gnorm / max(1.0, abs(out.f)), converged=out.converged,
        stop_reason=out.stop_reason, iterations=out.iterations, evaluations=obj.evaluations,
        seconds=seconds, device=str(dev), metrics=metrics, trajectory=traj,
    )
