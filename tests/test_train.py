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
    assert [e for e, _ in sink.evals] == [0, 2, 4, 6]  # epoch 0: the untrained network
    for e, m in sink.evals:
        expected = set(EPOCH_METRICS) - ({"epoch_seconds"} if e == 0 else set())
        assert set(m) == expected, expected ^ set(m)
        assert all(math.isfinite(v) for v in m.values())
        for k in ("train_acc", "val_acc", "test_acc"):
            assert 0.0 <= m[k] <= 1.0
    loss = sink.metric("train_loss")
    assert loss[-1] < loss[1] < loss[0]  # learns from the untrained network's loss on
    assert loss[1] < math.log(10)  # and beats chance from the first trained evaluation
    assert sink.metric("train_acc")[0] < 0.5  # untrained: near chance (10 classes)
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
    expected = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]  # epoch 0, then epochs 1..7
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
    # NaN from the first batch: the untrained network's loss is already NaN, so the run ends at
    # its epoch-0 evaluation, before any training step
    assert len(sink.evals) == 1 and sink.evals[0][0] == 0
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
    assert [e for e, _ in first.evals] == [0, 2]
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


def late_nan_loss(num_classes: int):
    """A user loss ("test_train:late_nan_loss"): cross-entropy, NaN from its 10th training call."""
    calls = {"n": 0}

    def loss(logits, target):
        if torch.is_grad_enabled():
            calls["n"] += 1
        value = F.cross_entropy(logits, target)
        return value * float("nan") if calls["n"] >= 10 else value
    return loss


def test_nan_after_training_starts_diverges_at_that_epoch(tmp_path):
    """Epoch 0 is finite; the epoch whose batches turn NaN (epoch 2: 5 batches per epoch) is
    evaluated once, with its NaNs, and ends the run."""
    sink = ListSink()
    status = train_run(tiny(loss="test_train:late_nan_loss", epochs=5, eval_every=5), sink,
                       run_dir=tmp_path)
    assert status == "diverged"
    assert [e for e, _ in sink.evals] == [0, 2]
    assert math.isfinite(sink.evals[0][1]["train_loss"])
    assert math.isnan(sink.evals[1][1]["train_loss"])


#: (inner loss, epoch) -> the targets of every training batch, in order (recording_loss below).
_SEEN_TARGETS: dict[str, list[list[int]]] = {}


def recording_loss(num_classes: int, inner: str = "ce"):
    """A user loss ("test_train:recording_loss"): the built-in `inner`, recording the targets of
    every training batch it is called on (so the data order of runs can be compared)."""
    from ncbench.losses import make_loss

    fn = make_loss(inner, num_classes)
    seen = _SEEN_TARGETS.setdefault(inner, [])

    def loss(logits, target):
        if torch.is_grad_enabled():
            seen.append(target.tolist())
        return fn(logits, target)
    return loss


def test_runs_with_one_seed_share_initial_weights_and_data_order():
    """The pairing the report's paired statistics rely on: whatever the loss, runs with the same
    seed start from the same weights (the epoch-0 evaluation, which depends on the weights and
    the data only, is identical bit for bit) and see the training batches in the same order."""
    from ncbench import names

    epoch0 = {}
    for loss in names.LOSSES:
        sink = ListSink()
        spec = tiny(loss="test_train:recording_loss", loss_params={"inner": loss}, epochs=2)
        assert train_run(spec, sink) == "done"
        epoch0[loss] = {k: v for k, v in sink.evals[0][1].items()
                        if k not in TIMING and "loss" not in k}
    first = epoch0[names.LOSSES[0]]
    assert first["train_acc"] < 1.0 and math.isfinite(first["nc1"])
    for loss in names.LOSSES[1:]:
        assert epoch0[loss] == first, loss  # same initial weights (accuracies, every NC metric)
        assert _SEEN_TARGETS[loss] == _SEEN_TARGETS[names.LOSSES[0]], loss  # same data order
    assert len(_SEEN_TARGETS["ce"]) == 2 * 5  # 2 epochs × 5 batches, all recorded
    other_seed = ListSink()
    train_run(tiny(seed=1, epochs=1), other_seed)
    assert other_seed.evals[0][1]["nc1"] != first["nc1"]  # the seed does change the weights
