"""ncbench.models: architectures (against torchvision's), the features/classifier contract, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

from ncbench.cli.app import app
from ncbench.errors import ParameterError, UnknownNameError, UsageError
from ncbench.models import count_parameters, make_model, model_names

ALL = ["cnn1d", "densenet121", "mlp", "resnet18", "resnet34", "resnet50", "vgg11_bn",
       "vgg13_bn", "wrn18", "wrn50"]


def meta_model(*args, **kw) -> nn.Module:
    with torch.device("meta"):
        return make_model(*args, **kw)


def body_shapes(model: nn.Module, skip=("conv1.", "fc.", "classifier.")) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(skip)}


def test_registry_names_and_unknown_name():
    assert model_names() == ALL
    with pytest.raises(UnknownNameError) as e:
        make_model("wrn5O", 10)
    msg = str(e.value)
    assert "wrn50" in msg and "did you mean" in msg and "mlp" in msg


@pytest.mark.parametrize("width", [0.25, 0.5, 1, 2])
def test_wrn50_features_are_2048_at_every_width(width):
    m = meta_model("wrn50", 10, width)
    assert m.feature_dim == 2048
    assert isinstance(m.classifier, nn.Linear)
    assert (m.classifier.in_features, m.classifier.out_features) == (2048, 10)
    assert m.classifier.bias is not None
    # width multiplies only the bottleneck's inner channels
    blk = m.layer1[0]
    assert blk.conv1.out_channels == int(64 * width) and blk.conv3.out_channels == 256
    assert m.layer4[-1].conv2.out_channels == int(512 * width)


def test_wrn50_width2_body_equals_torchvision_wide_resnet50_2():
    ours = meta_model("wrn50", 10, 2)
    with torch.device("meta"):
        ref = torchvision.models.wide_resnet50_2()
    assert body_shapes(ours) == body_shapes(ref)  # every block's every tensor, same shapes
    n_ref = count_parameters(ref) - ref.conv1.weight.numel() - sum(p.numel() for p in ref.fc.parameters())
    n_ours = (count_parameters(ours) - ours.conv1.weight.numel()
              - sum(p.numel() for p in ours.classifier.parameters()))
    assert n_ours == n_ref
    # width 1 is torchvision's resnet50 body
    with torch.device("meta"):
        r50 = torchvision.models.resnet50()
    assert body_shapes(meta_model("wrn50", 10, 1)) == body_shapes(r50)


def test_wrn50_param_counts_k10():
    # exact counts quoted in docs/models-data.md (tests/test_docs.py checks every count there)
    got = {w: count_parameters(meta_model("wrn50", 10, w)) for w in (0.25, 0.5, 1, 2)}
    assert got == {0.25: 5_880_074, 0.5: 10_345_674, 1: 23_520_842, 2: 66_847_050}


def test_cifar_stem():
    for name in ("wrn50", "wrn18", "resnet18"):
        m = meta_model(name, 10)
        assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and m.conv1.padding == (1, 1)
        assert isinstance(m.maxpool, nn.Identity)
        assert isinstance(m.avgpool, nn.AdaptiveAvgPool2d)


def test_wrn50_forward_32_and_84_px():
    torch.manual_seed(0)
    m = make_model("wrn50", 7, 0.25).eval()
    with torch.no_grad():
        for size, n in ((32, 2), (84, 1)):
            x = torch.randn(n, 3, size, size)
            h = m.features(x)
            assert h.shape == (n, 2048)
            out = m(x)
            assert out.shape == (n, 7)
            torch.testing.assert_close(out, m.classifier(h))


@pytest.mark.parametrize("width", [0.25, 0.5, 1, 2])
def test_wrn18_channels_scale_with_width(width):
    m = meta_model("wrn18", 100, width, input_shape=(3, 84, 84))
    assert m.feature_dim == int(round(512 * width))
    assert m.conv1.out_channels == int(round(64 * width))
    assert [m.layer1[0].conv1.out_channels, m.layer2[0].conv1.out_channels,
            m.layer3[0].conv1.out_channels, m.layer4[0].conv1.out_channels] == \
        [int(round(c * width)) for c in (64, 128, 256, 512)]
    assert m.classifier.out_features == 100


def test_resnet18_is_torchvision_resnet18_body_and_wrn18_at_width1():
    with torch.device("meta"):
        ref = torchvision.models.resnet18()
    assert body_shapes(meta_model("resnet18", 10)) == body_shapes(ref)
    assert body_shapes(meta_model("resnet18", 10)) == body_shapes(meta_model("wrn18", 10, 1.0))


def test_wrn18_forward_84px_and_gray_digits():
    torch.manual_seed(0)
    m = make_model("wrn18", 5, 0.25, input_shape=(3, 84, 84)).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 84, 84)).shape == (1, 5)
    g = make_model("resnet18", 10, 0.25, input_shape=(1, 8, 8)).eval()
    assert g.conv1.in_channels == 1
    with torch.no_grad():
        assert g.features(torch.randn(2, 1, 8, 8)).shape == (2, 128)


def test_in_channels_override():
    m = meta_model("wrn50", 10, 0.5, in_channels=1)
    assert m.conv1.in_channels == 1


def test_mlp_structure_and_features():
    torch.manual_seed(0)
    m = make_model("mlp", 10, 0.5, input_shape=(1, 8, 8), depth=2)
    assert m.in_features == 64 and m.hidden == 128 and m.feature_dim == 128 and m.depth == 2
    linears = [x for x in m.body if isinstance(x, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(64, 128), (128, 128)]
    assert sum(isinstance(x, nn.BatchNorm1d) for x in m.body) == 2
    x = torch.randn(6, 1, 8, 8)
    h = m.features(x)
    assert h.shape == (6, 128) and (h >= 0).all()  # post-ReLU
    torch.testing.assert_close(m(x), m.classifier(h))
    # vectors and images give the same input size
    assert make_model("mlp", 3, 1.0, input_shape=(32,)).in_features == 32
    assert make_model("mlp", 3, 1.0, input_shape=(3, 32, 32)).in_features == 3072
    assert make_model("mlp", 3, 2.0, input_shape=(32,)).hidden == 512
    assert make_model("mlp", 3, 0.3, input_shape=(32,)).hidden == round(256 * 0.3)


def test_non_integer_width_per_group_rounds():
    m = meta_model("wrn50", 10, 0.3)
    assert m.base_width == 19  # round(64·0.3)
    assert m.layer1[0].conv1.out_channels == 19 and m.layer2[0].conv1.out_channels == 38
    assert m.feature_dim == 2048


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "wide"])
def test_bad_width_is_parameter_error(bad):
    with pytest.raises(ParameterError) as e:
        make_model("wrn50", 10, bad)
    assert e.value.key == "width"


def test_width_too_small_for_one_channel():
    with pytest.raises(ParameterError, match="width"):
        make_model("wrn50", 10, 0.001)
    with pytest.raises(ParameterError, match="width"):
        make_model("mlp", 10, 0.001, input_shape=(4,))


def test_conv_model_on_vectors_is_parameter_error():
    with pytest.raises(ParameterError, match="mlp") as e:
        make_model("wrn18", 10, 1.0, input_shape=(64,))
    assert e.value.key == "model"


def test_bad_num_classes_and_shape():
    with pytest.raises(ParameterError):
        make_model("mlp", 0, input_shape=(4,))
    with pytest.raises(ParameterError):
        make_model("mlp", 3, input_shape=(3, 4, 5, 6))  # (C, L) = (3, 4) is a valid layout now


def test_model_by_import_path():
    m = make_model("ncbench.models:mlp", 4, 1.0, input_shape=(5,))
    assert m.classifier.out_features == 4 and m.in_features == 5


# ---- CLI ----------------------------------------------------------------------------------


def test_cli_models_table_lists_all():
    res = CliRunner().invoke(app, ["models", "--classes", "10"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for name in ALL:
        assert name in res.output
    assert "23,520,842" in res.output and "2048" in res.output


def test_cli_models_json_and_md():
    res = CliRunner().invoke(app, ["models", "-m", "wrn50", "-w", "0.25", "-w", "2", "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["width"], r["params"], r["feature_dim"]) for r in rows] == [(0.25, 5_880_074, 2048),
                                                                          (2.0, 66_847_050, 2048)]
    res = CliRunner().invoke(app, ["models", "--input-shape", "64", "-f", "md", "-k", "3"])
    assert res.exit_code == 0, res.output
    mlp_line = next(line for line in res.output.splitlines() if line.startswith("| mlp"))
    assert f"{count_parameters(make_model('mlp', 3, input_shape=(64,))):,}" in mlp_line
    assert "needs (C,H,W) input" in res.output


def test_cli_models_errors_exit_2_without_traceback():
    out = subprocess.run([sys.executable, "-m", "ncbench", "models", "--input-shape", "3,x"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "input-shape" in out.stderr and "Traceback" not in out.stderr
    res = CliRunner().invoke(app, ["models", "-m", "wrn5"])  # rendered by ncbench.cli.main
    assert isinstance(res.exception, UnknownNameError) and "did you mean 'wrn50'" in str(res.exception)


@pytest.mark.parametrize("args, option, needle", [
    (["--input-shape", "3,x"], "--input-shape", "C,H,W, C,L or D"),
    (["--format", "xml"], "--format", "unknown format 'xml'"),
    (["--classes", "0"], "--classes", "must be ≥ 1"),
])
def test_cli_models_bad_flags_are_usage_errors_naming_the_option(args, option, needle):
    res = CliRunner().invoke(app, ["models", *args])
    assert isinstance(res.exception, UsageError), res.exception
    assert res.exception.option == option and str(res.exception).startswith(f"{option}: ")
    assert needle in str(res.exception)


def test_cli_models_named_model_with_a_bad_width_is_its_parameter_error():
    res = CliRunner().invoke(app, ["models", "-m", "mlp", "-w", "0.001"])
    assert isinstance(res.exception, ParameterError) and res.exception.key == "width"
    assert "hidden units" in str(res.exception)


def test_imagenet_stem_option_is_torchvision_wide_resnet50_2_whole():
    ours = meta_model("wrn50", 1000, 2, stem="imagenet")
    with torch.device("meta"):
        ref = torchvision.models.wide_resnet50_2()
    assert body_shapes(ours, skip=("fc.", "classifier.")) == body_shapes(ref, skip=("fc.", "classifier."))
    assert count_parameters(ours) == count_parameters(ref)
    assert isinstance(ours.maxpool, nn.MaxPool2d) and ours.conv1.stride == (2, 2)
    m = make_model("wrn18", 5, 0.25, input_shape=(3, 84, 84), stem="imagenet").eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 84, 84)).shape == (1, 5)
    with pytest.raises(ParameterError, match="stem"):
        make_model("wrn18", 5, stem="tiny")


def test_unknown_model_keyword_is_parameter_error_with_suggestion():
    with pytest.raises(ParameterError, match="did you mean 'depth'") as e:
        make_model("mlp", 3, input_shape=(4,), dept=2)
    assert e.value.key == "dept"
