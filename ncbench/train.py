"""One training run, top to bottom: `train_run(spec, sink)` (the paper's §4 recipe).

Order of things (each phase is a block below, read in order):

1. device, threads, seeds (torch, numpy, python ← `spec.seed`);
2. data: `make_dataset` (train / val / test splits), device-resident batches
   (`ncbench.batches`): training batches shuffled and augmented from (seed, epoch) alone;
3. model (`make_model`), loss (`make_loss`), SGD (momentum, weight decay on *all* parameters),
   MultiStepLR at round(m·epochs) for m in `spec.lr_milestones` (default 3/7, 5/7), γ = 0.1,
   stepped once after every epoch; `ncbench.precision.setup_training` applies `precision`
   (autocast, CUDA only), `channels_last` and `compile`;
4. resume from the run's latest checkpoint that verifies — `checkpoint.pt`, else the previous
   one, else none: a fresh start (`ncbench.checkpoint.resume_checkpoint`; a damaged file is
   never resumed from, and never fails the run) — model, optimiser, scheduler, RNG states,
   best-validation record, elapsed wall time; then `sink.start(..., resume_note=...)` (what was
   wrong with the checkpoints passed over, one line, or None);
5. epoch 0 (a run that starts from scratch): evaluate the untrained network →
   `sink.eval(0, metrics)`, so every curve starts where training starts (no best.json, no
   checkpoint: epoch 0 is never the best-validation epoch; no `epoch_seconds`);
6. epochs E = first..epochs: train one epoch (gradient norm clipped at `grad_clip`), then at
   every `eval_every`-th epoch and at the last one: evaluate → `sink.eval(E, metrics)` → best.json
   → checkpoint. Between evaluations a checkpoint is also written when more than
   `CHECKPOINT_SECONDS` passed since the last one, so long evaluations intervals lose little work.

Definitions of what is measured at an evaluation of epoch E (E epochs completed; 0 = untrained):

- `train_loss`, `train_acc`: mean per-sample loss (the loss alone, no weight decay) and accuracy
  on the **training split** (the training set minus the validation holdout), **model in eval
  mode** (BatchNorm running statistics), **without augmentation** — the same single forward pass
  that gives the NC metrics. (The paper's "training accuracy": the network's accuracy on its
  training data, not the running average over an epoch of a changing, augmented model.)
- `val_acc`: accuracy on the validation holdout; `test_acc`, `test_loss` on the test split.
- `nc1`…`nc4`, `nc2_centered`, `nc3_centered` (and, unless `nc_extra = false`, the measures
  of `ncbench.nc_measures`): `ncbench.nc` on the training split's penultimate features (same
  pass); `test_nc1`… on the test split's.
- `lr`: the learning rate used during epoch E (at epoch 0: the initial one). `epoch_seconds`: wall time of epoch E's training
  (no evaluation); `eval_seconds`: wall time of this evaluation; `wall_seconds`: wall time of the
  run so far (summed over attempts: the time up to the checkpoint resumed from + this attempt).

Evaluation runs in float32 whatever `spec.precision` says, so NC metrics are not limited by
bf16/fp16 rounding of the features.

Stopping. A non-finite training loss (checked once per epoch, from the epoch's summed batch
losses, so there is no host sync per batch) or a non-finite evaluation loss ends the run with
status `diverged` (that epoch is evaluated and emitted, with its NaNs, when it was not logged yet).
`should_stop()` is polled before every batch; when it returns True the run returns
`interrupted` at once, without a new checkpoint: a rerun resumes from the last checkpoint (the
last evaluation, or the last time-based checkpoint) and redoes the epochs after it — their
evaluations were not logged, so nothing is logged twice.

Resuming is exact: data order and augmentation come from (seed, epoch), all RNG states are
restored, so on the CPU a run trained 2 + 2 epochs across a resume ends bit-for-bit equal to one
trained 4 epochs straight (tested).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ncbench.checkpoint import CheckpointDamaged, resume_checkpoint, rng_state, save_checkpoint, set_rng_state
from ncbench.lifecycle import DIVERGED, DONE, INTERRUPTED
from ncbench.precision import setup_training
from ncbench.rundir import BEST_FILE  # `<run_dir>/best.json`: {"epoch", "val_acc", "test_acc"}
from ncbench.runs import RunSpec

__all__ = ["train_run", "Sink", "ListSink", "resolve_device", "lr_milestones", "evaluate", "load_dataset",
           "train_epoch", "CHECKPOINT_SECONDS", "EVAL_BATCH_SIZE"]

#: A checkpoint is also written after an epoch that ends more than this many seconds after the
#: last checkpoint (bounds the work lost to an interruption between evaluations).
CHECKPOINT_SECONDS = 600.0
#: Batch size of the evaluation passes (no gradients: larger than the training batch is fine).
EVAL_BATCH_SIZE = 512
#: Keep evaluation features on the device (one forward pass) up to this many bytes; beyond it the
#: NC statistics take a second forward pass instead (see `ncbench.nc.CollapseStats`).
KEEP_FEATURES_BYTES = 2 * 1024**3


class Sink(Protocol):
    """Where a run reports to (the worker's implementation writes events.jsonl + heartbeat)."""

    def start(self, *, device: str, resumed_from_epoch: int | None, **info: Any) -> None:
        """Setup done (data, model, checkpoint loaded); training starts after this. `info`
        holds `resume_note` (damaged checkpoints passed over, or None) and the precision's."""

    def eval(self, epoch: int, metrics: dict[str, float]) -> None:
        """The evaluation after `epoch` (1-based count of completed epochs)."""

    def progress(self, epoch: int, batch: int, batches: int) -> None:
        """Liveness: `epoch` epochs completed, `batch` of `batches` done in the current one."""


class ListSink:
    """A Sink that keeps everything in memory (tests, notebooks): `started` (list of dicts),
    `evals` (list of (epoch, metrics)), `last_progress` ((epoch, batch, batches) or None)."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.evals: list[tuple[int, dict[str, float]]] = []
        self.last_progress: tuple[int, int, int] | None = None

    def start(self, **info: Any) -> None:
        self.started.append(info)

    def eval(self, epoch: int, metrics: dict[str, float]) -> None:
        self.evals.append((epoch, dict(metrics)))

    def progress(self, epoch: int, batch: int, batches: int) -> None:
        self.last_progress = (epoch, batch, batches)

    def metric(self, name: str) -> list[float]:
        """The values of metric `name` over the evaluations, in order."""
        return [m[name] for _, m in self.evals]


# ----------------------------------------------------------------------------------------------
# small helpers (device, schedule)
# ----------------------------------------------------------------------------------------------


def resolve_device(requested: str = "auto") -> torch.device:
    """`auto` → `cuda` if a CUDA device is visible (CUDA_VISIBLE_DEVICES is respected by torch),
    else `cpu`; anything else as given (`cpu`, `cuda`, `cuda:1`, `mps`)."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def lr_milestones(spec: RunSpec) -> list[int]:
    """Epochs after which the learning rate is multiplied by `lr_gamma`: round(m · epochs) for
    each fraction m of `spec.lr_milestones` (3/7 and 5/7 by default; never a tie at .5)."""
    return [int(round(m * spec.epochs)) for m in spec.lr_milestones]


def _set_threads() -> None:
    """CPU threads: `NCBENCH_THREADS` if set (the local executor sets cores // workers)."""
    n = os.environ.get("NCBENCH_THREADS")
    if n:
        torch.set_num_threads(max(1, int(n)))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# one epoch of training, one evaluation pass
# ----------------------------------------------------------------------------------------------


def train_epoch(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, batches,
                *, grad_clip: float | None, autocast: Callable[[], Any] | None = None, scaler=None,
                should_stop: Callable[[], bool] | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train `model` for one pass over `batches` (an iterable of (x, y) on the device).

    Returns {"loss_sum": tensor (sum over batches of the batch-mean loss, on the device: NaN/inf
    if any batch was), "batches": n done, "grad_norm_max": tensor (largest pre-clip gradient
    norm, 0 if not clipping), "interrupted": bool (should_stop() fired before a batch)}.
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    grad_max = torch.zeros((), device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    n_batches = len(batches)
    done = 0
    for i, (x, y) in enumerate(batches):
        if should_stop is not None and should_stop():
            return {"loss_sum": loss_sum, "batches": done, "grad_norm_max": grad_max, "interrupted": True}
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = model(x)
        # the loss in float32 whatever the autocast dtype (mse's (z_k − β)² in bf16 would be
        # quantised to 1/16 near β = 15); .float() is a no-op on float32 logits
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
            grad_max = torch.maximum(grad_max, norm.detach().float())
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        loss_sum += loss.detach().float()
        done += 1
        if on_batch is not None:
            on_batch(i + 1, n_batches)
    return {"loss_sum": loss_sum, "batches": done, "grad_norm_max": grad_max, "interrupted": False}


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, batches, num_classes: int, *,
             collapse: bool = True, keep_features: bool = True, extra: bool = True) -> dict[str, float]:
    """One eval-mode forward pass over `batches` (in order, no augmentation): {"loss" (mean
    per-sample loss), "acc"} and, if `collapse`, the NC metrics of the penultimate features
    (`ncbench.nc.CollapseStats`: features kept on the device when `keep_features`, else a
    second forward pass for nc4; `extra`: also the measures of `ncbench.nc_measures`). Float32
    (no autocast)."""
    from ncbench.nc import CollapseStats

    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    stats = None
    per_sample = getattr(loss_fn, "per_sample", None)
    for x, y in batches:
        h = model.features(x)
        logits = model.classifier(h)
        if per_sample is not None:
            loss_sum += per_sample(logits, y).double().sum()
        else:
            loss_sum += loss_fn(logits, y).double() * y.shape[0]
        correct += (logits.argmax(1) == y).sum()
        n += int(y.shape[0])
        if collapse:
            if stats is None:
                stats = CollapseStats(num_classes, int(h.shape[1]), device=device,
                                      keep_features=keep_features, extra=extra)
            stats.update(h, y, logits)
    out = {"loss": float(loss_sum) / max(n, 1), "acc": int(correct) / max(n, 1)}
    if collapse and stats is not None:
        if stats.needs_second_pass:
            for x, y in batches:
                h = model.features(x)
                stats.update_nc4(h, y, model.classifier(h))
        out.update(stats.compute(model.classifier.weight, model.classifier.bias))
    return out


def load_dataset(spec: RunSpec):
    """The run's `SplitDataset` (`ncbench.data.make_dataset` with the spec's data keys)."""
    from ncbench.data import make_dataset

    return make_dataset(spec.dataset, root=spec.data_root, download=spec.download,
                        val_fraction=spec.val_fraction, data_seed=spec.data_seed,
                        per_class=spec.per_class, **spec.dataset_params)


def _check_fits(state: dict[str, Any], model: nn.Module) -> None:
    """Raise `CheckpointDamaged` unless `state` has what a resume loads and its model tensors
    have the model's names and shapes (checked before anything is loaded into the model)."""
    missing = [k for k in ("model", "optimizer", "scheduler", "rng") if not isinstance(state.get(k), dict)]
    if missing:
        raise CheckpointDamaged(f"it lacks {', '.join(missing)}")
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state["model"].items()}
    if want != have:
        bad = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        raise CheckpointDamaged(f"its model does not fit this run's ({', '.join(bad[:3])}"
                                f"{', …' if len(bad) > 3 else ''})")


def _atomic_json(path: Path, obj: dict) -> None:
    from ncbench.events import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj) + "\n").encode(), sync_dir=True)


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def train_run(spec: RunSpec, sink: Sink, run_dir: str | os.PathLike | None = None,
              should_stop: Callable[[], bool] | None = None, *, dataset=None) -> str:
    """Train the run `spec`, reporting to `sink`; returns its status (`ncbench.lifecycle`):
    DONE, DIVERGED or INTERRUPTED (exceptions propagate: the worker turns them into FAILED).

    `run_dir`: where checkpoint.pt and best.json live (None: no checkpoints, no resume).
    `should_stop`: polled before every batch; True → return INTERRUPTED (see module doc).
    `dataset`: the run's `SplitDataset` if already loaded (a standby worker loads it while it
    waits for a slot), else `make_dataset` loads it here.
    """
    from ncbench.batches import make_batches
    from ncbench.losses import make_loss
    from ncbench.models import make_model

    t_run = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    stop = should_stop or (lambda: False)

    # --- 1. device, threads, seeds -----------------------------------------------------------
    from ncbench.registry import add_plugin_dir

    add_plugin_dir(spec.plugin_dir)  # plug-ins beside the experiments.toml, from any cwd/node
    device = resolve_device(spec.device)
    _set_threads()
    _seed_everything(spec.seed)

    # --- 2. data -----------------------------------------------------------------------------
    ds = dataset if dataset is not None else load_dataset(spec)
    K = ds.num_classes

    # --- 3. model, loss, optimiser, schedule -------------------------------------------------
    model = make_model(spec.model, K, spec.width, input_shape=ds.input_shape, **spec.model_params)
    model.to(device)
    # precision (autocast on CUDA), channels_last, torch.compile: see ncbench.precision
    setup = setup_training(model, device, precision=spec.precision,
                           channels_last=spec.channels_last, compile=spec.compile)
    loss_fn = make_loss(spec.loss, K, **spec.loss_params).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                                weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, lr_milestones(spec), gamma=spec.lr_gamma)
    scaler = setup.scaler
    train_batches = make_batches(ds, "train", spec.batch_size, device, train=True, seed=spec.seed,
                                 channels_last=setup.channels_last)
    eval_bs = max(EVAL_BATCH_SIZE, spec.batch_size)
    eval_sets = {name: make_batches(ds, name, eval_bs, device, train=False,
                                    channels_last=setup.channels_last)
                 for name in ("train", "val", "test") if len(ds.split(name)) > 0}
    # Features of a split kept on the device for the NC statistics (one pass) if they fit.
    feat_dim = int(getattr(model, "feature_dim", 0) or 0)
    keep = feat_dim == 0 or len(ds.train) * feat_dim * 4 <= KEEP_FEATURES_BYTES

    # --- 4. resume -----------------------------------------------------------------------------
    first_epoch, elapsed_before, best = 1, 0.0, None
    # the latest checkpoint that verifies, else the previous one, else none (ncbench.checkpoint);
    # `resume_note` says what was wrong with the ones passed over (None: nothing was)
    ckpt, resume_note = None, None
    if run_dir is not None:
        found = resume_checkpoint(run_dir, run_id=spec.run_id, max_epoch=spec.epochs,
                                  check=lambda state: _check_fits(state, model))
        ckpt, resume_note = found.state, found.note
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        first_epoch = int(ckpt["epoch"]) + 1
        elapsed_before = float(ckpt.get("wall_seconds", 0.0))
        best = ckpt.get("best")
        train_batches.set_epoch(first_epoch - 1)
        del ckpt
    resumed_from = first_epoch - 1 if first_epoch > 1 else None
    sink.start(device=str(device), resumed_from_epoch=resumed_from, resume_note=resume_note,
               **setup.info())
    last_ckpt_time = time.perf_counter()

    def save(epoch: int) -> None:
        nonlocal last_ckpt_time
        if run_dir is None:
            return
        save_checkpoint(run_dir, {
            "run_id": spec.run_id, "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(), "best": best,
            "wall_seconds": elapsed_before + (time.perf_counter() - t_run),
        })
        last_ckpt_time = time.perf_counter()

    def measure(lr: float, epoch_seconds: float | None) -> dict[str, float]:
        """Every metric of one evaluation (train + test NC metrics, accuracies, timings); `lr`:
        the rate the epoch trained with (at epoch 0 the initial one)."""
        t1 = time.perf_counter()
        metrics: dict[str, float] = {}
        for split, prefix in (("train", ""), ("test", "test_")):
            if split not in eval_sets:
                continue
            r = evaluate(model, loss_fn, eval_sets[split], K, keep_features=keep, extra=spec.nc_extra)
            if split == "train":
                metrics["train_loss"], metrics["train_acc"] = r.pop("loss"), r.pop("acc")
            else:
                metrics["test_loss"], metrics["test_acc"] = r.pop("loss"), r.pop("acc")
            metrics.update({prefix + k: v for k, v in r.items()})
        if "val" in eval_sets:
            metrics["val_acc"] = evaluate(model, loss_fn, eval_sets["val"], K, collapse=False)["acc"]
        metrics["lr"] = lr
        if epoch_seconds is not None:  # no training epoch before the epoch-0 evaluation
            metrics["epoch_seconds"] = epoch_seconds
        metrics["eval_seconds"] = time.perf_counter() - t1
        metrics["wall_seconds"] = elapsed_before + (time.perf_counter() - t_run)
        return metrics

    # --- 5. epoch 0: the untrained network, so every curve starts where training starts ------
    if first_epoch == 1:
        if stop():
            return INTERRUPTED
        metrics = measure(optimizer.param_groups[0]["lr"], None)
        sink.eval(0, metrics)
        if not math.isfinite(metrics.get("train_loss", 0.0)):
            return DIVERGED

    # --- 6. epochs → train → evaluate → emit → checkpoint ----------------------------------------
    for epoch in range(first_epoch, spec.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        stats = train_epoch(setup.train_model, loss_fn, optimizer, train_batches,
                            grad_clip=spec.grad_clip, autocast=setup.precision.autocast,
                            scaler=scaler, should_stop=stop,
                            on_batch=lambda b, nb, e=epoch: sink.progress(e - 1, b, nb))
        if stats["interrupted"]:
            return INTERRUPTED
        scheduler.step()
        diverged = not math.isfinite(float(stats["loss_sum"]))  # (waits for the device)
        epoch_seconds = time.perf_counter() - t0
        sink.progress(epoch, 0, len(train_batches))

        if diverged or epoch % spec.eval_every == 0 or epoch == spec.epochs:
            metrics = measure(lr, epoch_seconds)
            if not diverged and not math.isfinite(metrics.get("train_loss", 0.0)):
                diverged = True
            sink.eval(epoch, metrics)
            if diverged:
                return DIVERGED
            val = metrics.get("val_acc")
            if val is not None and (best is None or val > best["val_acc"]):
                best = {"epoch": epoch, "val_acc": val, "test_acc": metrics.get("test_acc")}
                if run_dir is not None:
                    _atomic_json(run_dir / BEST_FILE, best)
            save(epoch)
        elif time.perf_counter() - last_ckpt_time > CHECKPOINT_SECONDS:
            save(epoch)
    return DONE
