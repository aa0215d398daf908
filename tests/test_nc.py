"""ncbench.nc against a naive float64 implementation (d × d outer products, numpy pinv, explicit
nearest-mean loop), exact collapse cases, streaming == one-shot, and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ncbench.nc import METRIC_KEYS, CollapseStats, collapse_metrics, simplex_etf

EPS = np.finfo(np.float64).eps


def naive_metrics(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> dict[str, float]:
    """The paper's definitions written out literally, in float64."""
    H, W = H.astype(np.float64), W.astype(np.float64)
    N, d = H.shape
    K = W.shape[0]
    b = np.zeros(K) if b is None else b.astype(np.float64)
    mu = np.stack([H[y == k].mean(axis=0) for k in range(K)])
    h_g = H.mean(axis=0)
    sigma_w = np.zeros((d, d))
    for i in range(N):
        v = H[i] - mu[y[i]]
        sigma_w += np.outer(v, v)
    sigma_w /= N
    sigma_b = np.zeros((d, d))
    for k in range(K):
        v = mu[k] - h_g
        sigma_b += np.outer(v, v)
    sigma_b /= K
    # pseudo-inverse with the documented rank tolerance (torch.linalg.pinv's default rule)
    nc1 = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=max(d, K) * EPS, hermitian=True)) / K
    etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)

    def dist(G):
        return float(np.linalg.norm(G / np.linalg.norm(G) - etf))

    M = (mu - h_g).T
    Wc = W - W.mean(axis=0)
    wrong = 0
    for i in range(N):
        nearest = min(range(K), key=lambda k: float(np.sum((H[i] - mu[k]) ** 2)))
        pred = int(np.argmax(W @ H[i] + b))
        wrong += nearest != pred
    return {"nc1": float(nc1), "nc2": dist(W @ W.T), "nc3": dist(W @ M), "nc4": wrong / N,
            "nc2_centered": dist(Wc @ Wc.T), "nc3_centered": dist(Wc @ M)}


def make_data(K: int, d: int, N: int, seed: int, *, spread: float = 1.0, offset: float = 0.0):
    """Unbalanced labels (every class present), clustered features, a random classifier that is
    loosely aligned with the class means (so nc4 is neither 0 nor ~1)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(K) * 0.7)
    y = np.concatenate([np.arange(K), rng.choice(K, size=N - K, p=weights)])
    rng.shuffle(y)
    centers = rng.normal(size=(K, d)) * 2
    H = offset + centers[y] + spread * rng.normal(size=(N, d))
    W = centers + rng.normal(size=(K, d)) * 1.5
    b = rng.normal(size=K)
    return H, y, W, b


def assert_metrics_close(got: dict, ref: dict, rtol: float = 1e-9, atol: float = 1e-12, keys=METRIC_KEYS):
    for key in keys:
        assert math.isclose(got[key], ref[key], rel_tol=rtol, abs_tol=atol), (key, got[key], ref[key])


SHAPES = [(2, 5, 40), (2, 1, 30), (3, 2, 60), (3, 7, 61), (10, 4, 200), (10, 25, 300)]


@pytest.mark.parametrize("K,d,N", SHAPES, ids=[f"K{k}-d{d}-N{n}" for k, d, n in SHAPES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_bias", [True, False])
def test_collapse_metrics_matches_naive(K, d, N, dtype, with_bias):
    H, y, W, b = make_data(K, d, N, seed=K * 1000 + d + N)
    Ht = torch.tensor(H, dtype=dtype)
    Wt = torch.tensor(W, dtype=dtype)
    bt = torch.tensor(b, dtype=dtype) if with_bias else None
    # the naive reference sees exactly the values the function sees
    ref = naive_metrics(Ht.double().numpy(), y, Wt.double().numpy(), bt.double().numpy() if with_bias else None)
    got = collapse_metrics(Ht, torch.tensor(y), Wt, bt)
    assert set(got) == set(METRIC_KEYS) and all(isinstance(v, float) for v in got.values())
    assert 0.0 < ref["nc4"] < 1.0 or K == 2
    assert_metrics_close(got, ref)


def test_num_classes_argument_and_numpy_inputs():
    H, y, W, b = make_data(3, 4, 50, seed=3)
    ref = naive_metrics(H, y, W, b)
    assert_metrics_close(collapse_metrics(H, y, W, b, num_classes=3), ref)


def test_rank_deficient_class_means():
    """Class means spanning 2 of d = 12 dims (K = 6): Σ_B has rank 2; the pseudo-inverse keeps it."""
    rng = np.random.default_rng(7)
    K, d, N = 6, 12, 240
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]
    centers = rng.normal(size=(K, 2)) @ basis.T * 3
    y = np.arange(N) % K
    H = centers[y] + 0.3 * rng.normal(size=(N, d))
    W = rng.normal(size=(K, d))
    assert_metrics_close(collapse_metrics(torch.tensor(H), torch.tensor(y), torch.tensor(W)),
                         naive_metrics(H, y, W, None))


def test_large_common_offset_stays_accurate():
    """Features with a huge common mean and tiny within-class spread (late training): streaming
    with Chan's merge and the one-shot path both match the exactly-centred naive value."""
    H, y, W, b = make_data(4, 6, 120, seed=11, spread=1e-3, offset=1e4)
    ref = naive_metrics(H, y, W, b)
    assert ref["nc1"] < 1e-5
    Ht, yt = torch.tensor(H), torch.tensor(y)
    assert_metrics_close(collapse_metrics(Ht, yt, torch.tensor(W), torch.tensor(b)), ref, rtol=1e-7)
    stats = CollapseStats(4, 6)
    for rows in np.array_split(np.arange(120), 7):
        stats.update(Ht[rows], yt[rows])
    assert math.isclose(stats.compute(torch.tensor(W), nc4=False)["nc1"], ref["nc1"], rel_tol=1e-7)


# --------------------------------------------------------------------------------------------
# exact collapse
# --------------------------------------------------------------------------------------------


def _etf_classifier(K: int, d: int, seed: int) -> np.ndarray:
    """W [K, d] whose rows form a simplex ETF (unit norm, pairwise cosine −1/(K−1)), d ≥ K − 1."""
    rng = np.random.default_rng(seed)
    centred = np.eye(K) - 1.0 / K
    vecs = np.linalg.eigh(centred)[1][:, 1:]  # K × (K−1): orthonormal basis of 1-perp
    rows = centred @ vecs  # K × (K−1), rows = ETF coordinates
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0][:, : K - 1]
    W = rows @ rotation.T
    return W / np.linalg.norm(W, axis=1, keepdims=True)


@pytest.mark.parametrize("K,d", [(2, 1), (3, 2), (3, 8), (10, 9), (10, 32)])
def test_features_at_simplex_etf_give_zero(K, d):
    W = _etf_classifier(K, d, seed=K + d)
    Wt = torch.tensor(W)
    torch.testing.assert_close(Wt @ Wt.T / torch.linalg.matrix_norm(Wt @ Wt.T), simplex_etf(K))
    y = np.random.default_rng(K).permutation(np.repeat(np.arange(K), 4))  # balanced: h_G = 0
    H = 2.5 * W[y]  # every feature at its class's classifier direction
    got = collapse_metrics(torch.tensor(H), torch.tensor(y), Wt, torch.full((K,), 0.7))
    assert got["nc1"] == pytest.approx(0.0, abs=1e-20)
    for key in ("nc2", "nc3", "nc2_centered", "nc3_centered"):
        assert got[key] == pytest.approx(0.0, abs=1e-7), key
    assert got["nc4"] == 0.0


def test_near_collapse_is_small_and_matches_naive():
    K, d = 5, 16
    W = _etf_classifier(K, d, seed=2)
    rng = np.random.default_rng(0)
    y = np.arange(200) % K
    H = 3 * W[y] + 1e-3 * rng.normal(size=(200, d))
    W_noisy = W + 1e-3 * rng.normal(size=W.shape)
    ref = naive_metrics(H, y, W_noisy, None)
    got = collapse_metrics(torch.tensor(H), torch.tensor(y), torch.tensor(W_noisy))
    assert got["nc1"] < 1e-5 and got["nc2"] < 1e-2 and got["nc3"] < 1e-2 and got["nc4"] == 0.0
    assert_metrics_close(got, ref, rtol=1e-8)


def test_equal_class_means_pinv_convention():
    """Σ_B = 0: nc1 = trace(Σ_W · 0)/K = 0 (pseudo-inverse of zero); nc3 (W·0) is undefined: NaN."""
    H = np.array([[1.0, 2.0], [-1.0, -2.0], [2.0, 0.0], [-2.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    got = collapse_metrics(torch.tensor(H), torch.tensor(y), torch.eye(2, dtype=torch.float64))
    assert got["nc1"] == 0.0 and math.isnan(got["nc3"]) and not math.isnan(got["nc2"])


def test_simplex_etf():
    for K in (2, 3, 10):
        E = simplex_etf(K)
        assert E.dtype == torch.float64 and E.shape == (K, K)
        assert float(torch.linalg.matrix_norm(E)) == pytest.approx(1.0)
        torch.testing.assert_close(E.sum(0), torch.zeros(K, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_classes ≥ 2"):
        simplex_etf(1)


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def _random_batches(N: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation cut at random points, including a one-sample batch."""
    perm = rng.permutation(N)
    cuts = np.sort(rng.choice(np.arange(2, N - 1), size=6, replace=False))
    return [perm[:1]] + [part for part in np.split(perm[1:], cuts - 1) if len(part)]


@pytest.mark.parametrize("K,d,N", [(3, 7, 61), (10, 4, 200), (10, 25, 300)])
def test_streaming_two_passes_equal_one_shot(K, d, N):
    H, y, W, b = make_data(K, d, N, seed=N)
    Ht, yt, Wt, bt = (torch.tensor(a) for a in (H, y, W, b))
    one_shot = collapse_metrics(Ht, yt, Wt, bt)
    rng = np.random.default_rng(N)
    stats = CollapseStats(K, d)
    for rows in _random_batches(N, rng):
        stats.update(Ht[rows], yt[rows], Ht[rows] @ Wt.T + bt)
    assert stats.num_samples == N and stats.counts.tolist() == np.bincount(y, minlength=K).tolist()
    assert stats.needs_second_pass
    first = stats.compute(Wt, bt, nc4=False)  # nc1–nc3 from the d × d within-class scatter
    assert "nc4" not in first
    assert_metrics_close(first, one_shot, rtol=1e-10, keys=[k for k in METRIC_KEYS if k != "nc4"])
    with pytest.raises(RuntimeError, match="second pass"):
        stats.compute(Wt, bt)
    for rows in _random_batches(N, rng):  # different order and batch sizes
        stats.update_nc4(Ht[rows], yt[rows], Ht[rows] @ Wt.T + bt)
    assert not stats.needs_second_pass
    assert_metrics_close(stats.compute(Wt, bt), one_shot, rtol=1e-10)
    with pytest.raises(RuntimeError, match="first pass is closed"):
        stats.update(Ht[:3], yt[:3])


@pytest.mark.parametrize("with_logits", [True, False])
def test_streaming_keep_features_equals_one_shot(with_logits):
    K, d, N = 10, 12, 250
    H, y, W, b = make_data(K, d, N, seed=5)
    Ht, yt, Wt, bt = (torch.tensor(a) for a in (H, y, W, b))
    stats = CollapseStats(K, d, torch.device("cpu"), keep_features=True)
    assert not stats.needs_second_pass
    for rows in _random_batches(N, np.random.default_rng(1)):
        stats.update(Ht[rows], yt[rows], (Ht[rows] @ Wt.T + bt) if with_logits else None)
    ref = naive_metrics(H, y, W, b)
    first = stats.compute(Wt, bt)
    assert_metrics_close(first, ref)
    assert stats.compute(Wt, bt) == first  # compute does not consume the kept batches
    with pytest.raises(RuntimeError, match="not needed with keep_features"):
        stats.update_nc4(Ht, yt, Ht @ Wt.T)


def test_inputs_are_not_modified():
    H, y, W, b = make_data(3, 5, 40, seed=8)
    Ht, yt, Wt, bt = (torch.tensor(a) for a in (H, y, W, b))  # float64: no dtype copy on the way
    before = [t.clone() for t in (Ht, yt, Wt, bt)]
    collapse_metrics(Ht, yt, Wt, bt)
    stats = CollapseStats(3, 5)
    stats.update(Ht, yt)
    stats.update_nc4(Ht, yt, Ht @ Wt.T)
    stats.compute(Wt, bt)
    for t, t0 in zip((Ht, yt, Wt, bt), before):
        assert torch.equal(t, t0)


def test_logits_argument_gives_the_same_nc4():
    H, y, W, b = make_data(10, 8, 150, seed=12)
    Ht, yt, Wt, bt = (torch.tensor(a) for a in (H, y, W, b))
    assert collapse_metrics(Ht, yt, Wt, bt, logits=Ht @ Wt.T + bt) == collapse_metrics(Ht, yt, Wt, bt)


def test_nc4_follows_the_logits_given():
    """nc4 compares nearest-mean with argmax of the logits passed (here: always class 0)."""
    K, d, N = 3, 5, 90
    H, y, W, b = make_data(K, d, N, seed=9, spread=0.01)
    Ht, yt = torch.tensor(H), torch.tensor(y)
    stats = CollapseStats(K, d, keep_features=True)
    logits = torch.zeros(N, K)
    logits[:, 0] = 1.0
    stats.update(Ht, yt, logits)
    assert stats.compute(torch.tensor(W))["nc4"] == pytest.approx(float(np.mean(y != 0)))


def test_second_pass_must_see_the_same_samples():
    H, y, W, b = make_data(3, 4, 30, seed=1)
    Ht, yt, Wt = torch.tensor(H), torch.tensor(y), torch.tensor(W)
    stats = CollapseStats(3, 4)
    stats.update(Ht, yt)
    stats.update_nc4(Ht[:-1], yt[:-1], Ht[:-1] @ Wt.T)
    with pytest.raises(ValueError, match=f"second pass saw .* samples of class {y[-1]}"):
        stats.compute(Wt)
    with pytest.raises(ValueError, match="logits .* are required"):
        stats.update_nc4(Ht, yt, None)


def test_features_that_require_grad_and_float16():
    H, y, W, b = make_data(3, 6, 45, seed=4)
    Ht = torch.tensor(H, dtype=torch.float32, requires_grad=True)
    Wt = torch.tensor(W, dtype=torch.float32, requires_grad=True)
    got = collapse_metrics(Ht, torch.tensor(y), Wt)
    assert_metrics_close(got, naive_metrics(Ht.detach().double().numpy(), y, Wt.detach().double().numpy(), None))
    half = torch.tensor(H, dtype=torch.float16)
    got16 = collapse_metrics(half, torch.tensor(y), torch.tensor(W, dtype=torch.float16))
    ref16 = naive_metrics(half.double().numpy(), y, torch.tensor(W, dtype=torch.float16).double().numpy(), None)
    assert_metrics_close(got16, ref16)


def test_no_d_by_d_matrix_in_one_shot():
    """d = 60 000: a d × d float64 matrix would need 28.8 GB; the one-shot path needs O(N·d)."""
    rng = np.random.default_rng(0)
    K, d, N = 3, 60_000, 12
    y = np.arange(N) % K
    H = torch.tensor(rng.normal(size=(N, d)), dtype=torch.float32)
    W = torch.tensor(rng.normal(size=(K, d)), dtype=torch.float32)
    got = collapse_metrics(H, torch.tensor(y), W)
    # with N ≤ d the within-class residuals are orthogonal-ish to nothing in particular; check
    # against the naive formula restricted to the span of the data (exact: Σ_B^† lives there).
    Q, _ = np.linalg.qr(H.double().numpy().T)  # d × N orthonormal basis of the data
    ref = naive_metrics(H.double().numpy() @ Q, y, W.double().numpy() @ Q, None)
    for key in ("nc1", "nc3", "nc3_centered", "nc4"):
        assert math.isclose(got[key], ref[key], rel_tol=1e-8, abs_tol=1e-12), key


def test_non_finite_features_give_nan_metrics():
    H, y, W, b = make_data(3, 4, 30, seed=2)
    H[5, 1] = np.nan
    got = collapse_metrics(torch.tensor(H), torch.tensor(y), torch.tensor(W))
    assert set(got) == set(METRIC_KEYS) and all(math.isnan(v) for v in got.values())
    stats = CollapseStats(3, 4)
    stats.update(torch.tensor(H), torch.tensor(y))
    assert all(math.isnan(v) for v in stats.compute(torch.tensor(W), nc4=False).values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    H, y, W, b = make_data(10, 64, 500, seed=3)
    Ht, yt, Wt, bt = (torch.tensor(a) for a in (H, y, W, b))
    cpu = collapse_metrics(Ht.float(), yt, Wt.float(), bt.float())
    gpu = collapse_metrics(Ht.float().cuda(), yt.cuda(), Wt.float().cuda(), bt.float().cuda())
    assert_metrics_close(gpu, cpu, rtol=1e-9)
    stats = CollapseStats(10, 64, "cuda")
    for rows in np.array_split(np.arange(500), 4):
        stats.update(Ht[rows].float().cuda(), yt[rows].cuda())
    for rows in np.array_split(np.arange(500), 3):
        stats.update_nc4(Ht[rows].float().cuda(), yt[rows].cuda(), Ht[rows].float().cuda() @ Wt.float().cuda().T
                         + bt.float().cuda())
    assert_metrics_close(stats.compute(Wt.cuda(), bt.cuda()), cpu, rtol=1e-8)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def _good():
    H, y, W, b = make_data(3, 4, 30, seed=0)
    return torch.tensor(H), torch.tensor(y), torch.tensor(W), torch.tensor(b)


def test_missing_classes_are_named():
    H, y, W, b = _good()
    keep = (y != 1)
    with pytest.raises(ValueError, match=r"1 of 3 classes have no samples \(class 1\)"):
        collapse_metrics(H[keep], y[keep], W, b)
    W5 = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"2 of 5 classes have no samples \(class 3, 4\)"):
        collapse_metrics(H, y, W5)


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda H, y, W, b: (H, y.clone().index_fill_(0, torch.tensor([3]), 7), W, b), "label 7 is out of range"),
        (lambda H, y, W, b: (H, y.clone().index_fill_(0, torch.tensor([3]), -1), W, b), "label -1 is out of range"),
        (lambda H, y, W, b: (H, y[:-1], W, b), "labels must have shape [N] = [30]"),
        (lambda H, y, W, b: (H, y.double(), W, b), "labels must be integer"),
        (lambda H, y, W, b: (H[:, 0], y, W, b), "features must have shape [N, d]"),
        (lambda H, y, W, b: (H, y, W[:, :3], b), "features have d = 4 columns but weight is [3, 3]"),
        (lambda H, y, W, b: (H, y, W[0], b), "weight must have shape [K, d]"),
        (lambda H, y, W, b: (H, y, W, b[:2]), "bias must have shape [K] = [3]"),
        (lambda H, y, W, b: (H[:0], y[:0], W, b), "no samples were given"),
        (lambda H, y, W, b: (H.long(), y, W, b), "features must be floating point"),
    ],
)
def test_bad_inputs_raise_clear_errors(mutate, fragment):
    args = mutate(*_good())
    with pytest.raises(ValueError) as info:
        collapse_metrics(*args)
    assert fragment in str(info.value)


def test_num_classes_disagreeing_with_weight():
    H, y, W, b = _good()
    with pytest.raises(ValueError, match="weight has 3 rows but num_classes=4"):
        collapse_metrics(H, y, W, b, num_classes=4)


def test_collapse_stats_errors():
    H, y, W, b = _good()
    with pytest.raises(ValueError, match="num_classes must be an integer ≥ 2"):
        CollapseStats(1, 4)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        CollapseStats(3, 0)
    stats = CollapseStats(3, 4)
    with pytest.raises(ValueError, match=r"features must have shape \[N, 4\]"):
        stats.update(H[:, :3], y)
    with pytest.raises(ValueError, match=r"logits must have shape \[N, K\] = \[30, 3\]"):
        stats.update(H, y, torch.zeros(30, 4))
    stats.update(H, y)
    with pytest.raises(ValueError, match=r"weight must have shape \[K, d\] = \[3, 4\]"):
        stats.compute(W.T, nc4=False)
