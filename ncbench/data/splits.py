"""Seeded index splits and normalisation statistics of in-memory datasets (pure functions).

Used by `ncbench.data.base.finalize` (the `per_class` subset, the validation holdout, `mean`/`std`)
and by dataset families without an official test split (their fixed train/test split).
"""

from __future__ import annotations

import numpy as np
import torch

from ncbench.errors import ParameterError


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices of `y` into (keep, holdout): per class, round(fraction · n_c) go to holdout.

    Chosen by a numpy PCG64 generator seeded with `seed` alone (no global RNG state is read or
    changed). Both index tensors are sorted (int64).
    """
    labels = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    rng = np.random.default_rng(seed)
    keep, hold = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(members.size)]
        n_hold = int(round(fraction * members.size))
        hold.append(members[:n_hold])
        keep.append(members[n_hold:])
    cat = lambda parts: torch.from_numpy(np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)).long()
    return cat(keep), cat(hold)


def balanced_subset(y: torch.Tensor, n: int, num_classes: int, seed: int, dataset: str = "") -> torch.Tensor:
    """Sorted indices of n examples of every class 0..num_classes−1, chosen with `seed`."""
    labels = y.numpy()
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < n:
        short = int(np.argmin(counts))
        raise ParameterError(f"per_class={n} but class {short} of dataset '{dataset}' has only "
                             f"{counts[short]} training examples", key="per_class")
    rng = np.random.default_rng([seed, 1])  # a stream distinct from the holdout's
    parts = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        parts.append(members[rng.permutation(members.size)[:n]])
    return torch.from_numpy(np.sort(np.concatenate(parts))).long()


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of `x` `[N, C, ...]` on the [0, 1] scale, float32 `[C]`.

    uint8 inputs are divided by 255. Accumulated in float64, in chunks (no full float copy).
    A channel with zero spread gets std 1 (so normalising never divides by zero).
    """
    n_ch = x.shape[1]
    s = torch.zeros(n_ch, dtype=torch.float64)
    ss = torch.zeros(n_ch, dtype=torch.float64)
    count = 0
    for i in range(0, x.shape[0], chunk):
        b = x[i:i + chunk].to(torch.float64)
        b = b.transpose(0, 1).reshape(n_ch, -1)
        s += b.sum(1)
        ss += (b * b).sum(1)
        count += b.shape[1]
    if count == 0:
        raise ParameterError("cannot compute normalisation statistics of an empty training split")
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    mean = s / count
    var = (ss / count - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    mean, std = mean / scale, std / scale
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.float(), std.float()
