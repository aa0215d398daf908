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

Validation happens on loading, once per value (`ncbench.config_values`: the type and documented
range of every key, and names against the declared built-in names of `ncbench.names`, which the
registries are held to, or "package.module:callable"). This module never imports torch or training code, not even lazily:
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncbench.config_values import (
    INT64_MAX, KEYS, MAX_NESTING, RANGES, SCALAR_ONLY, check_key, check_nesting, freeze,
    is_per_loss, locate, range_text,
)
from ncbench.errors import ConfigError, did_you_mean
from ncbench.names import EXECUTORS
from ncbench.paths import DEFAULT_CONFIG, default_db_path, default_workdir
from ncbench.runs import RunSpec

__all__ = ["Config", "load_config", "expand", "select", "freeze", "KEYS", "SWEEP_ORDER", "RANGES",
           "range_text", "MAX_NESTING", "MAX_RUNS", "INT64_MAX", "SCALAR_ONLY"]

#: Keys that must be given (in the experiment or in [defaults]).
REQUIRED_KEYS = ("dataset", "model", "loss", "epochs")
#: Keys with a config-level default although RunSpec requires them.
CONFIG_DEFAULTS = {"width": 1.0, "seed": 0}
TOP_LEVEL_KEYS = ("default", "defaults", "experiments", "executor")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: The most runs one experiment may expand into.
MAX_RUNS = 100_000


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
        """A ConfigError naming this file (and the line of `key`, when it can be found). A key
        of `experiment` that the experiment takes from [defaults] is named `defaults.<key>`,
        with the line in [defaults]."""
        if (table is None and experiment and key and key not in self.experiments.get(experiment, {})
                and key in self.defaults):
            table, key = "defaults", f"defaults.{key}"
            line = locate(self.text, table, key.partition(".")[2])
            return ConfigError(str(self.path), reason, experiment=experiment, key=key, line=line)
        if table is None and experiment:
            table = f"experiments.{experiment}"
        line = locate(self.text, table, key)
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
    except RecursionError:  # tomllib recurses per nesting level: thousands of levels overflow
        raise ConfigError(str(path), f"invalid TOML: arrays or tables nested too deeply "
                                     f"(ncbench allows {MAX_NESTING} levels)") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)", msg)
        line = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
        if m:
            msg = msg[: m.start()] + msg[m.end():] + f" (column {m.group(2)})"
        raise ConfigError(str(path), f"invalid TOML: {msg}", line=line) from None

    cfg = Config(path=path, defaults={}, experiments={}, text=text)
    check_nesting(cfg, data)
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
        check_key(cfg, None, key, value)
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
        check_key(cfg, name, key, value)
    merged: dict[str, Any] = {**CONFIG_DEFAULTS, **cfg.defaults, **table}
    for key in REQUIRED_KEYS:
        if key not in merged:
            raise cfg.error(f"missing required key '{key}' (set it in the experiment or in "
                            "[defaults])", experiment=name)
    axes = [(key, _values(key, merged[key])) for key in SWEEP_ORDER if key in merged]
    total = math.prod(len(vals) for _, vals in axes)
    if total > MAX_RUNS:
        raise cfg.error(f"the sweep expands into {total:.3g} runs: ncbench allows {MAX_RUNS} per "
                        "experiment (sweep fewer values)", experiment=name)
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for combo in itertools.product(*(vals for _, vals in axes)):
        values = dict(zip((k for k, _ in axes), combo))
        values["loss_params"] = _loss_params_for(values.get("loss_params", {}), values["loss"])
        if values.get("grad_clip") == 0:
            values["grad_clip"] = None
        if values.get("data_root"):  # relative to the config file's folder; ~ expanded
            values["data_root"] = os.path.abspath(cfg.path.parent / Path(values["data_root"]).expanduser())
        if any(":" in values[k] for k in ("loss", "model", "dataset") if k in values):
            values["plugin_dir"] = os.path.abspath(cfg.path.parent)  # plug-ins beside the file
        spec = RunSpec(experiment=name, **values)  # every value was checked by check_key
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



def _loss_params_for(table: dict, loss: str) -> dict:
    """The loss_params of a run with loss `loss`: a per-loss table picks its entry."""
    if is_per_loss(table):
        return dict(table.get(loss, {}))
    return dict(table)
