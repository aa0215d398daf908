"""The value checks of experiments.toml: every key's type and range, numbers inside tables, nesting.

`ncbench.config` loads and expands the file; each value is checked here, once, before anything
uses it (torch-free): `check_key` (type, documented range `RANGES`, names against
`ncbench.names` or "package.module:callable", finite numbers and 64-bit integers inside the
`*_params` tables) and `check_nesting` (at most `MAX_NESTING` levels). Also the helpers both
modules share: `freeze` (hashable config values), `locate` (a key's line) and `is_per_loss`.
The checks take the loaded `ncbench.config.Config` as `cfg` (its path, text and `error`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ncbench.errors import ConfigError, did_you_mean
from ncbench.names import BUILTIN, PRECISIONS
from ncbench.registry import is_import_path
from ncbench.runs import RunSpec

__all__ = ["KEYS", "SCALAR_ONLY", "RANGES", "MAX_NESTING", "INT64_MAX", "range_text",
           "check_key", "check_nesting", "freeze", "locate", "is_per_loss"]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

#: Every key an experiment (or [defaults]) accepts, in RunSpec field order.
KEYS: tuple[str, ...] = tuple(k for k in RunSpec.FIELDS if k not in ("experiment", "plugin_dir"))

#: Keys that cannot sweep: they say where a run is computed, not what (not part of the run id).
SCALAR_ONLY = RunSpec.PLACEMENT_KEYS
_TABLE_KEYS = ("loss_params", "dataset_params", "model_params")

#: The deepest nesting of tables and arrays a file may have (a loss_params per-loss table is 4).
MAX_NESTING = 10
INT64_MAX = 2 ** 63 - 1
#: The range of every numeric key (documented in docs/experiments-toml.md): key -> (low,
#: low inclusive, high, high inclusive). Integer keys are integers in their range.
RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "width": (0, False, 1000, True),
    "epochs": (1, True, 10 ** 6, True),
    "seed": (0, True, INT64_MAX, True),
    "batch_size": (1, True, 2 ** 31, True),
    "lr": (0, False, 10, True),
    "momentum": (0, True, 1, True),
    "weight_decay": (0, True, 1, True),
    "grad_clip": (0, True, 10 ** 6, True),
    "eval_every": (1, True, 10 ** 6, True),
    "val_fraction": (0, True, 1, False),
    "data_seed": (0, True, INT64_MAX, True),
    "per_class": (1, True, 2 ** 31, True),
    "lr_gamma": (0, False, 10, True),
}


def range_text(key: str) -> str:
    """The range of numeric `key` as the docs write it: "in (0, 1000]"."""
    lo, lo_in, hi, hi_in = RANGES[key]
    named = {INT64_MAX: "2^63-1", 2 ** 31: "2^31", 10 ** 6: "10^6"}
    show = lambda x: named.get(x, f"{x:g}")
    return f"in {'[' if lo_in else '('}{show(lo)}, {show(hi)}{']' if hi_in else ')'}"



def is_per_loss(table: dict) -> bool:
    return bool(table) and all(isinstance(v, dict) for v in table.values())



# validation of one key
# ------------------------------------------------------------------------------------------


def check_key(cfg, experiment: str | None, key: str, value: Any) -> None:
    table = f"experiments.{experiment}" if experiment else "defaults"
    shown_key = key if experiment else f"defaults.{key}"

    def fail(reason: str) -> ConfigError:
        line = locate(cfg.text, table, key)
        return ConfigError(str(cfg.path), reason, experiment=experiment, key=shown_key, line=line)

    if key not in KEYS:
        hint = did_you_mean(key, KEYS)
        raise fail(f"unknown key '{key}'{hint}" if hint else
                   f"unknown key '{key}'; valid keys: {', '.join(KEYS)}")
    if isinstance(value, list) and key != "lr_milestones":
        if key in SCALAR_ONLY:
            raise fail(f"cannot sweep (a list): '{key}' says where a run is computed, not what; "
                       "give one value")
        if not value:
            raise fail("empty sweep list: give at least one value")
        for v in value:
            _check_value(fail, key, v)
        if len(set(map(freeze, value))) != len(value):
            raise fail(f"the sweep list repeats a value: {value!r}")
    elif key == "lr_milestones" and isinstance(value, list) and value and isinstance(value[0], list):
        for v in value:
            _check_value(fail, key, v)
    else:
        _check_value(fail, key, value)


def _check_value(fail, key: str, v: Any) -> None:
    def typename(x: Any) -> str:
        return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                list: "a list", dict: "a table"}.get(type(x), type(x).__name__)

    def in_range() -> None:
        if key in RANGES:
            lo, lo_in, hi, hi_in = RANGES[key]
            if v < lo or (v == lo and not lo_in) or v > hi or (v == hi and not hi_in):
                raise fail(f"must be {range_text(key)}, got {v!r}")

    def number(positive: bool = False, nonneg: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise fail(f"expected a number, got {v!r} ({typename(v)})")
        if isinstance(v, int) and abs(v) > INT64_MAX:
            raise fail(f"expected a number of sensible size, got {v!r}"
                       + (f" (must be {range_text(key)})" if key in RANGES else ""))
        if not math.isfinite(v):
            raise fail(f"expected a finite number, got {v!r}")
        if positive and v <= 0:
            raise fail(f"must be > 0, got {v!r}")
        if nonneg and v < 0:
            raise fail(f"must be >= 0, got {v!r}")
        in_range()
        return float(v)

    def integer(minimum: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(f"expected an integer, got {v!r} ({typename(v)})")
        if minimum is not None and v < minimum:
            raise fail(f"must be >= {minimum}, got {v!r}"
                       + (" (must be a positive integer)" if minimum == 1 else ""))
        if abs(v) > INT64_MAX:
            raise fail(f"must fit a signed 64-bit integer, got {v!r}")
        in_range()
        return v

    def string() -> str:
        if not isinstance(v, str) or not v:
            raise fail(f"expected a non-empty string, got {v!r} ({typename(v)})")
        return v

    if key in ("dataset", "model", "loss"):
        name = string()
        if name not in BUILTIN[key] and not is_import_path(name):
            raise fail(f"unknown {key} '{name}'{did_you_mean(name, BUILTIN[key])}; known: "
                       f"{', '.join(BUILTIN[key])} (or \"package.module:callable\")")
    elif key == "width":
        number(positive=True)
    elif key == "epochs":
        integer(1)
    elif key in ("seed", "data_seed"):
        integer(0)
    elif key == "batch_size":
        integer(1)
    elif key == "eval_every":
        integer(1)
    elif key in ("lr", "lr_gamma"):
        number(positive=True)
    elif key in ("momentum", "weight_decay"):
        number(nonneg=True)
    elif key == "grad_clip":
        number(nonneg=True)
    elif key == "val_fraction":
        number()
    elif key == "per_class":
        integer(1)
    elif key == "device":
        if not isinstance(v, str) or not _DEVICE_RE.match(v):
            raise fail(f"expected \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"mps\", got {v!r}")
    elif key == "data_root":
        string()
    elif key in ("download", "compile", "nc_extra"):
        if not isinstance(v, bool):
            raise fail(f"expected true or false, got {v!r} ({typename(v)})")
    elif key == "precision":
        if v not in PRECISIONS:
            raise fail(f"expected one of {', '.join(PRECISIONS)}, got {v!r}"
                       + did_you_mean(str(v), PRECISIONS))
    elif key == "lr_milestones":
        if not isinstance(v, list):
            raise fail(f"expected a list of fractions of the epochs, e.g. [0.4286, 0.7143], got {v!r}")
        last = 0.0
        for m in v:
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m < 1 or m <= last:
                raise fail(f"expected increasing fractions in (0, 1), got {v!r}")
            last = m
    elif key in _TABLE_KEYS:
        if not isinstance(v, dict):
            raise fail(f"expected a table, e.g. {{ gamma = 3 }}, got {v!r} ({typename(v)})")
        if key == "loss_params" and is_per_loss(v):
            for lname in v:
                if lname not in BUILTIN["loss"] and not is_import_path(lname):
                    raise fail(f"per-loss table names unknown loss '{lname}'"
                               f"{did_you_mean(lname, BUILTIN['loss'])}; known: "
                               f"{', '.join(BUILTIN['loss'])}")
        elif key == "loss_params" and any(isinstance(x, dict) for x in v.values()):
            raise fail("mixes plain values and per-loss tables: use either { gamma = 3 } or "
                       "{ fl = { gamma = 3 }, ls = { alpha = 0.1 } }")
        bad = _bad_number(v)
        if bad is not None:
            where, x = bad
            raise fail(f"{key}.{where} = {x!r}: expected a finite number"
                       if isinstance(x, float) else
                       f"{key}.{where} = {x!r}: an integer must fit in a signed 64 bits")
    else:  # a key added to RunSpec later: check the type of its default
        default = RunSpec.DEFAULTS.get(key)
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise fail(f"expected true or false, got {v!r} ({typename(v)})")
        elif isinstance(default, int):
            integer()
        elif isinstance(default, float):
            number()
        elif isinstance(default, str):
            string()


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _bad_number(value: Any, where: str = "") -> tuple[str, Any] | None:
    """(dotted place, value) of the first non-finite float or integer beyond 64 bits in `value`
    (tables and lists walked; nesting is bounded by `check_nesting`), or None."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", x) for i, x in enumerate(value))
    elif isinstance(value, float) and not math.isfinite(value):
        return where, value
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        return where, value
    else:
        return None
    for k, x in items:
        place = f"{where}{k}" if k.startswith("[") else f"{where}.{k}" if where else str(k)
        found = _bad_number(x, place)
        if found is not None:
            return found
    return None


def check_nesting(cfg, data: dict) -> None:
    """ConfigError when tables/arrays nest deeper than MAX_NESTING (walked without recursion,
    so that absurd depths cannot overflow the stack)."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_NESTING:
            experiment = where[1] if len(where) > 2 and where[0] == "experiments" else None
            key = where[2] if experiment else ".".join(where[:2]) or None
            raise cfg.error(f"tables or arrays nested more than {MAX_NESTING} levels deep "
                            f"(under {'.'.join(where)})", experiment=experiment, key=key,
                            table=None if experiment else "")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for name, child in items:
            if isinstance(child, (dict, list)):
                # the place to name: at most [top, table, key], list positions not shown
                place = where if len(where) >= 3 or isinstance(name, int) else (*where, str(name))
                stack.append((child, depth + 1, place))


def freeze(value: Any) -> Any:
    """A hashable form of a config value (tables and lists as tuples; True apart from 1), so
    that equal values compare equal: for repeated sweep values and the pre-flight's grouping."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return (type(value).__name__, value) if isinstance(value, bool) else value


def locate(text: str, table: str | None, key: str | None) -> int | None:
    """Best-effort line number of `key` in `[table]` (or of the table header) in TOML `text`."""
    if not text or table is None:
        return None
    lines = text.splitlines()
    start = 0
    if table:
        parts = [re.escape(p) for p in table.split(".")]
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(rf"(?:{p}|\"{p}\"|'{p}')" for p in parts)
                            + r"\s*\]\s*(#.*)?$")
        start = next((i for i, ln in enumerate(lines) if header.match(ln)), -1)
        if start < 0:
            return None
        if not key:
            return start + 1
        start += 1
    elif not key:
        return None
    keyre = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*[=.]")
    header_line = start if table else None  # 1-based line of the table header
    for i in range(start, len(lines)):
        if re.match(r"^\s*\[", lines[i]):  # the next table starts: the key is not in ours
            break
        if keyre.match(lines[i]):
            return i + 1
    return header_line
