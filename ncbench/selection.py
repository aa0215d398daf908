"""Part of a grid from the command line: `--only KEY=V1,V2` (select runs) and `--set KEY=VALUE`.

`--only` may be repeated: AND over keys, OR within one key (`--only loss=ce,mse --only seed=0`).
Keys are experiments.toml's (`config.KEYS`, plus `experiment`); values are TOML values
(`width=1`, `loss=ce`, bare words are strings) compared as the config types them, so `width=1`
matches a run of width 1.0. `--set KEY=VALUE` overrides a key of every selected experiment
before expansion (new run ids, since the settings differ), validated like the config; errors
name the option (UsageError). Torch-free: the views use it too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from typing import Any

from ncbench.config_values import KEYS, freeze
from ncbench.errors import ConfigError, UsageError, did_you_mean

__all__ = ["parse_only", "parse_set", "matches", "select_specs", "keep_row", "apply_set", "to_where", "ONLY_KEYS"]

#: The keys `--only` accepts: the config's, and the experiment's name.
ONLY_KEYS: tuple[str, ...] = ("experiment", *KEYS)
_MISSING = object()


def _split(option: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(option, f"'{text}' is not KEY=VALUE (e.g. {option} loss=ce)")
    return key, value.strip()


def _check_key(option: str, key: str, known: Sequence[str]) -> None:
    if key not in known:
        hint = did_you_mean(key, known)
        raise UsageError(option, f"unknown key '{key}'{hint}" if hint else
                         f"unknown key '{key}'; valid keys: {', '.join(known)}")


def _toml_value(option: str, text: str) -> Any:
    """`text` as a TOML value; a bare word (`ce`, `cpu`) is the string itself."""
    if text == "":
        raise UsageError(option, "a value is missing after '='")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if any(c in text for c in "[]{}\"'=\n"):
            raise UsageError(option, f"'{text}' is not a valid TOML value") from None
        return text


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes."""
    out, depth, quote, cur = [], 0, None, ""
    for c in text:
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += c
    out.append(cur)
    return [v.strip() for v in out]


def _norm(value: Any) -> Any:
    """Values as the config types them: numbers compare as numbers (1 == 1.0), not as bools."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return freeze(value)


def parse_only(items: Iterable[str] | None, option: str = "--only") -> dict[str, set]:
    """`["loss=ce,mse", "seed=0"]` → {key: {normalised values}}; a repeated key adds values.
    Unknown key → UsageError with the closest key."""
    sel: dict[str, set] = {}
    for item in items or []:
        key, text = _split(option, item)
        _check_key(option, key, ONLY_KEYS)
        values = {_norm(_toml_value(option, v)) for v in _split_values(text)}
        sel.setdefault(key, set()).update(values)
    return sel


def matches(obj: Any, sel: dict[str, set]) -> bool:
    """`obj` (a RunSpec, a listing row: any object with the keys as attributes) is selected;
    a key the object lacks does not match."""
    for key, values in sel.items():
        v = getattr(obj, key, _MISSING)
        if v is _MISSING or _norm(v) not in values:
            return False
    return True


def select_specs(specs: Sequence, sel: dict[str, set]) -> list:
    """The specs that `sel` selects (all of them when `sel` is empty), in their order."""
    return [s for s in specs if matches(s, sel)] if sel else list(specs)


def keep_row(row: Any, sel: dict[str, set], declared_ids: "set[str] | frozenset[str]",
             wanted_ids: "set[str] | frozenset[str]") -> bool:
    """Whether a listing row (`ncbench status`, the TUI) is shown under `--only` `sel`: a run
    the config declares is judged by its spec (every config key: `wanted_ids`, the declared runs
    `select_specs` keeps); a stored run the config does not declare, by its row's columns."""
    if not sel:
        return True
    if row.run_id in declared_ids:
        return row.run_id in wanted_ids
    return matches(row, sel)


def parse_set(items: Iterable[str] | None, option: str = "--set") -> dict[str, Any]:
    """`["epochs=5", "loss_params={gamma=2}"]` → {key: TOML value}. Unknown key → UsageError."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, text = _split(option, item)
        _check_key(option, key, KEYS)
        out[key] = _toml_value(option, text)
    return out


def apply_set(cfg, names: Sequence[str], sets: dict[str, Any], option: str = "--set") -> None:
    """Override `sets` in the experiments `names` of `cfg` (in place), each value checked like
    the config's (`config_values.check_key`); a bad value → UsageError naming the option."""
    from ncbench.config_values import check_key

    for key, value in sets.items():
        for name in names:
            try:
                check_key(cfg, name, key, value)
            except ConfigError as exc:
                raise UsageError(f"{option} {key}", exc.reason) from None
            cfg.experiments[name][key] = value


def _sql_literal(option: str, key: str, value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "bool":
        return "TRUE" if value[1] else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (int, float)):
        return repr(float(value))
    raise UsageError(option, f"key '{key}': only single values (strings, numbers, booleans) "
                             "can select stored runs here; use --where")


def to_where(sel: dict[str, set], option: str = "--only") -> str | None:
    """`sel` as an SQL predicate over the report's run columns and config keys (None if empty)."""
    parts = []
    for key, values in sel.items():
        lits = sorted(_sql_literal(option, key, v) for v in values)
        parts.append(f"{key} IN ({', '.join(lits)})")
    return " AND ".join(parts) or None
