"""The UFM solver (eq. 7) and `ncbench ufm`: convergence to a true stationary point, Theorem 1's
properties, the MSE shift regime, seed independence, the CLI (JSON, tables, trajectory, errors).

Independent references written here in plain float64: the per-sample losses of eqs. (3)–(6) and
the objective f with its gradient (autograd over those formulas), the closed-form CE optimum over
NC-structured points (a 1-D problem solved by bisection) and the closed-form MSE (κ = 1) optimum
with its shared logit shift (derived in docs/ufm.md)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ncbench.errors import ParameterError, UnknownNameError, UsageError
from ncbench.ufm import (
    UFMResult,
    is_zero_solution,
    nc_ansatz_optimum,
    settings_problem,
    solve_ufm,
    theorem1_checks,
    validate_ufm_settings,
)
from ncbench.ufm.lbfgs import minimize

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(num_classes=4, dim=8, per_class=5, lambda_w=5e-3, lambda_h=5e-3, lambda_b=5e-3)
LOSSES = ("ce", "fl", "ls", "mse")


# --------------------------------------------------------------------------------------------
# independent float64 references
# --------------------------------------------------------------------------------------------


def ref_per_sample(name: str, z: torch.Tensor, y: torch.Tensor, **p) -> torch.Tensor:
    """Per-sample losses straight from eqs. (3)–(6) (no log_softmax helper, explicit sums)."""
    K = z.shape[1]
    zmax = z.max(dim=1, keepdim=True).values
    logsumexp = zmax.squeeze(1) + torch.log(torch.exp(z - zmax).sum(dim=1))
    logp = z - logsumexp.unsqueeze(1)
    logp_k = logp[torch.arange(len(y)), y]
    if name == "ce":
        return -logp_k
    if name == "fl":
        g = p.get("gamma", 3.0)
        return -((1 - torch.exp(logp_k)) ** g) * logp_k
    if name == "ls":
        a = p.get("alpha", 0.1)
        target = torch.full_like(z, a / K)
        target[torch.arange(len(y)), y] += 1 - a
        return -(target * logp).sum(dim=1)
    if name == "mse":
        kappa, beta = p.get("kappa", 1.0), p.get("beta", 15.0)
        out = torch.zeros(len(y), dtype=z.dtype)
        for i in range(len(y)):
            for ell in range(K):
                out[i] = out[i] + (kappa * (z[i, ell] - beta) ** 2 if ell == y[i] else z[i, ell] ** 2)
        return out
    raise AssertionError(name)


def ref_objective_and_grad(res: UFMResult) -> tuple[float, float]:
    """f(W, H, b) of eq. (7) and ‖∇f‖₂ from the reference losses (autograd over them)."""
    W = res.W.clone().requires_grad_(True)
    H = res.H.clone().requires_grad_(True)
    b = res.b.clone().requires_grad_(True)
    z = (W @ H).T + b
    f = (ref_per_sample(res.loss, z, res.labels, **res.loss_params).mean()
         + res.lambda_w / 2 * (W ** 2).sum() + res.lambda_h / 2 * (H ** 2).sum()
         + res.lambda_b / 2 * (b ** 2).sum())
    gw, gh, gb = torch.autograd.grad(f, (W, H, b))
    return float(f.detach()), math.sqrt(float((gw ** 2).sum() + (gh ** 2).sum() + (gb ** 2).sum()))


def ce_nc_optimum(K: int, n: int, lw: float, lh: float) -> float:
    """min over ρ ≥ 0 of log(1 + (K−1)e^{−aρ}) + λ_W K ρ, a = √(λ_W/(λ_H n))·K/(K−1): the value
    of eq. (7) at the best NC point (every logit gap aρ). Solved by bisection on the derivative."""
    a = math.sqrt(lw / (lh * n)) * K / (K - 1)

    def fn(r):
        return math.log1p((K - 1) * math.exp(-a * r)) + lw * K * r

    def deriv(r):
        return -a * (K - 1) * math.exp(-a * r) / (1 + (K - 1) * math.exp(-a * r)) + lw * K

    if deriv(0.0) >= 0:
        return fn(0.0)
    lo, hi = 0.0, 1.0
    while deriv(hi) < 0:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if deriv(mid) < 0 else (lo, mid)
    return fn((lo + hi) / 2)


def mse_closed_form(K: int, n: int, lw: float, lh: float, lb: float, beta: float = 15.0) -> dict:
    """Global optimum of eq. (7) with the κ = 1 MSE over NC points with a shared logit shift.

    With κ = 1 the loss splits into a centred part ‖z_c − β(e_k − 1/K)‖² and a shift part
    K(s − β/K)², s = mean logit. Centred (ETF, h = c w): (K−1)/K·(aρ − β)² + λ_W K ρ, a = cK/(K−1).
    Shift s = p + b̄ (p via a shared component of W and H, cost K τ p with τ = √(n λ_W λ_H); b̄ via
    the bias, cost λ_b K b̄²/2): p > 0 iff 2(m − b̄₀) > τ with b̄₀ = 2m/(2 + λ_b), m = β/K.
    """
    c = math.sqrt(lw / (lh * n))
    a = c * K / (K - 1)
    rho = max(0.0, beta / a - lw * K * K / (2 * (K - 1) * a * a))
    centred = (K - 1) / K * (a * rho - beta) ** 2 + lw * K * rho
    m, tau = beta / K, math.sqrt(n * lw * lh)
    b0 = 2 * m / (2 + lb)
    if lb > 0 and 2 * (m - b0) > tau:
        bbar = tau / lb
        s = m - tau / 2
        p = s - bbar
    else:
        bbar, p = b0, 0.0
        s = b0
    shift = K * (s - m) ** 2 + K * tau * p + lb * K * bbar ** 2 / 2
    return {"objective": centred + shift, "bias": bbar, "shift_p": p, "rho": rho}


# --------------------------------------------------------------------------------------------
# the solver
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_results() -> dict[str, UFMResult]:
    return {name: solve_ufm(name, **SMALL) for name in LOSSES}


@pytest.mark.parametrize("name", LOSSES)
def test_small_problem_reaches_a_true_stationary_point(small_results, name):
    res = small_results[name]
    assert res.converged and res.stop_reason == "converged"
    assert res.rel_grad_norm <= 1e-9
    # the reference formulas agree on f and on ‖∇f‖ (so "stationary" is not the solver's own word)
    f_ref, g_ref = ref_objective_and_grad(res)
    assert f_ref == pytest.approx(res.objective, rel=1e-12)
    assert g_ref <= 1.01e-9 * max(1.0, abs(f_ref))
    assert g_ref == pytest.approx(res.grad_norm, rel=1e-3, abs=1e-13)


@pytest.mark.parametrize("name", LOSSES)
def test_small_problem_collapses_and_every_applicable_check_passes(small_results, name):
    res = small_results[name]
    m = res.metrics
    assert m["nc1"] < 1e-6 and m["nc3"] < 1e-6
    assert m["nc2_centered"] < 1e-6
    if name != "mse":
        assert m["nc2"] < 1e-6
    checks = theorem1_checks(res)
    assert [c.status for c in checks if c.status == "fail"] == []
    by = {c.name: c for c in checks}
    if name == "mse":  # predicted: collapse, centred ETF, balance (Lemma 5); the rest measured only
        assert {c.name for c in checks if c.status == "pass"} == {"within_class", "simplex_etf_centered", "balance"}
        assert all(c.note for c in checks if c.status == "not-predicted")
    else:
        assert all(c.status == "pass" for c in checks), [(c.name, c.measured) for c in checks]
        assert by["global_objective"].measured == pytest.approx(0.0, abs=1e-12)


def test_check_measurements_match_independent_formulas(small_results):
    res = small_results["ce"]
    W, H, b, y, K, n = res.W, res.H, res.b, res.labels, res.num_classes, res.per_class
    by = {c.name: c for c in theorem1_checks(res)}
    norms = [math.sqrt(sum(float(W[k, j]) ** 2 for j in range(W.shape[1]))) for k in range(K)]
    assert by["equal_w_norms"].measured == pytest.approx((max(norms) - min(norms)) / (sum(norms) / K), rel=1e-6, abs=1e-15)
    c = math.sqrt(res.lambda_w / (res.lambda_h * n))
    dev = math.sqrt(sum(float(H[i, j] - c * W[y[j], i]) ** 2 for i in range(H.shape[0]) for j in range(H.shape[1])))
    assert by["h_prop_w"].measured == pytest.approx(dev / float(H.norm()), rel=1e-6)
    wn, hn = res.lambda_w * float((W ** 2).sum()), res.lambda_h * float((H ** 2).sum())
    assert by["balance"].measured == pytest.approx(abs(wn - hn) / max(wn, hn), rel=1e-6, abs=1e-15)
    assert by["simplex_etf"].measured == res.metrics["nc2"]
    # W as Theorem 1 predicts it: WWᵀ = ‖w‖² K/(K−1) (I − 11ᵀ/K)
    G = W @ W.T
    r = float(G.diagonal().mean())
    assert torch.allclose(G, r * K / (K - 1) * (torch.eye(K, dtype=torch.float64) - 1.0 / K), atol=1e-6 * r)
    assert res.objective == pytest.approx(ce_nc_optimum(K, n, res.lambda_w, res.lambda_h), rel=1e-10)


def test_a_broken_property_is_reported_as_a_failure(small_results):
    res = small_results["ce"]
    W = res.W.clone()
    W[0] *= 1.1  # unequal row norms (and no longer stationary)
    bad = UFMResult(**{**res.__dict__, "W": W})
    by = {c.name: c for c in theorem1_checks(bad)}
    norms = W.norm(dim=1)
    assert by["equal_w_norms"].status == "fail"
    assert by["equal_w_norms"].measured == pytest.approx(float((norms.max() - norms.min()) / norms.mean()), rel=1e-9)
    assert by["equal_w_norms"].measured == pytest.approx(0.1 / (1 + 0.1 / res.num_classes), rel=1e-6)
    assert by["within_class"].status == "pass"  # H untouched


@pytest.mark.parametrize("name", LOSSES)
def test_objective_does_not_depend_on_the_seed(small_results, name):
    values = [small_results[name].objective] + [solve_ufm(name, **SMALL, seed=s).objective for s in (1, 2)]
    starts = [solve_ufm(name, **SMALL, seed=s, max_iter=1).objective for s in (0, 1, 2)]
    assert len(set(starts)) == 3  # the starts do differ
    for v in values[1:]:
        assert v == pytest.approx(values[0], rel=1e-9)


def test_mse_optimum_matches_the_closed_form_with_a_shared_shift(small_results):
    """K=4, n=5: β λ_b/(K(1+λ_b/2)) > √(nλ_Wλ_H), so the optimum shifts every logit partly
    through a shared component of W and the features: h_G ≠ 0, uncentred NC2 ≠ 0, b = τ/λ_b·1."""
    res = small_results["mse"]
    ref = mse_closed_form(4, 5, 5e-3, 5e-3, 5e-3)
    assert ref["shift_p"] > 1.0
    assert res.objective == pytest.approx(ref["objective"], rel=1e-10)
    assert torch.allclose(res.b, torch.full((4,), ref["bias"], dtype=torch.float64), rtol=1e-6)
    h_g = res.H.mean(dim=1)
    w_bar = res.W.mean(dim=0)
    assert float(w_bar @ h_g) * 4 == pytest.approx(ref["shift_p"] * 4, rel=1e-6)  # Σ_k (1aᵀ)(c a) = K p
    assert res.metrics["nc2"] > 0.1
    by = {c.name: c for c in theorem1_checks(res)}
    assert not by["zero_mean"].holds and not by["bias_zero"].holds and not by["simplex_etf"].holds
    assert by["equal_w_norms"].holds and by["h_prop_w"].holds and by["bias_constant"].holds
    assert by["global_objective"].holds  # the NC-with-shift ansatz is the optimum found
    ans = nc_ansatz_optimum("mse", 4, 5, 5e-3, 5e-3, 5e-3)
    assert ans["objective"] == pytest.approx(ref["objective"], rel=1e-12)
    assert ans["shift_p"] == pytest.approx(ref["shift_p"], rel=1e-6)


@pytest.mark.parametrize("kappa", [0.3, 3.0])
def test_mse_shared_component_prices_the_shift_like_the_bias_for_any_kappa(kappa):
    """Stationarity in b̄ and in the shared component: λ_b b̄ = √(n λ_W λ_H) once the shared
    component is active — seen for every κ, not only the κ = 1 closed form."""
    res = solve_ufm("mse", **SMALL, loss_params={"kappa": kappa})
    assert res.converged
    assert float(res.H.mean(dim=1).norm()) > 0.1  # shared component active
    assert 5e-3 * float(res.b.mean()) == pytest.approx(math.sqrt(5 * 5e-3 * 5e-3), rel=1e-6)
    by = {c.name: c for c in theorem1_checks(res)}
    assert by["global_objective"].holds and by["h_prop_w"].holds and by["equal_w_norms"].holds


@pytest.mark.parametrize("lambda_b", [0.0, 5e-4])
def test_mse_without_a_shared_component_when_the_bias_is_cheap(lambda_b):
    """λ_b = 0 (or small): the bias carries the whole shift, h_G = 0 and W is an ETF (NC2 ≈ 0)."""
    res = solve_ufm("mse", **{**SMALL, "lambda_b": lambda_b})
    ref = mse_closed_form(4, 5, 5e-3, 5e-3, lambda_b)
    assert ref["shift_p"] == 0.0
    assert res.converged
    assert res.objective == pytest.approx(ref["objective"], rel=1e-10)
    assert float(res.b.mean()) == pytest.approx(ref["bias"], rel=1e-6)
    assert res.metrics["nc2"] < 1e-6
    by = {c.name: c for c in theorem1_checks(res)}
    assert by["zero_mean"].holds and not by["bias_zero"].holds


def test_zero_solution_when_weight_decay_is_too_strong():
    res = solve_ufm("ce", 4, 8, 5, 1.0, 1.0, 1.0)
    assert res.converged and is_zero_solution(res)
    assert res.objective == pytest.approx(math.log(4), rel=1e-12)
    assert ce_nc_optimum(4, 5, 1.0, 1.0) == pytest.approx(math.log(4), rel=1e-12)
    checks = theorem1_checks(res)
    assert all(c.status == "pass" for c in checks)
    assert all("W = H = 0" in c.note for c in checks if c.name != "global_objective")


def test_d_equal_k_is_outside_the_theorem_but_solved():
    res = solve_ufm("ce", 4, 4, 5, 5e-3, 5e-3, 5e-3)
    checks = theorem1_checks(res)
    assert res.converged
    assert {c.status for c in checks if c.name != "balance"} == {"not-predicted"}
    assert all(c.holds for c in checks)
    assert "K < d" in checks[0].note


def test_loss_params_reach_the_loss():
    a = solve_ufm("fl", **SMALL, loss_params={"gamma": 1.0})
    b = solve_ufm("fl", **SMALL)
    assert a.converged and a.objective != pytest.approx(b.objective, rel=1e-3)
    f_ref, _ = ref_objective_and_grad(a)
    assert f_ref == pytest.approx(a.objective, rel=1e-12)


def test_trajectory_rows():
    res = solve_ufm("ce", **SMALL, trajectory=True)
    t = res.trajectory
    assert [r["iteration"] for r in t] == list(range(res.iterations + 1))
    assert t[-1]["objective"] == res.objective
    assert t[0]["nc1"] > 1e-3 > 1e-12 > t[-1]["nc1"]
    assert all(t[i + 1]["objective"] <= t[i]["objective"] + 1e-10 for i in range(len(t) - 1))


def test_lbfgs_reaches_tiny_gradients_on_rosenbrock():
    """f* = 0 so the criterion is absolute: 1e-12 needs the derivative-based (approximate Wolfe)
    acceptance once f stops resolving the decrease."""

    def fg(x):
        x = x.detach().requires_grad_(True)
        f = sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))
        (g,) = torch.autograd.grad(f, x)
        return float(f.detach()), g

    out = minimize(fg, torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=torch.float64), 1e-12, 2000)
    assert out.converged and float(out.g.norm()) <= 1e-12
    assert torch.allclose(out.x, torch.ones(4, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("kwargs, key", [
    ({"dim": 3}, "dim"),
    ({"per_class": 0}, "per_class"),
    ({"lambda_w": 0.0}, "lambda_w"),
    ({"lambda_h": -1e-3}, "lambda_h"),
    ({"lambda_b": -1.0}, "lambda_b"),
    ({"num_classes": 1, "dim": 8}, "num_classes"),
])
def test_invalid_settings_raise_parameter_errors(kwargs, key):
    with pytest.raises(ParameterError) as info:
        solve_ufm("ce", **{**SMALL, **kwargs})
    assert info.value.key == key
    assert str(info.value).startswith(f"UFM setting '{key}': ")


@pytest.mark.parametrize("kwargs, key, reason", [
    ({"tol": 1.0}, "tol", "must be in (0, 1), got 1.0"),
    ({"tol": float("nan")}, "tol", "must be a finite number, got nan"),
    ({"max_iter": 0}, "max_iter", "must be at least 1, got 0"),
    ({"per_class": 2.5}, "per_class", "must be an integer, got 2.5"),
    ({"lambda_b": True}, "lambda_b", "must be a finite number, got True"),
])
def test_settings_problem_names_the_argument_and_the_reason(kwargs, key, reason):
    settings = {"tol": 1e-9, "max_iter": 10, **SMALL, **kwargs}
    assert settings_problem(**settings) == (key, reason)
    with pytest.raises(ParameterError, match=f"UFM setting '{key}'") as info:
        validate_ufm_settings(**settings)
    assert isinstance(info.value, ValueError) and info.value.key == key


def test_valid_settings_have_no_problem():
    assert settings_problem(**SMALL) is None
    assert settings_problem(**{**SMALL, "dim": 4, "lambda_b": 0}) is None  # d = K, unpenalised b
    validate_ufm_settings(**SMALL)


def test_unknown_loss_and_bad_params():
    with pytest.raises(UnknownNameError, match="did you mean 'mse'"):
        solve_ufm("mes", **SMALL)
    with pytest.raises(ParameterError, match="gamma") as info:
        solve_ufm("fl", **SMALL, loss_params={"gama": 2.0})
    assert info.value.key == "loss_params"


def test_k10_d32_n50_converges_fast_for_every_loss():
    """Done-when: K=10, d=32, n=50 in under 10 s per loss on this CPU."""
    for name in LOSSES:
        res = solve_ufm(name, 10, 32, 50, 5e-3, 5e-3, 5e-3)
        assert res.converged, name
        assert res.seconds < 10.0, (name, res.seconds)
        assert res.metrics["nc1"] < 1e-6 and res.metrics["nc2_centered"] < 1e-6


# --------------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", "ufm", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


SMALL_ARGS = ("--classes", "4", "--dim", "8", "--per-class", "5", "--lambda-w", "5e-3",
              "--lambda-h", "5e-3", "--lambda-b", "5e-3")


def test_cli_json_has_the_listed_keys_and_only_json_on_stdout(tmp_path):
    traj = tmp_path / "t.csv"
    out = _cli("--loss", "ce,mse", *SMALL_ARGS, "--loss-params", "mse:beta=10", "--json",
               "--trajectory", str(traj))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["loss"] for o in objs] == ["ce", "mse"]
    keys = {"loss", "objective", "nc1", "nc2", "nc3", "nc2_centered", "w_norm_sq", "h_norm_sq",
            "b_norm", "grad_norm", "iterations", "seconds"}
    for o in objs:
        assert keys <= o.keys()
        assert o["converged"] and o["grad_norm"] <= 1e-9 * max(1.0, abs(o["objective"]))
        assert all(c["status"] != "fail" for c in o["checks"])
    assert objs[1]["loss_params"] == {"beta": 10}
    ref = mse_closed_form(4, 5, 5e-3, 5e-3, 5e-3, beta=10.0)
    assert objs[1]["objective"] == pytest.approx(ref["objective"], rel=1e-10)
    assert out.stderr == ""
    with traj.open() as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) >= {"loss", "iteration", "objective", "nc1", "nc2", "nc3"}
    for o in objs:
        mine = [r for r in rows if r["loss"] == o["loss"]]
        assert len(mine) == o["iterations"] + 1
        assert float(mine[-1]["objective"]) == pytest.approx(o["objective"], rel=1e-15)


def test_cli_human_output_tables():
    out = _cli("--loss", "fl,mse", *SMALL_ARGS, "--loss-params", "gamma=2")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "fl (gamma=2)" in text and "mse —" in text
    assert "Theorem 1 checks" in text and "Side by side" in text
    assert "pass" in text and "does not hold" in text and "not pred." in text
    assert "MSE is outside Theorem 1" in text
    assert "FAIL" not in text


ERROR_CASES = [
    (("--dim", "3"), "smaller than the number of classes"),
    (("--lambda-w", "0"), "lambda-w"),
    (("--lambda-h", "-1"), "lambda-h"),
    (("--per-class", "0"), "per-class"),
    (("--loss", "cee"), "did you mean 'ce'"),
    (("--loss", "ce,ce"), "listed twice"),
    (("--loss", "fl", "--loss-params", "fl:gama=2"), "did you mean 'gamma'"),
    (("--loss", "ce", "--loss-params", "alpha=0.2"), "no selected loss has a parameter 'alpha'"),
    (("--loss", "fl", "--loss-params", "gamma"), "not KEY=VALUE"),
    (("--loss", "fl", "--loss-params", "gamma=x"), "not a number"),
    (("--loss", "fl", "--loss-params", "ls:alpha=0.2"), "not among the selected losses"),
    (("--loss", "ce", "--trajectory", "/nonexistent/dir/t.csv"), "does not exist"),
    (("--loss", "ce", "--device", "tpu9"), "not a torch device"),
]


@pytest.mark.parametrize("args, needle", ERROR_CASES)
def test_cli_errors_are_clear(args, needle, capsys):
    """In-process through the real entry point (`ncbench.cli.main`), as the console script runs."""
    from ncbench.cli import main

    with pytest.raises(SystemExit) as info:
        main(["ufm", "--classes", "4", "--dim", "8", "--per-class", "5", *args])
    captured = capsys.readouterr()
    assert info.value.code == 2, (captured.out, captured.err)
    assert needle in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize("args, option", [
    (("--dim", "3"), "--dim"),
    (("--classes", "1", "--dim", "8"), "--classes"),
    (("--per-class", "0"), "--per-class"),
    (("--lambda-b", "-1"), "--lambda-b"),
    (("--tol", "2"), "--tol"),
    (("--max-iter", "0"), "--max-iter"),
    (("--check-tol", "0"), "--check-tol"),
    (("--loss", "ce,ce"), "--loss"),
    (("--loss", "fl", "--loss-params", "fl:gama=2"), "--loss-params"),
    (("--loss", "ce", "--device", "tpu9"), "--device"),
    (("--loss", "ce", "--trajectory", "/nonexistent/dir/t.csv"), "--trajectory"),
])
def test_cli_bad_flags_are_usage_errors_naming_the_option(args, option):
    from typer.testing import CliRunner

    from ncbench.cli.app import app

    res = CliRunner().invoke(app, ["ufm", "--classes", "4", "--dim", "8", "--per-class", "5", *args])
    assert isinstance(res.exception, UsageError), res.exception
    assert res.exception.option == option and str(res.exception).startswith(f"{option}: ")


@pytest.mark.parametrize("args, needle", [ERROR_CASES[6]])
def test_cli_errors_in_a_subprocess(args, needle):
    out = _cli("--classes", "4", "--dim", "8", "--per-class", "5", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert needle in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
