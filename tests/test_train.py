"""train_run: the paper's recipe, evaluation, checkpoints and exact resume (in-process, CPU)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from ncbench.checkpoint import checkpoint_path, load_checkpoint
from ncbench.rundir import BEST_FILE
from _runkit import one_thread, tiny_spec  # noqa: F401  (one_thread: a fixture)

from ncbench.schema import EPOCH_METRICS
from ncbench.train import ListSink, lr_milestones, train_epoch, train_run

TIMING = ("wall_seconds", "eval_seconds", "epoch_seconds")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


tiny = tiny_spec


def nan_loss(num_classes: int):
    """A user loss (named "test_train:nan_loss") that is NaN from the first batch."""
    return lambda logits, target: F.cross_entropy(logits, target) * float("nan")


def test_metrics_names_values_and_learning():
    sink = ListSink()
    status = train_run(tiny(epochs=6, eval_every=2, dataset="digits", per_class=30,
                            dataset_params={}), sink)
    assert status == "done"
    assert [e for e, _ in sink.evals] == [2, 4, 6]
    for _, m in sink.evals:
        assert set(m) == set(EPOCH_METRICS), set(EPOCH_METRICS) ^ set(m)
        assert all(math.isfinite(v) for v in m.values())
        for k in ("train_acc", "val_acc", "test_acc"):
            assert 0.0 <= m[k] <= 1.0
    loss = sink.metric("train_loss")
    assert loss[-1] < loss[0] < math.log(10)  # learns, and beats chance from the first evaluation
    assert sink.metric("nc1")[-1] < sink.metric("nc1")[0]  # within-class variability falls
    assert sink.metric("train_acc")[-1] > 0.9
    wall = sink.metric("wall_seconds")
    assert wall == sorted(wall)
    (started,) = sink.started
    assert started["device"] == "cpu" and started["resumed_from_epoch"] is None
    assert started["precision"] == "fp32"


def test_train_metrics_are_eval_mode_clean_pass_over_train_split(tmp_path):
    """train_loss/train_acc equal an independent eval-mode, no-augmentation float64 pass over
    the training split (validation holdout excluded) of the checkpointed model."""
    from ncbench.data import make_dataset
    from ncbench.models import make_model

    spec = tiny(epochs=1)
    sink = ListSink()
    assert train_run(spec, sink, run_dir=tmp_path) == "done"
    ds = make_dataset("gaussian", val_fraction=spec.val_fraction, data_seed=0, **spec.dataset_params)
    model = make_model("mlp", ds.num_classes, spec.width, input_shape=ds.input_shape)
    model.load_state_dict(load_checkpoint(checkpoint_path(tmp_path))["model"])
    model.eval()
    with torch.no_grad():
        logits = model((ds.train.x - ds.mean) / ds.std).double()
    y = ds.train.y
    m = sink.evals[-1][1]
    assert m["train_loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    assert m["train_acc"] == float((logits.argmax(1) == y).double().mean())


def test_lr_schedule_at_milestones():
    spec = tiny(epochs=7)
    assert lr_milestones(spec) == [3, 5]
    assert lr_milestones(tiny(epochs=800)) == [343, 571]
    sink = ListSink()
    train_run(spec, sink)
    lrs = sink.metric("lr")
    expected = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_grad_clipping_bounds_the_step():
    """One SGD step (no momentum, no weight decay) moves the parameters by lr · g · min(1, c/‖g‖)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3))
    model.features = lambda x: x  # not used by train_epoch
    x = torch.randn(16, 5) * 50
    y = torch.randint(0, 3, (16,))
    ref = copy.deepcopy(model)
    loss = F.cross_entropy(ref(x), y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    gnorm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    assert gnorm > 2  # the clip is active in this setting
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.0, weight_decay=0.0)
    out = train_epoch(model, torch.nn.CrossEntropyLoss(), opt, [(x, y)], grad_clip=2.0)
    assert float(out["grad_norm_max"]) == pytest.approx(gnorm, rel=1e-5)
    for p0, p1, g in zip(before, model.parameters(), grads):
        expected = p0 - 0.5 * g * (2.0 / gnorm)
        assert torch.allclose(p1.detach(), expected, atol=1e-6)
    # without clipping the step is the full gradient step
    model2 = copy.deepcopy(ref)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.5)
    train_epoch(model2, torch.nn.CrossEntropyLoss(), opt2, [(x, y)], grad_clip=None)
    for p0, p1, g in zip(ref.parameters(), model2.parameters(), grads):
        assert torch.allclose(p1.detach(), p0.detach() - 0.5 * g, atol=1e-5)


def test_nan_loss_diverges_and_is_reported(tmp_path):
    sink = ListSink()
    status = train_run(tiny(loss="test_train:nan_loss", epochs=5, eval_every=5), sink, run_dir=tmp_path)
    assert status == "diverged"
    assert len(sink.evals) == 1 and sink.evals[0][0] == 1  # evaluated at the epoch it happened
    assert math.isnan(sink.evals[0][1]["train_loss"])
    assert not checkpoint_path(tmp_path).exists()


def test_checkpoint_resume_is_bit_exact(tmp_path):
    """4 epochs straight == 2 epochs, interrupt, resume from the checkpoint, 2 more."""
    spec = tiny(epochs=4, eval_every=2)
    straight = ListSink()
    assert train_run(spec, straight, run_dir=tmp_path / "a") == "done"

    first = ListSink()
    stop_after_ckpt = lambda: any(e == 2 for e, _ in first.evals)  # noqa: E731
    assert train_run(spec, first, run_dir=tmp_path / "b", should_stop=stop_after_ckpt) == "interrupted"
    assert [e for e, _ in first.evals] == [2]
    ckpt = load_checkpoint(checkpoint_path(tmp_path / "b"))  # verified; weights_only=True inside
    assert ckpt["epoch"] == 2 and ckpt["best"]["epoch"] == 2 and ckpt["run_id"] == spec.run_id

    second = ListSink()
    assert train_run(spec, second, run_dir=tmp_path / "b") == "done"
    assert second.started[0]["resumed_from_epoch"] == 2
    assert [e for e, _ in second.evals] == [4]  # epoch 2 is not reported again
    a = {k: v for k, v in straight.evals[-1][1].items() if k not in TIMING}
    b = {k: v for k, v in second.evals[-1][1].items() if k not in TIMING}
    assert a == b  # bit for bit
    sa = load_checkpoint(checkpoint_path(tmp_path / "a"))["model"]
    sb = load_checkpoint(checkpoint_path(tmp_path / "b"))["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    best = json.loads((tmp_path / "b" / BEST_FILE).read_text())
    vals = {e: m["val_acc"] for e, m in straight.evals}
    assert best["val_acc"] == max(vals.values())
    assert best["epoch"] == min(e for e, v in vals.items() if v == best["val_acc"])


def test_should_stop_interrupts_before_any_checkpoint(tmp_path):
    sink = ListSink()
    assert train_run(tiny(), sink, run_dir=tmp_path, should_stop=lambda: True) == "interrupted"
    assert sink.evals == [] and not checkpoint_path(tmp_path).exists()
