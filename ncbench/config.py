"""experiments.toml: load, validate, and expand into `RunSpec`s (one per run, with a stable id).

File layout (documented in docs/experiments-toml.md):

```toml
default = "demo"            # experiment(s) `ncbench run` runs when none is named (else the first)

[defaults]                  # applies to every experiment; an experiment's key replaces it
eval_every = 5

[experiments.demo]          # list values sweep (Cartesian product)
dataset = "digits"
model = "mlp"
loss = ["ce", "fl", "ls", "mse"]
width = [0.5, 2]
epochs = 30
seed = [0, 1, 2]

[executor.local]            # raw tables, validated by the executors
[executor.slurm]
```

Expansion order (stable, documented): experiments in file order; within one experiment `seed`
varies slowest, then `epochs`, then the other keys in the order of `RunSpec`'s fields, and `loss`
fastest — so the first runs to finish already compare every loss (and width) at the first seed
and the shortest schedule.

Validation lives here, once per value: the type and range of every key, and names against the
declared built-in names of `ncbench.names` (which the registries are held to) or
"package.module:callable". This module never imports torch or training code, not even lazily:
what only a loss, model or dataset can judge (its parameters, `per_class` against a class's
size, an import path resolving) is `ncbench.preflight`'s job, for the run command. Where the
files are (the config, the database and workdir beside it) is `ncbench.paths`'s.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncbench.errors import ConfigError, did_you_mean
from ncbench.names import BUILTIN, EXECUTORS, PRECISIONS
from ncbench.paths import DEFAULT_CONFIG, default_db_path, default_workdir
from ncbench.registry import is_import_path
from ncbench.runs import RunSpec

__all__ = ["Config", "load_config", "expand", "select", "freeze", "KEYS", "SWEEP_ORDER"]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

#: Every key an experiment (or [defaults]) accepts, in RunSpec field order.
KEYS: tuple[str, ...] = tuple(k for k in RunSpec.FIELDS if k != "experiment")
#: Keys that must be given (in the experiment or in [defaults]).
REQUIRED_KEYS = ("dataset", "model", "loss", "epochs")
#: Keys with a config-level default although RunSpec requires them.
CONFIG_DEFAULTS = {"width": 1.0, "seed": 0}
#: Keys that cannot sweep: they say where a run is computed, not what (not part of the run id).
SCALAR_ONLY = RunSpec.PLACEMENT_KEYS
TOP_LEVEL_KEYS = ("default", "defaults", "experiments", "executor")
_TABLE_KEYS = ("loss_params", "dataset_params", "model_params")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Config:
    """A loaded, validated experiments.toml.

    `path`: the file; `defaults`: the raw [defaults] table; `experiments`: name -> raw table, in
    file order; `executor`: "local"/"slurm" -> raw table (validated by the executors);
    `default`: the experiment names `ncbench run` runs when none is named; `text`: file content.
    """

    path: Path
    defaults: dict[str, Any]
    experiments: dict[str, dict[str, Any]]
    executor: dict[str, dict[str, Any]] = field(default_factory=dict)
    default: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def names(self) -> list[str]:
        """Experiment names in file order."""
        return list(self.experiments)

    @property
    def db_path(self) -> Path:
        """The default database, beside this file (`ncbench.paths.default_db_path`)."""
        return default_db_path(self.path)

    @property
    def workdir(self) -> Path:
        """The default workdir, beside this file (`ncbench.paths.default_workdir`)."""
        return default_workdir(self.path)

    def error(self, reason: str, *, experiment: str | None = None, key: str | None = None,
              table: str | None = None) -> ConfigError:
        """A ConfigError naming this file (and the line of `key`, when it can be found)."""
        if table is None and experiment:
            table = f"experiments.{experiment}"
        line = _locate(self.text, table, key)
        return ConfigError(str(self.path), reason, experiment=experiment, key=key, line=line)


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------


def load_config(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Read and validate `path`. Every problem is a ConfigError naming file, experiment, key,
    and reason (TOML syntax errors with their line); every experiment is checked, so a typo in
    any of them is reported even when another one is run."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(str(path), "config file not found (pass --config PATH, or create "
                                     f"{DEFAULT_CONFIG}; see the README)")
    if path.is_dir():
        raise ConfigError(str(path), "is a directory, not a TOML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read the file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)", msg)
        line = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
        if m:
            msg = msg[: m.start()] + msg[m.end():] + f" (column {m.group(2)})"
        raise ConfigError(str(path), f"invalid TOML: {msg}", line=line) from None

    cfg = Config(path=path, defaults={}, experiments={}, text=text)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            if key in KEYS:
                raise cfg.error("an experiment key at the top level: put it in [defaults] or in "
                                "an [experiments.NAME] table", key=key, table="")
            raise cfg.error(f"unknown top-level key '{key}'{did_you_mean(key, TOP_LEVEL_KEYS)}; "
                            f"valid: {', '.join(TOP_LEVEL_KEYS)}", key=key, table="")

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise cfg.error("[defaults] must be a table", key="defaults", table="")
    cfg.defaults = defaults

    experiments = data.get("experiments")
    if experiments is None:
        raise cfg.error("defines no experiment: add an [experiments.NAME] table")
    if not isinstance(experiments, dict):
        raise cfg.error("'experiments' must be a table of [experiments.NAME] tables",
                        key="experiments", table="")
    if not experiments:
        raise cfg.error("defines no experiment: add an [experiments.NAME] table")
    for name, table in experiments.items():
        if not _NAME_RE.match(name):
            raise cfg.error("an experiment name must start with a letter or digit and hold only "
                            "letters, digits, '_', '-' and '.'", experiment=name)
        if not isinstance(table, dict):
            raise cfg.error("must be a table ([experiments.NAME] with keys)", experiment=name)
    cfg.experiments = dict(experiments)

    executor = data.get("executor", {})
    if not isinstance(executor, dict):
        raise cfg.error("'executor' must hold tables [executor.local] / [executor.slurm]",
                        key="executor", table="")
    for name, table in executor.items():
        if name not in EXECUTORS:
            raise cfg.error(f"unknown executor '{name}'{did_you_mean(name, EXECUTORS)}; valid: "
                            f"{', '.join(EXECUTORS)}",
                            key=f"executor.{name}", table="")
        if not isinstance(table, dict):
            raise cfg.error("must be a table", key=f"executor.{name}", table="")
    cfg.executor = {k: dict(v) for k, v in executor.items()}

    default = data.get("default", None)
    if default is None:
        cfg.default = [next(iter(cfg.experiments))]
    else:
        names = [default] if isinstance(default, str) else default
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise cfg.error("must be an experiment name or a non-empty list of names",
                            key="default", table="")
        for n in names:
            if n not in cfg.experiments:
                raise cfg.error(f"names unknown experiment '{n}'"
                                f"{did_you_mean(n, cfg.experiments)}; "
                                f"known: {', '.join(cfg.experiments)}", key="default", table="")
        cfg.default = list(dict.fromkeys(names))

    # Validate everything now (types, values, names, the whole grid) so errors come first.
    for key, value in cfg.defaults.items():
        _check_key(cfg, None, key, value)
    for name in cfg.experiments:
        _expand_one(cfg, name)
    return cfg


# ------------------------------------------------------------------------------------------
# expansion
# ------------------------------------------------------------------------------------------


def select(config: Config, names: Iterable[str] | None = None) -> list[str]:
    """The experiment names `names` checked against the config (unknown -> ConfigError with the
    closest name), de-duplicated, in the order given; None or empty -> all, in file order."""
    names = list(names or [])
    if not names:
        return config.names
    for n in names:
        if n not in config.experiments:
            raise ConfigError(str(config.path), f"unknown experiment '{n}'"
                              f"{did_you_mean(n, config.experiments)}; "
                              f"known: {', '.join(config.experiments)}")
    return list(dict.fromkeys(names))


def expand(config: Config, names: Iterable[str] | None = None) -> list[RunSpec]:
    """RunSpecs of experiments `names` (None: all, in file order; the run command passes
    `names or config.default`), each experiment's grid in the documented order. A run that
    appears twice (same run id) is listed once."""
    out: list[RunSpec] = []
    seen: set[str] = set()
    for name in select(config, names):
        for spec in _expand_one(config, name):
            if spec.run_id not in seen:
                seen.add(spec.run_id)
                out.append(spec)
    return out


def _sweep_order() -> list[str]:
    rest = [k for k in KEYS if k not in ("seed", "epochs", "loss")]
    return ["seed", "epochs", *rest, "loss"]


SWEEP_ORDER: tuple[str, ...] = tuple(_sweep_order())


def _expand_one(cfg: Config, name: str) -> list[RunSpec]:
    table = cfg.experiments[name]
    for key, value in table.items():
        _check_key(cfg, name, key, value)
    merged: dict[str, Any] = {**CONFIG_DEFAULTS, **cfg.defaults, **table}
    for key in REQUIRED_KEYS:
        if key not in merged:
            raise cfg.error(f"missing required key '{key}' (set it in the experiment or in "
                            "[defaults])", experiment=name)
    axes = [(key, _values(key, merged[key])) for key in SWEEP_ORDER if key in merged]
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for combo in itertools.product(*(vals for _, vals in axes)):
        values = dict(zip((k for k, _ in axes), combo))
        values["loss_params"] = _loss_params_for(values.get("loss_params", {}), values["loss"])
        if values.get("grad_clip") == 0:
            values["grad_clip"] = None
        if values.get("data_root"):  # relative to the config file's folder; ~ expanded
            values["data_root"] = os.path.abspath(cfg.path.parent / Path(values["data_root"]).expanduser())
        spec = RunSpec(experiment=name, **values)  # every value was checked by _check_key
        if spec.run_id not in seen:
            seen.add(spec.run_id)
            specs.append(spec)
    return specs


def _values(key: str, value: Any) -> list[Any]:
    """The sweep values of `key` (a list sweeps; lr_milestones sweeps only as a list of lists)."""
    if key == "lr_milestones":
        return list(value) if value and isinstance(value[0], list) else [value]
    if isinstance(value, list):
        return value
    return [value]


def _is_per_loss(table: dict) -> bool:
    return bool(table) and all(isinstance(v, dict) for v in table.values())


def _loss_params_for(table: dict, loss: str) -> dict:
    """The loss_params of a run with loss `loss`: a per-loss table picks its entry."""
    if _is_per_loss(table):
        return dict(table.get(loss, {}))
    return dict(table)


# ------------------------------------------------------------------------------------------
# validation of one key
# ------------------------------------------------------------------------------------------


def _check_key(cfg: Config, experiment: str | None, key: str, value: Any) -> None:
    table = f"experiments.{experiment}" if experiment else "defaults"
    shown_key = key if experiment else f"defaults.{key}"

    def fail(reason: str) -> ConfigError:
        line = _locate(cfg.text, table, key)
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

    def number(positive: bool = False, nonneg: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise fail(f"expected a number, got {v!r} ({typename(v)})")
        if not math.isfinite(v):
            raise fail(f"expected a finite number, got {v!r}")
        if positive and v <= 0:
            raise fail(f"must be > 0, got {v!r}")
        if nonneg and v < 0:
            raise fail(f"must be >= 0, got {v!r}")
        return float(v)

    def integer(minimum: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(f"expected an integer, got {v!r} ({typename(v)})")
        if minimum is not None and v < minimum:
            raise fail(f"must be >= {minimum}, got {v!r}"
                       + (" (must be a positive integer)" if minimum == 1 else ""))
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
        x = number()
        if not 0.0 <= x < 1.0:
            raise fail(f"must be in [0, 1), got {v!r}")
    elif key == "per_class":
        integer(1)
    elif key == "device":
        if not isinstance(v, str) or not _DEVICE_RE.match(v):
            raise fail(f"expected \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"mps\", got {v!r}")
    elif key == "data_root":
        string()
    elif key in ("download", "compile"):
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
        if key == "loss_params" and _is_per_loss(v):
            for lname in v:
                if lname not in BUILTIN["loss"] and not is_import_path(lname):
                    raise fail(f"per-loss table names unknown loss '{lname}'"
                               f"{did_you_mean(lname, BUILTIN['loss'])}; known: "
                               f"{', '.join(BUILTIN['loss'])}")
        elif key == "loss_params" and any(isinstance(x, dict) for x in v.values()):
            raise fail("mixes plain values and per-loss tables: use either { gamma = 3 } or "
                       "{ fl = { gamma = 3 }, ls = { alpha = 0.1 } }")
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


def freeze(value: Any) -> Any:
    """A hashable form of a config value (tables and lists as tuples; True apart from 1), so
    that equal values compare equal: for repeated sweep values and the pre-flight's grouping."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return (type(value).__name__, value) if isinstance(value, bool) else value


def _locate(text: str, table: str | None, key: str | None) -> int | None:
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
