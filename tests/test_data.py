"""ncbench.data: real on-disk formats (fake contents), splits, statistics, errors."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ncbench.data import (channel_stats, dataset_names, make_dataset, stratified_split)
from ncbench.errors import DatasetNotFoundError, ParameterError, UnknownNameError


# ---- writers of the real formats ------------------------------------------------------------


class Py2Pickler(pickle._Pickler):
    """Pickles `bytes` as Python 2 `str` (BINSTRING opcodes), as the CIFAR batches were written:
    they load as `str` with encoding="latin1" (torchvision) and as `bytes` (b'data', b'labels')
    with encoding="bytes"."""

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def py2_dump(obj, path: Path) -> None:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def b(s: str) -> bytes:
    return s.encode()


def random_images(rng, n: int, h: int = 32, w: int = 32) -> np.ndarray:
    """uint8 [n, h, w, 3]."""
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def to_rows(img_hwc: np.ndarray) -> np.ndarray:
    """CIFAR row layout: 1024 R, 1024 G, 1024 B, each row-major."""
    return img_hwc.transpose(0, 3, 1, 2).reshape(len(img_hwc), -1)


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    imgs, labels = [], []
    for i in range(1, 6):
        x = random_images(rng, per_batch)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        py2_dump({b("batch_label"): b(f"training batch {i} of 5"), b("labels"): y,
                  b("data"): to_rows(x), b("filenames"): [b(f"img_{i}_{j}.png") for j in range(per_batch)]},
                 folder / f"data_batch_{i}")
        imgs.append(x)
        labels += y
    xt = random_images(rng, n_test)
    yt = [int(v) for v in rng.integers(0, 10, n_test)]
    py2_dump({b("batch_label"): b("testing batch 1 of 1"), b("labels"): yt, b("data"): to_rows(xt),
              b("filenames"): [b(f"t{j}.png") for j in range(n_test)]}, folder / "test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    py2_dump({b("num_cases_per_batch"): per_batch, b("label_names"): [b(s) for s in names],
              b("num_vis"): 3072}, folder / "batches.meta")
    return {"x": np.concatenate(imgs), "y": np.array(labels), "xt": xt, "yt": np.array(yt), "names": names}


def write_cifar100(root: Path, n: int = 300, n_test: int = 50, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    x, xt = random_images(rng, n), random_images(rng, n_test)
    y = np.concatenate([np.arange(100), rng.integers(0, 100, n - 100)])
    yt = rng.integers(0, 100, n_test)
    for name, xx, yy in (("train", x, y), ("test", xt, yt)):
        py2_dump({b("filenames"): [b(f"f{j}.png") for j in range(len(yy))], b("batch_label"): b(name),
                  b("fine_labels"): [int(v) for v in yy], b("coarse_labels"): [int(v) // 5 for v in yy],
                  b("data"): to_rows(xx)}, folder / name)
    names = [f"class{i:03d}" for i in range(100)]
    py2_dump({b("fine_label_names"): [b(s) for s in names],
              b("coarse_label_names"): [b(f"super{i}") for i in range(20)]}, folder / "meta")
    return {"x": x, "y": y, "xt": xt, "yt": yt, "names": names}


MINI_CLASSES = {"train": ["n01532829", "n01558993", "n01704323", "n01749939"],
                "val": ["n01855672", "n02091244"], "test": ["n01930112", "n01981276"]}


def write_mini_pickles(base: Path, per_class: int = 12, size: int = 84, seed: int = 2) -> dict[str, np.ndarray]:
    """Pickle cache in the common format; each class's images carry a class-unique value at [0,0,0]."""
    rng = np.random.default_rng(seed)
    base.mkdir(parents=True, exist_ok=True)
    by_class = {}
    k = 0
    for split, classes in MINI_CLASSES.items():
        data, class_dict = [], {}
        for c in classes:
            imgs = random_images(rng, per_class, size, size)
            imgs[:, 0, 0, 0] = k
            imgs[:, 0, 0, 1] = np.arange(per_class)
            k += 1
            class_dict[c] = list(range(len(data) * per_class, (len(data) + 1) * per_class))
            data.append(imgs)
            by_class[c] = imgs
        # interleave so class_dict indices matter
        stacked = np.concatenate(data)
        perm = rng.permutation(len(stacked))
        inv = np.argsort(perm)
        class_dict = {c: [int(inv[i]) for i in idx] for c, idx in class_dict.items()}
        with open(base / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": stacked[perm], "class_dict": class_dict}, f)
    return by_class


# ---- CIFAR ----------------------------------------------------------------------------------


def test_cifar10_reads_python_batches(tmp_path):
    ref = write_cifar10(tmp_path)
    # the files really are Python-2-style pickles: bytes keys under encoding="bytes"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        assert b"data" in pickle.load(f, encoding="bytes")
    ds = make_dataset("cifar10", root=tmp_path, verify=False, val_fraction=0.0)
    assert ds.num_classes == 10 and ds.classes == ref["names"]
    assert ds.input_shape == (3, 32, 32) and ds.train.x.dtype == torch.uint8
    assert ds.augment and ds.crop_padding == 4 and ds.hflip
    assert len(ds.val) == 0 and len(ds.train) == 100 and len(ds.test) == 30
    # pixels: CHW of the written HWC images, in file order (val_fraction 0 keeps order)
    np.testing.assert_array_equal(ds.train.x.numpy(), ref["x"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.train.y.numpy(), ref["y"])
    np.testing.assert_array_equal(ds.test.x.numpy(), ref["xt"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.test.y.numpy(), ref["yt"])


def test_cifar10_stats_are_train_split_stats(tmp_path):
    write_cifar10(tmp_path)
    ds = make_dataset("cifar10", root=tmp_path, verify=False, val_fraction=0.2, data_seed=3)
    x = ds.train.x.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(ds.mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(ds.std.numpy(), x.std(axis=(0, 2, 3)), rtol=1e-6)


def test_cifar100_fine_labels(tmp_path):
    ref = write_cifar100(tmp_path)
    ds = make_dataset("cifar100", root=tmp_path, verify=False, val_fraction=0.0)
    assert ds.num_classes == 100 and ds.classes == ref["names"]
    np.testing.assert_array_equal(ds.train.y.numpy(), ref["y"])
    np.testing.assert_array_equal(ds.test.x.numpy(), ref["xt"].transpose(0, 3, 1, 2))


def test_cifar_md5_check_on_by_default(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset("cifar10", root=tmp_path)
    msg = str(e.value)
    assert "md5" in msg and "verify=False" in msg and str(tmp_path / "cifar-10-batches-py") in msg


@pytest.mark.parametrize("name,folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_cifar_missing_names_path_and_fix(tmp_path, name, folder):
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset(name, root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / folder) in msg and "download = true" in msg


def test_cifar_partially_missing_lists_files(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        make_dataset("cifar10", root=tmp_path, verify=False)


def test_root_from_env(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "elsewhere")
    monkeypatch.setenv("NCBENCH_DATA", str(tmp_path / "elsewhere"))
    assert len(make_dataset("cifar10", verify=False).test) == 30
    monkeypatch.delenv("NCBENCH_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="data"):
        make_dataset("cifar10")


# ---- CIFAR download (a local HTTP server stands in for www.cs.toronto.edu) --------------------


@pytest.fixture()
def cifar_server(tmp_path, monkeypatch):
    """Serves a cifar-10-python.tar.gz of `write_cifar10`'s files over HTTP on localhost and points
    torchvision's CIFAR10 at it (its url and the archive's md5: everything after that — request,
    md5 check, extraction, loading — is the real code). Yields (fixture arrays, archive URL)."""
    import hashlib
    import http.server
    import tarfile
    import threading

    import torchvision.datasets as tvd

    src, site = tmp_path / "src", tmp_path / "site"
    ref = write_cifar10(src)
    site.mkdir()
    archive = site / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **kw)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    monkeypatch.setattr(tvd.CIFAR10, "url", url)
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    try:
        yield ref, url
    finally:
        server.shutdown()
        server.server_close()


def _cifar_specs(root: Path, download: bool):
    from ncbench.runs import RunSpec

    return [RunSpec(experiment="dl", dataset="cifar10", model="mlp", loss=loss, width=0.125,
                    epochs=1, seed=0, data_root=str(root), download=download,
                    dataset_params={"verify": False}) for loss in ("ce", "mse")]


def test_cifar_download_fetches_once_in_the_preflight(cifar_server, tmp_path):
    """download = true: `check_datasets` (ncbench run's pre-flight, in the manager) fetches the
    archive once, checks its md5 and extracts it; the data then loads with download off."""
    from ncbench.preflight import check_datasets

    ref, _ = cifar_server
    root = tmp_path / "data"
    check_datasets(_cifar_specs(root, download=True), fetch=False)  # a dry run fetches nothing
    assert not root.exists()
    check_datasets(_cifar_specs(root, download=True))
    assert (root / "cifar-10-python.tar.gz").is_file()
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    ds = make_dataset("cifar10", root=root, download=False, val_fraction=0.0, verify=False)
    np.testing.assert_array_equal(ds.train.x.numpy(), ref["x"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.test.y.numpy(), ref["yt"])
    assert ds.classes == ref["names"]


@pytest.mark.slow
def test_ncbench_run_with_download_fetches_in_the_manager_only(cifar_server, tmp_path, monkeypatch):
    """`ncbench run` (run_grid, local executor) of two runs with download = true: the manager
    downloads once; the two worker processes — which would fail to reach the real
    www.cs.toronto.edu from here — find the files in place and train."""
    from ncbench.grid import run_grid

    monkeypatch.setenv("NCBENCH_THREADS", "1")
    root = tmp_path / "data"
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(f"""[experiments.dl]
dataset = "cifar10"
dataset_params = {{ verify = false }}
data_root = "{root}"
download = true
model = "mlp"
width = 0.125
loss = ["ce", "mse"]
epochs = 1
eval_every = 1
batch_size = 32
val_fraction = 0.0
device = "cpu"
""")
    result = run_grid(cfg)
    assert sorted(result.results.values()) == ["done", "done"], result.results
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    from ncbench.rundir import WORKER_LOG, run_dir_of

    for run_id in result.results:
        log = (run_dir_of(tmp_path / ".ncbench", run_id) / WORKER_LOG).read_text()
        assert "Downloading" not in log and "toronto" not in log, log


def test_cifar_download_failures_name_the_url_and_the_fix(cifar_server, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    _, url = cifar_server
    monkeypatch.setattr(tvd.CIFAR10, "url", url.replace(".tar.gz", "-missing.tar.gz"))  # HTTP 404
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset("cifar10", root=tmp_path / "a", download=True, verify=False)
    msg = str(e.value)
    assert "-missing.tar.gz failed" in msg and "404" in msg and str(tmp_path / "a") in msg
    monkeypatch.setattr(tvd.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # refused
    with pytest.raises(DatasetNotFoundError, match="download of http://127.0.0.1:9/.* failed"):
        make_dataset("cifar10", root=tmp_path / "b", download=True, verify=False)
    monkeypatch.setattr(tvd.CIFAR10, "url", url)
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", "0" * 32)  # a corrupted download
    with pytest.raises(DatasetNotFoundError, match="md5"):
        make_dataset("cifar10", root=tmp_path / "c", download=True, verify=False)


# ---- miniImageNet ---------------------------------------------------------------------------


def test_miniimagenet_pickle_cache_merges_classes(tmp_path):
    by_class = write_mini_pickles(tmp_path / "miniimagenet")
    ds = make_dataset("miniimagenet", root=tmp_path, test_per_class=2, val_fraction=0.0)
    names = sorted(c for cs in MINI_CLASSES.values() for c in cs)
    assert ds.classes == names and ds.num_classes == 8
    assert ds.input_shape == (3, 84, 84) and ds.train.x.dtype == torch.uint8
    assert ds.augment and ds.crop_padding == 8 and ds.hflip
    assert ds.train.class_counts(8).tolist() == [10] * 8 and ds.test.class_counts(8).tolist() == [2] * 8
    for split in (ds.train, ds.test):
        for xi, yi in zip(split.x, split.y):
            src = by_class[names[int(yi)]]
            j = int(xi[1, 0, 0])  # the image's index within its class
            np.testing.assert_array_equal(xi.numpy(), src[j].transpose(2, 0, 1))
    # train and test are disjoint within each class and cover all 12 images
    for k in range(8):
        tr = {int(v) for v in ds.train.x[ds.train.y == k][:, 1, 0, 0]}
        te = {int(v) for v in ds.test.x[ds.test.y == k][:, 1, 0, 0]}
        assert not tr & te and tr | te == set(range(12))


def test_miniimagenet_test_split_fixed_across_data_seeds(tmp_path):
    write_mini_pickles(tmp_path / "miniimagenet")
    a = make_dataset("miniimagenet", root=tmp_path, test_per_class=2, data_seed=0)
    b_ = make_dataset("miniimagenet", root=tmp_path, test_per_class=2, data_seed=5)
    assert torch.equal(a.test.x, b_.test.x) and torch.equal(a.test.y, b_.test.y)
    assert not torch.equal(a.val.x, b_.val.x)


def test_miniimagenet_folders_of_jpegs(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "miniimagenet"
    written = {}
    for split, classes in MINI_CLASSES.items():
        for c in classes[:1]:
            d = base / split / c
            d.mkdir(parents=True)
            for j in range(4):
                size = (84, 84) if j else (60, 40)  # one off-size image gets resized
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{c}_{j}.jpg", quality=95)
            written[c] = d
    ds = make_dataset("miniimagenet", root=tmp_path, test_per_class=1, val_fraction=0.0)
    assert ds.num_classes == 3 and ds.classes == sorted(written)
    assert ds.train.x.shape == (9, 3, 84, 84) and ds.test.x.shape == (3, 3, 84, 84)
    # every loaded image is one of its class's files, decoded by PIL (resized to 84 if needed)
    for split in (ds.train, ds.test):
        for xi, yi in zip(split.x, split.y):
            files = sorted(written[ds.classes[int(yi)]].iterdir())
            decoded = []
            for fp in files:
                im = Image.open(fp).convert("RGB")
                if im.size != (84, 84):
                    im = im.resize((84, 84), Image.BICUBIC)
                decoded.append(np.asarray(im).transpose(2, 0, 1))
            assert any(np.array_equal(xi.numpy(), d) for d in decoded)


def test_miniimagenet_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset("miniimagenet", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "miniimagenet") in msg and "mini-imagenet-cache" in msg


def test_miniimagenet_bad_pickle(tmp_path):
    base = tmp_path / "miniimagenet"
    base.mkdir()
    for s in ("train", "val", "test"):
        with open(base / f"mini-imagenet-cache-{s}.pkl", "wb") as f:
            pickle.dump({"images": np.zeros((1, 84, 84, 3), np.uint8)}, f)
    with pytest.raises(DatasetNotFoundError, match="class_dict"):
        make_dataset("miniimagenet", root=tmp_path)


# ---- digits, gaussian -----------------------------------------------------------------------


@pytest.mark.parametrize("name,kw,key", [("digits", {"test_fraction": 0.0}, "test_fraction"),
                                         ("digits", {"test_fraction": 1}, "test_fraction"),
                                         ("miniimagenet", {"test_per_class": 0}, "test_per_class")])
def test_split_options_out_of_range_name_their_key(tmp_path, name, kw, key):
    with pytest.raises(ParameterError) as e:
        make_dataset(name, root=tmp_path, **kw)
    assert e.value.key == key


def test_digits():
    ds = make_dataset("digits")
    assert ds.num_classes == 10 and ds.input_shape == (1, 8, 8) and ds.train.x.dtype == torch.float32
    assert not ds.augment and ds.crop_padding == 0
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    assert 0.0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1.0
    assert abs(len(ds.test) / 1797 - 0.2) < 0.01
    # the test split is fixed: independent of data_seed
    other = make_dataset("digits", data_seed=7)
    assert torch.equal(ds.test.x, other.test.x) and not torch.equal(ds.val.y, other.val.y)
    # test images are not in train
    tr = {tuple(r) for r in ds.train.x.flatten(1).tolist()}
    te_rows = [tuple(r) for r in ds.test.x.flatten(1).tolist()]
    assert not any(r in tr for r in te_rows)


def test_gaussian():
    ds = make_dataset("gaussian", num_classes=4, dim=16, n_train_per_class=200, n_test_per_class=50,
                      separation=5.0, seed=3)
    assert ds.num_classes == 4 and ds.input_shape == (16,) and len(ds.test) == 200
    assert len(ds.train) + len(ds.val) == 800
    # raw class means sit at distance `separation` from the origin (noise N(0, I))
    again = make_dataset("gaussian", num_classes=4, dim=16, n_train_per_class=200, n_test_per_class=50,
                         separation=5.0, seed=3, val_fraction=0.0)
    x, y = again.train.x.double(), again.train.y
    norms = torch.stack([x[y == k].mean(0).norm() for k in range(4)])
    assert torch.allclose(norms, torch.full((4,), 5.0, dtype=torch.float64), atol=0.5)
    assert torch.equal(again.train.x, make_dataset("gaussian", num_classes=4, dim=16, n_train_per_class=200,
                                                   n_test_per_class=50, separation=5.0, seed=3,
                                                   val_fraction=0.0).train.x)
    assert not torch.equal(again.train.x, make_dataset("gaussian", num_classes=4, dim=16, n_train_per_class=200,
                                                       n_test_per_class=50, separation=5.0, seed=4,
                                                       val_fraction=0.0).train.x)
    # per-feature normalisation statistics of the train split
    xt = ds.train.x.double()
    torch.testing.assert_close(ds.mean.double(), xt.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ds.std.double(), xt.std(0, unbiased=False), rtol=1e-5, atol=1e-6)


def test_gaussian_bad_kw():
    with pytest.raises(ParameterError, match="dim"):
        make_dataset("gaussian", dim=0)


# ---- splits ---------------------------------------------------------------------------------


def test_stratified_holdout_properties():
    ds = make_dataset("digits", val_fraction=0.1, data_seed=0)
    full = make_dataset("digits", val_fraction=0.0)
    K = 10
    tr_c, va_c, all_c = (s.class_counts(K) for s in (ds.train, ds.val, full.train))
    assert torch.equal(tr_c + va_c, all_c)
    expected = torch.tensor([round(0.1 * int(n)) for n in all_c])
    assert torch.equal(va_c, expected)  # stratified: each class contributes its share
    # disjoint and covering: as multisets of rows (digits rows are nearly unique)
    rows = lambda s: sorted(map(tuple, s.x.flatten(1).tolist()))
    assert sorted(rows(ds.train) + rows(ds.val)) == rows(full.train)


def test_stratified_split_indices():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    keep, hold = stratified_split(y, 0.1, seed=4)
    assert set(keep.tolist()).isdisjoint(hold.tolist()) and len(keep) + len(hold) == 100
    assert torch.bincount(y[hold], minlength=3).tolist() == [5, 3, 2]
    k2, h2 = stratified_split(y, 0.1, seed=4)
    assert torch.equal(hold, h2)
    _, h3 = stratified_split(y, 0.1, seed=5)
    assert not torch.equal(hold, h3)


def test_holdout_independent_of_training_seed_and_global_rng():
    torch.manual_seed(1); np.random.seed(1)
    a = make_dataset("digits", data_seed=2)
    torch.manual_seed(99); np.random.seed(99)
    state = torch.get_rng_state(); np_state = np.random.get_state()[1].copy()
    b_ = make_dataset("digits", data_seed=2)
    assert torch.equal(a.val.x, b_.val.x) and torch.equal(a.train.y, b_.train.y)
    # and loading consumed no global randomness (the training seed's stream is untouched)
    assert torch.equal(torch.get_rng_state(), state) and np.array_equal(np.random.get_state()[1], np_state)


def test_per_class_balanced_then_holdout():
    ds = make_dataset("digits", per_class=50, val_fraction=0.2, data_seed=1)
    assert ds.train.class_counts(10).tolist() == [40] * 10
    assert ds.val.class_counts(10).tolist() == [10] * 10
    again = make_dataset("digits", per_class=50, val_fraction=0.2, data_seed=1)
    assert torch.equal(ds.train.x, again.train.x)
    other = make_dataset("digits", per_class=50, val_fraction=0.2, data_seed=2)
    assert not torch.equal(ds.train.x, other.train.x)
    assert torch.equal(ds.test.x, other.test.x)  # test untouched by per_class
    with pytest.raises(ParameterError, match="per_class"):
        make_dataset("digits", per_class=10_000)
    with pytest.raises(ParameterError, match="per_class"):
        make_dataset("digits", per_class=0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, "x"])
def test_bad_val_fraction(bad):
    with pytest.raises(ParameterError, match="val_fraction"):
        make_dataset("digits", val_fraction=bad)


def test_unknown_dataset():
    from ncbench import names

    assert dataset_names() == sorted(names.DATASETS)  # every declared name, nothing else
    assert {"cifar10", "cifar100", "digits", "gaussian", "miniimagenet", "mnist1d"} <= set(dataset_names())
    with pytest.raises(UnknownNameError, match="cifar10"):
        make_dataset("cifar1O")


def test_channel_stats_against_float64_formula():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (37, 3, 5, 6), dtype=np.uint8)
    mean, std = channel_stats(torch.from_numpy(x), chunk=8)
    xf = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean.numpy(), xf.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std.numpy(), xf.std(axis=(0, 2, 3)), rtol=1e-6)
    # a constant channel gets std 1, not 0
    const = torch.zeros(4, 2, 3, 3)
    const[:, 1] = torch.rand(4, 3, 3)
    _, s = channel_stats(const)
    assert s[0] == 1.0 and 0 < s[1] < 1


def test_miniimagenet_folder_cache(tmp_path):
    base = tmp_path / "miniimagenet"
    rng = np.random.default_rng(1)
    for split, c in (("train", "n01"), ("val", "n02"), ("test", "n03")):
        d = base / split / c
        d.mkdir(parents=True)
        for j in range(3):
            Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)).save(d / f"{j}.png")
    first = make_dataset("miniimagenet", root=tmp_path, test_per_class=1, val_fraction=0.0)
    caches = list(base.glob(".ncbench-cache-84-*.npz"))
    assert len(caches) == 1
    second = make_dataset("miniimagenet", root=tmp_path, test_per_class=1, val_fraction=0.0)
    assert torch.equal(first.train.x, second.train.x) and second.classes == ["n01", "n02", "n03"]
    # PNG is lossless: the loaded pixels are the written ones
    written = np.asarray(Image.open(base / "test" / "n03" / "0.png"))
    all_n03 = torch.cat([first.train.x[first.train.y == 2], first.test.x[first.test.y == 2]])
    assert any(np.array_equal(xi.numpy(), written.transpose(2, 0, 1)) for xi in all_n03)
    # a changed folder is a new cache (the stale one is not used)
    Image.fromarray(np.zeros((84, 84, 3), np.uint8)).save(base / "train" / "n01" / "9.png")
    third = make_dataset("miniimagenet", root=tmp_path, test_per_class=1, val_fraction=0.0)
    assert len(third.train) == len(first.train) + 1
    assert len(list(base.glob(".ncbench-cache-84-*.npz"))) == 2
    nocache = make_dataset("miniimagenet", root=tmp_path, test_per_class=1, val_fraction=0.0, cache=False)
    assert torch.equal(nocache.train.x, third.train.x)


def test_split_dataset_to_device_keeps_values():
    ds = make_dataset("gaussian", dim=4, n_train_per_class=5, n_test_per_class=2)
    moved = ds.to("cpu")
    assert moved is not ds and moved.train.x is ds.train.x  # no copy when already there
    assert moved.num_classes == ds.num_classes and moved.input_shape == ds.input_shape
    assert ds.split("test") is ds.test
    with pytest.raises(ValueError):
        ds.split("valid")


def test_unknown_dataset_keyword_is_parameter_error_with_suggestion():
    with pytest.raises(ParameterError, match="did you mean 'dim'") as e:
        make_dataset("gaussian", dims=3)
    assert e.value.key == "dims"
