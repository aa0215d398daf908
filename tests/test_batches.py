"""ncbench.batches: device-resident batches equal the torchvision pipeline, randomness is right."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import stats

from ncbench.batches import (DeviceBatches, LoaderBatches, crop_flip, epoch_plan, iterate_eval, make_batches,
                             make_loader, normalize)
from ncbench.data import make_dataset

MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
STD = torch.tensor([0.2470, 0.2435, 0.2616])


def images(n: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g)


def torchvision_reference(img_chw: torch.Tensor, oy: int, ox: int, flip: bool, pad: int,
                          mean=MEAN, std=STD) -> torch.Tensor:
    """RandomCrop(H, padding=pad) at offset (oy, ox) → RandomHorizontalFlip → ToTensor → Normalize,
    on a PIL image, with torchvision's own functional ops."""
    h, w = img_chw.shape[1:]
    pil = Image.fromarray(img_chw.permute(1, 2, 0).numpy())
    if pad:
        pil = TF.pad(pil, pad, fill=0, padding_mode="constant")  # what RandomCrop(padding=pad) does
    pil = TF.crop(pil, oy, ox, h, w)
    if flip:
        pil = TF.hflip(pil)
    return T.Normalize(mean.tolist(), std.tolist())(TF.to_tensor(pil))


@pytest.mark.parametrize("pad", [4, 8])
def test_crop_flip_equals_torchvision_for_given_offsets(pad):
    x = images(6, 32, 32, seed=pad)
    combos = [(0, 0, False), (2 * pad, 2 * pad, True), (pad, pad, False), (0, 2 * pad, True),
              (2 * pad, 1, False), (3, pad + 1, True)]
    oy = torch.tensor([c[0] for c in combos])
    ox = torch.tensor([c[1] for c in combos])
    fl = torch.tensor([c[2] for c in combos])
    out = normalize(crop_flip(x, oy, ox, fl, pad), MEAN, STD)
    for i, (a, b_, f) in enumerate(combos):
        torch.testing.assert_close(out[i], torchvision_reference(x[i], a, b_, f, pad), rtol=0, atol=1e-5)


def test_device_batches_match_torchvision_pipeline_per_sample():
    x = images(40, seed=1)
    y = torch.arange(40)
    db = DeviceBatches(x, y, 16, shuffle=True, augment=True, mean=MEAN, std=STD, seed=3, pad=4)
    plan = db.plan()
    pos = 0
    for xb, yb in db:
        assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32)
        for j in range(len(yb)):
            i = int(plan.order[pos])
            assert int(yb[j]) == i
            ref = torchvision_reference(x[i], int(plan.oy[pos]), int(plan.ox[pos]), bool(plan.flip[pos]), 4)
            torch.testing.assert_close(xb[j], ref, rtol=0, atol=1e-5)
            pos += 1
    assert pos == 40


def test_no_augment_is_to_tensor_normalize():
    x = images(10, 8, 12)
    (xb, _), = list(DeviceBatches(x, torch.zeros(10, dtype=torch.long), 10, shuffle=False, mean=MEAN, std=STD))
    ref = torch.stack([T.Normalize(MEAN.tolist(), STD.tolist())(TF.to_tensor(Image.fromarray(xi.permute(1, 2, 0).numpy())))
                       for xi in x])
    torch.testing.assert_close(xb, ref, rtol=0, atol=1e-5)


def test_crop_offsets_uniform_and_flip_rate():
    n, pad = 18_000, 4
    x = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    db = DeviceBatches(x, torch.zeros(n, dtype=torch.long), 1000, augment=True, pad=pad, seed=11)
    plan = db.plan()
    for off in (plan.oy, plan.ox):
        counts = torch.bincount(off, minlength=2 * pad + 1)
        assert len(counts) == 2 * pad + 1 and int(off.min()) == 0 and int(off.max()) == 2 * pad
        assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    # oy and ox independent: joint 9×9 table uniform too
    joint = torch.bincount(plan.oy * (2 * pad + 1) + plan.ox, minlength=(2 * pad + 1) ** 2)
    assert stats.chisquare(joint.numpy()).pvalue > 1e-3
    k = int(plan.flip.sum())
    assert stats.binomtest(k, n, 0.5).pvalue > 1e-3


def test_offsets_seen_in_output_pixels():
    """Recover each crop's offset and flip from the output itself (rows/cols encoded in pixels)."""
    n, h, w, pad = 400, 6, 7, 2
    x = torch.zeros(n, 2, h, w, dtype=torch.uint8)
    x[:, 0] = (torch.arange(h) + 1).view(h, 1)   # row index + 1 (0 marks padding)
    x[:, 1] = (torch.arange(w) + 1).view(1, w)   # col index + 1
    db = DeviceBatches(x, torch.arange(n), 64, augment=True, pad=pad, seed=5)
    plan = db.plan()
    got = torch.cat([xb for xb, _ in db])  # mean 0, std 1: xb = pixel/255
    rows = (got[:, 0] * 255).round().long()
    cols = (got[:, 1] * 255).round().long()
    for p in range(n):
        oy, ox, fl = int(plan.oy[p]), int(plan.ox[p]), bool(plan.flip[p])
        exp_r = torch.arange(h) + oy - pad + 1
        exp_r = torch.where((exp_r >= 1) & (exp_r <= h), exp_r, 0)
        exp_c = torch.arange(w) + ox - pad + 1
        exp_c = torch.where((exp_c >= 1) & (exp_c <= w), exp_c, 0)
        if fl:
            exp_c = exp_c.flip(0)
        inside = (exp_r.view(h, 1) > 0) & (exp_c.view(1, w) > 0)
        assert torch.equal(rows[p], torch.where(inside, exp_r.view(h, 1).expand(h, w), 0))
        assert torch.equal(cols[p], torch.where(inside, exp_c.view(1, w).expand(h, w), 0))


def test_every_sample_once_per_epoch_and_reshuffle():
    n = 103
    db = DeviceBatches(images(n, 4, 4), torch.arange(n), 10, augment=True, seed=0)
    assert len(db) == 11
    orders = []
    for _ in range(3):
        ys = torch.cat([yb for _, yb in db])
        assert sorted(ys.tolist()) == list(range(n))
        orders.append(ys)
    assert db.epoch == 3
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    dl = DeviceBatches(images(n, 4, 4), torch.arange(n), 10, seed=0, drop_last=True)
    sizes = [len(yb) for _, yb in dl]
    assert len(dl) == 10 and sizes == [10] * 10


def test_deterministic_and_resumable_from_seed_epoch():
    x, y = images(50, 8, 8), torch.arange(50)
    a = DeviceBatches(x, y, 7, augment=True, pad=2, seed=4, mean=MEAN, std=STD)
    run_a = [[(xb.clone(), yb.clone()) for xb, yb in a] for _ in range(3)]
    b = DeviceBatches(x, y, 7, augment=True, pad=2, seed=4, mean=MEAN, std=STD, epoch=2)
    assert b.state() == {"seed": 4, "epoch": 2}
    run_b = [(xb, yb) for xb, yb in b]
    assert len(run_b) == len(run_a[2])
    for (xa, ya), (xb, yb) in zip(run_a[2], run_b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = DeviceBatches(x, y, 7, augment=True, pad=2, seed=5, mean=MEAN, std=STD)
    assert not torch.equal(torch.cat([yb for _, yb in c]), torch.cat([yb for _, yb in run_a[0]]))
    # global RNG neither read nor changed
    state = torch.get_rng_state()
    torch.manual_seed(123)
    d = DeviceBatches(x, y, 7, augment=True, pad=2, seed=4, mean=MEAN, std=STD)
    assert torch.equal(torch.cat([xb for xb, _ in d]), torch.cat([xb for xb, _ in run_a[0]]))
    torch.set_rng_state(state)


def test_layout_nchw_and_channels_last():
    x = images(8)
    xb, _ = next(iter(DeviceBatches(x, torch.arange(8), 8, augment=True, mean=MEAN, std=STD)))
    assert xb.shape == (8, 3, 32, 32) and xb.is_contiguous()
    xc, _ = next(iter(DeviceBatches(x, torch.arange(8), 8, augment=True, mean=MEAN, std=STD, channels_last=True)))
    assert xc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(xb, xc)


def test_iterate_eval_in_order_unaugmented():
    x, y = images(25, 8, 8), torch.arange(25)
    ev = iterate_eval(x, y, 10, mean=MEAN, std=STD)
    got = list(ev)
    assert [len(yb) for _, yb in got] == [10, 10, 5]
    assert torch.equal(torch.cat([yb for _, yb in got]), y)
    torch.testing.assert_close(torch.cat([xb for xb, _ in got]), normalize(x, MEAN, STD))
    again = torch.cat([xb for xb, _ in ev])  # same every time
    torch.testing.assert_close(again, torch.cat([xb for xb, _ in got]))


def test_vector_data_normalised_per_feature():
    x = torch.randn(30, 5) * 3 + 2
    mean, std = x.mean(0), x.std(0, unbiased=False)
    xb = torch.cat([b for b, _ in iterate_eval(x, torch.zeros(30, dtype=torch.long), 8, mean=mean, std=std)])
    torch.testing.assert_close(xb, (x - mean) / std)
    # augment on vectors is a no-op besides shuffling
    db = DeviceBatches(x, torch.arange(30), 8, augment=True, mean=mean, std=std)
    assert db.pad == 0 and not db.hflip


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_fallback_yields_identical_batches(workers):
    x, y = images(37, 8, 8), torch.arange(37)
    kw = dict(augment=True, pad=2, seed=9, mean=MEAN, std=STD)
    dev = [(a.clone(), b_.clone()) for a, b_ in DeviceBatches(x, y, 8, **kw)]
    ld = make_loader(x, y, 8, num_workers=workers, **kw)
    assert isinstance(ld, LoaderBatches) and len(ld) == 5
    got = list(ld)
    assert ld.epoch == 1
    assert len(got) == len(dev)
    for (xa, ya), (xb, yb) in zip(dev, got):
        assert torch.equal(ya, yb)
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)


def test_make_batches_uses_dataset_conventions():
    ds = make_dataset("digits", val_fraction=0.1)
    tr = make_batches(ds, "train", 64, train=True, seed=1)
    assert isinstance(tr, DeviceBatches) and tr.shuffle and tr.pad == 0 and not tr.hflip
    xb, yb = next(iter(tr))
    assert xb.shape == (64, 1, 8, 8)
    ev = make_batches(ds, "test", 1000, train=False)
    xe = torch.cat([b for b, _ in ev])
    torch.testing.assert_close(xe, (ds.test.x - ds.mean.view(1, 1, 1, 1)) / ds.std.view(1, 1, 1, 1))
    # train-split normalisation has mean 0 / std 1
    xt = torch.cat([b for b, _ in make_batches(ds, "train", 500, train=False)]).double()
    assert abs(float(xt.mean())) < 1e-5 and abs(float(xt.std(unbiased=False)) - 1) < 1e-5
    small = make_batches(ds, "train", 64, train=True, seed=1, max_device_bytes=0, num_workers=0)
    assert isinstance(small, LoaderBatches)
    assert torch.equal(torch.cat([b for _, b in small]), torch.cat([b for _, b in tr.__class__(
        ds.train.x, ds.train.y, 64, shuffle=True, mean=ds.mean, std=ds.std, seed=1)]))


def test_epoch_plan_without_shuffle_is_identity_order():
    p = epoch_plan(10, seed=0, epoch=0, shuffle=False, pad=0, hflip=False)
    assert torch.equal(p.order, torch.arange(10)) and not p.flip.any() and not p.oy.any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches():
    x, y = images(300), torch.arange(300)
    kw = dict(augment=True, pad=4, seed=2, mean=MEAN, std=STD)
    cpu = torch.cat([a for a, _ in DeviceBatches(x, y, 128, **kw)])
    gpu = torch.cat([a.cpu() for a, _ in DeviceBatches(x, y, 128, device="cuda", **kw)])
    torch.testing.assert_close(cpu, gpu, rtol=0, atol=1e-6)


def test_bad_mean_std_shapes():
    with pytest.raises(ValueError, match="mean"):
        DeviceBatches(images(4), torch.arange(4), 2, mean=torch.zeros(2))
    with pytest.raises(ValueError, match="std"):
        DeviceBatches(images(4), torch.arange(4), 2, std=torch.zeros(3))
    with pytest.raises(ValueError, match="samples"):
        DeviceBatches(images(4), torch.arange(3), 2)


def test_make_batches_shares_one_device_copy_per_split():
    ds = make_dataset("gaussian", dim=3, n_train_per_class=10, n_test_per_class=4)
    a = make_batches(ds, "train", 8, train=True)
    b_ = make_batches(ds, "train", 64, train=False)
    c = make_batches(ds, "test", 64, train=False)
    assert a.x.data_ptr() == b_.x.data_ptr() and c.x.data_ptr() != a.x.data_ptr()
