"""`ncbench ufm`: solve the unconstrained feature model (eq. 7) for one or more losses and check
Theorem 1 numerically. A thin layer over `ncbench.ufm` (solve_ufm, theorem1_checks): it parses
options, renders tables / JSON lines and writes the optional trajectory CSV."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import typer

from ncbench.cli.app import app
from ncbench.errors import UnknownNameError, UsageError

TRAJECTORY_COLUMNS = ("loss", "seed", "iteration", "seconds", "objective", "grad_norm", "rel_grad_norm",
                      "nc1", "nc2", "nc3", "nc2_centered", "nc3_centered")

#: The most numbers (float64) W, H, b and the logits may hold together: 20 M = 160 MB, of which
#: L-BFGS keeps some twenty copies of the variables.
MAX_UFM_NUMBERS = 20_000_000

#: The option of each `solve_ufm` setting (`ncbench.ufm.settings_problem` names the argument).
SETTING_OPTIONS = {"num_classes": "--classes", "dim": "--dim", "per_class": "--per-class",
                   "lambda_w": "--lambda-w", "lambda_h": "--lambda-h", "lambda_b": "--lambda-b",
                   "tol": "--tol", "max_iter": "--max-iter"}


# --------------------------------------------------------------------------------------------
# option parsing
# --------------------------------------------------------------------------------------------


def parse_losses(text: str) -> list[str]:
    """"ce,fl" → ["ce", "fl"] (order kept, duplicates rejected). Names are checked by make_loss."""
    names = [p.strip() for p in text.split(",") if p.strip()] if text else []
    if not names:
        raise UsageError("--loss", "no loss given; use e.g. --loss ce,fl,ls,mse")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError("--loss", f"loss {', '.join(map(repr, dup))} is listed twice")
    return names


def _parse_value(text: str, item: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        raise UsageError("--loss-params",
                         f"in {item!r}: the value {t!r} is not a number (or true/false)") from None
    if not math.isfinite(v):
        raise UsageError("--loss-params", f"in {item!r}: the value must be finite")
    return v


def parse_loss_params(texts: list[str] | None, losses: list[str]) -> dict[str, dict[str, Any]]:
    """Parse `--loss-params` into {loss: {param: value}} for the selected `losses`.

    Items are separated by commas (the option may also be repeated). `LOSS:KEY=VALUE` sets KEY
    for that loss (LOSS may be an import path "pkg.mod:fn"; the last ':' separates the key). A bare
    `KEY=VALUE` applies to every selected built-in loss that has KEY (e.g. `gamma=2` → fl).
    VALUE: a number, true or false. Unknown keys and values are rejected by `make_loss` later.
    """
    from ncbench.losses import LOSS_DEFAULTS

    out: dict[str, dict[str, Any]] = {name: {} for name in losses}
    items = [p.strip() for t in (texts or []) for p in t.split(",") if p.strip()]
    for item in items:
        if "=" not in item:
            raise UsageError("--loss-params", f"{item!r} is not KEY=VALUE or LOSS:KEY=VALUE "
                                              f"(e.g. fl:gamma=2,ls:alpha=0.2 or gamma=2)")
        lhs, _, value_text = item.partition("=")
        lhs = lhs.strip()
        value = _parse_value(value_text, item)
        if ":" in lhs:
            loss, _, key = lhs.rpartition(":")
            loss, key = loss.strip(), key.strip()
            if loss not in out:
                raise UsageError("--loss-params", f"in {item!r}: loss {loss!r} is not among the "
                                                  f"selected losses ({', '.join(losses)})")
            if not key:
                raise UsageError("--loss-params", f"in {item!r}: missing parameter name after '{loss}:'")
            out[loss][key] = value
            continue
        key = lhs
        targets = [n for n in losses if key in LOSS_DEFAULTS.get(n, {})]
        if not targets:
            have = "; ".join(f"{n}: {', '.join(LOSS_DEFAULTS[n]) or '(none)'}"
                             for n in losses if n in LOSS_DEFAULTS)
            raise UsageError("--loss-params", f"no selected loss has a parameter {key!r} (parameters — "
                                              f"{have}); for a user loss write LOSS:{key}=VALUE")
        for n in targets:
            out[n][key] = value
    return out


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def _g(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.{max(2, digits - 2)}e}"
    return str(x)


_ROWS = (  # (label, summary key, digits)
    ("NC1", "nc1", 3), ("NC2", "nc2", 3), ("NC2 (centred W)", "nc2_centered", 3), ("NC3", "nc3", 3),
    ("objective f", "objective", 12), ("‖W‖²_F", "w_norm_sq", 8), ("‖H‖²_F", "h_norm_sq", 8),
    ("‖b‖", "b_norm", 6), ("‖∇f‖", "grad_norm", 3), ("‖∇f‖ / max(1, |f|)", "rel_grad_norm", 3),
    ("iterations", "iterations", 6), ("seconds", "seconds", 3),
)


def _status_text(check: dict) -> str:
    if check["status"] == "pass":
        return "[green]pass[/]"
    if check["status"] == "fail":
        return "[bold red]FAIL[/]"
    return "[cyan]holds[/] (not pred.)" if check["holds"] else "[yellow]does not hold[/] (not pred.)"


def _render_one(console, summary: dict, checks: list[dict]) -> None:
    from rich.table import Table

    params = ", ".join(f"{k}={v}" for k, v in summary["loss_params"].items())
    console.print(f"[bold]{summary['loss']}[/]{f' ({params})' if params else ''} — K={summary['classes']}, "
                  f"d={summary['dim']}, n={summary['per_class']}, λ_W={summary['lambda_w']:g}, "
                  f"λ_H={summary['lambda_h']:g}, λ_b={summary['lambda_b']:g}, seed={summary['seed']}")
    t = Table(show_header=False)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for label, key, digits in _ROWS:
        t.add_row(label, _g(summary[key], digits))
    conv = "[green]yes[/]" if summary["converged"] else f"[bold red]no[/] ({summary['stop_reason']})"
    t.add_row("converged", conv)
    console.print(t)
    if summary.get("zero_solution"):
        console.print("[yellow]The solution is W = H = 0[/]: the weight decay is too strong for nonzero "
                      "logits to pay off, so the NC metrics above are meaningless (0/0).")

    tol = checks[0]["tol"] if checks else 0.0
    c = Table(title=f"Theorem 1 checks: measured relative deviation vs predicted; pass if ≤ {tol:g}",
              title_justify="left")
    for col, justify in (("property", "left"), ("measured", "right"), ("predicted", "right"),
                         ("result", "left"), ("detail", "left")):
        c.add_column(col, justify=justify)
    notes: list[str] = []
    for ch in checks:
        mark = ""
        if ch["note"]:
            if ch["note"] not in notes:
                notes.append(ch["note"])
            mark = " " + "*" * (notes.index(ch["note"]) + 1)
        measured = ch["measured"]
        c.add_row(ch["statement"], "nan" if measured is None or math.isnan(measured) else f"{measured:.1e}",
                  "–" if ch["predicted"] is None else f"{ch['predicted']:g}", _status_text(ch) + mark,
                  ch["detail"])
    console.print(c)
    for i, note in enumerate(notes):
        console.print(f"  {'*' * (i + 1)} {note}", highlight=False)
    console.print()


def _render_comparison(console, summaries: list[dict], checks: list[list[dict]]) -> None:
    from rich.table import Table

    t = Table(title="Side by side", title_justify="left")
    t.add_column("quantity")
    for s in summaries:
        t.add_column(s["loss"], justify="right")
    for label, key, digits in _ROWS:
        t.add_row(label, *(_g(s[key], min(digits, 6)) for s in summaries))
    t.add_row("predicted checks passed",
              *(f"{sum(c['status'] == 'pass' for c in cs)}/{sum(c['status'] != 'not-predicted' for c in cs)}"
                for cs in checks))
    t.add_row("not-predicted checks holding",
              *(f"{sum(c['holds'] for c in cs if c['status'] == 'not-predicted')}/"
                f"{sum(c['status'] == 'not-predicted' for c in cs)}" for cs in checks))
    console.print(t)


def _finite_or_null(obj: Any) -> Any:
    """NaN/inf → None, recursively, so --json output is strict JSON (NC metrics of W = H = 0 are NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_null(v) for v in obj]
    return obj


def _write_trajectory(path: Path, results: list) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=TRAJECTORY_COLUMNS)
        w.writeheader()
        for r in results:
            for row in r.trajectory:
                w.writerow({"loss": r.loss, "seed": r.seed, **{k: row[k] for k in TRAJECTORY_COLUMNS[2:]}})


def _check_size(classes: int, dim: int, per_class: int) -> None:
    """UsageError when the problem holds more than MAX_UFM_NUMBERS numbers (before allocating)."""
    n = classes * per_class
    numbers = classes * dim + dim * n + classes + classes * n  # W, H, b and the logits WH + b
    if numbers > MAX_UFM_NUMBERS:
        raise UsageError("--classes/--dim/--per-class",
                         f"K = {classes}, d = {dim}, n = {per_class} make {numbers:,} numbers "
                         f"(K·d + d·nK + K + K·nK), more than the solver's limit of "
                         f"{MAX_UFM_NUMBERS:,}; use smaller sizes")


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError("--device", f"{device!r} is not a torch device (use cpu, cuda, cuda:1, …)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device", "CUDA is not available on this machine; use --device cpu")


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


@app.command()
def ufm(
    loss: str = typer.Option("ce,fl,ls,mse", "--loss", "-l",
                             help="Loss(es), comma-separated: ce, fl, ls, mse or pkg.module:callable."),
    classes: int = typer.Option(10, "--classes", "-k", help="Number of classes K (≥ 2)."),
    dim: int = typer.Option(32, "--dim", "-d", help="Feature dimension d (≥ K; Theorem 1 assumes K < d)."),
    per_class: int = typer.Option(50, "--per-class", "-n", help="Samples per class n (N = nK)."),
    lambda_w: float = typer.Option(5e-3, "--lambda-w", help="Weight decay λ_W on W (> 0)."),
    lambda_h: float = typer.Option(5e-3, "--lambda-h", help="Weight decay λ_H on the features H (> 0)."),
    lambda_b: float = typer.Option(5e-3, "--lambda-b", help="Weight decay λ_b on the bias b (≥ 0)."),
    loss_params: list[str] = typer.Option(
        None, "--loss-params", "-p",
        help="Loss parameters: LOSS:KEY=VALUE or KEY=VALUE (applies to every selected loss having "
             "KEY), comma-separated or repeated, e.g. 'fl:gamma=2,ls:alpha=0.2' or 'gamma=2'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random start."),
    tol: float = typer.Option(1e-9, "--tol", help="Stop when ‖∇f‖ ≤ tol·max(1, |f|)."),
    max_iter: int = typer.Option(10_000, "--max-iter", help="At most this many L-BFGS iterations."),
    check_tol: float = typer.Option(1e-6, "--check-tol", help="A check passes when its relative deviation ≤ this."),
    device: str = typer.Option("cpu", "--device", help="Torch device for the solver (cpu, cuda, …)."),
    trajectory: Path = typer.Option(None, "--trajectory",
                                    help="Write NC1–NC3, objective and gradient norm per iteration to this CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per loss (JSON lines), nothing else."),
) -> None:
    """Solve the unconstrained feature model (paper eq. 7) to a stationary point and check Theorem 1.

    Exit status: 0 = all converged, no predicted check failed; 1 = otherwise; 2 = invalid settings.
    """
    from ncbench.losses import make_loss
    from ncbench.ufm import settings_problem, solve_ufm, theorem1_checks

    names = parse_losses(loss)
    problem = settings_problem(classes, dim, per_class, lambda_w, lambda_h, lambda_b, tol, max_iter)
    if problem is not None:
        setting, reason = problem
        raise UsageError(SETTING_OPTIONS[setting], reason)
    _check_size(classes, dim, per_class)
    if not -2 ** 63 <= seed < 2 ** 64:  # what torch.Generator.manual_seed takes
        raise UsageError("--seed", f"must be an integer in [-2^63, 2^64), got {seed}")
    if not (math.isfinite(check_tol) and check_tol > 0):
        raise UsageError("--check-tol", f"must be a positive number, got {check_tol!r}")
    params = parse_loss_params(loss_params, names)
    for name in names:  # fail on a bad name or parameter before any solve starts
        try:
            make_loss(name, classes, **params[name])
        except UnknownNameError:
            raise
        except ValueError as exc:  # ParameterError, or a user loss's own ValueError
            raise UsageError("--loss-params", str(exc)) from exc
    _check_device(device)
    if trajectory is not None:
        parent = trajectory.expanduser().resolve().parent
        if not parent.is_dir():
            raise UsageError("--trajectory", f"cannot write {str(trajectory)!r}: the folder "
                                             f"{str(parent)!r} does not exist")

    from rich.console import Console

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    results, summaries, all_checks = [], [], []
    for name in names:
        if as_json:
            res = solve_ufm(name, classes, dim, per_class, lambda_w, lambda_h, lambda_b, params[name],
                            seed=seed, tol=tol, max_iter=max_iter, device=device,
                            trajectory=trajectory is not None)
        else:
            with err.status(f"solving {name} …") as status:
                last = [0.0]

                def progress(it: int, f: float, rel: float, _name: str = name) -> None:
                    now = time.perf_counter()
                    if now - last[0] > 0.1:
                        last[0] = now
                        status.update(f"solving {_name}: iteration {it}, f = {f:.10g}, "
                                      f"‖∇f‖/max(1,|f|) = {rel:.1e} (target {tol:g})")

                res = solve_ufm(name, classes, dim, per_class, lambda_w, lambda_h, lambda_b, params[name],
                                seed=seed, tol=tol, max_iter=max_iter, device=device,
                                trajectory=trajectory is not None, progress=progress)
        checks = [c.as_dict() for c in theorem1_checks(res, tol=check_tol)]
        summary = res.summary()
        results.append(res)
        summaries.append(summary)
        all_checks.append(checks)
        if as_json:
            sys.stdout.write(json.dumps(_finite_or_null({**summary, "checks": checks})) + "\n")
            sys.stdout.flush()
        else:
            _render_one(out, summary, checks)
            if not res.converged:
                err.print(f"[yellow]warning:[/] {name} stopped before the tolerance: {res.stop_reason} "
                          f"(‖∇f‖/max(1,|f|) = {res.rel_grad_norm:.1e} > {tol:g}); raise --max-iter?")
    if trajectory is not None:
        _write_trajectory(trajectory, results)
        if not as_json:
            err.print(f"trajectory written to {trajectory} ({sum(len(r.trajectory) for r in results)} rows)")
    if len(summaries) > 1 and not as_json:
        _render_comparison(out, summaries, all_checks)
    ok = all(r.converged for r in results) and all(c["status"] != "fail" for cs in all_checks for c in cs)
    if not ok:
        raise typer.Exit(1)
