"""Speed of `ncbench.ufm.solve_ufm` (L-BFGS, strong/approximate Wolfe) against first-order
baselines on the same objective, from the same random start, measured in the same run.

For each loss: the solver's time and iterations to ‖∇f‖ ≤ tol·max(1,|f|) (tol = 1e-9), then
- scipy L-BFGS-B on the same torch objective/gradient (ftol = gtol = 0: it stops when its own
  line search can no longer make progress),
- Adam (lr 1e-2) and plain gradient descent with Armijo backtracking, each for a fixed time
  budget = max(--min-budget, --budget-factor × the solver's time),
reporting how far each gets (relative gradient norm, f − f*, NC1, NC2 centred) and the time to
reach rel. gradient 1e-4 and 1e-9. "× slower" = baseline's time to 1e-9 / solver's time (a lower
bound ">" when the budget ran out first).

    .venv/bin/python benchmarks/ufm_speed.py [--classes 10 --dim 32 --per-class 50]
    .venv/bin/python benchmarks/ufm_speed.py --sizes 10x32x50,100x512x100 --device cuda

Baseline rows run single-threaded on the CPU (the fair and fastest setting at this size).
`--sizes` prints solver rows only (any device), for CPU-versus-GPU comparisons.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded BLAS for scipy's L-BFGS-B too (fair, and
    # on a busy machine spinning BLAS threads slow every method down 10-100x)

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ncbench.losses import make_loss  # noqa: E402
from ncbench.nc import collapse_metrics  # noqa: E402
from ncbench.ufm import solve_ufm  # noqa: E402
from ncbench.ufm.problem import Objective, initial_point  # noqa: E402


def first_time_below(traj: list[tuple[float, float]], level: float) -> float | None:
    for t, rel in traj:
        if rel <= level:
            return t
    return None


def nc_of(obj: Objective, x: torch.Tensor) -> tuple[float, float]:
    W, H, b = obj.split(x.detach().cpu())
    m = collapse_metrics(H.T, obj.labels.cpu(), W, b)
    return m["nc1"], m["nc2_centered"]


def run_adam(obj: Objective, x0: torch.Tensor, budget: float, lr: float = 1e-2):
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    traj, it, start = [], 0, time.perf_counter()
    while True:
        f, g = obj(x.detach())
        rel = float(g.norm()) / max(1.0, abs(f))
        now = time.perf_counter() - start
        traj.append((now, rel))
        if now > budget or rel <= 1e-9:
            break
        x.grad = g
        opt.step()
        it += 1
    return x.detach(), f, rel, it, traj


def run_gd(obj: Objective, x0: torch.Tensor, budget: float):
    """Gradient descent with Armijo backtracking; the step grows ×2 after each accepted step."""
    x, step = x0.clone(), 1.0
    f, g = obj(x)
    traj, it, start = [], 0, time.perf_counter()
    while True:
        gn2 = float(g @ g)
        rel = math.sqrt(gn2) / max(1.0, abs(f))
        now = time.perf_counter() - start
        traj.append((now, rel))
        if now > budget or rel <= 1e-9:
            break
        while True:
            xn = x - step * g
            fn, gn = obj(xn)
            if fn <= f - 1e-4 * step * gn2 or step < 1e-20:
                break
            step *= 0.5
        x, f, g = xn, fn, gn
        step *= 2.0
        it += 1
    return x, f, rel, it, traj


def run_scipy(obj: Objective, x0: torch.Tensor):
    from scipy.optimize import minimize

    def fun(v):
        f, g = obj(torch.from_numpy(v))
        return f, g.numpy()

    start = time.perf_counter()
    r = minimize(fun, x0.numpy().copy(), jac=True, method="L-BFGS-B",
                 options={"maxiter": 100_000, "maxfun": 200_000, "ftol": 0.0, "gtol": 0.0, "maxcor": 10})
    sec = time.perf_counter() - start
    rel = float(np.linalg.norm(r.jac)) / max(1.0, abs(r.fun))
    return torch.from_numpy(r.x), float(r.fun), rel, int(r.nit), sec, str(r.message)


def solver_only(sizes: list[tuple[int, int, int]], losses: list[str], lam: float, seed: int,
                device: str) -> None:
    """Solver rows only (no baselines), for several sizes: for CPU-vs-GPU comparisons."""
    print(f"{'K×d×n':>14} {'loss':5} {'device':7} {'seconds':>8} {'iters':>6} {'rel‖∇f‖':>9} "
          f"{'objective':>19} {'NC1':>9} {'NC2c':>9} {'NC3':>9}")
    for K, d, n in sizes:
        for name in losses:
            res = solve_ufm(name, K, d, n, lam, lam, lam, seed=seed, device=device)
            m = res.metrics
            print(f"{f'{K}×{d}×{n}':>14} {name:5} {device:7} {res.seconds:8.3f} {res.iterations:6d} "
                  f"{res.rel_grad_norm:9.1e} {res.objective:19.15g} {m['nc1']:9.1e} "
                  f"{m['nc2_centered']:9.1e} {m['nc3']:9.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--lam", type=float, default=5e-3, help="λ_W = λ_H = λ_b")
    ap.add_argument("--losses", default="ce,fl,ls,mse")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-factor", type=float, default=20.0)
    ap.add_argument("--min-budget", type=float, default=3.0)
    ap.add_argument("--device", default="cpu", help="device for the solver (rows without baselines)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--sizes", default=None,
                    help="solver only, no baselines: comma-separated KxDxN, e.g. 10x32x50,100x512x100")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU thread(s)"
          + (f", {torch.cuda.get_device_name()}" if a.device.startswith("cuda") else ""))
    solve_ufm("ce", 3, 4, 2, 1e-2, 1e-2, 1e-2, device=a.device)  # warm-up: lazy imports, CUDA context
    if a.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
        solver_only(sizes, a.losses.split(","), a.lam, a.seed, a.device)  # type: ignore[arg-type]
        return
    K, d, n, lam = a.classes, a.dim, a.per_class, a.lam
    print(f"UFM K={K} d={d} n={n} λ={lam:g}, seed {a.seed}")
    hdr = (f"{'loss':5} {'method':22} {'seconds':>8} {'iters':>6} {'rel‖∇f‖':>9} {'f − f*':>9} "
           f"{'NC1':>9} {'NC2c':>9} {'t→1e-4':>8} {'t→1e-9':>8} {'× slower':>9}")
    print(hdr)
    print("-" * len(hdr))
    for name in a.losses.split(","):
        res = solve_ufm(name, K, d, n, lam, lam, lam, seed=a.seed, trajectory=True)
        f_star = res.objective
        traj = [(r["seconds"], r["rel_grad_norm"]) for r in res.trajectory]
        t4 = first_time_below(traj, 1e-4)
        print(f"{name:5} {'ncbench L-BFGS':22} {res.seconds:8.3f} {res.iterations:6d} {res.rel_grad_norm:9.1e} "
              f"{0.0:9.1e} {res.metrics['nc1']:9.1e} {res.metrics['nc2_centered']:9.1e} "
              f"{t4 if t4 is not None else float('nan'):8.3f} {res.seconds:8.3f} {1.0:9.1f}", flush=True)
        obj = Objective(make_loss(name, K), K, d, n, lam, lam, lam, torch.device("cpu"))
        x0 = initial_point(obj, a.seed, 1.0, torch.device("cpu"))
        try:
            x, f, rel, it, sec, msg = run_scipy(obj, x0)
        except ImportError:
            print(f"{'':5} {'scipy L-BFGS-B':22} (scipy not installed)")
        else:
            nc1, nc2 = nc_of(obj, x)
            reached = rel <= 1e-9
            print(f"{'':5} {'scipy L-BFGS-B':22} {sec:8.3f} {it:6d} {rel:9.1e} {f - f_star:9.1e} "
                  f"{nc1:9.1e} {nc2:9.1e} {'':>8} {(f'{sec:8.3f}' if reached else '       –')} "
                  f"{(f'{sec / res.seconds:9.1f}' if reached else '  (stall)')}", flush=True)
        budget = max(a.min_budget, a.budget_factor * res.seconds)
        for label, runner in (("Adam lr=1e-2", run_adam), ("GD + backtracking", run_gd)):
            x, f, rel, it, btraj = runner(obj, x0, budget)
            nc1, nc2 = nc_of(obj, x)
            b4, b9 = first_time_below(btraj, 1e-4), first_time_below(btraj, 1e-9)
            ratio = f"{b9 / res.seconds:9.1f}" if b9 is not None else f"{'>' + format(budget / res.seconds, '.0f'):>9}"
            print(f"{'':5} {label:22} {btraj[-1][0]:8.3f} {it:6d} {rel:9.1e} {f - f_star:9.1e} {nc1:9.1e} "
                  f"{nc2:9.1e} {(f'{b4:8.3f}' if b4 is not None else '       –')} "
                  f"{(f'{b9:8.3f}' if b9 is not None else '       –')} {ratio}", flush=True)


if __name__ == "__main__":
    main()
