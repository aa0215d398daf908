"""L-BFGS with a strong / approximate Wolfe line search, for float64 problems on any torch device.

`minimize(fg, x0, tol, max_iter)` runs L-BFGS (two-loop recursion, memory `history` = 10) with the
bracketing `line_search`, which enforces the strong Wolfe conditions or — once the objective can
no longer resolve the decrease (|Δf| at the level of rounding) — the *approximate* Wolfe
conditions of Hager & Zhang, stated on directional derivatives only. That is what lets it drive
the gradient to ~1e-10 relative in float64 where an Armijo test on f alone stalls near √eps.

`fg(x) -> (f, ∇f)` is any objective on a flat vector x. Also here: `torch_threads`, the context
that runs torch's CPU ops on a given number of threads while a (small) problem is solved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["FG", "LBFGSOutcome", "line_search", "minimize", "torch_threads"]

#: An objective: x ↦ (f(x), ∇f(x)).
FG = Callable[[torch.Tensor], tuple[float, torch.Tensor]]


def line_search(fg: FG, x: torch.Tensor, d: torch.Tensor, f0: float, gtd0: float, t: float,
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
class LBFGSOutcome:
    """Where `minimize` stopped: the point, f and ∇f there, the iterations taken, whether
    ‖∇f‖ ≤ tol·max(1, |f|) holds, and why it stopped ("converged", "max_iter",
    "line search failed", "non-finite objective or gradient")."""

    x: torch.Tensor
    f: float
    g: torch.Tensor
    iterations: int
    converged: bool
    stop_reason: str


def minimize(fg: FG, x: torch.Tensor, tol: float, max_iter: int, history: int = 10,
             on_iter: Callable[[int, torch.Tensor, float, float], None] | None = None) -> LBFGSOutcome:
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
        t, f_new, g_new = line_search(fg, x, d, f, gtd, t0)
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
    return LBFGSOutcome(x, f, g, it, reason == "converged", reason)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
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
