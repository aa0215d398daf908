"""`ncbench models`: list the registered models with their parameter counts and feature dims."""

from __future__ import annotations

import json
import math
import re

import typer

from ncbench.cli.app import app
from ncbench.errors import NcbenchError, ParameterError, UsageError

#: The largest --classes and --input-shape size (2^31 - 1: torch's dimensions are int64, but no
#: real model comes near), and the largest --width multiplier.
MAX_DIM = 2 ** 31 - 1
MAX_WIDTH = 1e6


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """"3,32,32" / "3x32x32" / "1,40" / "64" → a tuple of positive ints (UsageError otherwise)."""
    if text is None or not text.strip():
        return None
    text_ = text.strip()
    shape: tuple[int, ...] = ()
    if re.fullmatch(r"\d+(\s*[,x×]\s*\d+)*", text_):
        shape = tuple(int(p) for p in re.split(r"\s*[,x×]\s*", text_))
    if len(shape) not in (1, 2, 3) or any(s < 1 for s in shape):
        raise UsageError("--input-shape", f"must be C,H,W, C,L or D with positive integers, got {text!r}")
    if any(s > MAX_DIM for s in shape):
        raise UsageError("--input-shape", f"each size must be ≤ {MAX_DIM:,}, got {text!r}")
    return shape


def check_sizes(classes: int, widths: list[float]) -> None:
    """UsageError for a `--classes` or `--width` no model could be built with (before torch)."""
    if classes < 1:
        raise UsageError("--classes", f"must be ≥ 1, got {classes}")
    if classes > MAX_DIM:
        raise UsageError("--classes", f"must be ≤ {MAX_DIM:,}, got {classes}")
    for w in widths:
        if not (math.isfinite(w) and 0 < w <= MAX_WIDTH):
            raise UsageError("--width", f"must be a number in (0, {MAX_WIDTH:g}], got {w!r}")


def _short(reason: str) -> str:
    """A model's refusal of an input shape or width, as a table note."""
    if "needs image inputs" in reason:
        return "needs (C,H,W) input"
    if "needs 1-D signals" in reason:
        return "needs (C,L) input"
    if "has no width knob" in reason:
        return "no width knob: width 1 only"
    small = re.search(r"needs images of at least (\S+)", reason)
    return f"needs ≥ {small.group(1)} images" if small else reason


def model_table(names: list[str] | None, classes: int, widths: list[float],
                input_shape: tuple[int, ...] | None) -> list[dict]:
    """One row per (model, width): model, width, params, feature_dim, input_shape.

    Models are built on torch's "meta" device (no memory, no initialisation cost). A model that
    cannot take `input_shape` (a conv net on vectors) gets params None and the reason in `note`;
    a model asked for by name raises its `ParameterError` instead.
    """
    import torch

    from ncbench.models import count_parameters, make_model, model_names

    rows = []
    for name in names or model_names():
        for w in widths:
            row = {"model": name, "width": w, "classes": classes,
                   "input_shape": list(input_shape) if input_shape else None}
            try:
                with torch.device("meta"):
                    m = make_model(name, classes, w, input_shape=input_shape)
                row.update(params=count_parameters(m), feature_dim=int(m.feature_dim), note="")
            except ParameterError as exc:
                if names:  # the user asked for this model by name: say why it fails
                    raise
                row.update(params=None, feature_dim=None,
                           note=_short(exc.reason))
            except NcbenchError:  # an unknown name, ...: as it is
                raise
            except (ArithmeticError, RuntimeError, TypeError, ValueError, MemoryError) as exc:
                # torch's own refusal of an impossible size (C++ frames and all): its first line
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if names:
                    raise ParameterError(f"model '{name}' cannot be built with width {w:g}, "
                                         f"{classes} classes and input shape "
                                         f"{row['input_shape'] or 'default'}: {first}") from None
                row.update(params=None, feature_dim=None, note=f"cannot be built: {first}")
            rows.append(row)
    return rows


@app.command()
def models(
    model: list[str] = typer.Option(None, "--model", "-m", help="Only these models (repeatable)."),
    classes: int = typer.Option(10, "--classes", "-k", help="Number of classes K."),
    width: list[float] = typer.Option(None, "--width", "-w", help="Width multiplier(s) X (repeatable; default 1)."),
    input_shape: str = typer.Option(None, "--input-shape", help="One sample's shape: C,H,W, C,L or D (default 3,32,32)."),
    format: str = typer.Option("table", "--format", "-f", help="table, md or json."),
) -> None:
    """List the models with parameter counts and feature dimension at the given width(s) and K."""
    if format not in ("table", "md", "json"):
        raise UsageError("--format", f"unknown format {format!r}; use table, md or json")
    check_sizes(classes, list(width) if width else [1.0])
    rows = model_table(list(model) if model else None, classes, list(width) if width else [1.0],
                       parse_shape(input_shape))
    if format == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    shape = ",".join(map(str, rows[0]["input_shape"])) if rows and rows[0]["input_shape"] else "3,32,32 (default)"
    header = ["model", "width", "parameters", "feature dim"]
    body = [[r["model"], f"{r['width']:g}", f"{r['params']:,}" if r["params"] is not None else "–",
             str(r["feature_dim"]) if r["feature_dim"] is not None else r["note"]] for r in rows]
    if format == "md":
        typer.echo(f"K = {classes}, input shape {shape}\n")
        typer.echo("| " + " | ".join(header) + " |")
        typer.echo("|" + "|".join(["---", "---:", "---:", "---:"]) + "|")
        for line in body:
            typer.echo("| " + " | ".join(line) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ncbench models (K = {classes}, input {shape})")
    for h, just in zip(header, ["left", "right", "right", "right"]):
        table.add_column(h, justify=just)
    for line in body:
        table.add_row(*line)
    Console().print(table)
