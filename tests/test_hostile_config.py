"""Hostile experiments.toml values (issues #15 and #17): each class of input that once crashed,
hung or was accepted is refused by validation or the pre-flight, fast, as one ConfigError
naming the file, the experiment and the key — before anything is stored."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from _runkit import DIGITS_TOML as BASE
from ncbench.config import RANGES, load_config, range_text
from ncbench.errors import ConfigError
from ncbench.grid import run_grid

ROOT = Path(__file__).resolve().parents[1]


def dry_run_error(tmp_path: Path, text: str) -> ConfigError:
    """The ConfigError of `ncbench run --dry-run` on `text` (which must fail within seconds,
    writing neither database nor workdir)."""
    cfg = tmp_path / "exp.toml"
    cfg.write_text(text)
    db, wd = tmp_path / "db.duckdb", tmp_path / "wd"
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        run_grid(cfg, db_path=db, workdir=wd, dry_run=True)
    assert time.monotonic() - start < 20, "a pre-flight step on bad input took too long"
    assert not db.exists() and not wd.exists()
    assert info.value.file == str(cfg) and info.value.experiment == "a"
    return info.value


def with_keys(extra: str, base: str = BASE) -> str:
    """BASE with the lines of `extra` replacing (or adding) keys of experiment 'a'."""
    lines = base.strip().splitlines()
    for line in extra.strip().splitlines():
        key = line.split("=")[0].strip()
        lines = [ln for ln in lines if ln.split("=")[0].strip() != key]
        lines.append(line)
    return "\n".join(lines) + "\n"


# -- numbers no one meant ------------------------------------------------------------------------


@pytest.mark.parametrize("extra,key", [
    ("width = 1e308", "width"),                                   # OverflowError once
    ("width = 99999999999999999999999", "width"),                # blamed model_params + C++ frames
    ("epochs = 2147483648", "epochs"),                           # overflowed DuckDB's INTEGER
    ("batch_size = 2147483649", "batch_size"),
    ("seed = 9223372036854775808", "seed"),                      # beyond 64 bits
    ("data_seed = -1", "data_seed"),
    ("lr = 1e300", "lr"),                                        # failed in every worker
    ("lr_gamma = 1e300", "lr_gamma"),
    ("momentum = 5", "momentum"),
    ("per_class = 99999999999999999999", "per_class"),
    ('loss = "fl"\nloss_params = { gamma = nan }', "loss_params"),   # crashed writing spec.json
    ('loss = "mse"\nloss_params = { kappa = inf }', "loss_params"),
    ("dataset_params = { test_fraction = nan }", "dataset_params"),
    ('dataset = "gaussian"\ndataset_params = { separation = nan }', "dataset_params"),
    ("model_params = { depth = 99999999999999999999999 }", "model_params"),  # hung
])
def test_numbers_no_one_meant_are_refused_by_validation(tmp_path, extra, key):
    path = tmp_path / "exp.toml"
    path.write_text(with_keys(extra))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key and info.value.experiment == "a" and info.value.line
    assert "Traceback" not in str(info.value)


def test_sane_values_at_the_edges_of_the_ranges_pass(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(with_keys("seed = 9223372036854775807\nepochs = 1000000\nbatch_size = 2147483648\n"
                              "lr = 10\nlr_gamma = 1\nmomentum = 1\nwidth = 1000"))
    assert load_config(path)


def test_the_documented_ranges_are_the_real_ones():
    """docs/experiments-toml.md writes each numeric key's range as `ncbench.config.RANGES`."""
    text = (ROOT / "docs" / "experiments-toml.md").read_text()
    for key in RANGES:
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| `{key}` |"))
        assert range_text(key) in row.split("|")[2], key


def test_negative_dataset_seed_is_refused_by_the_preflight(tmp_path):
    err = dry_run_error(tmp_path, with_keys('dataset = "gaussian"\ndataset_params = { seed = -1 }'))
    assert err.key == "dataset_params" and "seed" in err.reason


def test_a_gaussian_dataset_too_large_to_generate_is_refused(tmp_path):
    err = dry_run_error(tmp_path, with_keys('dataset = "gaussian"\ndataset_params = { dim = 1000000000 }'))
    assert err.key == "dataset_params" and "1e8" in err.reason


# -- hangs: sizes that would build an enormous model -----------------------------------------------


@pytest.mark.parametrize("extra,key,size", [
    ("model_params = { depth = 1e308 }", "model_params", None),          # hung building layers
    ("model_params = { depth = 1000 }\nwidth = 50", "model_params", "1.64e+11"),
    ("width = 900", "width", "1.06e+11"),
    ('model = "wrn50"\nwidth = 200', "width", None),
    ('model = "resnet18"\nwidth = 100', "width", None),
])
def test_a_model_over_the_parameter_budget_is_refused_without_building_it(tmp_path, extra, key, size):
    err = dry_run_error(tmp_path, with_keys(extra))
    assert err.key == key
    if "depth" in extra and "1e308" in extra:
        assert "depth must be an integer in [1, 1000]" in err.reason
    else:
        assert "parameters, over ncbench's budget of 2e+09" in err.reason
    if size:
        assert f"would have {size} parameters" in err.reason


def test_parameter_counts_are_exact():
    """`ncbench.model_size.parameter_count` matches the built model's count (meta device)."""
    torch = pytest.importorskip("torch")
    from ncbench.model_size import parameter_count
    from ncbench.models import count_parameters, make_model

    cases = [("mlp", 10, 1.0, (1, 8, 8), {}), ("mlp", 7, 0.5, (32,), {"depth": 5}),
             ("resnet18", 10, 1.0, (3, 32, 32), {}), ("wrn18", 100, 0.5, (3, 84, 84), {"stem": "imagenet"}),
             ("wrn50", 10, 2.0, (3, 32, 32), {}), ("wrn50", 10, 0.3, (1, 28, 28), {}),
             ("cnn1d", 10, 0.25, (1, 40), {}), ("cnn1d", 10, 1.0, (1, 40), {}),
             ("cnn1d", 10, 4.0, (1, 40), {}), ("cnn1d", 100, 0.7, (3, 33), {})]
    for name, k, w, shape, kw in cases:
        with torch.device("meta"):
            model = make_model(name, k, w, input_shape=shape, **kw)
        assert parameter_count(name, k, w, shape, **kw) == count_parameters(model), name


# -- deep nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [12, 5000])
def test_deep_nesting_is_a_config_error(tmp_path, levels):
    path = tmp_path / "exp.toml"
    path.write_text(BASE + "model_params = { a = " + "[" * levels + "]" * levels + " }\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "nested" in info.value.reason and info.value.file == str(path)
    if levels == 12:
        assert info.value.key == "model_params" and info.value.experiment == "a"


# -- module:callable names that are not factories --------------------------------------------------


@pytest.mark.parametrize("extra,key,kind", [
    ('dataset = "builtins:dict"', "dataset", "dataset"),
    ('dataset = "os:getcwd"', "dataset", "dataset"),
    ('loss = "os:getcwd"', "loss", "loss"),
    ('model = "os:getcwd"', "model", "model"),
    ('model = "math:pi"', "model", "model"),
])
def test_a_callable_that_is_not_a_factory_is_refused_as_such(tmp_path, extra, key, kind):
    err = dry_run_error(tmp_path, with_keys(extra))
    assert err.key == key and f"is not a {kind} factory" in err.reason


def test_a_callable_returning_the_wrong_type_is_refused(tmp_path):
    """`builtins:print` can be called as a model factory, but returns None."""
    err = dry_run_error(tmp_path, with_keys('model = "builtins:print"'))
    assert err.key == "model" and "is not a model factory: it returned NoneType" in err.reason


# -- split sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra,names", [
    ("val_fraction = 0.999999", ["val_fraction"]),
    ("per_class = 10\nval_fraction = 0.95", ["per_class", "val_fraction"]),
])
def test_an_empty_training_split_names_the_keys(tmp_path, extra, names):
    err = dry_run_error(tmp_path, with_keys(extra))
    assert err.key == "val_fraction" and "leaves no training examples" in err.reason
    assert all(n in err.reason for n in names)


# -- the real command line ---------------------------------------------------------------------------


def test_cli_on_hostile_values_exits_2_fast_without_traceback(tmp_path):
    """One process, several hostile files one after another: each `ncbench run --dry-run`
    exits 2 within the timeout, with one line naming the file, and writes nothing."""
    code = ("import sys\nfrom ncbench.cli import main\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n        main(['run', '--dry-run', '-c', path])\n"
            "    except SystemExit as e:\n        print('EXIT', path, e.code, flush=True)\n")
    files = []
    for i, extra in enumerate(["model_params = { depth = 1e308 }", "width = 99999999999999999999999",
                               'dataset = "builtins:dict"', "lr = 1e300"]):
        p = tmp_path / f"h{i}.toml"
        p.write_text(with_keys(extra))
        files.append(str(p))
    out = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "frame #" not in text
    for f in files:
        assert f"EXIT {f} 2" in out.stdout and f in out.stderr
    assert not (tmp_path / "ncbench.duckdb").exists() and not (tmp_path / ".ncbench").exists()


# -- sizes of the grid, and where a value came from ------------------------------------------------


def test_a_sweep_that_explodes_is_refused_before_expanding(tmp_path):
    """400 seeds × 400 widths would be 160000 runs (10 such keys: 10^26, which never returned)."""
    path = tmp_path / "exp.toml"
    path.write_text(with_keys("seed = [" + ", ".join(map(str, range(400))) + "]\nwidth = ["
                              + ", ".join(str(1 + i / 100) for i in range(400)) + "]"))
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - start < 5
    assert info.value.experiment == "a" and "160000" in info.value.reason.replace("1.6e+05", "160000")


def test_a_preflight_error_of_a_defaults_key_names_defaults(tmp_path):
    """per_class set in [defaults] and refused by the dataset: the error points at [defaults]."""
    text = "[defaults]\nper_class = 100000\n" + BASE
    err = dry_run_error(tmp_path, text)
    assert err.key == "defaults.per_class" and err.line == 2 and "has only" in err.reason
