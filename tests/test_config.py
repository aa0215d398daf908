"""experiments.toml: loading, validation messages, grid expansion, and stable run ids."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ncbench import names
from ncbench.config import KEYS, SWEEP_ORDER, expand, load_config, select
from _runkit import DIGITS_TOML as BASE
from ncbench.errors import ConfigError, DatasetNotFoundError
from ncbench.paths import default_db_path, default_workdir
from ncbench.preflight import check_datasets, check_runs
from ncbench.registry import Registry
from ncbench.runs import RunSpec, canonical_json

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def spec(**kw) -> RunSpec:
    base = dict(experiment="e", dataset="digits", model="mlp", loss="ce", width=1.0, epochs=3, seed=0)
    base.update(kw)
    return RunSpec(**base)


# ---------------------------------------------------------------------------------------------
# the shipped experiments.toml
# ---------------------------------------------------------------------------------------------


def test_shipped_config_demo_is_default_and_small():
    cfg = load_config(ROOT / "experiments.toml")
    assert cfg.default == ["demo"]
    assert cfg.names[0] == "demo"
    runs = expand(cfg, cfg.default)
    assert {r.dataset for r in runs} == {"digits"}
    assert {r.loss for r in runs} == {"ce", "fl", "ls", "mse"}
    assert len({r.width for r in runs}) >= 2
    assert {r.seed for r in runs} == {0, 1, 2}
    assert len(runs) == 4 * len({r.width for r in runs}) * 3
    # the paper's loss parameters reach the runs of those losses only
    by_loss = {r.loss: r.loss_params for r in runs}
    assert by_loss == {"ce": {}, "fl": {"gamma": 3}, "ls": {"alpha": 0.1},
                       "mse": {"kappa": 1, "beta": 15}}


@pytest.mark.parametrize("name,model", [("cifar10", "wrn50"), ("cifar100", "wrn50"),
                                        ("miniimagenet", "wrn18")])
def test_shipped_config_paper_grids(name, model):
    cfg = load_config(ROOT / "experiments.toml")
    runs = expand(cfg, [name])
    assert len(runs) == 4 * 4 * 4 * 3
    assert {r.model for r in runs} == {model}
    assert {r.dataset for r in runs} == {name}
    assert sorted({r.width for r in runs}) == [0.25, 0.5, 1.0, 2.0]
    assert sorted({r.epochs for r in runs}) == [100, 200, 400, 800]
    assert {r.seed for r in runs} == {0, 1, 2}
    r = runs[0]  # the paper's recipe
    assert (r.lr, r.momentum, r.weight_decay, r.grad_clip, r.batch_size, r.val_fraction) == \
        (0.1, 0.9, 5e-4, 2.0, 128, 0.1)
    assert r.lr_milestones == (3 / 7, 5 / 7) and r.lr_gamma == 0.1
    assert len({x.run_id for x in runs}) == len(runs)
    # faithful to the paper's code: its MSE is eq. (6) divided by K (class_mean)
    by_loss = {x.loss: x.loss_params for x in runs}
    assert by_loss == {"ce": {}, "fl": {"gamma": 3}, "ls": {"alpha": 0.1},
                       "mse": {"kappa": 1, "beta": 15, "class_mean": True}}


def test_all_shipped_run_ids_distinct_across_experiments():
    cfg = load_config(ROOT / "experiments.toml")
    runs = expand(cfg)
    assert len({r.run_id for r in runs}) == len(runs) == 24 + 108 + 3 * 192


def test_shipped_trend_grid_spans_the_regimes():
    """`trend`: four losses × 3 widths × 3 budgets × 3 seeds on MNIST-1D, the widths from
    clearly under- (fewer weights than training signals) to clearly over-parameterised."""
    from ncbench.model_size import parameter_count

    cfg = load_config(ROOT / "experiments.toml")
    runs = expand(cfg, ["trend"])
    assert len(runs) == 4 * 3 * 3 * 3
    assert {(r.dataset, r.model) for r in runs} == {("mnist1d", "cnn1d")}
    widths = sorted({r.width for r in runs})
    counts = [parameter_count("cnn1d", 10, w, (1, 40)) for w in widths]
    n_train = 3601  # 4000 MNIST-1D training signals minus the 10 % holdout
    assert counts[0] < n_train / 2 and counts[-1] > 20 * n_train
    assert sorted({r.epochs for r in runs}) == [5, 25, 125]


def test_default_db_and_workdir_beside_config(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.db_path == tmp_path / "ncbench.duckdb" == default_db_path(cfg.path)
    assert cfg.workdir == tmp_path / ".ncbench" == default_workdir(cfg.path)


# ---------------------------------------------------------------------------------------------
# expansion
# ---------------------------------------------------------------------------------------------


def test_expand_order_seed_slowest_loss_fastest(tmp_path):
    cfg = load_config(write(tmp_path, BASE.replace('loss = "ce"', 'loss = ["mse", "ce"]')
                            + "width = [2, 0.5]\nseed = [1, 0]\nepochs_ = 0\n".replace("epochs_ = 0\n", "")))
    runs = expand(cfg)
    got = [(r.seed, r.width, r.loss) for r in runs]
    # seed slowest, then width, loss fastest; values in the order written
    assert got == [(1, 2.0, "mse"), (1, 2.0, "ce"), (1, 0.5, "mse"), (1, 0.5, "ce"),
                   (0, 2.0, "mse"), (0, 2.0, "ce"), (0, 0.5, "mse"), (0, 0.5, "ce")]
    assert SWEEP_ORDER[0] == "seed" and SWEEP_ORDER[1] == "epochs" and SWEEP_ORDER[-1] == "loss"
    assert sorted(SWEEP_ORDER) == sorted(KEYS)


def test_expand_experiments_in_file_order_and_select(tmp_path):
    text = BASE + BASE.replace("experiments.a", "experiments.b") + \
        BASE.replace("experiments.a", "experiments.c")
    cfg = load_config(write(tmp_path, text))
    assert cfg.names == ["a", "b", "c"]
    assert cfg.default == ["a"]  # no `default` key: the first experiment
    assert [r.experiment for r in expand(cfg)] == ["a", "b", "c"]
    assert [r.experiment for r in expand(cfg, ["c", "a", "c"])] == ["c", "a"]
    assert select(cfg, None) == ["a", "b", "c"]


def test_defaults_apply_and_experiment_overrides(tmp_path):
    text = "[defaults]\nbatch_size = 64\nlr = [0.1, 0.01]\nseed = [0, 1]\n" + BASE + "lr = 0.5\n"
    runs = expand(load_config(write(tmp_path, text)))
    assert [(r.batch_size, r.lr, r.seed) for r in runs] == [(64, 0.5, 0), (64, 0.5, 1)]


def test_loss_params_flat_and_per_loss_and_sweep(tmp_path):
    flat = BASE.replace('loss = "ce"', 'loss = "fl"') + "loss_params = { gamma = 2 }\n"
    assert [r.loss_params for r in expand(load_config(write(tmp_path, flat)))] == [{"gamma": 2}]
    per = BASE.replace('loss = "ce"', 'loss = ["ce", "fl", "ls"]') + \
        'loss_params = { fl = { gamma = 1 }, ls = { alpha = 0.2 } }\n'
    runs = expand(load_config(write(tmp_path, per)))
    assert [(r.loss, r.loss_params) for r in runs] == [("ce", {}), ("fl", {"gamma": 1}),
                                                       ("ls", {"alpha": 0.2})]
    sweep = BASE.replace('loss = "ce"', 'loss = ["ce", "fl"]') + \
        'loss_params = [{ fl = { gamma = 1 } }, { fl = { gamma = 5 } }]\n'
    runs = expand(load_config(write(tmp_path, sweep)))
    # ce is the same run under both tables: listed once
    assert [(r.loss, r.loss_params) for r in runs] == [("ce", {}), ("fl", {"gamma": 1}),
                                                       ("fl", {"gamma": 5})]


def test_lr_milestones_value_vs_sweep_and_grad_clip_zero(tmp_path):
    one = BASE + "lr_milestones = [0.5, 0.75]\ngrad_clip = 0\n"
    runs = expand(load_config(write(tmp_path, one)))
    assert len(runs) == 1 and runs[0].lr_milestones == (0.5, 0.75) and runs[0].grad_clip is None
    two = BASE + "lr_milestones = [[0.5], [0.25, 0.75]]\n"
    assert [r.lr_milestones for r in expand(load_config(write(tmp_path, two)))] == [(0.5,), (0.25, 0.75)]


def test_data_root_relative_to_config_and_not_in_run_id(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    plain = expand(load_config(write(sub, BASE)))[0]
    r = expand(load_config(write(sub, BASE + 'data_root = "data"\n')))[0]
    assert r.data_root == str(sub / "data") and r.run_id == plain.run_id
    r = expand(load_config(write(sub, BASE + f'data_root = "{tmp_path / "abs"}"\n')))[0]
    assert r.data_root == str(tmp_path / "abs")


def test_params_tables_and_import_path_names(tmp_path):
    text = BASE.replace('model = "mlp"', 'model = "mypkg.models:tiny"') + \
        "dataset_params = { dim = 8 }\nmodel_params = { depth = 3 }\nper_class = 10\n"
    r = expand(load_config(write(tmp_path, text)))[0]
    assert r.model == "mypkg.models:tiny"
    assert r.dataset_params == {"dim": 8} and r.model_params == {"depth": 3} and r.per_class == 10


# ---------------------------------------------------------------------------------------------
# run ids
# ---------------------------------------------------------------------------------------------


def test_run_id_pinned():
    """The hashing scheme is a stored contract: changing it orphans every stored result."""
    s = spec()
    ident = {"dataset": "digits", "epochs": 3, "experiment": "e", "loss": "ce", "model": "mlp",
             "seed": 0, "width": 1.0}
    assert s.identity() == ident
    expected = hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:12]
    assert s.run_id == expected
    assert canonical_json(ident) == ('{"dataset":"digits","epochs":3,"experiment":"e","loss":"ce",'
                                     '"model":"mlp","seed":0,"width":1.0}')


def test_run_id_independent_of_key_order_and_explicit_defaults(tmp_path):
    a = write(tmp_path, '[experiments.x]\ndataset = "digits"\nmodel = "mlp"\nloss = "ce"\n'
                        'epochs = 3\nwidth = 1\nseed = 0\n', "a.toml")
    b = write(tmp_path, '[experiments.x]\nseed = 0\nwidth = 1.0\nepochs = 3\nloss = "ce"\n'
                        'model = "mlp"\ndataset = "digits"\nbatch_size = 128\nlr = 0.1\n'
                        'weight_decay = 5e-4\nprecision = "fp32"\nloss_params = {}\n', "b.toml")
    assert expand(load_config(a))[0].run_id == expand(load_config(b))[0].run_id


def test_run_id_changes_with_what_is_computed_not_where():
    base = spec()
    for change in (dict(experiment="f"), dict(width=2.0), dict(seed=1), dict(lr=0.05),
                   dict(loss_params={"gamma": 2}), dict(eval_every=1), dict(precision="bf16"),
                   dict(grad_clip=None), dict(per_class=5)):
        assert base.replace(**change).run_id != base.run_id, change
    for change in (dict(device="cpu"), dict(data_root="/x"), dict(download=True), dict(compile=True)):
        assert base.replace(**change).run_id == base.run_id, change
    assert spec(loss_params={"gamma": 3}).run_id == spec(loss_params={"gamma": 3.0}).run_id
    assert spec(width=1).run_id == spec(width=1.0).run_id


def test_adding_a_field_with_default_keeps_run_ids():
    @dataclasses.dataclass(frozen=True)
    class Extended(RunSpec):
        new_option: bool = False

    old = spec()
    new = Extended(**old.to_dict())
    assert new.run_id == old.run_id
    assert Extended(**old.to_dict(), new_option=True).run_id != old.run_id


def test_spec_roundtrip_and_checks():
    s = spec(loss_params={"gamma": 2.5}, lr_milestones=(0.5,), per_class=3, data_root="d")
    d = json.loads(s.to_json())
    assert RunSpec.from_dict(d) == s
    assert RunSpec.from_dict({**d, "run_id": s.run_id}).run_id == s.run_id
    with pytest.raises(ValueError, match="does not match"):
        RunSpec.from_dict({**d, "run_id": "000000000000"})
    with pytest.raises(ValueError, match="unknown RunSpec key"):
        RunSpec.from_dict({**d, "bogus": 1})
    assert RunSpec.from_dict({**d, "bogus": 1}, strict=False) == s
    with pytest.raises(ValueError, match="epochs"):
        spec(epochs=2.5)
    assert hash(s) == hash(RunSpec.from_dict(d))
    # the spec holds its own copy of the params
    params = {"gamma": 1}
    s2 = spec(loss_params=params)
    params["gamma"] = 9
    assert s2.loss_params == {"gamma": 1}


# ---------------------------------------------------------------------------------------------
# bad input: ConfigError naming file, experiment, key (and line) with the reason
# ---------------------------------------------------------------------------------------------

BAD = [
    # (toml text, experiment, key, fragment of the reason, line or None)
    (BASE.replace("epochs = 3", "epochs = "), None, None, "invalid TOML", 6),
    (BASE + "epoch = 4\n", "a", "epoch", "did you mean 'epochs'", 7),
    (BASE.replace('"mlp"', '"mlpp"'), "a", "model", "unknown model 'mlpp' (did you mean 'mlp'?)", 4),
    (BASE.replace('"ce"', '["ce", "fll"]'), "a", "loss", "unknown loss 'fll' (did you mean 'fl'?)", 5),
    (BASE.replace('"digits"', '"digts"'), "a", "dataset", "did you mean 'digits'", 3),
    (BASE.replace("epochs = 3", 'epochs = "ten"'), "a", "epochs", "expected an integer, got 'ten'", 6),
    (BASE + "width = true\n", "a", "width", "expected a number, got True", 7),
    (BASE.replace("epochs = 3", "epochs = 0"), "a", "epochs", "must be >= 1", 6),
    (BASE.replace("epochs = 3", "epochs = -5"), "a", "epochs", "must be >= 1", 6),
    (BASE + "batch_size = 0\n", "a", "batch_size", "must be >= 1", 7),
    (BASE + "lr = 0\n", "a", "lr", "must be > 0", 7),
    (BASE + "seed = []\n", "a", "seed", "empty sweep list", 7),
    (BASE + "val_fraction = 1.0\n", "a", "val_fraction", "must be in [0, 1)", 7),
    (BASE + "eval_every = 0\n", "a", "eval_every", "must be >= 1", 7),
    (BASE.replace('loss = "ce"\n', ""), "a", None, "missing required key 'loss'", 2),
    (BASE + 'device = ["cpu", "cuda"]\n', "a", "device", "cannot sweep", 7),
    (BASE + 'device = "gpu"\n', "a", "device", "expected \"auto\"", 7),
    (BASE + "loss_params = { fll = { gamma = 3 } }\n", "a", "loss_params", "unknown loss 'fll'", 7),
    (BASE + "loss_params = { gamma = 3, fl = { gamma = 1 } }\n", "a", "loss_params", "mixes", 7),
    (BASE + "loss_params = 3\n", "a", "loss_params", "expected a table", 7),
    (BASE + "width = [1, 1]\n", "a", "width", "repeats a value", 7),
    (BASE + 'precision = "fp33"\n', "a", "precision", "did you mean 'fp32'", 7),
    ("[defaults]\nepochs = 0\n" + BASE, None, "defaults.epochs", "must be >= 1", 2),
    (BASE.replace("[experiments.a]", "[experimets.a]"), None, "experimets", "did you mean 'experiments'", None),
    ("epochs = 3\n" + BASE, None, "epochs", "put it in [defaults]", 1),
    ("[defaults]\nepochs = 3\n", None, None, "defines no experiment", None),
    ('default = "b"\n' + BASE, None, "default", "unknown experiment 'b'", 1),
    (BASE + "[executor.slurmm]\n", None, "executor.slurmm", "did you mean 'slurm'", None),
]


@pytest.mark.parametrize("text,experiment,key,fragment,line", BAD)
def test_bad_config_messages(tmp_path, text, experiment, key, fragment, line):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert err.experiment == experiment
    assert err.key == key
    assert fragment in err.reason, err.reason
    assert err.line == line, str(err)
    assert str(path) in str(err)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_unknown_experiment_suggests_closest(tmp_path):
    cfg = load_config(write(tmp_path, BASE.replace("experiments.a", "experiments.demo")))
    with pytest.raises(ConfigError, match=r"unknown experiment 'dmeo' \(did you mean 'demo'\?\)"):
        expand(cfg, ["dmeo"])


# ---------------------------------------------------------------------------------------------
# names, pre-flight checks, imports
# ---------------------------------------------------------------------------------------------


def test_every_declared_name_is_registered():
    """A registry refuses undeclared names by itself (below); a declared name nobody registers
    can only be seen by importing the registries."""
    losses = pytest.importorskip("ncbench.losses")
    models = pytest.importorskip("ncbench.models")
    data = pytest.importorskip("ncbench.data")
    assert losses.loss_names() == sorted(names.LOSSES) == sorted(names.BUILTIN["loss"])
    assert models.model_names() == sorted(names.MODELS) == sorted(names.BUILTIN["model"])
    assert data.dataset_names() == sorted(names.DATASETS) == sorted(names.BUILTIN["dataset"])
    assert losses.LOSSES.declared == names.LOSSES and models.MODELS.declared == names.MODELS
    assert data.DATASETS.declared == names.DATASETS


def test_registry_refuses_an_undeclared_name():
    reg: Registry = Registry("loss", declared=("ce", "fl"))
    reg.register("ce")(lambda: "ce")
    with pytest.raises(ValueError, match=r"loss 'focal' is not declared.*ncbench/names.py"):
        reg.register("focal")  # fails at the decorator line, i.e. when its module is imported
    assert reg.names() == ["ce"] and reg.get("ce")() == "ce"
    # a module that registers an undeclared name fails to import
    code = ("from ncbench.registry import Registry\n"
            "R = Registry('model', declared=('mlp',))\n"
            "@R.register('tiny')\ndef tiny(): pass\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "model 'tiny' is not declared" in out.stderr


def test_config_checks_names_against_the_declaration(tmp_path):
    """config validates names against ncbench.names (the registries' declaration), not a copy."""
    from ncbench import config, config_values

    assert config_values.BUILTIN is names.BUILTIN and not hasattr(config, "BUILTIN_NAMES")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE.replace('model = "mlp"', 'model = "tinny"')))
    assert f"known: {', '.join(names.MODELS)} (or" in info.value.reason


def test_config_imports_no_training_code_and_no_preflight():
    """config.py's (and its value checks') imports, read from the source (function-level ones
    too): only torch-free modules below it — never torch, the registries' modules or the
    pre-flight."""
    import ast

    expected = {"config": {"ncbench.config_values", "ncbench.errors", "ncbench.names",
                           "ncbench.paths", "ncbench.runs"},
                "config_values": {"ncbench.errors", "ncbench.names", "ncbench.registry",
                                  "ncbench.runs"}}
    for module, allowed in expected.items():
        tree = ast.parse((ROOT / "ncbench" / f"{module}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        ours = {m for m in imported if m.startswith("ncbench")}
        assert ours == allowed, (module, ours)
        assert not any(m.split(".")[0] == "torch" for m in imported)


def test_config_does_not_import_torch():
    code = ("import sys; from ncbench.config import load_config, expand; "
            f"expand(load_config({str(ROOT / 'experiments.toml')!r})); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_check_datasets_absent_dataset_names_path(tmp_path):
    pytest.importorskip("ncbench.data")
    text = BASE.replace('"digits"', '"cifar10"').replace('"mlp"', '"resnet18"') + \
        f'data_root = "{tmp_path / "nodata"}"\n'
    specs = expand(load_config(write(tmp_path, text)))
    with pytest.raises(DatasetNotFoundError) as info:
        check_datasets(specs)
    assert str(tmp_path / "nodata") in str(info.value)
    check_datasets(expand(load_config(write(tmp_path, BASE, "ok.toml"))))  # digits: bundled


@pytest.mark.parametrize("extra,key,reason", [
    ("model_params = { depth = 0 }", "model_params", "depth must be"),
    ("model_params = { depht = 2 }", "model_params", "did you mean 'depth'"),
    ("per_class = 100000", "per_class", "has only"),
    ("dataset_params = { test_fraction = 2.0 }", "dataset_params", "test_fraction must be in (0, 1)"),
    ("width = 0.001", "width", "→ 0 hidden units"),
])
def test_check_datasets_rejects_what_the_data_or_the_model_refuse(tmp_path, extra, key, reason):
    """Settings only the dataset or the model can judge fail in the pre-flight check, naming
    file, experiment and key — not later in every worker."""
    pytest.importorskip("ncbench.data")
    cfg = load_config(write(tmp_path, BASE + extra + "\n"))
    with pytest.raises(ConfigError) as info:
        check_datasets(expand(cfg), config=cfg)
    msg = str(info.value)
    assert msg.startswith(f"{cfg.path}:") and "experiment 'a'" in msg and f"key '{key}'" in msg
    assert reason in msg


def test_ncbench_run_stores_nothing_for_a_bad_model_param(tmp_path):
    text = BASE.replace('epochs = 3', 'epochs = 3\nmodel_params = { depth = -1 }')
    out = subprocess.run([sys.executable, "-m", "ncbench", "run", "-c", str(write(tmp_path, text))],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    assert "key 'model_params'" in out.stderr + out.stdout
    assert not (tmp_path / "ncbench.duckdb").exists() and not (tmp_path / ".ncbench").exists()


def test_check_runs_rejects_bad_loss_params(tmp_path):
    pytest.importorskip("ncbench.losses")
    text = BASE.replace('"ce"', '"fl"') + "loss_params = { gama = 3 }\n"
    cfg = load_config(write(tmp_path, text))
    with pytest.raises(ConfigError) as info:
        check_runs(expand(cfg), cfg)
    assert info.value.key == "loss_params" and "gama" in str(info.value)
    assert info.value.file == str(cfg.path) and info.value.line == 7  # the loss_params line
    check_runs(expand(load_config(ROOT / "experiments.toml")))


def test_check_runs_resolves_import_path_names(tmp_path):
    """An import-path name is accepted by the (torch-free) config and resolved by the
    pre-flight, which names the key; one that resolves passes."""
    pytest.importorskip("ncbench.models")
    bad = BASE.replace('model = "mlp"', 'model = "ncbench.models:no_such_model"')
    cfg = load_config(write(tmp_path, bad))
    with pytest.raises(ConfigError) as info:
        check_runs(expand(cfg), cfg)
    assert info.value.key == "model" and info.value.experiment == "a"
    assert "ncbench.models:no_such_model" in info.value.reason and info.value.line == 4
    good = BASE.replace('loss = "ce"', 'loss = "ncbench.losses:CrossEntropyLoss"')
    check_runs(expand(load_config(write(tmp_path, good, "good.toml"))))


def test_check_runs_without_a_config_names_experiment_and_key():
    pytest.importorskip("ncbench.losses")
    with pytest.raises(ConfigError) as info:
        check_runs([spec(loss="fl", loss_params={"gamma": -1, "x": 1})])
    err = info.value
    assert (err.file, err.experiment, err.key) == (None, "e", "loss_params")
    with pytest.raises(ConfigError, match="unknown dataset 'digts'") as info:
        check_runs([spec(dataset="digts")])  # a spec not from a config: its name is checked too
    assert info.value.key == "dataset"
