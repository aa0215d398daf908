"""Neural Collapse metrics NC1–NC4 (paper §4, conventions in design.md), one-shot and streaming.

Definitions (features h_i ∈ R^d with labels y_i ∈ 0..K−1, N samples, classifier W [K, d], b [K]):

- h_G = (1/N) Σ_i h_i, μ_k = mean of class k (actual counts n_k; every class must be present).
- Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ,  Σ_B = (1/K) Σ_k (μ_k − h_G)(μ_k − h_G)ᵀ.
- nc1 = trace(Σ_W Σ_B^†) / K.
- nc2 = ‖WWᵀ/‖WWᵀ‖_F − E‖_F, E = (I_K − 11ᵀ/K)/√(K−1) the simplex ETF (`simplex_etf`).
- nc3 = ‖W M/‖W M‖_F − E‖_F, M = [μ_1 − h_G, …, μ_K − h_G] (d × K).
- nc4 = fraction of samples whose nearest class mean (Euclidean) ≠ argmax(W h + b).
- nc2_centered / nc3_centered: the same with W replaced by W − (mean row of W) (the paper's code).

How nc1 is computed without a d × d pseudo-inverse. Σ_B = M Mᵀ / K. With the thin SVD
M = U S Vᵀ (U: d × p, p = min(d, K)), Σ_B = U diag(s²/K) Uᵀ, so Σ_B^† = U_r diag(K/s_r²) U_rᵀ over
the r directions kept by the rank tolerance, and

    nc1 = (1/K) Σ_{j<r} (K/s_j²) · u_jᵀ Σ_W u_j = Σ_{j<r} q_j / (N s_j²),
    q_j = Σ_i (u_jᵀ (h_i − μ_{y_i}))²   (the diagonal of U_rᵀ (N Σ_W) U_r; nothing else is needed).

Rank tolerance: direction j is kept iff λ_j > max(d, K) · ε · λ_max, λ_j = s_j²/K the eigenvalues of
Σ_B and ε the float64 machine epsilon — the rule `torch.linalg.pinv(Σ_B)` applies to the d × d
matrix (rtol = max(rows, cols) · ε on its singular values). If Σ_B = 0 (all class means equal),
r = 0 and nc1 = 0, as with the pseudo-inverse of a zero matrix.

All accumulation is in float64 whatever the feature dtype. Non-finite features (a diverged run)
give NaN for every metric instead of an error.

Streaming (`CollapseStats`). nc4 needs each sample's nearest *final* class mean, so it cannot be
computed exactly in one pass without holding the features. Two exact ways are offered:

1. Default: `update(h, y, logits)` per batch accumulates per-class counts, per-class sums and the
   d × d scatter Σ_i (h_i − s_{y_i})(h_i − s_{y_i})ᵀ about per-class shifts s_k (class k's mean in
   the first batch that holds it) — one GEMM per batch. N·Σ_W is that minus
   Σ_k n_k (μ_k − s_k)(μ_k − s_k)ᵀ; since s_k is already close to μ_k, nothing cancels
   catastrophically (unlike Σ h hᵀ − N μ μᵀ when the features share a large mean). This gives
   nc1–nc3 after one pass, projecting the scatter on U_r (d²·r work, no inverse). For nc4,
   run a second pass `update_nc4(h, y, logits)` over the same samples (`needs_second_pass` says
   so); it centres with the final means, accumulates q_j and the nc4 mismatches, and from then on
   nc1 uses the second pass's q_j (exact centring) instead of the d × d scatter.
2. `keep_features=True`: `update` only accumulates counts and sums and keeps references to the
   (detached) feature batches, labels and argmax of the logits; `compute` then does the second pass
   itself over the kept batches. One forward pass, N × d feature memory, no d × d matrix.

`collapse_metrics(...)` is mode 2 applied to one batch: the same code computes both.

`extra=True` adds the measures of `ncbench.nc_measures` (equinorm, equiangularity, maximal angle,
self-duality, CDNV, tr Σ_W / tr Σ_B). Besides the above they need the per-class within-class sums
of squares SS_k = Σ_{i∈k} ‖h_i − μ_k‖² (O(N·d)): exactly centred in the second pass, or in one pass
(default mode, nc4=False) as Σ ‖h_i − s_k‖² − ‖Σ (h_i − s_k)‖²/n_k about the shifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ncbench.nc_measures import EXTRA_KEYS, extra_measures, nan_measures, simplex_etf
from ncbench.nc_measures import etf_distance as _etf_distance

__all__ = ["METRIC_KEYS", "EXTRA_KEYS", "CollapseStats", "collapse_metrics", "simplex_etf"]

#: The keys `collapse_metrics` and `CollapseStats.compute` return.
METRIC_KEYS = ("nc1", "nc2", "nc3", "nc4", "nc2_centered", "nc3_centered")

_F64 = torch.float64
# Rows per float64 working chunk = this // d: 8 MiB on CPU (mostly cache-resident between the
# conversion, the subtraction and the reduction, yet few parallel regions), 128 MiB on
# accelerators (fewer, larger kernels).
_CHUNK_ELEMENTS = {"cpu": 1 << 20}
_CHUNK_ELEMENTS_DEFAULT = 1 << 24


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(x)
    except Exception as exc:  # noqa: BLE001 - report what was passed
        raise ValueError(f"{what} must be a tensor or array, got {type(x).__name__}") from exc


def _check_labels(labels: torch.Tensor, n: int, k: int, where: str) -> None:
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{where}: labels must have shape [N] = [{n}] (one per feature row), "
                         f"got {list(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be integer class indices, got {labels.dtype}")
    if n:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"{where}: label {lo if lo < 0 else hi} is out of range; labels must be "
                             f"in 0..{k - 1} (num_classes={k})")


def _check_features(features: torch.Tensor, dim: int, where: str) -> None:
    if features.dim() != 2 or features.shape[1] != dim:
        raise ValueError(f"{where}: features must have shape [N, {dim}] (d = {dim}), "
                         f"got {list(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"{where}: features must be floating point, got {features.dtype}")


def _row_chunks(n: int, d: int, device: torch.device):
    step = max(1, _CHUNK_ELEMENTS.get(device.type, _CHUNK_ELEMENTS_DEFAULT) // max(1, d))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


# --------------------------------------------------------------------------------------------
# the math: pure functions of the statistics
# --------------------------------------------------------------------------------------------


@dataclass
class _Basis:
    """Class-mean geometry frozen after the first pass (all float64 on the stats device)."""

    counts: torch.Tensor  # [K] n_k
    n: int  # N
    means: torch.Tensor  # [K, d] μ_k
    centred: torch.Tensor  # [d, K] M = [μ_k − h_G]
    u: torch.Tensor  # [d, p] left singular vectors of M, p = min(d, K)
    s: torch.Tensor  # [p] singular values (descending)
    coords: torch.Tensor  # [p, K] Uᵀ M = diag(s) Vᵀ: column k = coordinates of μ_k − h_G
    rank: int  # r: directions kept by the rank tolerance
    finite: bool  # False when the features held NaN/inf

    @property
    def global_mean(self) -> torch.Tensor:
        return (self.counts.unsqueeze(1) * self.means).sum(0) / self.n


def _basis(counts: torch.Tensor, shift: torch.Tensor, shifted_sums: torch.Tensor) -> _Basis:
    """Means μ_k = s_k + Σ_i (h_i − s_k)/n_k from per-class shifts s_k and shifted sums."""
    k, d = shift.shape
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (", …" if len(missing) > 20 else "")
        raise ValueError(f"collapse metrics: {len(missing)} of {k} classes have no samples "
                         f"(class {shown}); NC metrics need every class 0..{k - 1} present")
    n = int(counts.sum())
    means = shift + shifted_sums / counts.unsqueeze(1)
    global_mean = (counts.unsqueeze(1) * means).sum(0) / n
    centred = (means - global_mean).T.contiguous()  # d × K
    p = min(d, k)
    finite = bool(torch.isfinite(centred).all())
    if not finite:
        nan = torch.full((), float("nan"), dtype=_F64, device=shift.device)
        return _Basis(counts, n, means, centred, torch.zeros(d, p, dtype=_F64, device=shift.device),
                      nan.expand(p), torch.zeros(p, k, dtype=_F64, device=shift.device), 0, False)
    u, s, vh = torch.linalg.svd(centred, full_matrices=False)
    lam = s.square()  # ∝ eigenvalues of Σ_B (the 1/K cancels in the ratio)
    tol = max(d, k) * torch.finfo(_F64).eps * float(lam[0]) if p else 0.0
    rank = int((lam > tol).sum()) if float(lam[0]) > 0 else 0
    return _Basis(counts, n, means, centred, u, s, s.unsqueeze(1) * vh, rank, True)


def _nc1(basis: _Basis, q: torch.Tensor) -> float:
    """nc1 = Σ_{j<r} q_j / (N s_j²) from the projected within-class sums of squares q."""
    r = basis.rank
    if r == 0:
        return 0.0
    return float((q[:r] / basis.s[:r].square()).sum() / basis.n)


def _metrics(basis: _Basis, q: torch.Tensor | None, mismatches: int | None,
             weight: torch.Tensor, within: torch.Tensor | None = None) -> dict[str, float]:
    """All metrics from the statistics (q and mismatches may be None → nc4 omitted; `within`:
    the per-class SS_k, given → the extra measures too)."""
    out: dict[str, float] = {}
    if not basis.finite:
        return {key: float("nan") for key in METRIC_KEYS if key != "nc4" or mismatches is not None}
    w = weight.to(_F64)
    wc = w - w.mean(0, keepdim=True)
    out["nc1"] = _nc1(basis, q) if q is not None else float("nan")
    out["nc2"] = _etf_distance(w @ w.T)
    out["nc3"] = _etf_distance(w @ basis.centred)
    if mismatches is not None:
        out["nc4"] = mismatches / basis.n
    out["nc2_centered"] = _etf_distance(wc @ wc.T)
    out["nc3_centered"] = _etf_distance(wc @ basis.centred)
    if within is not None:
        out.update(extra_measures(basis.centred, basis.counts, within, w))
    return out


class _SecondPass:
    """Per-batch accumulation once the means are final: q_j and the nc4 mismatches."""

    def __init__(self, basis: _Basis, within: bool = False):
        self.basis = basis
        p, k = basis.coords.shape
        dev = basis.means.device
        self.q = torch.zeros(p, dtype=_F64, device=dev)
        # SS_k = Σ_{i∈k} ‖h_i − μ_k‖² (only for the extra measures: then `add` centres each
        # sample on its class mean instead of h_G, see there)
        self.within = torch.zeros(k, dtype=_F64, device=dev) if within else None
        self.counts = torch.zeros(k, dtype=_F64, device=dev)
        self.mismatches = 0
        self.sq_norms = basis.centred.square().sum(0)  # ‖μ_k − h_G‖², [K]
        self.h_g = basis.global_mean

    def add(self, features: torch.Tensor, labels: torch.Tensor, *, logits: torch.Tensor | None = None,
            preds: torch.Tensor | None = None, weight: torch.Tensor | None = None,
            bias: torch.Tensor | None = None) -> None:
        """Predictions from `preds`, else argmax of `logits`, else argmax(W h + b).

        Per chunk, one float64 GEMM of h − h_G with [U | Wᵀ] (d × (p + K)) gives
        x = Uᵀ(h − h_G), the within-class coordinates a = x − Uᵀ(μ_y − h_G) (no large common offset
        left to cancel) and, if needed, the logits W(h − h_G) + (W h_G + b). With `within`, the
        chunk is centred on the class means instead: the GEMM of z = h − μ_y gives a directly,
        x = a + Uᵀ(μ_y − h_G), the logits W z + (W μ_y + b), and SS_k += ‖z‖² (exact centring).
        """
        b = self.basis
        dev = b.means.device
        p = b.u.shape[1]
        if preds is None and logits is not None:
            preds = logits.argmax(1)
        by_class = self.within is not None
        if preds is None:
            w = weight.to(device=dev, dtype=_F64)
            proj = torch.cat([b.u, w.T], dim=1)  # [d, p + K]
            offset = b.means @ w.T if by_class else w @ self.h_g  # W μ_k [K, K] or W h_G (+ b)
            if bias is not None:
                offset = offset + bias.to(device=dev, dtype=_F64)
        else:
            proj = b.u
        for rows in _row_chunks(features.shape[0], features.shape[1], dev):
            y = labels[rows].to(dev).long()
            c = features[rows].to(device=dev, dtype=_F64, copy=True)
            if by_class:
                c -= b.means.index_select(0, y)  # h_i − μ_{y_i}
                self.within.index_add_(0, y, torch.linalg.vector_norm(c, dim=1).square_())
            else:
                c -= self.h_g
            out = c @ proj
            del c
            if by_class:
                a = out[:, :p]  # Uᵀ(h_i − μ_{y_i})
                x = a + b.coords[:, y].T  # Uᵀ(h_i − h_G)
            else:
                x = out[:, :p]
                a = x - b.coords[:, y].T
            self.q += a.square().sum(0)  # Σ (u_jᵀ(h_i − μ_{y_i}))²
            self.counts += torch.bincount(y, minlength=b.counts.shape[0]).to(_F64)
            # nearest mean: argmin_k ‖h − μ_k‖² = argmin_k ‖m_k‖² − 2 m_kᵀ(h − h_G), m_k = μ_k − h_G,
            # with m_kᵀ(h − h_G) = coords[:, k] · x (m_k lies in the range of U).
            nearest = (self.sq_norms - 2.0 * (x @ b.coords)).argmin(1)
            if preds is None:
                pred = (out[:, p:] + (offset[y] if by_class else offset)).argmax(1)
            else:
                pred = preds[rows].to(dev)
            self.mismatches += int((nearest != pred).sum())


# --------------------------------------------------------------------------------------------
# the accumulator
# --------------------------------------------------------------------------------------------


class CollapseStats:
    """Streaming NC statistics of one set of features (see the module docstring for the modes).

    Holds (float64, on `device`): per-class counts [K], shifts s_k [K, d] (zero with
    `keep_features`), shifted sums Σ (h_i − s_k) [K, d]; in the default mode the shifted scatter
    Σ (h_i − s_y)(h_i − s_y)ᵀ [d, d]; with `keep_features=True` references to the batches passed
    to `update` (not copies: do not modify them before `compute`). Typical use::

        stats = CollapseStats(K, d, device)
        for h, y, logits in batches:
            stats.update(h, y, logits)
        if stats.needs_second_pass:          # default mode: nc4 needs the final means
            for h, y, logits in batches:     # the same samples again (order may differ)
                stats.update_nc4(h, y, logits)
        metrics = stats.compute(model.fc.weight, model.fc.bias)
    """

    def __init__(self, num_classes: int, dim: int, device: torch.device | str | None = None, *,
                 keep_features: bool = False, extra: bool = False):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"CollapseStats: num_classes must be an integer ≥ 2, got {num_classes!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"CollapseStats: dim must be a positive integer, got {dim!r}")
        self.num_classes, self.dim, self.keep_features = num_classes, dim, bool(keep_features)
        self.extra = bool(extra)  # also the measures of ncbench.nc_measures (EXTRA_KEYS)
        self.device = torch.device(device) if device is not None else None
        self._counts: torch.Tensor | None = None
        self._shift: torch.Tensor | None = None  # s_k: class k's mean in the first batch holding it
        self._shifted_sums: torch.Tensor | None = None  # Σ_{y_i = k} (h_i − s_k)
        self._scatter: torch.Tensor | None = None  # Σ_i (h_i − s_{y_i})(…)ᵀ, default mode only
        self._shifted_sq: torch.Tensor | None = None  # Σ_{y_i = k} ‖h_i − s_k‖², default + extra
        self._kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self._basis: _Basis | None = None
        self._pass2: _SecondPass | None = None

    # -- state -----------------------------------------------------------------------------

    def _alloc(self, like: torch.Tensor) -> None:
        if self.device is None:
            self.device = like.device
        k, d = self.num_classes, self.dim
        self._counts = torch.zeros(k, dtype=_F64, device=self.device)
        self._shift = torch.zeros(k, d, dtype=_F64, device=self.device)
        self._shifted_sums = torch.zeros(k, d, dtype=_F64, device=self.device)
        if not self.keep_features:
            self._scatter = torch.zeros(d, d, dtype=_F64, device=self.device)
            if self.extra:
                self._shifted_sq = torch.zeros(k, dtype=_F64, device=self.device)

    @property
    def num_samples(self) -> int:
        """N: samples seen by `update` so far."""
        return 0 if self._counts is None else int(self._counts.sum())

    @property
    def counts(self) -> torch.Tensor:
        """Per-class sample counts [K] (int64, a copy)."""
        if self._counts is None:
            return torch.zeros(self.num_classes, dtype=torch.int64)
        return self._counts.to(torch.int64)

    @property
    def needs_second_pass(self) -> bool:
        """True while nc4 cannot be computed from what is held: default mode and `update_nc4`
        not yet called."""
        return not self.keep_features and self._pass2 is None

    def class_means(self) -> torch.Tensor:
        """μ_k [K, d] float64 (every class must have been seen)."""
        return self._finalize().means

    def _check_batch(self, features, labels, logits, where):
        features = _as_tensor(features, f"{where}: features")
        labels = _as_tensor(labels, f"{where}: labels")
        _check_features(features, self.dim, where)
        _check_labels(labels, features.shape[0], self.num_classes, where)
        if logits is not None:
            logits = _as_tensor(logits, f"{where}: logits")
            if logits.dim() != 2 or tuple(logits.shape) != (features.shape[0], self.num_classes):
                raise ValueError(f"{where}: logits must have shape [N, K] = "
                                 f"[{features.shape[0]}, {self.num_classes}], got {list(logits.shape)}")
        return features, labels, logits

    # -- pass 1 --------------------------------------------------------------------------------

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor,
               logits: torch.Tensor | None = None) -> None:
        """Accumulate a batch: features [B, d], labels [B] in 0..K−1, logits [B, K] (optional).

        Default mode: logits are not used here (nc4 comes from `update_nc4`). With
        `keep_features=True` the batch is kept (by reference) with argmax(logits), or with no
        predictions when logits is None (then `compute` uses argmax(W h + b)).
        """
        if self._basis is not None:
            raise RuntimeError("CollapseStats.update: the first pass is closed (update_nc4 or "
                               "compute was called); start a new CollapseStats for new features")
        features, labels, logits = self._check_batch(features, labels, logits, "CollapseStats.update")
        if features.shape[0] == 0:
            return
        if self._counts is None:
            self._alloc(features)
        dev, k = self.device, self.num_classes
        for rows in _row_chunks(features.shape[0], self.dim, dev):
            h = features[rows].to(device=dev, dtype=_F64, copy=self._scatter is not None)  # see -= below
            y = labels[rows].to(dev).long()
            bc = torch.bincount(y, minlength=k).to(_F64)
            if self._scatter is not None:  # only the scatter needs shifts; plain sums are exact enough
                new = (bc > 0) & (self._counts == 0)
                if bool(new.any()):  # first sight of a class: its batch mean becomes its shift
                    bs = torch.zeros(k, self.dim, dtype=_F64, device=dev).index_add_(0, y, h)
                    self._shift[new] = bs[new] / bc[new].unsqueeze(1)
                h -= self._shift[y]  # h_i − s_{y_i}: of within-class size, so no cancellation below
            self._shifted_sums.index_add_(0, y, h)
            if self._scatter is not None:
                self._scatter.addmm_(h.T, h)
            if self._shifted_sq is not None:
                self._shifted_sq.index_add_(0, y, torch.linalg.vector_norm(h, dim=1).square_())
            self._counts += bc
        if self.keep_features:
            preds = logits.detach().argmax(1) if logits is not None else None
            self._kept.append((features, labels, preds))

    def _finalize(self) -> _Basis:
        if self._basis is None:
            if self._counts is None:
                raise ValueError("collapse metrics: no samples were given (update was never called "
                                 "with a non-empty batch)")
            self._basis = _basis(self._counts, self._shift, self._shifted_sums)
        return self._basis

    # -- pass 2 --------------------------------------------------------------------------------

    @torch.no_grad()
    def update_nc4(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> None:
        """Second pass (default mode): the same samples again with their logits [B, K]; closes the
        first pass. Accumulates the nc4 mismatches and the within-class sums of squares along the
        class-mean directions (exactly centred with the final means)."""
        if self.keep_features:
            raise RuntimeError("CollapseStats.update_nc4: not needed with keep_features=True "
                               "(compute does the second pass over the kept features)")
        if logits is None:
            raise ValueError("CollapseStats.update_nc4: logits [B, K] are required (nc4 compares the "
                             "nearest class mean with argmax of the logits)")
        features, labels, logits = self._check_batch(features, labels, logits, "CollapseStats.update_nc4")
        basis = self._finalize()
        if self._pass2 is None:
            self._pass2 = _SecondPass(basis, within=self.extra)
        if features.shape[0] and basis.finite:
            self._pass2.add(features, labels, logits=logits.detach())

    # -- results -------------------------------------------------------------------------------

    @torch.no_grad()
    def compute(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                nc4: bool = True) -> dict[str, float]:
        """The metrics {nc1, nc2, nc3, nc4, nc2_centered, nc3_centered} (+ EXTRA_KEYS when
        constructed with `extra=True`) for classifier W [K, d], b [K] (None → 0). In the default
        mode without a second pass, nc4 is unavailable: pass `nc4=False` to get the other keys,
        otherwise RuntimeError."""
        weight = _as_tensor(weight, "compute: weight")
        if weight.dim() != 2 or tuple(weight.shape) != (self.num_classes, self.dim):
            raise ValueError(f"collapse metrics: weight must have shape [K, d] = "
                             f"[{self.num_classes}, {self.dim}], got {list(weight.shape)}")
        if bias is not None:
            bias = _as_tensor(bias, "compute: bias")
            if tuple(bias.shape) != (self.num_classes,):
                raise ValueError(f"collapse metrics: bias must have shape [K] = [{self.num_classes}], "
                                 f"got {list(bias.shape)}")
        basis = self._finalize()
        weight = weight.to(self.device)
        if not basis.finite:  # every key NaN
            return _metrics(basis, None, 0 if nc4 else None, weight) | (nan_measures() if self.extra else {})
        if self.keep_features:
            second = _SecondPass(basis, within=self.extra)
            for feats, labels, preds in self._kept:
                second.add(feats, labels, preds=preds, weight=weight, bias=bias)
        else:
            second = self._pass2
        if second is not None:
            if not torch.equal(second.counts, basis.counts):
                diff = (second.counts != basis.counts).nonzero().flatten().tolist()
                k = diff[0]
                raise ValueError(f"collapse metrics: the second pass saw {int(second.counts[k])} samples "
                                 f"of class {k}, the first pass {int(basis.counts[k])}; update_nc4 must "
                                 f"see exactly the samples given to update")
            return _metrics(basis, second.q, second.mismatches if nc4 else None, weight, second.within)
        if nc4:
            raise RuntimeError("CollapseStats.compute: nc4 needs the final class means, i.e. a second "
                               "pass: call update_nc4(h, y, logits) over the same batches first, or "
                               "construct with keep_features=True; compute(..., nc4=False) returns "
                               "the other metrics")
        # N·Σ_W = Σ_i (h_i − s_y)(h_i − s_y)ᵀ − Σ_k n_k (μ_k − s_k)(μ_k − s_k)ᵀ; project on U_r
        u_r = basis.u[:, : basis.rank]
        shifted_mean_proj = (self._shifted_sums @ u_r) / basis.counts.sqrt().unsqueeze(1)  # [K, r]
        q = (((self._scatter @ u_r) * u_r).sum(0) - shifted_mean_proj.square().sum(0)).clamp_min(0.0)
        within = None  # SS_k = Σ ‖h_i − s_k‖² − n_k ‖μ_k − s_k‖² (s_k ≈ μ_k: no cancellation)
        if self.extra:
            within = (self._shifted_sq - self._shifted_sums.square().sum(1) / basis.counts).clamp_min(0.0)
        return _metrics(basis, q, None, weight, within)


def collapse_metrics(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor | None = None, num_classes: int | None = None, *,
                     logits: torch.Tensor | None = None, extra: bool = False) -> dict[str, float]:
    """NC metrics of features [N, d] with labels [N] and the classifier W [K, d], b [K] (None → 0).

    Returns {nc1, nc2, nc3, nc4, nc2_centered, nc3_centered} as floats (definitions in the module
    docstring). K is `num_classes`, or weight.shape[0] when None. `logits` [N, K], when given,
    supply the predictions for nc4 instead of argmax(W h + b) (saves one GEMM). `extra=True`
    adds the measures of `ncbench.nc_measures` (EXTRA_KEYS). Float64
    throughout; no d × d matrix is formed: two chunked passes over the rows, O(N·d·K) work.
    """
    features = _as_tensor(features, "collapse_metrics: features")
    weight = _as_tensor(weight, "collapse_metrics: weight")
    if weight.dim() != 2:
        raise ValueError(f"collapse_metrics: weight must have shape [K, d], got {list(weight.shape)}")
    k = weight.shape[0] if num_classes is None else num_classes
    if num_classes is not None and weight.shape[0] != num_classes:
        raise ValueError(f"collapse_metrics: weight has {weight.shape[0]} rows but num_classes={num_classes}")
    if features.dim() != 2:
        raise ValueError(f"collapse_metrics: features must have shape [N, d], got {list(features.shape)}")
    if weight.shape[1] != features.shape[1]:
        raise ValueError(f"collapse_metrics: features have d = {features.shape[1]} columns but weight is "
                         f"{list(weight.shape)} (expected [K, {features.shape[1]}])")
    stats = CollapseStats(int(k), int(features.shape[1]), device=features.device, keep_features=True,
                          extra=extra)
    stats.update(features, labels, logits)
    return stats.compute(weight, bias)
