"""Benchmark: `ncbench.nc.collapse_metrics` against the paper code's method for NC1–NC3.

The reference is the fastest honest form of the method in the paper's code (and in the usual NC
code it derives from): class means in a first pass; Σ_W accumulated as d × d outer products of
the centred features in a second pass — here batched (one float64 GEMM per batch of 1024 rows)
instead of one outer product per sample; Σ_B as a d × d matrix; `scipy.linalg.pinv(Σ_B)` (SVD
of the d × d matrix); nc1 = trace(Σ_W Σ_B^†)/K; nc2/nc3 from W and the class means.

`collapse_metrics` works in the span of the centred class means (thin SVD of the d × K matrix
M) and only accumulates the within-class sums of squares along those ≤ K−1 directions, so it
never forms a d × d matrix. Both use float64 accumulation on the same float32 features.

    .venv/bin/python benchmarks/nc_metrics.py                 # N = 45 000, d = 2048, K = 10, 100
    .venv/bin/python benchmarks/nc_metrics.py --classes 10 --n 10000 --device cuda
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import scipy.linalg
import torch

from ncbench.nc import CollapseStats, collapse_metrics, simplex_etf


def reference_metrics(H: torch.Tensor, y: torch.Tensor, W: torch.Tensor, K: int, batch: int = 1024) -> dict:
    """The paper code's recipe, batched: d × d Σ_W and Σ_B, scipy pinv, trace/K."""
    dev = H.device
    N, d = H.shape
    y = y.to(dev)
    counts = torch.bincount(y, minlength=K).to(torch.float64)
    sums = torch.zeros(K, d, dtype=torch.float64, device=dev)
    for s in range(0, N, batch):  # pass 1: class means
        sums.index_add_(0, y[s : s + batch], H[s : s + batch].double())
    mu = sums / counts[:, None]
    h_g = sums.sum(0) / N
    sigma_w = torch.zeros(d, d, dtype=torch.float64, device=dev)
    for s in range(0, N, batch):  # pass 2: Σ_W by (batched) outer products
        c = H[s : s + batch].double() - mu[y[s : s + batch]]
        sigma_w += c.T @ c
    sigma_w /= N
    M = (mu - h_g).T  # d × K
    sigma_b = (M @ M.T) / K
    sigma_b_pinv = scipy.linalg.pinv(sigma_b.cpu().numpy())  # as in the paper's code
    nc1 = float(np.trace(sigma_w.cpu().numpy() @ sigma_b_pinv)) / K
    W64 = W.double()
    etf = simplex_etf(K, device=dev)

    def dist(G):
        return float(torch.linalg.matrix_norm(G / torch.linalg.matrix_norm(G) - etf))

    return {"nc1": nc1, "nc2": dist(W64 @ W64.T), "nc3": dist(W64 @ M)}


def synthetic(N: int, d: int, K: int, seed: int, device: str):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (N,), generator=g)
    y[:K] = torch.arange(K)
    centres = torch.randn(K, d, generator=g)
    H = centres[y] + 2.0 * torch.randn(N, d, generator=g)  # float32, like a network's features
    W = centres + 0.5 * torch.randn(K, d, generator=g)
    b = 0.1 * torch.randn(K, generator=g)
    return H.to(device), y.to(device), W.to(device), b.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeat: int):
    best, out = math.inf, None
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=45_000)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1, help="best of R timings (reference: once)")
    ap.add_argument("--streaming", action="store_true",
                    help="also time CollapseStats' one-pass d × d mode (nc1–nc3) with batches of 128")
    ap.add_argument("--threads", type=int, default=None, help="torch/BLAS threads for both methods")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"torch {torch.__version__}, device {args.device}, CPU {cpu}, {torch.get_num_threads()} threads")
    if args.device.startswith("cuda"):
        print(f"GPU {torch.cuda.get_device_name()}")
    print(f"N = {args.n}, d = {args.d}, float32 features, float64 accumulation")
    print("reference: nc1-nc3 only (d x d Σ_W by batched outer products, scipy pinv of d x d Σ_B);")
    print("collapse_metrics: all six metrics incl. nc4 (computing W h + b in float64, or given logits)\n")
    header = (f"{'K':>4} {'reference s':>12} {'collapse_metrics s':>19} {'speed-up':>9} {'max rel diff nc1-3':>19}"
              f" {'with logits s':>14} {'speed-up':>9}")
    if args.streaming:
        header += f" {'streaming s':>12} {'stream rel diff':>16}"
    print(header)
    warm = synthetic(200, 16, 3, seed=0, device=args.device)  # first-call (lazy init) costs out
    collapse_metrics(*warm), reference_metrics(*warm[:3], 3)
    for K in args.classes:
        H, y, W, b = synthetic(args.n, args.d, K, seed=K, device=args.device)
        t_ours, ours = timed(lambda: collapse_metrics(H, y, W, b), args.device, args.repeat)
        t_ref, ref = timed(lambda: reference_metrics(H, y, W, K), args.device, 1)
        logits = H @ W.T + b  # what a pipeline or the UFM solver already holds
        t_lg, ours_lg = timed(lambda: collapse_metrics(H, y, W, b, logits=logits), args.device, args.repeat)
        rel = max(abs(ours[k] - ref[k]) / abs(ref[k]) for k in ("nc1", "nc2", "nc3"))
        assert all(math.isclose(ours_lg[k], ours[k], rel_tol=1e-9) for k in ("nc1", "nc2", "nc3"))
        line = (f"{K:>4} {t_ref:>12.2f} {t_ours:>19.3f} {t_ref / t_ours:>8.1f}x {rel:>19.2e}"
                f" {t_lg:>14.3f} {t_ref / t_lg:>8.1f}x")
        if args.streaming:
            def stream():
                stats = CollapseStats(K, args.d, H.device)
                for s in range(0, args.n, 128):
                    stats.update(H[s : s + 128], y[s : s + 128])
                return stats.compute(W, b, nc4=False)
            t_st, st = timed(stream, args.device, 1)
            srel = max(abs(st[k] - ref[k]) / abs(ref[k]) for k in ("nc1", "nc2", "nc3"))
            line += f" {t_st:>12.2f} {srel:>16.2e}"
        print(line, flush=True)
        print(f"     values: nc1 {ours['nc1']:.6g} (ref {ref['nc1']:.6g}), nc2 {ours['nc2']:.6g}, "
              f"nc3 {ours['nc3']:.6g}, nc4 {ours['nc4']:.6g}")
        del H, y, W, b, logits


if __name__ == "__main__":
    main()
