"""The unconstrained feature model (UFM) of the paper, eq. (7), solved to a true stationary point.

    min_{W, H, b}  (1/N) Σ_{k,i} L(W h_{k,i} + b, y_k) + (λ_W/2)‖W‖²_F + (λ_H/2)‖H‖²_F + (λ_b/2)‖b‖²

Modules, in import order:

* `ncbench.ufm.lbfgs`   — the optimiser: L-BFGS with a strong / approximate Wolfe line search.
* `ncbench.ufm.problem` — the settings, the objective f (and ∇f) and the NC-ansatz optimum.
* `ncbench.ufm.solve`   — `solve_ufm(...) -> UFMResult`, and `is_zero_solution`.
* `ncbench.ufm.checks`  — `theorem1_checks(result) -> list[Check]`, `checks_passed`.

This package re-exports their public API (what `ncbench ufm`, the tests and benchmarks use).
"""

from __future__ import annotations

from ncbench.ufm.checks import THEOREM1_LOSSES, Check, checks_passed, theorem1_checks
from ncbench.ufm.problem import nc_ansatz_optimum, settings_problem, validate_ufm_settings
from ncbench.ufm.solve import SUMMARY_KEYS, UFMResult, is_zero_solution, solve_ufm

__all__ = [
    "SUMMARY_KEYS",
    "THEOREM1_LOSSES",
    "Check",
    "UFMResult",
    "checks_passed",
    "is_zero_solution",
    "nc_ansatz_optimum",
    "settings_problem",
    "solve_ufm",
    "theorem1_checks",
    "validate_ufm_settings",
]
