"""ncbench.losses against independent float64 formulas (eqs. 3–6), stability, validation, registry."""

from __future__ import annotations

import math
import textwrap

import mpmath
import pytest
import torch

from ncbench.errors import ParameterError, UnknownNameError
from ncbench.losses import LOSS_DEFAULTS, loss_names, make_loss

# --------------------------------------------------------------------------------------------
# naive references: one sample at a time, softmax written out, float64, autograd for gradients
# --------------------------------------------------------------------------------------------


def _naive_per_sample(name: str, z: torch.Tensor, k: int, K: int, p: dict) -> torch.Tensor:
    probs = torch.exp(z) / torch.exp(z).sum()
    if name == "ce":
        return -torch.log(probs[k])
    if name == "fl":
        return -((1 - probs[k]) ** p["gamma"]) * torch.log(probs[k])
    if name == "ls":
        total = torch.zeros((), dtype=z.dtype)
        for ell in range(K):
            y = (1 - p["alpha"]) * (1.0 if ell == k else 0.0) + p["alpha"] / K
            total = total - y * torch.log(probs[ell])
        return total
    if name == "mse":
        total = p["kappa"] * (z[k] - p["beta"]) ** 2
        for ell in range(K):
            if ell != k:
                total = total + z[ell] ** 2
        return total / K if p.get("class_mean") else total
    raise AssertionError(name)


def _naive(name, logits, target, **params):
    p = {**LOSS_DEFAULTS[name], **params}
    z = logits.detach().to(torch.float64).clone().requires_grad_(True)
    B, K = z.shape
    value = sum(_naive_per_sample(name, z[i], int(target[i]), K, p) for i in range(B)) / B
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


def _ours(name, logits, target, **params):
    z = logits.detach().clone().requires_grad_(True)
    value = make_loss(name, logits.shape[1], **params)(z, target)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


CASES = [
    ("ce", {}),
    ("fl", {}),
    ("fl", {"gamma": 1.0}),
    ("fl", {"gamma": 0.5}),
    ("fl", {"gamma": 0.0}),
    ("ls", {}),
    ("ls", {"alpha": 0.7}),
    ("ls", {"alpha": 1.0}),
    ("mse", {}),
    ("mse", {"kappa": 3.0, "beta": 2.5}),
    ("mse", {"class_mean": True}),
]


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
@pytest.mark.parametrize("B,K", [(1, 2), (7, 3), (16, 10)])
def test_value_and_gradient_match_naive_float64(name, params, B, K):
    g = torch.Generator().manual_seed(B * 100 + K)
    logits = torch.randn(B, K, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, K, (B,), generator=g)
    v_ref, g_ref = _naive(name, logits, target, **params)
    v, grad = _ours(name, logits, target, **params)
    assert v.dtype == torch.float64 and v.dim() == 0
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_float32_inputs_match_naive(name, params):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(32, 10, generator=g) * 4
    target = torch.randint(0, 10, (32,), generator=g)
    v_ref, g_ref = _naive(name, logits, target, **params)
    v, grad = _ours(name, logits, target, **params)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v.double(), v_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), g_ref, rtol=1e-4, atol=1e-6)


def test_mean_over_batch_not_sum():
    logits = torch.randn(5, 4, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 0])
    loss = make_loss("ce", 4)
    per = loss.per_sample(logits, target)
    assert per.shape == (5,)
    torch.testing.assert_close(loss(logits, target), per.mean())
    torch.testing.assert_close(loss(logits[:1], target[:1]), per[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fl_gamma0_and_ls_alpha0_equal_ce_exactly(dtype):
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(64, 10, generator=g) * 5).to(dtype).requires_grad_(True)
    target = torch.randint(0, 10, (64,), generator=g)
    ce = make_loss("ce", 10)(logits, target)
    (g_ce,) = torch.autograd.grad(ce, logits)
    for name, params in [("fl", {"gamma": 0}), ("ls", {"alpha": 0.0})]:
        v = make_loss(name, 10, **params)(logits, target)
        (gv,) = torch.autograd.grad(v, logits)
        assert torch.equal(v, ce), name
        assert torch.equal(gv, g_ce), name


def test_mse_class_mean_is_default_over_K():
    logits = torch.randn(9, 7, dtype=torch.float64)
    target = torch.randint(0, 7, (9,))
    a = make_loss("mse", 7)(logits, target)
    b = make_loss("mse", 7, class_mean=True)(logits, target)
    torch.testing.assert_close(b, a / 7)


def test_mse_at_the_target_is_zero():
    K = 4
    target = torch.tensor([2, 0])
    logits = torch.zeros(2, K, dtype=torch.float64)
    logits[0, 2] = logits[1, 0] = 15.0
    assert float(make_loss("mse", K)(logits, target)) == 0.0


# --------------------------------------------------------------------------------------------
# extreme logits: finite values and gradients, equal to a 50-digit reference
# --------------------------------------------------------------------------------------------


def _mp_loss(name: str, z: list[float], k: int, p: dict) -> mpmath.mpf:
    K = len(z)
    zs = [mpmath.mpf(v) for v in z]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zs))
    logp = [v - lse for v in zs]
    if name == "ce":
        return -logp[k]
    if name == "fl":
        return -((1 - mpmath.exp(logp[k])) ** p["gamma"]) * logp[k]
    if name == "ls":
        return -mpmath.fsum(((1 - p["alpha"]) * (ell == k) + p["alpha"] / K) * logp[ell] for ell in range(K))
    if name == "mse":
        out = p["kappa"] * (zs[k] - p["beta"]) ** 2 + mpmath.fsum(zs[ell] ** 2 for ell in range(K) if ell != k)
        return out / K if p.get("class_mean") else out
    raise AssertionError(name)


def _mp_reference(name, logits, target, params):
    """Value and gradient (central differences at 50 digits, step 1e-20) of the batch mean."""
    p = {**LOSS_DEFAULTS[name], **params}
    B, K = logits.shape
    value, grad = mpmath.mpf(0), torch.zeros(B, K, dtype=torch.float64)
    with mpmath.workdps(50):
        h = mpmath.mpf("1e-20")
        for i in range(B):
            z = [mpmath.mpf(float(v)) for v in logits[i]]
            k = int(target[i])
            value += _mp_loss(name, z, k, p)
            for j in range(K):
                zp, zm = list(z), list(z)
                zp[j] += h
                zm[j] -= h
                grad[i, j] = float((_mp_loss(name, zp, k, p) - _mp_loss(name, zm, k, p)) / (2 * h) / B)
        return float(value / B), grad


EXTREME = torch.tensor(
    [
        [1000.0, -1000.0, 0.0],  # confidently right (p_k = 1 in any float)
        [1000.0, -1000.0, 0.0],  # confidently wrong
        [-1000.0, 1000.0, 999.0],
        [30.0, 0.0, -30.0],  # 1 − p_k ≈ 1e-13: below float32 resolution of p, not of 1 − p
    ]
)
EXTREME_TARGET = torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize(
    "name,params",
    [("ce", {}), ("fl", {}), ("fl", {"gamma": 0.5}), ("fl", {"gamma": 0.01}), ("fl", {"gamma": 1.0}),
     ("ls", {}), ("mse", {}), ("mse", {"class_mean": True})],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits_finite_and_correct(name, params, dtype):
    logits = EXTREME.to(dtype)
    v, grad = _ours(name, logits, EXTREME_TARGET, **params)
    assert torch.isfinite(v) and torch.isfinite(grad).all()
    v_ref, g_ref = _mp_reference(name, logits, EXTREME_TARGET, params)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert math.isclose(float(v), v_ref, rel_tol=tol, abs_tol=tol)
    torch.testing.assert_close(grad.double(), g_ref, rtol=1e-5 if dtype == torch.float32 else 1e-9,
                               atol=1e-7 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("gamma", [0.001, 0.3, 0.999, 3.0])
def test_focal_gradient_near_p_equal_one_float32(gamma):
    """Margins where 1 − p_k is tiny or denormal in float32: autograd of (1−p)^γ would give inf/NaN."""
    margins = torch.tensor([15.0, 40.0, 87.0, 103.0, 120.0, 500.0])
    logits = torch.stack([margins, torch.zeros_like(margins)], dim=1)
    target = torch.zeros(len(margins), dtype=torch.long)
    v, grad = _ours("fl", logits, target, gamma=gamma)
    assert torch.isfinite(v) and torch.isfinite(grad).all()
    v_ref, g_ref = _mp_reference("fl", logits, target, {"gamma": gamma})
    assert math.isclose(float(v), v_ref, rel_tol=1e-5, abs_tol=1e-30)
    torch.testing.assert_close(grad.double(), g_ref, rtol=1e-4, atol=1e-30)


# --------------------------------------------------------------------------------------------
# parameters, names, inputs
# --------------------------------------------------------------------------------------------


def test_defaults_and_names():
    assert loss_names() == ["ce", "fl", "ls", "mse"]
    assert LOSS_DEFAULTS["fl"] == {"gamma": 3.0}
    assert LOSS_DEFAULTS["ls"] == {"alpha": 0.1}
    assert LOSS_DEFAULTS["mse"] == {"kappa": 1.0, "beta": 15.0, "class_mean": False}
    fl = make_loss("fl", 10)
    assert isinstance(fl, torch.nn.Module) and fl.gamma == 3.0
    assert make_loss("ls", 10).alpha == 0.1
    mse = make_loss("mse", 10)
    assert (mse.kappa, mse.beta, mse.class_mean) == (1.0, 15.0, False)
    assert "gamma=3.0" in repr(fl)


@pytest.mark.parametrize(
    "name,params,fragment",
    [
        ("fl", {"gama": 2}, "did you mean 'gamma'"),
        ("fl", {"alpha": 0.1}, "valid parameters: gamma"),
        ("ce", {"gamma": 1}, "valid parameters: (none)"),
        ("mse", {"beta2": 1}, "valid parameters: kappa, beta, class_mean"),
        ("fl", {"gamma": -0.5}, "'gamma' must be ≥ 0"),
        ("fl", {"gamma": "3"}, "'gamma' must be a finite number"),
        ("fl", {"gamma": float("nan")}, "finite number"),
        ("ls", {"alpha": 1.5}, "'alpha' must be in [0, 1]"),
        ("ls", {"alpha": -0.1}, "'alpha' must be in [0, 1]"),
        ("mse", {"kappa": 0}, "'kappa' must be > 0"),
        ("mse", {"beta": -1.0}, "'beta' must be > 0"),
        ("mse", {"class_mean": 1}, "'class_mean' must be true or false"),
    ],
)
def test_bad_params_raise_clear_errors(name, params, fragment):
    with pytest.raises(ValueError) as info:
        make_loss(name, 10, **params)
    assert fragment in str(info.value)
    assert f"loss '{name}'" in str(info.value)


@pytest.mark.parametrize("name,params", [("fl", {"gama": 2}), ("ls", {"alpha": 2.0}),
                                         ("mse", {"class_mean": "yes"}), ("ce", {"x": 1})])
def test_bad_params_are_parameter_errors_naming_loss_params(name, params):
    with pytest.raises(ParameterError) as info:
        make_loss(name, 10, **params)
    assert info.value.key == "loss_params" and info.value.reason == str(info.value)


def test_unknown_parameter_suggestion_is_the_shared_phrase():
    with pytest.raises(ParameterError) as info:
        make_loss("mse", 10, kapa=2)
    assert str(info.value) == ("loss 'mse': unknown parameter(s) 'kapa' (did you mean 'kappa'?); "
                               "valid parameters: kappa, beta, class_mean")
    with pytest.raises(ParameterError) as info:  # nothing close: no suggestion
        make_loss("fl", 10, zzz=1)
    assert "did you mean" not in str(info.value)


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError) as info:
        make_loss("focal", 10)
    assert "known: ce, fl, ls, mse" in str(info.value)
    with pytest.raises(UnknownNameError, match="did you mean 'mse'"):
        make_loss("mes", 10)


@pytest.mark.parametrize("num_classes", [1, 0, 2.0, True, "10"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be an integer ≥ 2") as info:
        make_loss("ce", num_classes)
    assert isinstance(info.value, ParameterError)


@pytest.mark.parametrize(
    "logits,target,fragment",
    [
        (torch.randn(4), torch.zeros(4, dtype=torch.long), "logits must have shape [B, 3]"),
        (torch.randn(4, 5), torch.zeros(4, dtype=torch.long), "got [4, 5]"),
        (torch.randn(4, 3), torch.zeros(5, dtype=torch.long), "target must have shape [B] = [4]"),
        (torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long), "target must have shape [B]"),
        (torch.randn(4, 3), torch.zeros(4), "integer class indices"),
        (torch.randn(4, 3), torch.tensor([0, 1, 3, 0]), "target value 3 is out of range"),
        (torch.randn(4, 3), torch.tensor([0, -1, 2, 0]), "target value -1 is out of range"),
        (torch.randint(0, 3, (4, 3)), torch.zeros(4, dtype=torch.long), "floating point"),
        (torch.randn(0, 3), torch.zeros(0, dtype=torch.long), "empty batch"),
    ],
)
@pytest.mark.parametrize("name", ["ce", "fl", "ls", "mse"])
def test_bad_inputs_raise_clear_errors(name, logits, target, fragment):
    with pytest.raises(ValueError) as info:
        make_loss(name, 3)(logits, target)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------------------------
# user losses: "package.module:callable"
# --------------------------------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_ncb_losses.py").write_text(textwrap.dedent(
        """
        import torch
        import torch.nn.functional as F

        class Hinge(torch.nn.Module):
            def __init__(self, num_classes, margin=1.0):
                super().__init__()
                self.num_classes, self.margin = num_classes, margin
            def forward(self, logits, target):
                zk = logits.gather(1, target[:, None])
                return F.relu(self.margin + logits - zk).sum(1).sub(self.margin).mean()

        def make_hinge(num_classes, margin=1.0):
            return Hinge(num_classes, margin)

        def make_fn(num_classes, scale=1.0):
            return lambda logits, target: scale * F.cross_entropy(logits, target)

        def make_bad(num_classes):
            return lambda logits, target: F.cross_entropy(logits, target, reduction="none")

        def make_nothing(num_classes):
            return 3
        """
    ))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_ncb_losses"


def test_user_loss_module_and_callable(user_module):
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    hinge = make_loss(f"{user_module}:make_hinge", 4, margin=2.0)
    assert isinstance(hinge, torch.nn.Module) and hinge.inner.margin == 2.0 and hinge.inner.num_classes == 4
    zk = logits.gather(1, target[:, None])
    expected = ((2.0 + logits - zk).clamp_min(0).sum(1) - 2.0).mean()
    torch.testing.assert_close(hinge(logits, target), expected)
    fn = make_loss(f"{user_module}:make_fn", 4, scale=2.0)
    torch.testing.assert_close(fn(logits, target), 2.0 * make_loss("ce", 4)(logits, target))
    fn(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="out of range"):  # inputs validated like the built-ins
        fn(logits, torch.tensor([0, 1, 2, 4, 0, 1]))


def test_user_loss_errors(user_module):
    logits, target = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"returned \[3\]; a loss must return the batch mean"):
        make_loss(f"{user_module}:make_bad", 4)(logits, target)
    with pytest.raises(ValueError, match="returned int"):
        make_loss(f"{user_module}:make_nothing", 4)
    with pytest.raises(ValueError, match="failed: .*unexpected keyword argument 'gamma'"):
        make_loss(f"{user_module}:make_fn", 4, gamma=2)
    with pytest.raises(UnknownNameError):
        make_loss(f"{user_module}:no_such_function", 4)
    with pytest.raises(UnknownNameError):
        make_loss("no_such_module_ncb:fn", 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_cuda_matches_cpu(name, params):
    logits = torch.cat([EXTREME, torch.randn(16, 3) * 4])
    target = torch.cat([EXTREME_TARGET, torch.randint(0, 3, (16,))])
    v_cpu, g_cpu = _ours(name, logits, target, **params)
    v_gpu, g_gpu = _ours(name, logits.cuda(), target.cuda(), **params)
    assert torch.isfinite(v_gpu) and torch.isfinite(g_gpu).all()
    torch.testing.assert_close(v_gpu.cpu(), v_cpu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-4, atol=1e-6)
