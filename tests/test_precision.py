"""precision / channels_last / compile (ncbench.precision) and the one-pass evaluation (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from ncbench.batches import DeviceBatches
from ncbench.config import expand, load_config
from ncbench.errors import ConfigError
from ncbench.models import make_model
from ncbench.precision import (
    CompileFallback, Precision, compile_model, resolve_precision, setup_training, uses_convolutions,
)
from _runkit import DIGITS_TOML as BASE, one_thread, tiny_spec  # noqa: F401  (one_thread: a fixture)

from ncbench.runs import RunSpec
from ncbench.train import ListSink, evaluate, train_epoch, train_run

TIMING = ("wall_seconds", "eval_seconds", "epoch_seconds")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny(**kw) -> RunSpec:
    """The shared tiny run, 2 epochs by default here."""
    return tiny_spec(**{"epochs": 2, **kw})


# -- config keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("line,key,fragment", [
    ('precision = "fp8"\n', "precision", "expected one of fp32, bf16, fp16, got 'fp8'"),
    ("precision = 16\n", "precision", "expected one of"),
    ('channels_last = "yes"\n', "channels_last", "expected true or false"),
    ("channels_last = [true, false]\n", "channels_last", "cannot sweep"),
    ('compile = "true"\n', "compile", "expected true or false"),
])
def test_bad_values_are_config_errors_naming_the_key(tmp_path, line, key, fragment):
    path = tmp_path / "exp.toml"
    path.write_text(BASE + line)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key and info.value.experiment == "a"
    assert fragment in info.value.reason
    assert info.value.line == 7


def test_keys_expand_into_the_spec_and_only_precision_changes_the_run_id(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(BASE)
    (plain,) = expand(load_config(path))
    assert (plain.precision, plain.channels_last, plain.compile) == ("fp32", True, False)
    path.write_text(BASE + 'precision = ["fp32", "bf16"]\nchannels_last = false\ncompile = true\n')
    fp32, bf16 = expand(load_config(path))
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert fp32.channels_last is False and fp32.compile is True
    assert fp32.run_id == plain.run_id          # layout and compile: placement, not identity
    assert bf16.run_id != plain.run_id          # precision changes what is computed
    assert RunSpec.from_json(fp32.to_json()) == fp32


# -- precision -------------------------------------------------------------------------------------


def test_resolve_precision_off_cuda_is_fp32_with_a_note():
    assert resolve_precision("fp32", "cpu") == Precision("fp32", "fp32", "cpu")
    for req in ("bf16", "fp16"):
        p = resolve_precision(req, "cpu")
        assert (p.requested, p.precision, p.dtype) == (req, "fp32", None)
        assert "CUDA only" in p.note and p.grad_scaler() is None
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", "cpu")


def test_autocast_context_casts_matmuls_only_when_enabled():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with Precision("fp32", "fp32", "cpu").autocast():
        assert (a @ b).dtype == torch.float32
    with Precision("bf16", "bf16", "cpu").autocast():  # the CUDA path's mechanism, on the CPU
        assert (a @ b).dtype == torch.bfloat16


def test_bf16_request_on_cpu_trains_fp32_and_records_it(capfd):
    ref, low = ListSink(), ListSink()
    assert train_run(tiny(), ref) == "done"
    assert train_run(tiny(precision="bf16"), low) == "done"
    started = low.started[0]
    assert started["precision"] == "fp32" and started["precision_requested"] == "bf16"
    assert ref.started[0]["precision"] == ref.started[0]["precision_requested"] == "fp32"
    assert started["channels_last"] is False and started["compile"] is False  # mlp, CPU
    assert "precision 'bf16' applies on CUDA only" in capfd.readouterr().err
    # fp32 on the CPU whatever was asked: the very same numbers as the fp32 run
    for (e1, m1), (e2, m2) in zip(ref.evals, low.evals, strict=True):
        assert e1 == e2
        assert {k: v for k, v in m1.items() if k not in TIMING} == \
               {k: v for k, v in m2.items() if k not in TIMING}


# -- channels_last ---------------------------------------------------------------------------------


def test_channels_last_model_and_batches_give_the_same_logits():
    torch.manual_seed(0)
    model = make_model("resnet18", 5, 0.125).eval()
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    y = torch.arange(6) % 5
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    xb, _ = next(iter(DeviceBatches(x, y, 6, shuffle=False, mean=mean, std=std)))
    xc, _ = next(iter(DeviceBatches(x, y, 6, shuffle=False, mean=mean, std=std, channels_last=True)))
    assert xb.is_contiguous() and xc.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(xb)
        model.to(memory_format=torch.channels_last)
        assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        out = model(xc)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_channels_last_applies_to_convnets_only_and_can_be_turned_off():
    conv, mlp = make_model("resnet18", 3, 0.125), make_model("mlp", 3, 0.125, input_shape=(8,))
    assert uses_convolutions(conv) and not uses_convolutions(mlp)
    assert setup_training(mlp, "cpu", channels_last=True).channels_last is False
    off = setup_training(conv, "cpu", channels_last=False)
    assert off.channels_last is False and off.train_model is conv
    assert conv.conv1.weight.is_contiguous()
    on = setup_training(conv, "cpu", channels_last=True)
    assert on.channels_last is True and on.info()["channels_last"] is True
    assert conv.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.conv1.weight.is_contiguous()  # converted in place


def test_start_info_records_the_tf32_switches_on_cuda(monkeypatch):
    """What "fp32" means on a GPU depends on PyTorch's TF32 switches: a CUDA run records them."""
    from ncbench.precision import TrainSetup

    model = torch.nn.Linear(2, 2)
    cpu = TrainSetup(Precision("fp32", "fp32", "cpu"), False, False, model).info()
    assert "tf32_conv" not in cpu and "tf32_matmul" not in cpu
    for conv, matmul in ((True, False), (False, True)):
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", conv)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", matmul)
        info = TrainSetup(Precision("fp32", "fp32", "cuda"), True, False, model).info()
        assert (info["tf32_conv"], info["tf32_matmul"], info["precision"]) == (conv, matmul, "fp32")


def test_resnet_run_trains_channels_last_by_default_and_records_it():
    """digits are [1, 8, 8] images: a resnet run is NHWC unless channels_last = false, with the
    same numbers up to float rounding."""
    spec = tiny(model="resnet18", width=0.125, epochs=1, dataset="digits", per_class=6,
                batch_size=16, dataset_params={})
    nhwc, nchw = ListSink(), ListSink()
    assert train_run(spec, nhwc) == "done"
    assert train_run(spec.replace(channels_last=False), nchw) == "done"
    assert nhwc.started[0]["channels_last"] is True and nchw.started[0]["channels_last"] is False
    a, b = nhwc.evals[-1][1], nchw.evals[-1][1]
    for k in ("train_loss", "test_loss", "nc1"):
        assert math.isclose(a[k], b[k], rel_tol=1e-3), (k, a[k], b[k])


# -- compile ----------------------------------------------------------------------------------------


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler here\nsecond line")


def test_compile_failure_falls_back_to_eager_with_one_message(capfd):
    torch.manual_seed(0)
    model = make_model("mlp", 4, 0.125, input_shape=(8,))
    wrapped = compile_model(model, backend=_failing_backend)
    assert isinstance(wrapped, CompileFallback)
    assert list(wrapped.parameters()) == list(model.parameters())
    assert wrapped.state_dict().keys() == {"model." + k for k in model.state_dict()}
    x = torch.randn(16, 8)
    model.eval()
    ref = model(x)
    out = wrapped(x)
    torch.testing.assert_close(out, ref)
    assert wrapped.failed is not None and "no C++ compiler here" in wrapped.failed
    assert "second line" not in wrapped.failed and wrapped.calls_ok == 0
    err = capfd.readouterr().err
    assert err.count("torch.compile failed") == 1 and "continues without compile" in err
    wrapped(x)  # no second attempt, no second message
    assert "torch.compile failed" not in capfd.readouterr().err


def test_compiled_training_steps_like_eager():
    """A real dynamo trace (aot_eager backend: no code generation, so fast) trains the same."""
    torch.manual_seed(0)
    x, y = torch.randn(48, 8), torch.randint(0, 4, (48,))
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 48, 16)]
    results = []
    for backend in (None, "aot_eager"):
        torch.manual_seed(1)
        model = make_model("mlp", 4, 0.125, input_shape=(8,))
        s = setup_training(model, "cpu", compile=backend is not None, compile_backend=backend)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        r = train_epoch(s.train_model, torch.nn.CrossEntropyLoss(), opt, batches, grad_clip=2.0,
                        autocast=s.precision.autocast)
        results.append((float(r["loss_sum"]), [p.detach().clone() for p in model.parameters()]))
        if backend is not None:
            assert s.compile and s.compile_failed is None and s.train_model.calls_ok == 3
    (l0, p0), (l1, p1) = results
    assert math.isclose(l0, l1, rel_tol=1e-5)
    for a, b in zip(p0, p1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_train_run_with_compile_records_it(monkeypatch):
    monkeypatch.setenv("NCBENCH_COMPILE_BACKEND", "aot_eager")
    ref, comp = ListSink(), ListSink()
    assert train_run(tiny(epochs=1), ref) == "done"
    assert train_run(tiny(epochs=1, compile=True), comp) == "done"
    assert comp.started[0]["compile"] is True
    a, b = ref.evals[-1][1], comp.evals[-1][1]
    assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-4)


# -- evaluation: one pass per split ------------------------------------------------------------------


def test_evaluation_is_one_forward_pass_giving_loss_accuracy_and_nc():
    torch.manual_seed(0)
    model = make_model("mlp", 3, 0.125, input_shape=(6,)).eval()
    x = torch.randn(90, 6)
    y = torch.arange(90) % 3
    seen = []
    model.classifier.register_forward_hook(lambda m, i, o: seen.append(int(o.shape[0])))
    features_calls = []
    model.body.register_forward_hook(lambda m, i, o: features_calls.append(int(o.shape[0])))
    batches = DeviceBatches(x, y, 32, shuffle=False)
    out = evaluate(model, torch.nn.CrossEntropyLoss(), batches, 3, keep_features=True)
    assert sum(seen) == sum(features_calls) == 90  # every sample through the network once
    assert {"loss", "acc", "nc1", "nc2", "nc3", "nc4"} <= set(out)
    with torch.no_grad():  # and the numbers are those of that pass (float64 reference)
        logits = model(x).double()
    assert math.isclose(out["loss"], float(torch.nn.functional.cross_entropy(logits, y)), rel_tol=1e-6)
    assert out["acc"] == float((logits.argmax(1) == y).double().mean())


def test_worker_log_line_reports_eval_cost_as_fraction_of_an_epoch():
    from ncbench.worker import eval_line

    line = eval_line(5, {"train_acc": 0.9125, "test_acc": 0.87, "nc1": 0.1234,
                         "epoch_seconds": 40.0, "eval_seconds": 6.0})
    assert line.startswith("ncbench worker: epoch 5: ")
    assert "train_acc 0.9125" in line and "nc1 0.1234" in line
    assert line.endswith("| epoch 40 s, eval 6 s = 0.15 epoch")
    assert "epoch" not in eval_line(1, {"train_acc": 0.5}).split(":", 2)[2]
