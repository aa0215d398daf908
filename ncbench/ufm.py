"""The unconstrained feature model (UFM) of the paper, eq. (7), solved to a true stationary point.

    min_{W, H, b}  f(W, H, b) = (1/N) Σ_{k,i} L(W h_{k,i} + b, y_k)
                               + (λ_W/2)‖W‖²_F + (λ_H/2)‖H‖²_F + (λ_b/2)‖b‖²

with W ∈ R^{K×d}, H ∈ R^{d×N} (N = nK, n samples per class), b ∈ R^K and L any loss of
`ncbench.losses` (its batch mean is exactly the 1/N Σ term). Everything is float64.

Public API
----------
`solve_ufm(...) -> UFMResult`
    L-BFGS (two-loop recursion, memory 10) with a bracketing line search that enforces the strong
    Wolfe conditions, or — once the objective can no longer resolve the decrease (|Δf| at the
    level of rounding) — the *approximate* Wolfe conditions of Hager & Zhang, which are stated on
    directional derivatives only. That is what lets it drive the gradient to ~1e-10 relative in
    float64 where an Armijo test on f alone stalls near √eps. Runs on any torch device.
`theorem1_checks(result, tol=1e-6) -> list[Check]`
    Each property of Theorem 1 measured as a relative deviation and compared with the prediction.
`nc_ansatz_optimum(...)`
    The smallest objective over neural-collapse-structured points (a 3-variable problem): the
    value Theorem 1 says the global minimum has, for an independent check of the solver.

Convergence criterion ("relative gradient norm"):
    rel_grad_norm = ‖∇f(W, H, b)‖₂ / max(1, |f(W, H, b)|)  ≤  tol   (default 1e-9),
where ‖∇f‖₂ is the Euclidean norm of the full gradient (all K·d + d·N + K entries).

Sample order: column j of H (and labels[j]) is sample i = j // K of class k = j % K, i.e.
H = [H_1 … H_n] with H_i = [h_{1,i} … h_{K,i}] as in the paper.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ncbench.errors import ConfigError, UnknownNameError

__all__ = [
    "THEOREM1_LOSSES",
    "Check",
    "UFMResult",
    "checks_passed",
    "is_zero_solution",
    "nc_ansatz_optimum",
    "solve_ufm",
    "theorem1_checks",
    "validate_ufm_settings",
]

#: Losses that Theorem 1 covers (they have the contrastive property of Definition 1).
THEOREM1_LOSSES = frozenset({"ce", "fl", "ls"})

#: Keys of `UFMResult.summary()` (also the JSON of `ncbench ufm --json`).
SUMMARY_KEYS = (
    "loss", "loss_params", "classes", "dim", "per_class", "lambda_w", "lambda_h", "lambda_b", "seed",
    "objective", "nc1", "nc2", "nc3", "nc4", "nc2_centered", "nc3_centered", "w_norm_sq",
    "h_norm_sq", "b_norm", "grad_norm", "rel_grad_norm", "converged", "stop_reason", "iterations",
    "evaluations", "seconds", "device", "zero_solution",
)


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------


def _positive_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(None, f"must be an integer, got {value!r}", key=key)
    if value < minimum:
        raise ConfigError(None, f"must be at least {minimum}, got {value}", key=key)
    return value


def _finite(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(None, f"must be a finite number, got {value!r}", key=key)
    return float(value)


def validate_ufm_settings(num_classes: Any, dim: Any, per_class: Any, lambda_w: Any, lambda_h: Any,
                          lambda_b: Any, tol: Any = 1e-9, max_iter: Any = 10_000) -> None:
    """Raise `ConfigError` (naming the setting as the CLI option, e.g. 'dim') for invalid settings.

    Held: K ≥ 2; d ≥ K (Theorem 1 assumes K < d; d = K is allowed but outside the theorem);
    n ≥ 1; λ_W > 0 and λ_H > 0 (else the infimum is not attained: W, H grow without bound);
    λ_b ≥ 0 (0 = an unpenalised bias, which Theorem 1 also covers); 0 < tol < 1; max_iter ≥ 1.
    """
    k = _positive_int("classes", num_classes, 2)
    d = _positive_int("dim", dim, 1)
    if d < k:
        raise ConfigError(
            None,
            f"the feature dimension d = {d} is smaller than the number of classes K = {k}; the "
            f"unconstrained feature model needs d ≥ K (Theorem 1 assumes K < d)",
            key="dim",
        )
    _positive_int("per-class", per_class, 1)
    for key, value in (("lambda-w", lambda_w), ("lambda-h", lambda_h)):
        v = _finite(key, value)
        if v <= 0:
            raise ConfigError(
                None,
                f"must be > 0, got {value!r} (without weight decay on W and H the objective has no "
                f"minimiser: the loss keeps falling as the norms grow)",
                key=key,
            )
    vb = _finite("lambda-b", lambda_b)
    if vb < 0:
        raise ConfigError(None, f"must be ≥ 0 (0 = unpenalised bias), got {lambda_b!r}", key="lambda-b")
    t = _finite("tol", tol)
    if not 0 < t < 1:
        raise ConfigError(None, f"must be in (0, 1), got {tol!r}", key="tol")
    _positive_int("max-iter", max_iter, 1)


# --------------------------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------------------------


class _Objective:
    """f(x) and ∇f(x) for the flat parameter vector x = [vec(W), vec(H), b] (float64)."""

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
        nw, nh, _ = self.sizes
        return x[:nw].view(self.K, self.d), x[nw:nw + nh].view(self.d, self.N), x[nw + nh:]

    def value(self, x: torch.Tensor) -> torch.Tensor:
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


# --------------------------------------------------------------------------------------------
# L-BFGS with a (strong / approximate) Wolfe line search
# --------------------------------------------------------------------------------------------

FG = Callable[[torch.Tensor], tuple[float, torch.Tensor]]


def _line_search(fg: FG, x: torch.Tensor, d: torch.Tensor, f0: float, gtd0: float, t: float,
                 c1: float = 1e-4, c2: float = 0.9, max_evals: int = 40
                 ) -> tuple[float | None, float, torch.Tensor | None]:
    """Find t > 0 along the descent direction d satisfying the strong Wolfe conditions
    (f(t) ≤ f0 + c1 t φ'(0) and |φ'(t)| ≤ c2 |φ'(0)|) or the approximate Wolfe conditions of
    Hager–Zhang (f(t) ≤ f0 + ε_f and (2c1 − 1) φ'(0) ≥ φ'(t) ≥ c2 φ'(0)), ε_f = 1e-10·max(1,|f0|):
    the latter are judged on derivatives, which keep full precision when f no longer resolves
    the decrease. Brackets with expansion ×4, then zooms (secant on φ' or safeguarded cubic).

    Returns (t, f(t), ∇f(t)); t is None when no acceptable point was found.
    """
    eps_f = 1e-10 * max(1.0, abs(f0))
    lo, f_lo, d_lo, g_lo = 0.0, f0, gtd0, None
    hi = f_hi = d_hi = None
    for _ in range(max_evals):
        ft, gt = fg(x + t * d)
        dt = float(gt @ d)
        finite = math.isfinite(ft) and math.isfinite(dt)
        decrease = finite and (ft <= f0 + c1 * t * gtd0 or (ft <= f0 + eps_f and dt <= (2 * c1 - 1) * gtd0))
        if decrease and abs(dt) <= -c2 * gtd0:
            return t, ft, gt
        if not decrease or dt > 0:  # the step overshoots: [lo, t] brackets an acceptable point
            hi, f_hi, d_hi = t, ft, (dt if finite else None)
        else:  # still descending: move the lower end up
            lo, f_lo, d_lo, g_lo = t, ft, dt, gt
        if hi is None:
            t *= 4.0
            continue
        w = hi - lo
        if d_hi is None:
            t_new = lo + 0.5 * w
        elif d_hi > 0:  # secant on φ' (uses derivatives only)
            t_new = lo - d_lo * w / (d_hi - d_lo)
        else:  # cubic through (lo, f_lo, d_lo), (hi, f_hi, d_hi)
            d1 = d_lo + d_hi - 3.0 * (f_lo - f_hi) / (lo - hi)
            disc = d1 * d1 - d_lo * d_hi
            if disc >= 0:
                d2 = math.sqrt(disc)
                den = d_hi - d_lo + 2.0 * d2
                t_new = hi - w * (d_hi + d2 - d1) / den if den != 0 else lo + 0.5 * w
            else:
                t_new = lo + 0.5 * w
        if not math.isfinite(t_new):
            t_new = lo + 0.5 * w
        t = min(max(t_new, lo + 0.1 * w), hi - 0.1 * w)
        if w <= 1e-16 * max(1.0, hi):
            break
    if lo > 0:  # sufficient decrease with φ' < 0: a valid (if short) step
        return lo, f_lo, g_lo
    return None, f0, None


@dataclass
class _LBFGSOutcome:
    x: torch.Tensor
    f: float
    g: torch.Tensor
    iterations: int
    converged: bool
    stop_reason: str


def _lbfgs(fg: FG, x: torch.Tensor, tol: float, max_iter: int, history: int = 10,
           on_iter: Callable[[int, torch.Tensor, float, float], None] | None = None) -> _LBFGSOutcome:
    """Minimise with L-BFGS until ‖∇f‖ ≤ tol·max(1, |f|) or max_iter iterations.

    `on_iter(iteration, x, f, ‖∇f‖)` is called at the start (iteration 0) and after every step.
    """
    f, g = fg(x)
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    rho: list[float] = []
    it = 0
    gnorm = float(g.norm())
    if on_iter:
        on_iter(0, x, f, gnorm)
    reason = "max_iter"
    failures = 0
    while True:
        if not (math.isfinite(f) and math.isfinite(gnorm)):
            reason = "non-finite objective or gradient"
            break
        if gnorm <= tol * max(1.0, abs(f)):
            reason = "converged"
            break
        if it >= max_iter:
            break
        # two-loop recursion: q ≈ H_k^{-1} g
        q = g.clone()
        alphas = []
        for s, y, r in zip(reversed(S), reversed(Y), reversed(rho)):
            a = r * float(s @ q)
            alphas.append(a)
            q.add_(y, alpha=-a)
        if S:
            q.mul_(float(S[-1] @ Y[-1]) / float(Y[-1] @ Y[-1]))
        for s, y, r, a in zip(S, Y, rho, reversed(alphas)):
            q.add_(s, alpha=a - r * float(y @ q))
        d = q.neg_()
        gtd = float(g @ d)
        if not gtd < 0:  # not a descent direction: restart from steepest descent
            S, Y, rho = [], [], []
            d, gtd = -g, -gnorm * gnorm
        t0 = 1.0 if S else min(1.0, 1.0 / gnorm)
        t, f_new, g_new = _line_search(fg, x, d, f, gtd, t0)
        if t is None:
            failures += 1
            if not S or failures >= 3:
                reason = "line search failed"
                break
            S, Y, rho = [], [], []  # drop the curvature memory and retry
            continue
        failures = 0
        s = d.mul_(t)
        y = g_new - g
        sy = float(s @ y)
        if sy > 1e-12 * float(s.norm()) * float(y.norm()):
            S.append(s)
            Y.append(y)
            rho.append(1.0 / sy)
            if len(S) > history:
                S.pop(0), Y.pop(0), rho.pop(0)
        x = x + s
        f, g = f_new, g_new
        gnorm = float(g.norm())
        it += 1
        if on_iter:
            on_iter(it, x, f, gnorm)
    return _LBFGSOutcome(x, f, g, it, reason == "converged", reason)


# --------------------------------------------------------------------------------------------
# the solver
# --------------------------------------------------------------------------------------------


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


def _metrics(W: torch.Tensor, H: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from ncbench.nc import collapse_metrics

    m = collapse_metrics(H.T.detach().double().cpu(), labels.cpu(), W.detach().double().cpu(),
                         b.detach().double().cpu())
    return {k: float(v) for k, v in m.items()}


def _make_loss(loss: str, num_classes: int, loss_params: Mapping[str, Any] | None) -> torch.nn.Module:
    from ncbench.losses import make_loss

    try:
        return make_loss(loss, num_classes, **dict(loss_params or {}))
    except UnknownNameError:
        raise
    except ValueError as exc:  # bad / unknown loss parameters
        raise ConfigError(None, str(exc), key="loss-params") from exc


def _initial_point(obj: _Objective, seed: int, init_scale: float, device: torch.device) -> torch.Tensor:
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


@contextmanager
def _torch_threads(n: int | None):
    """Temporarily run torch's CPU ops on n threads (None: leave the setting alone)."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: Below this many entries of W·H (K·d·N) the CPU solve runs single-threaded: the per-op work is
#: tiny, and on a busy machine OpenMP threads that wait for each other slow it down 10–100×.
SINGLE_THREAD_BELOW = 1 << 22


def solve_ufm(loss: str, num_classes: int, dim: int, per_class: int, lambda_w: float,
              lambda_h: float, lambda_b: float, loss_params: Mapping[str, Any] | None = None,
              seed: int = 0, tol: float = 1e-9, max_iter: int = 10_000, device: str = "cpu",
              trajectory: bool = False, init_scale: float = 1.0, history: int = 10,
              progress: Callable[[int, float, float], None] | None = None,
              num_threads: int | None = None) -> UFMResult:
    """Minimise eq. (7) from a seeded random start until ‖∇f‖ ≤ tol·max(1, |f|).

    `loss` is any name `ncbench.losses.make_loss` accepts, with `loss_params` over its defaults.
    `progress(iteration, objective, rel_grad_norm)` is called after every iteration (for a
    progress display). Raises `ConfigError` for invalid settings, `UnknownNameError` for an
    unknown loss. A run that stops before the tolerance (max_iter, line-search failure) returns
    with `converged=False` and the reason in `stop_reason`. `num_threads`: torch CPU threads for
    the solve (default: 1 when K·d·N < 2^22 on the CPU, else torch's current setting).
    """
    validate_ufm_settings(num_classes, dim, per_class, lambda_w, lambda_h, lambda_b, tol, max_iter)
    dev = torch.device(device)
    loss_mod = _make_loss(loss, num_classes, loss_params).to(dev)
    obj = _Objective(loss_mod, num_classes, dim, per_class, float(lambda_w), float(lambda_h),
                     float(lambda_b), dev)
    x0 = _initial_point(obj, seed, init_scale, dev)

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
    with torch.no_grad(), _torch_threads(num_threads):
        out = _lbfgs(obj, x0, float(tol), int(max_iter), history=history, on_iter=on_iter)
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
    loss_mod = _make_loss(loss, K, loss_params) if isinstance(loss, str) else loss
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

    best: _LBFGSOutcome | None = None
    with _torch_threads(1):
        outs = [_lbfgs(fg, torch.tensor(start, dtype=torch.float64), 1e-13, 5_000)
                for start in ([1.0, 1.0, 0.0], [3.0, 0.1, 1.0], [0.3, 2.0, -1.0])]
    for out in outs:
        if best is None or out.f < best.f:
            best = out
    assert best is not None
    v = best.x
    return {"objective": best.f, "rho": float(v[0] ** 2), "shift_p": float(v[1] ** 2),
            "bias": float(v[2])}


# --------------------------------------------------------------------------------------------
# Theorem 1 checks
# --------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One property of a global minimiser, measured on a solution.

    `measured` is a relative deviation from the property (0 = holds exactly); `predicted` is the
    deviation the theory predicts (0.0) or None when nothing is predicted. `status` is "pass" /
    "fail" (predicted: measured ≤ tol or not) or "not-predicted" (then `holds` says whether the
    property holds numerically anyway, and `note` why nothing is predicted).
    """

    name: str
    statement: str
    measured: float
    predicted: float | None
    tol: float
    status: str
    holds: bool
    detail: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "statement": self.statement, "measured": self.measured,
                "predicted": self.predicted, "tol": self.tol, "status": self.status,
                "holds": self.holds, "detail": self.detail, "note": self.note}


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return 0.0 if a == 0 else math.inf


#: ‖W‖²_F + ‖H‖²_F at or below this counts as the zero solution W = H = 0.
ZERO_SOLUTION_NORM_SQ = 1e-8

ZERO_NOTE = ("the solution is W = H = 0 (weight decay too strong for nonzero logits to pay off): "
             "the properties hold trivially, so absolute sizes are measured (‖W‖²_F + ‖H‖²_F, ‖b‖, …)")

MSE_NOTE = ("MSE is outside Theorem 1: its optimum may shift every logit by the same amount, via b "
            "and via a component shared by all rows of W and all features (README: `ncbench ufm`)")


def theorem1_checks(result: UFMResult, tol: float = 1e-6) -> list[Check]:
    """Measure each property Theorem 1 predicts for a global minimiser, as a relative deviation.

    Checks (deviation measured → status): within-class collapse ‖H − M‖_F/‖H‖_F (M: class means);
    equal row norms (max − min)/mean of ‖w_k‖; h_{k,i} = √(λ_W/(λ_H n)) w_k as ‖H − cWᵀY‖_F/‖H‖_F;
    zero-mean class means max_i ‖(1/K)Σ_k h_{k,i}‖ / rms‖h‖; b = b*·1 and b = 0 (λ_b > 0) as
    ‖b − b̄1‖ resp. ‖b‖ over the r.m.s. ‖W h‖; WWᵀ a simplex ETF: NC2, and NC2 of the centred W;
    λ_W‖W‖² = λ_H‖H‖² (Lemma 5: at every stationary point, of any loss); the objective equals the
    NC-ansatz optimum (`nc_ansatz_optimum`; relative to max(1, |f|)).

    Predicted: all for CE/FL/LS when K < d. For MSE only within-class collapse, the centred ETF
    and the balance (the cited MSE works and Lemma 5); the others are reported as "not-predicted"
    with whether they hold. Other (user) losses: the balance only. When the solution is W = H = 0
    (`is_zero_solution`: weight decay too strong) the relative deviations are 0/0, so absolute
    sizes are measured instead; every property then holds trivially.
    """
    with _torch_threads(1):
        return _theorem1_checks(result, tol)


def _theorem1_checks(result: UFMResult, tol: float) -> list[Check]:
    K, n, lw, lh, lb = result.num_classes, result.per_class, result.lambda_w, result.lambda_h, result.lambda_b
    W, H, b, y = result.W, result.H, result.b, result.labels
    d, N = H.shape
    in_thm = result.loss in THEOREM1_LOSSES and K < result.dim
    if result.loss in THEOREM1_LOSSES and not in_thm:
        out_note = f"Theorem 1 assumes K < d; here d = K = {K}"
    elif result.loss == "mse":
        out_note = MSE_NOTE
    else:
        out_note = "Theorem 1 covers CE, FL and LS only"
    is_mse = result.loss == "mse"

    means = torch.stack([H[:, y == k].mean(dim=1) for k in range(K)], dim=1)  # d × K
    h_norm = float(H.norm())
    h_rms = h_norm / math.sqrt(N)
    row_norms = W.norm(dim=1)
    c = math.sqrt(lw / (lh * n))
    logit_rms = float((W @ H).norm()) / math.sqrt(N)
    per_i_mean = H.view(d, n, K).mean(dim=2)  # d × n: (1/K) Σ_k h_{k,i}
    m = result.metrics
    wn, hn = lw * result.w_norm_sq, lh * result.h_norm_sq

    rows: list[tuple[str, str, float, bool, str]] = [
        # name, statement, measured deviation, predicted?, detail
        ("within_class", "within-class collapse",
         _ratio(float((H - means[:, y]).norm()), h_norm), in_thm or is_mse,
         f"NC1 = {m.get('nc1', math.nan):.3g}"),
        ("equal_w_norms", "equal row norms ‖w_k‖",
         _ratio(float(row_norms.max() - row_norms.min()), float(row_norms.mean())), in_thm,
         f"‖w_k‖ = {float(row_norms.mean()):.6g}"),
        ("h_prop_w", "h_ki = √(λ_W/(λ_H n))·w_k",
         _ratio(float((H - c * W.T[:, y]).norm()), h_norm), in_thm,
         f"√(λ_W/(λ_H n)) = {c:.6g}"),
        ("zero_mean", "zero-mean features",
         _ratio(float(per_i_mean.norm(dim=0).max()), h_rms), in_thm,
         f"‖h_G‖ = {float(H.mean(dim=1).norm()):.3g}"),
        ("bias_constant", "b = b*·1",
         _ratio(float((b - b.mean()).norm()), logit_rms), in_thm,
         f"b̄ = {float(b.mean()):.6g}"),
        ("bias_zero", "b = 0 (λ_b > 0)" if lb > 0 else "b = 0 (λ_b = 0)",
         _ratio(float(b.norm()), logit_rms), in_thm and lb > 0,
         f"‖b‖ = {float(b.norm()):.3g}"),
        ("simplex_etf", "WWᵀ simplex ETF (NC2)", m.get("nc2", math.nan), in_thm, ""),
        ("simplex_etf_centered", "centred W simplex ETF", m.get("nc2_centered", math.nan),
         in_thm or is_mse, ""),
        ("balance", "λ_W‖W‖² = λ_H‖H‖²",
         _ratio(abs(wn - hn), max(wn, hn)), True,
         f"λ_W‖W‖² = {wn:.6g}"),
    ]
    try:
        ans: dict[str, float] | None = nc_ansatz_optimum(result.loss, K, n, lw, lh, lb, result.loss_params)
        ans_error = ""
    except Exception as exc:  # noqa: BLE001 - a user loss that breaks on K-row batches: report it
        ans, ans_error = None, f"could not evaluate: {exc}"
    # W = H = 0 is the minimiser when the weight decay is too strong (ρ* = 0 in the proof): every
    # property then holds trivially and the relative deviations are 0/0. Judge the size instead.
    scale = result.w_norm_sq + result.h_norm_sq
    trivial = is_zero_solution(result)

    checks: list[Check] = []
    absolute = {"bias_constant": float((b - b.mean()).norm()), "bias_zero": float(b.norm()),
                "balance": abs(wn - hn)}
    for name, statement, dev, predicted, detail in rows:
        note = ""
        if trivial:  # absolute sizes: the zero solution has every property exactly
            dev = absolute.get(name, scale)
        holds = math.isfinite(dev) and dev <= tol
        if not predicted:
            note = out_note if not (name == "bias_zero" and lb == 0 and in_thm) else \
                "λ_b = 0: Theorem 1 allows any b*"
        if trivial:
            note = (note + "; " if note else "") + ZERO_NOTE
        checks.append(Check(name, statement, dev, 0.0 if predicted else None, tol,
                            ("pass" if holds else "fail") if predicted else "not-predicted", holds,
                            detail, note))
    if ans is None:
        checks.append(Check("global_objective", "f = NC optimum", math.nan, None,
                            tol, "not-predicted", False, "", ans_error))
        return checks
    dev = (result.objective - ans["objective"]) / max(1.0, abs(ans["objective"]))
    holds = abs(dev) <= tol
    detail = f"f_NC = {ans['objective']:.12g}, ρ = {ans['rho']:.6g}"
    if ans["shift_p"] > 1e-9 or abs(ans["bias"]) > 1e-9:
        detail += f", p = {ans['shift_p']:.6g}, b̄ = {ans['bias']:.6g}"
    checks.append(Check("global_objective", "f = NC optimum", dev,
                        0.0 if in_thm else None, tol,
                        ("pass" if holds else "fail") if in_thm else "not-predicted", holds, detail,
                        "" if in_thm else out_note))
    return checks


def is_zero_solution(result: UFMResult) -> bool:
    """True when the solution is W = H = 0 (numerically): the weight decay is too strong for any
    nonzero logits to pay off. The NC metrics are then undefined (0/0)."""
    return result.w_norm_sq + result.h_norm_sq <= ZERO_SOLUTION_NORM_SQ


def checks_passed(checks: Sequence[Check]) -> bool:
    """True when no predicted check failed."""
    return all(c.status != "fail" for c in checks)
