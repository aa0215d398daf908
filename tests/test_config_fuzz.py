"""Fuzzing experiments.toml (issue #15): Hypothesis generates hostile files — numbers no one
meant, wrong types, absurd sizes, deep nesting, callables that are not factories, garbage text —
and `ncbench run --dry-run` must, for every one, either accept it or refuse it as one
ConfigError naming the file (exit code 2): no other exception, no traceback, no hang, and
neither the database nor the workdir created.

Bounded for the suite: a derandomized (fixed-seed) search with a fixed example count and a
deadline. In-process through `ncbench.grid.run_grid`, plus one sample through the real command
line (`ncbench.cli.main` in a fresh process, one process for the whole sample).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from ncbench.config import KEYS  # noqa: E402
from ncbench.errors import ConfigError, NcbenchError  # noqa: E402
from ncbench.grid import run_grid  # noqa: E402

BASES = {
    "digits": {"dataset": "digits", "model": "mlp", "loss": "ce", "epochs": 2},
    "gaussian": {"dataset": "gaussian", "model": "mlp", "loss": "ce", "epochs": 2,
                 "dataset_params": {"num_classes": 3, "dim": 4, "n_train_per_class": 20,
                                    "n_test_per_class": 10}},
}
#: Keys another part of the pre-flight owns (paths) are left out: data_root.
FUZZ_KEYS = [k for k in KEYS if k != "data_root"] + ["widht", "loss_param", "x"]
NAMES = ["digits", "gaussian", "mlp", "resnet18", "wrn18", "wrn50", "ce", "fl", "ls", "mse",
         "builtins:dict", "os:getcwd", "math:pi", "builtins:print", "json:loads",
         "ncbench.models:nope", "nope_module_xyz:f", "ncbench.models:mlp", "ncbench.losses:FocalLoss",
         "ncbench.data.small:gaussian", ":", "a:", "", "cuda:99", "bf16", "x" * 300]
PARAM_KEYS = ["gamma", "alpha", "kappa", "beta", "class_mean", "depth", "in_features", "stem",
              "num_classes", "dim", "n_train_per_class", "n_test_per_class", "separation",
              "seed", "test_fraction", "zero_init_residual", "bogus"]

ints = st.one_of(st.integers(-2 ** 70, 2 ** 70),
                 st.sampled_from([0, 1, -1, 2, 3, 1000, 2 ** 31 - 1, 2 ** 31, 2 ** 63 - 1, 2 ** 63,
                                  10 ** 23]))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 0.5, 0.999999, 1.0, 1e308, 5e-324, 2.5, 1e-9]))
scalars = st.one_of(ints, floats, st.booleans(), st.sampled_from(NAMES))
tables = st.dictionaries(st.sampled_from(PARAM_KEYS), st.one_of(scalars, st.lists(scalars, max_size=2)),
                         max_size=3)


@st.composite
def deep(draw):
    """An array or inline table nested `levels` deep (tomllib recurses once per level)."""
    levels = draw(st.sampled_from([3, 11, 40, 3000]))
    if draw(st.booleans()):
        return "[" * levels + "1" + "]" * levels
    return "{ a = " * levels + "1" + " }" * levels


values = st.one_of(scalars, st.lists(scalars, max_size=4), tables, st.lists(tables, max_size=2),
                   deep().map(lambda text: _Raw(text)))


class _Raw(str):
    """TOML text to insert as it is."""


def toml_value(v) -> str:
    if isinstance(v, _Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


plausible = st.one_of(st.integers(0, 50), st.floats(0, 2), st.sampled_from([0.95, 0.999999, 100, 900]))
numbers = st.one_of(ints, floats, plausible, plausible)
names = st.sampled_from(NAMES)


def typed(key: str):
    """Values of the right type for `key` (so that the range checks and the pre-flight get
    their turn), hostile or not."""
    if key in ("dataset", "model", "loss"):
        return st.one_of(names, st.lists(names, min_size=1, max_size=2, unique=True))
    if key.endswith("_params"):
        return tables
    if key == "lr_milestones":
        return st.lists(numbers, max_size=3)
    if key in ("download", "compile", "channels_last"):
        return st.booleans()
    if key in ("device", "precision"):
        return names
    return st.one_of(numbers, st.lists(numbers, min_size=1, max_size=3))


@st.composite
def settings_of(draw):
    key = draw(st.sampled_from(FUZZ_KEYS))
    return key, draw(st.one_of(values, typed(key), typed(key), typed(key)))


@st.composite
def hostile_configs(draw):
    """(TOML text, the keys it sets in experiment 'a' or [defaults])."""
    base = dict(BASES[draw(st.sampled_from(sorted(BASES)))])
    in_defaults: dict = {}
    for key, value in draw(st.lists(settings_of(), min_size=1, max_size=2)):
        (in_defaults if draw(st.integers(0, 4)) == 0 else base)[key] = value
    lines = []
    if in_defaults:
        lines += ["[defaults]"] + [f"{k} = {toml_value(v)}" for k, v in in_defaults.items()]
    lines += ["[experiments.a]"] + [f"{k} = {toml_value(v)}" for k, v in base.items()]
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 19)) == 0:  # garbage after a valid start
        text += draw(st.text(max_size=30))
    return text, set(base) | {f"defaults.{k}" for k in in_defaults}


PREFLIGHT_KEYS = ["width", "model", "dataset", "loss", "model_params", "dataset_params",
                  "loss_params", "per_class", "val_fraction"]
model_tables = st.dictionaries(st.sampled_from(["depth", "in_features", "in_channels", "stem"]),
                               st.one_of(plausible, st.sampled_from([1e308, 1000, 10 ** 6, "imagenet"])),
                               max_size=2)
data_tables = st.dictionaries(st.sampled_from(["num_classes", "dim", "n_train_per_class",
                                               "n_test_per_class", "separation", "seed",
                                               "test_fraction"]),
                              st.one_of(plausible, st.sampled_from([-1, 10 ** 9, 0, 1.5, 2 ** 40])),
                              max_size=2)
loss_tables = st.dictionaries(st.sampled_from(["gamma", "alpha", "kappa", "beta", "class_mean"]),
                              st.one_of(plausible, st.booleans(), st.sampled_from([-1, 1e308])),
                              max_size=2)
PLAUSIBLE = {"width": st.one_of(plausible, st.sampled_from([1e-9, 50.0, 999.0])),
             "model": names, "dataset": names, "loss": names, "model_params": model_tables,
             "dataset_params": data_tables, "loss_params": loss_tables,
             "per_class": st.integers(1, 500), "val_fraction": st.floats(0, 0.999999)}


@st.composite
def preflight_configs(draw):
    """Files that pass the torch-free validation more often: the pre-flight's turn."""
    base = dict(BASES[draw(st.sampled_from(sorted(BASES)))])
    for key in draw(st.lists(st.sampled_from(PREFLIGHT_KEYS), min_size=1, max_size=3, unique=True)):
        base[key] = draw(PLAUSIBLE[key])
    lines = ["[experiments.a]"] + [f"{k} = {toml_value(v)}" for k, v in base.items()]
    return "\n".join(lines) + "\n", set(base)


def check_dry_run(text: str, keys: set[str], timed: bool = True) -> str:
    """Run `ncbench run --dry-run` in-process on `text`; assert the contract; return "ok" or
    "error"."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg, db, wd = Path(tmp) / "experiments.toml", Path(tmp) / "r.duckdb", Path(tmp) / "wd"
        cfg.write_text(text, encoding="utf-8", errors="surrogateescape")
        start = time.monotonic()
        try:
            run_grid(cfg, db_path=db, workdir=wd, dry_run=True)
            outcome = "ok"
        except NcbenchError as exc:
            assert isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"
            assert exc.file == str(cfg) and str(cfg) in str(exc)
            assert "Traceback" not in str(exc) and "frame #" not in str(exc)
            if exc.experiment is not None:
                assert exc.experiment == "a"
            if exc.key is not None and exc.experiment == "a":
                assert exc.key in keys, f"blames {exc.key!r}, the file sets {sorted(keys)}: {exc}"
            outcome = "error"
        assert not timed or time.monotonic() - start < 10, "a dry run on bad input took too long"
        assert not db.exists() and not wd.exists(), "a dry run created the database or workdir"
        return outcome


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Import torch and the registries once, so that the deadline measures the checks."""
    check_dry_run("[experiments.a]\ndataset = \"digits\"\nmodel = \"mlp\"\nloss = \"ce\"\nepochs = 1\n",
                  set(), timed=False)


@settings(derandomize=True, max_examples=250, deadline=10_000, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_configs())
def test_dry_run_on_hostile_configs_accepts_or_names_the_file(case):
    text, keys = case
    check_dry_run(text, keys)


@settings(derandomize=True, max_examples=100, deadline=10_000, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(preflight_configs())
def test_dry_run_preflight_on_plausible_but_bad_settings(case):
    """Values of the right type, so that the pre-flight (datasets, model sizes, factories)
    judges them: still accepted or one ConfigError naming file and key, within seconds."""
    text, keys = case
    check_dry_run(text, keys)


@settings(derandomize=True, max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(hostile_configs(), preflight_configs()), min_size=8, max_size=8))
def test_real_cli_on_a_sample_of_hostile_configs(cases):
    """The same contract through the command line in a fresh process: exit code 0 or 2, no
    traceback, errors name the file, nothing written beside the config."""
    code = ("import sys\nfrom ncbench.cli import main\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n        main(['run', '--dry-run', '-c', path])\n        code = 0\n"
            "    except SystemExit as e:\n        code = e.code\n"
            "    print('EXIT', path, code, flush=True)\n")
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (text, _) in enumerate(cases):
            d = Path(tmp) / f"c{i}"
            d.mkdir()
            (d / "experiments.toml").write_text(text, encoding="utf-8", errors="surrogateescape")
            files.append(str(d / "experiments.toml"))
        out = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True,
                             timeout=180, cwd=tmp, errors="replace")
        text = out.stdout + out.stderr
        assert out.returncode == 0 and "Traceback" not in text, text[-3000:]
        for f in files:
            exits = [ln.split()[-1] for ln in out.stdout.splitlines() if ln.startswith(f"EXIT {f} ")]
            assert exits in (["0"], ["2"]), (f, text[-3000:])
            if exits == ["2"]:
                assert f in out.stderr
            assert not (Path(f).parent / "ncbench.duckdb").exists()
            assert not (Path(f).parent / ".ncbench").exists()
