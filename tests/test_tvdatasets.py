"""The torchvision datasets (mnist, fashionmnist, svhn, stl10) and `imagefolder`: tiny files in
the real on-disk formats, read through torchvision's own classes; errors; one `ncbench run`."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ncbench.data import channel_stats, make_dataset
from ncbench.errors import DatasetNotFoundError, ParameterError


# ---- writers of the real formats ------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """The idx-ubyte format of LeCun's MNIST files: magic 0x0000 08 <ndim>, big-endian int32 dims."""
    assert arr.dtype == np.uint8
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "i" * arr.ndim, *arr.shape) + arr.tobytes()


def write_mnist(root: Path, folder: str = "MNIST", n: int = 50, n_test: int = 20, seed: int = 0) -> dict:
    """The four gunzipped files torchvision reads from `root/<folder>/raw/`."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    x, xt = (rng.integers(0, 256, (m, 28, 28), dtype=np.uint8) for m in (n, n_test))
    y = np.concatenate([np.arange(10), rng.integers(0, 10, n - 10)]).astype(np.uint8)
    yt = np.concatenate([np.arange(10), rng.integers(0, 10, n_test - 10)]).astype(np.uint8)
    for prefix, xx, yy in (("train", x, y), ("t10k", xt, yt)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(xx))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(yy))
    return {"x": x, "y": y, "xt": xt, "yt": yt}


def write_svhn(root: Path, n: int = 40, n_test: int = 20, seed: int = 1) -> dict:
    """`root/svhn/{train,test}_32x32.mat` as the Stanford files are: X uint8 [32, 32, 3, N],
    y uint8 [N, 1] in 1..10 (10 = digit 0)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = root / "svhn"
    folder.mkdir(parents=True)
    out = {}
    for split, m in (("train", n), ("test", n_test)):
        x = rng.integers(0, 256, (m, 32, 32, 3), dtype=np.uint8)  # N H W C
        y = np.concatenate([np.arange(1, 11), rng.integers(1, 11, m - 10)]).astype(np.uint8)
        savemat(folder / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": y[:, None]})
        out[split] = (x, y)
    return out


STL_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def write_stl10(root: Path, n: int = 20, n_test: int = 10, seed: int = 2) -> dict:
    """`root/stl10_binary/`: the labelled files only (no unlabeled_X.bin). Images are stored
    column-major per channel (the binaries are MATLAB's layout), labels 1..10."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    out = {}
    for split, m in (("train", n), ("test", n_test)):
        x = rng.integers(0, 256, (m, 3, 96, 96), dtype=np.uint8)  # N C H W
        y = np.concatenate([np.arange(1, 11), rng.integers(1, 11, m - 10)]).astype(np.uint8)
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
        (folder / f"{split}_y.bin").write_bytes(y.tobytes())
        out[split] = (x, y)
    (folder / "class_names.txt").write_text("\n".join(STL_NAMES) + "\n")
    return out


def write_png_folder(base: Path, classes: dict[str, int], size=(12, 10), mode: str = "RGB",
                     seed: int = 3) -> dict[str, list[np.ndarray]]:
    """`base/<class>/img_k.png`: random pixels, pixel [0, 0] = the class's index (for checks)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, (name, count) in enumerate(sorted(classes.items())):
        (base / name).mkdir(parents=True)
        imgs = []
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            a = rng.integers(0, 256, shape, dtype=np.uint8)
            a[0, 0] = k
            Image.fromarray(a, mode=mode).save(base / name / f"img_{i}.png")
            imgs.append(a)
        out[name] = imgs
    return out


# ---- MNIST / Fashion-MNIST ------------------------------------------------------------------


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_like_reads_idx_files(tmp_path, name, folder):
    import torchvision.datasets as tvd

    ref = write_mnist(tmp_path, folder)
    ds = make_dataset(name, root=tmp_path, val_fraction=0.0)
    assert ds.input_shape == (1, 28, 28) and ds.train.x.dtype == torch.uint8
    assert ds.train.y.dtype == torch.int64 and ds.num_classes == 10
    assert ds.classes == list(getattr(tvd, folder).classes)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (50, 0, 20)
    assert not ds.augment and ds.crop_padding == 0 and not ds.hflip
    np.testing.assert_array_equal(ds.train.x[:, 0].numpy(), ref["x"])
    np.testing.assert_array_equal(ds.train.y.numpy(), ref["y"])
    np.testing.assert_array_equal(ds.test.x[:, 0].numpy(), ref["xt"])
    np.testing.assert_array_equal(ds.test.y.numpy(), ref["yt"])
    mean, std = channel_stats(ds.train.x)  # the one convention: statistics of the train split
    assert ds.mean.shape == (1,) and torch.equal(ds.mean, mean) and torch.equal(ds.std, std)


def test_mnist_holdout_and_per_class_come_from_finalize(tmp_path):
    write_mnist(tmp_path, n=80)
    ds = make_dataset("mnist", root=tmp_path, per_class=3, val_fraction=1 / 3, data_seed=5)
    assert torch.equal(ds.train.class_counts(10), torch.full((10,), 2))
    assert torch.equal(ds.val.class_counts(10), torch.ones(10, dtype=torch.int64))
    assert len(ds.test) == 20
    again = make_dataset("mnist", root=tmp_path, per_class=3, val_fraction=1 / 3, data_seed=5)
    assert torch.equal(ds.train.x, again.train.x)  # seeded by data_seed alone
    mean, _ = channel_stats(ds.train.x)
    assert torch.equal(ds.mean, mean)


@pytest.fixture()
def mnist_server(tmp_path, monkeypatch):
    """Serves the four .gz archives of `write_mnist`'s files over HTTP on localhost and points
    torchvision's MNIST at it (its mirrors and the archives' md5s; the rest — request, md5 check,
    gunzip, reading — is torchvision's code). Yields the fixture arrays."""
    import http.server
    import threading

    import torchvision.datasets as tvd

    src, site = tmp_path / "src", tmp_path / "site"
    ref = write_mnist(src)
    site.mkdir()
    resources = []
    for f in sorted((src / "MNIST" / "raw").iterdir()):
        gz = site / (f.name + ".gz")
        gz.write_bytes(gzip.compress(f.read_bytes()))
        resources.append((gz.name, hashlib.md5(gz.read_bytes()).hexdigest()))
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **kw)  # noqa: E731
    monkeypatch.setattr(http.server.SimpleHTTPRequestHandler, "log_message", lambda *a: None)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(tvd.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
    monkeypatch.setattr(tvd.MNIST, "resources", resources)
    try:
        yield ref
    finally:
        server.shutdown()
        server.server_close()


def test_mnist_download_md5_checks_and_extracts(mnist_server, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset("mnist", root=root)
    msg = str(e.value)
    assert str(root / "MNIST" / "raw") in msg and "download = true" in msg
    assert "train-images-idx3-ubyte" in msg
    ds = make_dataset("mnist", root=root, download=True, val_fraction=0.0)
    np.testing.assert_array_equal(ds.train.x[:, 0].numpy(), mnist_server["x"])
    np.testing.assert_array_equal(ds.test.y.numpy(), mnist_server["yt"])
    assert (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
    # a corrupted download (wrong md5) is an error naming the failure, not a traceback
    monkeypatch.setattr(tvd.MNIST, "resources", [(f, "0" * 32) for f, _ in tvd.MNIST.resources])
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset("mnist", root=tmp_path / "other", download=True)
    assert "download of" in str(e.value) and "md5" in str(e.value)


def test_malformed_files_are_dataset_errors(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x09garbage")
    with pytest.raises(DatasetNotFoundError, match="cannot read"):
        make_dataset("mnist", root=tmp_path)
    write_svhn(tmp_path)
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0" + b"x" * 200)
    with pytest.raises(DatasetNotFoundError, match="cannot read"):
        make_dataset("svhn", root=tmp_path, verify=False)


# ---- SVHN -----------------------------------------------------------------------------------


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    ref = write_svhn(tmp_path)
    ds = make_dataset("svhn", root=tmp_path, verify=False, val_fraction=0.0)
    assert ds.input_shape == (3, 32, 32) and ds.train.x.dtype == torch.uint8
    assert ds.classes == [str(i) for i in range(10)] and ds.num_classes == 10
    assert (len(ds.train), len(ds.test)) == (40, 20)
    assert ds.augment and ds.crop_padding == 4 and not ds.hflip  # digits: no flip
    x, y = ref["train"]
    np.testing.assert_array_equal(ds.train.x.numpy(), x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.train.y.numpy(), np.where(y == 10, 0, y))
    assert ds.train.y.min() == 0 and ds.train.y.max() == 9
    assert ds.mean.shape == (3,)


def test_svhn_download_fetches_and_md5_checks_both_files(tmp_path, monkeypatch):
    """download = true: torchvision's SVHN fetches both .mat files (from a local HTTP server
    standing in for Stanford's) into root/svhn/ and checks their md5s; verify stays on."""
    import http.server
    import threading

    import torchvision.datasets as tvd

    site = tmp_path / "site"
    ref = write_svhn(site)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(site / "svhn"), **kw)  # noqa: E731
    monkeypatch.setattr(http.server.SimpleHTTPRequestHandler, "log_message", lambda *a: None)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        monkeypatch.setattr(tvd.SVHN, "split_list", {
            k: [base + f, f, hashlib.md5((site / "svhn" / f).read_bytes()).hexdigest() if k != "extra" else m]
            for k, (_, f, m) in tvd.SVHN.split_list.items()})
        root = tmp_path / "data"
        ds = make_dataset("svhn", root=root, download=True, val_fraction=0.0)
        assert sorted(p.name for p in (root / "svhn").iterdir()) == ["test_32x32.mat", "train_32x32.mat"]
        np.testing.assert_array_equal(ds.test.x.numpy(), ref["test"][0].transpose(0, 3, 1, 2))
        monkeypatch.setattr(tvd.SVHN, "split_list", {k: [u, f, "0" * 32] for k, (u, f, _) in
                                                     tvd.SVHN.split_list.items()})
        with pytest.raises(DatasetNotFoundError, match="md5"):  # a corrupted download
            make_dataset("svhn", root=tmp_path / "other", download=True)
    finally:
        server.shutdown()
        server.server_close()


def test_svhn_md5_checked_by_default(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    write_svhn(tmp_path)
    with pytest.raises(DatasetNotFoundError) as e:  # the fixture files are not Stanford's
        make_dataset("svhn", root=tmp_path)
    msg = str(e.value)
    assert "md5" in msg and "verify=False" in msg and str(tmp_path / "svhn") in msg
    # the verified path itself: with the fixture's md5s, torchvision's check passes
    folder = tmp_path / "svhn"
    patched = {k: [url, f, hashlib.md5((folder / f).read_bytes()).hexdigest() if k != "extra" else md5]
               for k, (url, f, md5) in tvd.SVHN.split_list.items()}
    monkeypatch.setattr(tvd.SVHN, "split_list", patched)
    ds = make_dataset("svhn", root=tmp_path, val_fraction=0.0)
    assert len(ds.train) == 40 and ds.info["verified"]


# ---- STL-10 ---------------------------------------------------------------------------------


def test_stl10_labelled_split_without_the_unlabelled_file(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    ref = write_stl10(tmp_path)
    ds = make_dataset("stl10", root=tmp_path, verify=False, val_fraction=0.0)
    assert ds.input_shape == (3, 96, 96) and ds.train.x.dtype == torch.uint8
    assert ds.classes == STL_NAMES and (len(ds.train), len(ds.test)) == (20, 10)
    assert ds.augment and ds.crop_padding == 12 and ds.hflip
    x, y = ref["train"]
    np.testing.assert_array_equal(ds.train.x.numpy(), x)
    np.testing.assert_array_equal(ds.train.y.numpy(), y.astype(np.int64) - 1)
    np.testing.assert_array_equal(ds.test.x.numpy(), ref["test"][0])
    # md5-checked by default (the labelled files only), and the check passes with their md5s
    with pytest.raises(DatasetNotFoundError, match="md5"):
        make_dataset("stl10", root=tmp_path)
    md5 = lambda f: hashlib.md5((tmp_path / "stl10_binary" / f).read_bytes()).hexdigest()  # noqa: E731
    monkeypatch.setattr(tvd.STL10, "train_list", [[f, md5(f) if "unlabeled" not in f else m]
                                                  for f, m in tvd.STL10.train_list])
    monkeypatch.setattr(tvd.STL10, "test_list", [[f, md5(f)] for f, _ in tvd.STL10.test_list])
    assert len(make_dataset("stl10", root=tmp_path).train) == 20


# ---- missing files --------------------------------------------------------------------------


@pytest.mark.parametrize("name,folder,file", [
    ("mnist", "MNIST/raw", "t10k-images-idx3-ubyte"),
    ("fashionmnist", "FashionMNIST/raw", "train-labels-idx1-ubyte"),
    ("svhn", "svhn", "test_32x32.mat"),
    ("stl10", "stl10_binary", "train_X.bin"),
])
def test_missing_names_path_and_fix(tmp_path, name, folder, file):
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset(name, root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / folder) in msg and "download = true" in msg and file in msg
    assert not (tmp_path / folder).exists()  # looking downloads nothing


# ---- imagefolder ----------------------------------------------------------------------------


def test_imagefolder_train_test_layout(tmp_path):
    classes = {"cat": 4, "dog": 5, "emu": 3}
    tr = write_png_folder(tmp_path / "train", classes)
    te = write_png_folder(tmp_path / "test", {"cat": 2, "dog": 1, "emu": 2}, seed=4)
    ds = make_dataset("imagefolder", root=tmp_path, val_fraction=0.0)
    assert ds.classes == ["cat", "dog", "emu"] and ds.num_classes == 3
    assert ds.input_shape == (3, 10, 12) and ds.train.x.dtype == torch.uint8
    assert (len(ds.train), len(ds.test)) == (12, 5) and not ds.augment
    np.testing.assert_array_equal(ds.train.y.numpy(), [0] * 4 + [1] * 5 + [2] * 3)
    np.testing.assert_array_equal(ds.train.x[4].permute(1, 2, 0).numpy(), tr["dog"][0])
    np.testing.assert_array_equal(ds.test.x[2].permute(1, 2, 0).numpy(), te["dog"][0])
    # image_size resizes to a square; options for augmentation
    ds = make_dataset("imagefolder", root=tmp_path, image_size=8, crop_padding=2, hflip=True)
    assert ds.input_shape == (3, 8, 8) and ds.augment and ds.crop_padding == 2 and ds.hflip
    assert len(ds.train) + len(ds.val) == 12  # the holdout, as for every dataset


def test_imagefolder_one_folder_grey_gets_a_fixed_test_split(tmp_path):
    write_png_folder(tmp_path / "imgs", {"a": 10, "b": 10}, size=(9, 9), mode="L")
    ds = make_dataset("imagefolder", root=tmp_path / "imgs", val_fraction=0.0)
    assert ds.input_shape == (1, 9, 9)  # grey stays one channel
    assert torch.equal(ds.test.class_counts(2), torch.tensor([2, 2]))  # 20 % per class
    other = make_dataset("imagefolder", root=tmp_path / "imgs", data_seed=7, val_fraction=0.0)
    assert torch.equal(ds.test.x, other.test.x)  # not moved by data_seed
    rgb = make_dataset("imagefolder", root=tmp_path / "imgs", channels=3, test_fraction=0.5)
    assert rgb.input_shape == (3, 9, 9) and len(rgb.test) == 10
    assert torch.equal(rgb.train.x[:, 0], rgb.train.x[:, 2])


def test_imagefolder_errors_name_the_folder_or_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match="no class folders"):
        make_dataset("imagefolder", root=empty)
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        make_dataset("imagefolder", root=tmp_path / "absent")
    write_png_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(DatasetNotFoundError, match="one class") as e:
        make_dataset("imagefolder", root=tmp_path / "one")
    assert str(tmp_path / "one") in str(e.value)
    write_png_folder(tmp_path / "bad", {"a": 3, "b": 3})
    broken = tmp_path / "bad" / "b" / "img_1.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetNotFoundError) as e:
        make_dataset("imagefolder", root=tmp_path / "bad")
    assert "cannot read image" in str(e.value) and str(broken) in str(e.value)
    write_png_folder(tmp_path / "hole", {"a": 3})
    (tmp_path / "hole" / "b").mkdir()
    (tmp_path / "hole" / "b" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        make_dataset("imagefolder", root=tmp_path / "hole")
    mixed = tmp_path / "mixed"
    write_png_folder(mixed, {"a": 2})
    write_png_folder(tmp_path / "small", {"b": 2}, size=(7, 7))
    (tmp_path / "small" / "b").rename(mixed / "b")
    with pytest.raises(DatasetNotFoundError, match="image_size"):
        make_dataset("imagefolder", root=mixed)
    assert make_dataset("imagefolder", root=mixed, image_size=6, test_fraction=0.5).input_shape == (3, 6, 6)
    (tmp_path / "split" / "train").mkdir(parents=True)
    write_png_folder(tmp_path / "split" / "train", {"a": 2, "b": 2})
    with pytest.raises(DatasetNotFoundError, match="no test/"):
        make_dataset("imagefolder", root=tmp_path / "split")
    with pytest.raises(ParameterError) as e:
        make_dataset("imagefolder", root=tmp_path / "split", test_fraction=0.3)
    assert e.value.key == "test_fraction"
    with pytest.raises(ParameterError) as e:
        make_dataset("imagefolder", root=tmp_path / "bad", channels=2)
    assert e.value.key == "channels"


# ---- the models on one grey channel ---------------------------------------------------------


@pytest.mark.parametrize("model,width", [("resnet18", 0.125), ("wrn18", 0.125), ("wrn50", 0.0625)])
def test_conv_nets_take_one_grey_channel(tmp_path, model, width):
    from ncbench.models import make_model

    write_mnist(tmp_path, n=20, n_test=10)
    ds = make_dataset("mnist", root=tmp_path, val_fraction=0.0)
    net = make_model(model, ds.num_classes, width, input_shape=ds.input_shape).eval()
    x = (ds.train.x[:4].float() / 255 - ds.mean.view(1, -1, 1, 1)) / ds.std.view(1, -1, 1, 1)
    with torch.no_grad():
        logits = net(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


def test_augmented_training_batches_of_grey_and_stl10_images(tmp_path):
    """The standard augmentation each dataset declares runs in `ncbench.batches` on its shapes:
    a one-channel image folder with crop + flip, STL-10's 96 px with 12-px padding."""
    from ncbench.batches import make_batches

    write_png_folder(tmp_path / "g", {"a": 5, "b": 5}, size=(9, 9), mode="L")
    write_stl10(tmp_path / "s")
    for ds in (make_dataset("imagefolder", root=tmp_path / "g", crop_padding=2, hflip=True),
               make_dataset("stl10", root=tmp_path / "s", verify=False)):
        batches = make_batches(ds, "train", 4, train=True, seed=1, epoch=0)
        xb, yb = next(iter(batches))
        assert xb.dtype == torch.float32 and tuple(xb.shape[1:]) == ds.input_shape
        assert torch.isfinite(xb).all() and yb.dtype == torch.int64


def test_preflight_builds_the_conv_nets_for_grey_images(tmp_path):
    """`ncbench run`'s pre-flight (`check_datasets`) loads the dataset and builds each model for
    its `input_shape` (1, 28, 28) — the same path every run of a grid takes first."""
    from ncbench.preflight import check_datasets
    from ncbench.runs import RunSpec

    write_mnist(tmp_path, n=20, n_test=10)
    check_datasets([RunSpec(experiment="g", dataset="mnist", model=m, loss="ce", width=0.25,
                            epochs=1, seed=0, data_root=str(tmp_path))
                    for m in ("resnet18", "wrn18", "wrn50")])


# ---- end to end -----------------------------------------------------------------------------


def test_ncbench_run_on_a_grey_fixture_dataset(tmp_path):
    """`ncbench run` (a subprocess: pre-flight, local executor, worker process, store) of one
    tiny run on the MNIST fixture (an mlp: the conv nets on one channel are checked above and
    in the pre-flight below, at a fraction of a worker's cost on CPU)."""
    from _runkit import ncbench, query

    root = tmp_path / "data"
    write_mnist(root, n=40, n_test=20)
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(f"""[experiments.grey]
dataset = "mnist"
data_root = "{root}"
model = "mlp"
width = 0.0625
loss = "ce"
epochs = 1
eval_every = 1
batch_size = 20
val_fraction = 0.0
device = "cpu"
""")
    out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 done" in out.stdout
    rows = query(tmp_path / "ncbench.duckdb", "SELECT dataset, model, status FROM runs")
    assert rows == [("mnist", "mlp", "done")]
