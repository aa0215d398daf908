"""Pure functions of the NC statistics: the simplex ETF distance and the extra NC measures.

The extra measures (equinorm, equiangularity, maximal angle, self-duality, CDNV, NC1 as a trace
ratio) are pure functions of the one-pass statistics of `ncbench.nc.CollapseStats` (definitions and
conventions in docs/metrics.md): the centred class means M = [μ_k − h_G] (d × K), the class
counts n_k, the per-class within-class sums of squares SS_k = Σ_{i∈k} ‖h_i − μ_k‖² and the
classifier W [K, d]. All in float64; O(K²·d) work (one K × K Gram of M, one of W), nothing per
sample. `ncbench.nc` accumulates SS_k (O(N·d), see there) and calls `extra_measures`.

- equinorm_means / equinorm_classifier: std/mean of ‖μ_k − h_G‖ / of ‖w_k‖ over k (std with
  ddof = 1, as `torch.std` in Papyan et al.'s code).
- equiangular_means / equiangular_classifier: std (ddof = 0: all pairs are the population) of the
  cosines cos(m_k, m_k') over the K(K−1)/2 pairs k < k' (m = centred means / rows of W).
- maxangle_means / maxangle_classifier: mean over k ≠ k' of |cos(m_k, m_k') + 1/(K−1)|
  (Papyan et al.'s "mutual coherence" form).
- self_duality: ‖W/‖W‖_F − Mᵀ/‖M‖_F‖_F (W as trained, not centred).
- cdnv: mean over pairs k < k' of (σ²_k + σ²_k') / (2‖μ_k − μ_k'‖²), σ²_k = SS_k / n_k.
- nc1_trace: tr(Σ_W)/tr(Σ_B) = (Σ_k SS_k / N) / (Σ_k ‖μ_k − h_G‖² / K).

Degenerate inputs give NaN or inf, never an error: a zero class mean or classifier row makes its
cosines NaN, two coinciding class means make cdnv inf (NaN if both classes have no spread too).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["EXTRA_KEYS", "etf_distance", "extra_measures", "nan_measures", "simplex_etf"]

#: The keys `extra_measures` returns (and `CollapseStats(..., extra=True).compute` adds).
EXTRA_KEYS = (
    "equinorm_means", "equinorm_classifier",
    "equiangular_means", "equiangular_classifier",
    "maxangle_means", "maxangle_classifier",
    "self_duality", "cdnv", "nc1_trace",
)

_F64 = torch.float64


def simplex_etf(num_classes: int, *, dtype: torch.dtype = _F64, device: Any = None) -> torch.Tensor:
    """The normalised simplex ETF Gram (I_K − 11ᵀ/K)/√(K−1), [K, K] (unit Frobenius norm)."""
    k = int(num_classes)
    if k < 2:
        raise ValueError(f"simplex_etf needs num_classes ≥ 2, got {num_classes}")
    eye = torch.eye(k, dtype=dtype, device=device)
    return (eye - 1.0 / k) / math.sqrt(k - 1)


def etf_distance(gram: torch.Tensor) -> float:
    """‖G/‖G‖_F − E‖_F (NaN if ‖G‖_F is 0 or not finite): nc2 and nc3 of `ncbench.nc`."""
    norm = torch.linalg.matrix_norm(gram)
    if not torch.isfinite(norm) or float(norm) == 0.0:
        return float("nan")
    etf = simplex_etf(gram.shape[0], device=gram.device)
    return float(torch.linalg.matrix_norm(gram / norm - etf))


def nan_measures() -> dict[str, float]:
    """Every extra measure NaN (non-finite features)."""
    return {key: float("nan") for key in EXTRA_KEYS}


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    """num/den as IEEE float64 division (x/0 = ±inf, 0/0 = NaN), as a Python float."""
    return float(num.to(_F64) / den.to(_F64))


def _equinorm(norms: torch.Tensor) -> float:
    """std (ddof = 1) / mean of the norms."""
    return _ratio(norms.std(correction=1), norms.mean())


def _angles(gram: torch.Tensor) -> tuple[float, float]:
    """(std of the pairwise cosines, mean |cos + 1/(K−1)|) from a K × K Gram matrix."""
    k = gram.shape[0]
    norms = gram.diagonal().clamp_min(0.0).sqrt()
    cos = gram / (norms.unsqueeze(0) * norms.unsqueeze(1))  # a zero vector: NaN cosines
    i, j = torch.triu_indices(k, k, offset=1, device=gram.device)
    pairs = cos[i, j]  # k < k' (the Gram is symmetric: the mean over k ≠ k' is the same)
    return float(pairs.std(correction=0)), float((pairs + 1.0 / (k - 1)).abs().mean())


def extra_measures(centred: torch.Tensor, counts: torch.Tensor, within_ss: torch.Tensor,
                   weight: torch.Tensor) -> dict[str, float]:
    """The measures of `EXTRA_KEYS` from M [d, K] (centred class means), n_k [K], SS_k [K]
    (per-class Σ ‖h_i − μ_k‖²) and W [K, d] (definitions in the module docstring)."""
    m = centred.to(_F64)
    counts = counts.to(_F64)
    ss = within_ss.to(_F64)
    w = weight.to(device=m.device, dtype=_F64)
    k = m.shape[1]
    out: dict[str, float] = {}
    gram_m = m.T @ m  # [K, K]: ‖m_k‖² on the diagonal
    gram_w = w @ w.T
    sq_norms_m = gram_m.diagonal().clamp_min(0.0)
    out["equinorm_means"] = _equinorm(sq_norms_m.sqrt())
    out["equinorm_classifier"] = _equinorm(gram_w.diagonal().clamp_min(0.0).sqrt())
    out["equiangular_means"], out["maxangle_means"] = _angles(gram_m)
    out["equiangular_classifier"], out["maxangle_classifier"] = _angles(gram_w)
    norm_w, norm_m = torch.linalg.matrix_norm(w), torch.linalg.matrix_norm(m)
    out["self_duality"] = float(torch.linalg.matrix_norm(w / norm_w - m.T / norm_m))
    # ‖μ_i − μ_j‖² = ‖m_i‖² + ‖m_j‖² − 2 m_iᵀm_j: centred means, so no large common offset cancels
    i, j = torch.triu_indices(k, k, offset=1, device=m.device)
    dist2 = (sq_norms_m[i] + sq_norms_m[j] - 2.0 * gram_m[i, j]).clamp_min(0.0)
    var = ss.clamp_min(0.0) / counts
    out["cdnv"] = float(((var[i] + var[j]) / (2.0 * dist2)).mean())
    n = counts.sum()
    out["nc1_trace"] = _ratio(ss.clamp_min(0.0).sum() / n, sq_norms_m.sum() / k)
    return {key: out[key] for key in EXTRA_KEYS}
