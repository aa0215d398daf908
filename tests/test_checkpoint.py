"""Checkpoints that survive damage and cannot be silently wrong (issues #15, #17).

A checkpoint carries its run id, epoch and the SHA-256 of its payload; the previous checkpoint is
kept beside it. A damaged one (truncated, garbage, flipped bytes, another run's, an impossible
epoch) is moved aside and the run resumes from the previous one, else starts afresh — and says so
(`resume_note` of the start event, worker.log). Resume stays bit-exact on the CPU.
"""

from __future__ import annotations

import random
import shutil

import pytest
import torch
from _runkit import of_type, one_thread, run_dirs, tiny_spec  # noqa: F401  (one_thread: a fixture)

from ncbench.checkpoint import checkpoint_path, load_checkpoint
from ncbench.rundir import (
    CHECKPOINT_DAMAGED_FILE, CHECKPOINT_FILE, CHECKPOINT_PREV_DAMAGED_FILE, CHECKPOINT_PREV_FILE,
)
from ncbench.train import ListSink, train_run

TIMING = ("wall_seconds", "eval_seconds", "epoch_seconds")
SPEC = dict(epochs=4, eval_every=1)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run: {epoch: metrics} and its final model state."""
    import torch as _torch

    before = _torch.get_num_threads()
    _torch.set_num_threads(1)
    try:
        d = tmp_path_factory.mktemp("straight")
        sink = ListSink()
        assert train_run(tiny_spec(**SPEC), sink, run_dir=d) == "done"
        return {e: _strip(m) for e, m in sink.evals}, load_checkpoint(checkpoint_path(d))["model"]
    finally:
        _torch.set_num_threads(before)


def interrupted_at(run_dir, epoch: int, **kw) -> None:
    """Train the tiny run into `run_dir` and stop it right after the evaluation (and checkpoint)
    of `epoch`: with an evaluation every epoch, checkpoint.pt is epoch `epoch`'s, the one before
    epoch − 1's."""
    sink = ListSink()
    stop = lambda: any(e == epoch for e, _ in sink.evals)  # noqa: E731
    assert train_run(tiny_spec(**SPEC, **kw), sink, run_dir=run_dir, should_stop=stop) == "interrupted"


def resume(run_dir) -> ListSink:
    sink = ListSink()
    assert train_run(tiny_spec(**SPEC), sink, run_dir=run_dir) == "done"
    return sink


# -- ways to damage a file ---------------------------------------------------------------------


def truncate(path, other=None):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage_4k(path, other=None):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2 - 2048
    data[mid: mid + 4096] = random.Random(0).randbytes(4096)
    path.write_bytes(bytes(data))


def flip_16_weight_bytes(path, other=None):
    """Flip 16 bytes inside the raw data of the model's largest weight (the zip archive and the
    pickle stay intact: only a checksum can tell)."""
    state = load_checkpoint(path)["model"]
    weight = max(state.values(), key=lambda t: t.numel())
    raw = weight.contiguous().numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(raw)
    assert at >= 0
    at += len(raw) // 2
    data[at: at + 16] = bytes(b ^ 0xFF for b in data[at: at + 16])
    path.write_bytes(bytes(data))


def empty(path, other=None):
    path.write_bytes(b"")


def other_runs(path, other):
    shutil.copyfile(checkpoint_path(other), path)


DAMAGES = [truncate, garbage_4k, flip_16_weight_bytes, empty, other_runs]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_damaged_checkpoint_resumes_from_previous_with_the_same_metrics(tmp_path, damage, straight):
    """(a, c, d, e) Damage of any kind to checkpoint.pt (epoch 3): the run resumes from
    checkpoint.prev.pt (epoch 2), ends done, and its metrics and weights equal the uninterrupted
    run's bit for bit; the damaged file is kept aside and the start says what happened."""
    evals, weights = straight
    run = tmp_path / "run"
    interrupted_at(run, 3)
    other = None
    if damage is other_runs:
        other = tmp_path / "other"
        interrupted_at(other, 3, seed=1)  # another run (another run id), same shapes
    damage(run / CHECKPOINT_FILE, other)

    sink = resume(run)
    (started,) = sink.started
    assert started["resumed_from_epoch"] == 2  # not 3 (silently wrong), not None (work lost)
    note = started["resume_note"]
    assert CHECKPOINT_FILE in note and "damaged" in note and CHECKPOINT_PREV_FILE in note, note
    if damage is flip_16_weight_bytes or damage is garbage_4k:
        assert "checksum" in note, note
    if damage is other_runs:
        assert "run id" in note and tiny_spec(**SPEC, seed=1).run_id in note, note
    assert [e for e, _ in sink.evals] == [3, 4]
    assert {e: _strip(m) for e, m in sink.evals} == {e: evals[e] for e in (3, 4)}  # bit for bit
    final = load_checkpoint(checkpoint_path(run))["model"]
    assert all(torch.equal(final[k], weights[k]) for k in weights)
    assert (run / CHECKPOINT_DAMAGED_FILE).exists()


def test_both_damaged_starts_afresh_and_ends_done(tmp_path, straight):
    """(b) checkpoint.pt truncated and checkpoint.prev.pt garbage: a fresh start (not `failed`,
    not `diverged`), bit-identical to the uninterrupted run."""
    evals, _ = straight
    run = tmp_path / "run"
    interrupted_at(run, 3)
    truncate(run / CHECKPOINT_FILE)
    garbage_4k(run / CHECKPOINT_PREV_FILE)
    sink = resume(run)
    (started,) = sink.started
    assert started["resumed_from_epoch"] is None
    note = started["resume_note"]
    assert CHECKPOINT_FILE in note and CHECKPOINT_PREV_FILE in note and "fresh start" in note, note
    assert {e: _strip(m) for e, m in sink.evals} == evals
    assert (run / CHECKPOINT_DAMAGED_FILE).exists() and (run / CHECKPOINT_PREV_DAMAGED_FILE).exists()


def test_a_new_checkpoint_keeps_the_previous_one(tmp_path):
    run = tmp_path / "run"
    interrupted_at(run, 3)
    assert load_checkpoint(run / CHECKPOINT_FILE)["epoch"] == 3
    assert load_checkpoint(run / CHECKPOINT_PREV_FILE)["epoch"] == 2
    sink = resume(run)
    assert sink.started[0]["resumed_from_epoch"] == 3 and sink.started[0].get("resume_note") is None
    assert load_checkpoint(run / CHECKPOINT_FILE)["epoch"] == 4
    assert load_checkpoint(run / CHECKPOINT_PREV_FILE)["epoch"] == 3
    assert not (run / CHECKPOINT_DAMAGED_FILE).exists()


def test_missing_latest_resumes_from_previous(tmp_path, straight):
    """A crash between the two renames of a save leaves only checkpoint.prev.pt."""
    run = tmp_path / "run"
    interrupted_at(run, 3)
    (run / CHECKPOINT_FILE).unlink()
    sink = resume(run)
    assert sink.started[0]["resumed_from_epoch"] == 2
    assert CHECKPOINT_PREV_FILE in sink.started[0]["resume_note"]
    assert {e: _strip(m) for e, m in sink.evals} == {e: straight[0][e] for e in (3, 4)}


def test_inconsistent_epoch_or_run_id_is_damage(tmp_path):
    """The header's run id and epoch must be the run's and in 1..epochs; `read_checkpoint` says
    why it refuses one."""
    from ncbench.checkpoint import CheckpointDamaged, read_checkpoint, write_checkpoint

    spec = tiny_spec(**SPEC)
    path = tmp_path / CHECKPOINT_FILE
    write_checkpoint(path, {"run_id": spec.run_id, "epoch": 99, "model": {"w": torch.ones(3)}})
    with pytest.raises(CheckpointDamaged, match="epoch 99"):
        read_checkpoint(path, run_id=spec.run_id, max_epoch=spec.epochs)
    write_checkpoint(path, {"run_id": "someone-else", "epoch": 2, "model": {"w": torch.ones(3)}})
    with pytest.raises(CheckpointDamaged, match="run id someone-else"):
        read_checkpoint(path, run_id=spec.run_id, max_epoch=spec.epochs)
    write_checkpoint(path, {"run_id": spec.run_id, "epoch": 2, "model": {"w": torch.ones(3)}})
    assert read_checkpoint(path, run_id=spec.run_id, max_epoch=spec.epochs)["epoch"] == 2


def test_shapes_that_do_not_fit_the_model_are_damage(tmp_path, straight):
    """A verified checkpoint whose tensors do not fit the model (cannot happen for a file this run
    wrote) is refused like damage, before anything is loaded into the model."""
    from ncbench.checkpoint import write_checkpoint

    run = tmp_path / "run"
    interrupted_at(run, 3)
    state = load_checkpoint(run / CHECKPOINT_FILE)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(1)
    write_checkpoint(run / CHECKPOINT_FILE, state)
    sink = resume(run)
    assert sink.started[0]["resumed_from_epoch"] == 2
    assert key in sink.started[0]["resume_note"]
    assert {e: _strip(m) for e, m in sink.evals} == {e: straight[0][e] for e in (3, 4)}


def _as_format_1(path) -> None:
    """Rewrite the checkpoint at `path` as the previous version wrote it: a bare torch.save file
    of {"format": 1, ...} (no header, no checksum)."""
    state = load_checkpoint(path)
    state["format"] = 1
    torch.save(state, path)


def test_old_format_checkpoint_still_resumes_unverified(tmp_path, straight):
    """A checkpoint of the previous version (no checksum) is resumed from when it reads and its
    run id and epoch fit — noted as unverified; the next checkpoint is of the new format."""
    run = tmp_path / "run"
    interrupted_at(run, 3)
    (run / CHECKPOINT_PREV_FILE).unlink()
    _as_format_1(run / CHECKPOINT_FILE)
    assert torch.load(run / CHECKPOINT_FILE, weights_only=True)["epoch"] == 3  # a plain torch file
    sink = resume(run)
    assert sink.started[0]["resumed_from_epoch"] == 3
    assert "unverified" in sink.started[0]["resume_note"]
    assert {e: _strip(m) for e, m in sink.evals} == {4: straight[0][4]}
    from ncbench.checkpoint import MAGIC

    assert (run / CHECKPOINT_FILE).read_bytes().startswith(MAGIC)


def test_old_format_checkpoint_that_does_not_read_starts_afresh(tmp_path, straight):
    run = tmp_path / "run"
    interrupted_at(run, 3)
    (run / CHECKPOINT_PREV_FILE).unlink()
    _as_format_1(run / CHECKPOINT_FILE)
    truncate(run / CHECKPOINT_FILE)
    sink = resume(run)
    assert sink.started[0]["resumed_from_epoch"] is None
    assert "fresh start" in sink.started[0]["resume_note"]
    assert {e: _strip(m) for e, m in sink.evals} == straight[0]


# -- the real thing: `ncbench run`, a worker, its log, its events, `ncbench status` -------------


def fail_in_epoch_4(num_classes: int, marker: str = ""):
    """Cross-entropy that raises at the first training batch of epoch 4 (5 batches per epoch) of
    the first attempt (creates `marker`); works afterwards."""
    import os
    from pathlib import Path

    import torch.nn.functional as F

    calls = [0]

    def loss(logits, target):
        if torch.is_grad_enabled():
            calls[0] += 1
            if calls[0] == 16 and marker and not os.path.exists(marker):
                Path(marker).write_text("failed once")
                raise RuntimeError("deliberate failure in epoch 4")
        return F.cross_entropy(logits, target)

    return loss


@pytest.mark.slow  # two `ncbench run`s and a `status`: ~15-20 s on a busy 2-core machine
def test_ncbench_run_resumes_a_truncated_checkpoint_and_says_so(tmp_path):
    """(f) #15's finding: a run that failed with a truncated checkpoint is run again by
    `ncbench run`: it resumes from the previous checkpoint and ends done — worker.log, the start
    event and `ncbench status` say what happened."""
    from _runkit import experiment, ncbench, query, write_config

    from ncbench.rundir import WORKER_LOG

    marker = tmp_path / "failed-once"
    cfg = write_config(tmp_path, experiment(
        "dmg", losses=("test_checkpoint:fail_in_epoch_4",), epochs=5,
        extra=f'loss_params = {{ marker = "{marker}" }}'))
    first = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    (run,) = run_dirs(tmp_path / ".ncbench")
    assert [e["epoch"] for e in of_type(run, "eval")] == [0, 1, 2, 3]
    truncate(run / CHECKPOINT_FILE)

    out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    start = of_type(run, "start")[-1]
    assert start["resumed_from_epoch"] == 2
    assert "damaged" in start["resume_note"] and CHECKPOINT_PREV_FILE in start["resume_note"]
    assert [e["epoch"] for e in of_type(run, "eval")] == [0, 1, 2, 3, 4, 5]
    log = (run / WORKER_LOG).read_text()
    assert "checkpoint.pt is damaged" in log and "resuming from checkpoint.prev.pt" in log, log
    assert query(tmp_path / "ncbench.duckdb", "SELECT status, last_epoch FROM runs") == [("done", 5)]
    ((note,),) = query(tmp_path / "ncbench.duckdb", "SELECT note FROM runs")
    assert "checkpoint.pt is damaged" in note and "resuming from checkpoint.prev.pt (epoch 2)" in note
    status = ncbench("status", "--config", str(cfg), cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "damaged" in status.stdout, status.stdout
