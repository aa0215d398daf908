"""torchvision's models by name (ncbench.models_tv) and the model contract for every model:
shapes at both stems, grey input, the width knob, parameter counts against torchvision's own
models, the contract's errors for bad user models, `ncbench models`, and one `ncbench run`."""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

from ncbench import names
from ncbench.cli.app import app
from ncbench.config import expand, load_config
from ncbench.errors import ConfigError, ParameterError
from ncbench.model_size import VGG_CFGS, check_size, parameter_count
from ncbench.models import check_contract, count_parameters, make_model, model_names
from ncbench.models_tv import TV_MODELS, TorchvisionNet
from ncbench.preflight import check_datasets, check_runs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugins"
#: d at width 1 (stem and input channels do not change it).
DIM = {"vgg11_bn": 4096, "vgg13_bn": 4096, "resnet34": 512, "resnet50": 2048, "densenet121": 1024}


def meta_model(*args, **kw) -> nn.Module:
    with torch.device("meta"):
        return make_model(*args, **kw)


def test_declared_registered_and_torchvision_is_imported_lazily():
    """Importing ncbench.models (hence models_tv) must not import torchvision: no module-level
    torchvision import in either (the builders import it)."""
    assert set(TV_MODELS) <= set(names.MODELS) and set(TV_MODELS) <= set(model_names())
    for module in ("models.py", "models_tv.py"):
        tree = ast.parse((ROOT / "ncbench" / module).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        imported = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(m.split(".")[0] == "torchvision" for m in imported), module


@pytest.mark.parametrize("channels, stem", [(3, "cifar"), (1, "imagenet")])
@pytest.mark.parametrize("name", TV_MODELS)
def test_contract_shapes_and_exact_counts_on_meta(name, channels, stem):
    """features [B, d], classifier Linear(d, K) with bias, logits [B, K] (a meta forward), and
    model_size's arithmetic equals the built model's count."""
    shape = (channels, 32, 32)
    m = meta_model(name, 7, 1.0, input_shape=shape, stem=stem)
    assert isinstance(m, TorchvisionNet) and m.stem == stem
    assert check_contract(m, name, 7, shape) == DIM[name] == m.feature_dim
    assert isinstance(m.classifier, nn.Linear) and m.classifier.bias is not None
    assert m.classifier.out_features == 7
    assert count_parameters(m) == parameter_count(name, 7, 1.0, shape, stem=stem)


def test_stems_are_the_documented_layers():
    r = meta_model("resnet50", 10, input_shape=(1, 32, 32))  # default: cifar
    assert (r.net.conv1.kernel_size, r.net.conv1.stride, r.net.conv1.in_channels) == ((3, 3), (1, 1), 1)
    assert isinstance(r.net.maxpool, nn.Identity) and isinstance(r.net.fc, nn.Identity)
    r = meta_model("resnet50", 10, input_shape=(1, 224, 224), stem="imagenet")
    assert (r.net.conv1.kernel_size, r.net.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(r.net.maxpool, nn.MaxPool2d)
    v = meta_model("vgg11_bn", 10)
    assert v.net.avgpool.output_size == (1, 1) and v.net.classifier[0].in_features == 512
    assert len(v.net.classifier) == 6 and v.classifier.in_features == 4096
    v = meta_model("vgg11_bn", 10, stem="imagenet")
    assert v.net.avgpool.output_size == (7, 7) and v.net.classifier[0].in_features == 512 * 49
    d = meta_model("densenet121", 10, input_shape=(1, 32, 32))
    assert d.net.features.conv0.kernel_size == (3, 3) and isinstance(d.net.features.pool0, nn.Identity)


def test_real_forward_grey_images_features_then_classifier():
    """Real (CPU) builds at small widths on a grey 32-px batch: forward = classifier(features)."""
    torch.manual_seed(0)
    for name, width, side in [("vgg11_bn", 0.125, 32), ("resnet50", 0.25, 12),
                              ("densenet121", 0.25, 12)]:  # one per family: the code paths
        x = torch.randn(2, 1, side, side)
        m = make_model(name, 5, width, input_shape=(1, side, side)).eval()
        with torch.no_grad():
            h = m.features(x)
            assert h.shape == (2, m.feature_dim)
            torch.testing.assert_close(m(x), m.classifier(h))
            assert torch.isfinite(h).all()


@pytest.mark.parametrize("name, tv_name, kw", [
    ("vgg11_bn", "vgg11_bn", {}), ("vgg13_bn", "vgg13_bn", {}), ("resnet34", "resnet34", {}),
    ("resnet50", "resnet50", {}), ("densenet121", "densenet121", {}),
    ("resnet50", "wide_resnet50_2", {"width": 2.0}),
    ("resnet18", "resnet18", {}),  # ncbench's own resnet18 with stem "imagenet" is torchvision's
])
def test_imagenet_stem_counts_equal_torchvisions_models(name, tv_name, kw):
    with torch.device("meta"):
        tv = getattr(torchvision.models, tv_name)(weights=None, num_classes=10)
    ours = meta_model(name, 10, kw.get("width", 1.0), input_shape=(3, 224, 224), stem="imagenet")
    assert count_parameters(ours) == count_parameters(tv)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in tv.parameters()]


def test_vgg_configs_are_torchvisions():
    assert VGG_CFGS["vgg11_bn"] == tuple(torchvision.models.vgg.cfgs["A"])
    assert VGG_CFGS["vgg13_bn"] == tuple(torchvision.models.vgg.cfgs["B"])


@pytest.mark.parametrize("name", ["densenet121", "vgg11_bn"])
def test_same_seed_same_weights_as_torchvision(name):
    """Built by torchvision's constructors: at stem "imagenet", width 1 and 3 channels the
    weights equal torchvision's model built from the same seed, tensor by tensor."""
    torch.manual_seed(1)
    ours = make_model(name, 10, input_shape=(3, 224, 224), stem="imagenet")
    torch.manual_seed(1)
    tv = getattr(torchvision.models, name)(weights=None, num_classes=10)
    a, b = list(ours.state_dict().values()), list(tv.state_dict().values())
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_width_knobs():
    r = meta_model("resnet50", 10, 2.0)
    assert r.net.layer1[0].conv1.out_channels == 128 and r.feature_dim == 2048
    v = meta_model("vgg11_bn", 10, 0.5)
    assert v.net.features[0].out_channels == 32 and v.feature_dim == 2048
    d = meta_model("densenet121", 10, 0.5)
    assert d.net.features.conv0.out_channels == 32 and d.feature_dim == 512
    assert d.net.features.denseblock1.denselayer1.conv2.out_channels == 16
    for name, width in [("resnet50", 0.5), ("vgg13_bn", 1.5), ("densenet121", 0.75)]:
        assert count_parameters(meta_model(name, 10, width)) == parameter_count(name, 10, width)


@pytest.mark.parametrize("name, kw, key, needle", [
    ("resnet34", {"width": 2.0}, "width", "has no width knob"),
    ("vgg11_bn", {"width": 100.0}, "width", "widths up to 64"),
    ("densenet121", {"stem": "tiny"}, "stem", "unknown stem 'tiny'"),
    ("vgg11_bn", {"input_shape": (1, 8, 8)}, "model", "at least 32×32"),
    ("resnet50", {"input_shape": (16,)}, "model", "use model 'mlp'"),
    ("vgg13_bn", {"dropout": 1.5}, "dropout", "dropout must be"),
    ("resnet34", {"stme": "cifar"}, "stme", "did you mean 'stem'"),
])
def test_bad_settings_are_parameter_errors(name, kw, key, needle):
    width = kw.pop("width", 1.0)
    with pytest.raises(ParameterError) as e:
        meta_model(name, 10, width, **kw)
    assert e.value.key == key and needle in e.value.reason
    if key in ("width", "stem") or "mlp" in needle:  # the arithmetic refuses these too
        with pytest.raises(ParameterError) as e2:
            parameter_count(name, 10, width, kw.get("input_shape"),
                            **{k: v for k, v in kw.items() if k != "input_shape"})
        assert e2.value.key == key


def test_budget_refuses_a_huge_width_by_arithmetic():
    with pytest.raises(ParameterError, match="over ncbench's budget"):
        check_size("vgg13_bn", 10, 32.0)


def test_every_builtin_and_the_example_models_pass_the_contract_check():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import my_models
    finally:
        sys.path.remove(str(EXAMPLE))
    shapes = {"cnn1d": (1, 40), "mlp": (1, 8, 8)}
    for name in model_names():
        shape = shapes.get(name, (1, 32, 32))
        m = meta_model(name, 10, input_shape=shape)
        assert check_contract(m, name, 10, shape) == m.feature_dim
    for factory in (my_models.make_small_cnn, my_models.make_mobilenet_v3_small):
        with torch.device("meta"):
            m = factory(10, 1.0, (1, 32, 32))
        assert check_contract(m, factory.__name__, 10, (1, 32, 32)) == m.feature_dim


# ---- user models that break the contract -----------------------------------------------------

BAD_MODELS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, k, d=6, n_in=64):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_in, d), nn.ReLU())
        self.classifier = nn.Linear(d, k)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.features(x))


def no_classifier(num_classes, width, input_shape):
    m = Net(num_classes)
    del m.classifier
    return m


def sequential_classifier(num_classes, width, input_shape):
    m = Net(num_classes)
    m.classifier = nn.Sequential(nn.Linear(6, num_classes))
    return m


def wrong_classes(num_classes, width, input_shape):
    return Net(num_classes + 1)


class NoFeatures(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.classifier = nn.Linear(64, k)

    def forward(self, x):
        return self.classifier(x.flatten(1))


def no_features(num_classes, width, input_shape):
    return NoFeatures(num_classes)


class Unpooled(Net):
    def features(self, x):
        return x.repeat(1, 6, 1, 1)  # [B, 6, 8, 8]: not pooled, not flat


def unpooled(num_classes, width, input_shape):
    return Unpooled(num_classes)


def wrong_feature_dim(num_classes, width, input_shape):
    m = Net(num_classes)
    m.feature_dim = 7
    return m


class Mismatch(Net):
    def features(self, x):
        return self.body(x)[:, :5]


def mismatch(num_classes, width, input_shape):
    return Mismatch(num_classes)


class Broken(Net):
    def features(self, x):
        return self.body(x.flatten(1)[:, :10])


def broken(num_classes, width, input_shape):
    return Broken(num_classes)


class UsesItem(Net):
    def features(self, x):
        scale = 1.0 + 0.0 * float(x.abs().sum().item())  # meta tensors cannot do this
        return self.body(x) * scale


def uses_item(num_classes, width, input_shape):
    return UsesItem(num_classes)
'''


def preflight(cfg) -> None:
    """The run command's pre-flight checks of the models (the plug-in folder, then the builds)."""
    specs = expand(cfg)
    check_runs(specs, config=cfg)
    check_datasets(specs, config=cfg)


@pytest.fixture()
def bad_project(tmp_path):
    (tmp_path / "badmodels.py").write_text(BAD_MODELS)

    def config(model: str) -> Path:
        path = tmp_path / "experiments.toml"
        path.write_text(f'[experiments.bad]\ndataset = "digits"\nmodel = "badmodels:{model}"\n'
                        f'loss = "ce"\nepochs = 1\ndevice = "cpu"\n')
        return path

    return config


@pytest.mark.parametrize("model, needle", [
    ("no_classifier", "it has no `classifier`"),
    ("sequential_classifier", "its `classifier` is a Sequential, not an nn.Linear(d, K)"),
    ("wrong_classes", "its classifier has 11 outputs, but there are K = 10 classes"),
    ("no_features", "it has no `features` method"),
    ("unpooled", "features(x) of a batch of shape [2, 1, 8, 8] gives [2, 6, 8, 8]; it must be "
                 "[B, d] = [2, 6]"),
    ("wrong_feature_dim", "its feature_dim is 7, but its classifier takes d = 6 inputs"),
    ("mismatch", "gives [2, 5]; it must be [B, d] = [2, 6]"),
    ("broken", "features(x) fails on a batch of shape [2, 1, 8, 8]: RuntimeError: "),
])
def test_contract_errors_name_experiment_key_and_reason(bad_project, model, needle):
    cfg = load_config(bad_project(model))
    with pytest.raises(ConfigError) as e:
        preflight(cfg)
    assert e.value.experiment == "bad" and e.value.key == "model"
    assert needle in str(e.value), str(e.value)
    assert f"badmodels:{model}" in str(e.value)


def test_a_model_meta_tensors_cannot_run_is_checked_for_real(bad_project):
    cfg = load_config(bad_project("uses_item"))
    preflight(cfg)  # no error: checked on the CPU instead


def test_cli_contract_error_is_one_line(bad_project, tmp_path):
    from _runkit import ncbench

    out = ncbench("run", "--config", str(bad_project("unpooled")), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "key 'model'" in out.stderr
    assert "it must be [B, d]" in out.stderr


# ---- ncbench models --------------------------------------------------------------------------


def test_cli_models_lists_the_torchvision_models_with_exact_counts():
    res = CliRunner().invoke(app, ["models", "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["model"]: r for r in json.loads(res.output)}
    for name in TV_MODELS:
        assert rows[name]["params"] == parameter_count(name, 10, 1.0, (3, 32, 32))
        assert rows[name]["feature_dim"] == DIM[name]
    res = CliRunner().invoke(app, ["models", "-f", "md", "--input-shape", "1,8,8"])
    assert res.exit_code == 0 and "| vgg11_bn | 1 | – | needs ≥ 32×32 images |" in res.output
    res = CliRunner().invoke(app, ["models", "-f", "md", "-w", "2"])
    assert res.exit_code == 0 and "| resnet34 | 2 | – | no width knob: width 1 only |" in res.output


# ---- end to end ------------------------------------------------------------------------------


@pytest.mark.slow  # ~18 s on a busy 2-core machine
def test_ncbench_run_grid_mixing_a_torchvision_model_and_a_user_model(tmp_path):
    """One experiments.toml grid over a torchvision model (densenet121, width 1/4, CIFAR stem)
    and the shipped user model (my_models:make_small_cnn), on the grey 28-px MNIST fixture of
    tests/test_tvdatasets.py, through `ncbench run` (pre-flight, local executor, workers) into
    DuckDB."""
    from _runkit import ncbench, query
    from test_tvdatasets import write_mnist

    root = tmp_path / "data"
    write_mnist(root, n=30, n_test=20)
    shutil.copy(EXAMPLE / "my_models.py", tmp_path / "my_models.py")
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(f"""[experiments.mix]
dataset = "mnist"
data_root = "{root}"
model = ["densenet121", "my_models:make_small_cnn"]
width = 0.25
loss = "ce"
epochs = 1
eval_every = 1
batch_size = 16
val_fraction = 0.0
device = "cpu"
""")
    out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 done" in out.stdout
    rows = query(tmp_path / "ncbench.duckdb", "SELECT model, status FROM runs ORDER BY model")
    assert rows == [("densenet121", "done"), ("my_models:make_small_cnn", "done")]
    finals = query(tmp_path / "ncbench.duckdb",
                   "SELECT model, final_nc1, final_test_acc FROM results ORDER BY model")
    assert len(finals) == 2 and all(r[1] is not None and r[2] is not None for r in finals), finals
