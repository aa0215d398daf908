"""MNIST-1D (`ncbench.data.mnist1d`) and the 1-D CNN (`cnn1d`): the package's own samples, the
global random state left alone, the cache, option errors, and training on it."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from mnist1d.data import get_dataset_args, make_dataset as package_make_dataset

from ncbench.data import DATASETS, make_dataset
from ncbench.data.mnist1d import cache_path, generator_args
from ncbench.errors import ParameterError
from ncbench.model_size import parameter_count
from ncbench.models import count_parameters, make_model
from ncbench.train import ListSink, train_run
from _runkit import one_thread, tiny_spec  # noqa: F401  (one_thread: a fixture)

SMALL = {"seed": 7, "num_samples": 500}


def package_output(**overrides) -> dict:
    args = get_dataset_args()
    for k, v in overrides.items():
        setattr(args, k, v)
    return package_make_dataset(args)


@pytest.fixture(scope="module")
def default_pair(tmp_path_factory):
    """(ncbench's raw mnist1d with the package defaults, the package's make_dataset output)."""
    root = tmp_path_factory.mktemp("data")
    return DATASETS.get("mnist1d")(root), package_output(), root


def assert_same_samples(raw, ref):
    for split, xk, yk in ((raw.train, "x", "y"), (raw.test, "x_test", "y_test")):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape) == (len(ref[yk]), 1, ref[xk].shape[1])
        assert torch.equal(split.x[:, 0], torch.from_numpy(ref[xk].astype(np.float32)))
        assert torch.equal(split.y, torch.from_numpy(ref[yk].astype(np.int64)))


def test_default_samples_are_the_packages(default_pair):
    raw, ref, _ = default_pair
    assert (len(raw.train), len(raw.test)) == (4000, 1000)
    assert raw.num_classes == 10 and not raw.augment
    assert_same_samples(raw, ref)


def test_non_default_seed_and_num_samples_are_the_packages(tmp_path):
    raw = DATASETS.get("mnist1d")(tmp_path, **SMALL)
    ref = package_output(**SMALL)
    assert (len(raw.train), len(raw.test)) == (400, 100)
    assert_same_samples(raw, ref)
    other = DATASETS.get("mnist1d")(tmp_path, seed=8, num_samples=500)
    assert not torch.equal(other.train.x, raw.train.x)


def test_make_dataset_splits_and_normalisation(default_pair):
    _, ref, root = default_pair
    ds = make_dataset("mnist1d", root=root)
    assert ds.input_shape == (1, 40)
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (4000, 1000)
    assert abs(len(ds.val) - 400) <= 5  # stratified 10 % holdout, rounded per class
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(ref["x_test"].astype(np.float32)))
    assert ds.mean.shape == (1,) and ds.std.shape == (1,)  # per channel
    x = ds.train.x.double()
    assert math.isclose(float(ds.mean), float(x.mean()), abs_tol=1e-5)
    assert math.isclose(float(ds.std), float(x.std(unbiased=False)), rel_tol=1e-5)
    # val_fraction 0: the train split is the package's, in its order
    whole = make_dataset("mnist1d", root=root, val_fraction=0.0)
    assert torch.equal(whole.train.x[:, 0], torch.from_numpy(ref["x"].astype(np.float32)))


def test_loading_leaves_the_global_random_state_alone(tmp_path):
    np.random.seed(123)
    random.seed(5)
    torch.manual_seed(9)
    np_before, py_before, torch_before = np.random.get_state(), random.getstate(), torch.get_rng_state()
    make_dataset("mnist1d", root=tmp_path, cache=False, **SMALL)  # the generator really runs
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before
    assert torch.equal(torch.get_rng_state(), torch_before)


def test_cache_hit_gives_identical_tensors_and_is_read(tmp_path):
    first = DATASETS.get("mnist1d")(tmp_path, **SMALL)
    path = cache_path(tmp_path, generator_args(**SMALL))
    assert first.info["cache"] == str(path) and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    second = DATASETS.get("mnist1d")(tmp_path, **SMALL)
    assert second.info["cache"] == str(path)
    for a, b in ((first.train, second.train), (first.test, second.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    # it is the file that is read: change it (same shapes) and the dataset follows
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["x"] = arrays["x"] * 0 + 1.5
    np.savez(path, **arrays)
    assert float(DATASETS.get("mnist1d")(tmp_path, **SMALL).train.x.mean()) == 1.5
    # other options, another file
    DATASETS.get("mnist1d")(tmp_path, seed=7, num_samples=500, shuffle_seq=True)
    assert len(list(path.parent.glob("*.npz"))) == 2


def test_unreadable_cache_is_generated_again(tmp_path):
    path = cache_path(tmp_path, generator_args(**SMALL))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    raw = DATASETS.get("mnist1d")(tmp_path, **SMALL)
    assert_same_samples(raw, package_output(**SMALL))
    with np.load(path) as f:  # rewritten
        assert f["x"].shape == (400, 40)


def test_root_that_cannot_hold_a_cache_still_loads(tmp_path):
    root = tmp_path / "a-file"
    root.write_text("")
    raw = DATASETS.get("mnist1d")(root, **SMALL)
    assert raw.info["cache"] is None and len(raw.train) == 400


@pytest.mark.parametrize("opts, key, needle", [
    ({"num_samples": 5}, "num_samples", "num_samples"),
    ({"num_samples": 5.0}, "num_samples", "num_samples"),
    ({"num_samples": 10, "train_split": 0.05}, "num_samples", "empty train or test"),
    ({"train_split": 1.0}, "train_split", "train_split"),
    ({"seed": -1}, "dataset_params", "seed"),
    ({"seed": True}, "dataset_params", "seed"),
    ({"shuffle_seq": "yes"}, "shuffle_seq", "shuffle_seq"),
    ({"final_seq_length": 1}, "final_seq_length", "final_seq_length"),
    ({"max_translation": 0}, "max_translation", "max_translation"),
    ({"iid_noise_scale": float("nan")}, "iid_noise_scale", "iid_noise_scale"),
    ({"shear_scale": -1}, "shear_scale", "shear_scale"),
    ({"cache": "no"}, "cache", "cache"),
    ({"sed": 3}, "sed", "did you mean 'seed'"),
])
def test_bad_options_are_parameter_errors_naming_the_key(tmp_path, opts, key, needle):
    with pytest.raises(ParameterError) as e:
        make_dataset("mnist1d", root=tmp_path, **opts)
    assert e.value.key == key
    assert needle in str(e.value)
    assert not (tmp_path / "mnist1d").exists()  # refused before generating anything


# -- cnn1d ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("width, channels, d", [(0.25, (8, 16, 32), 64), (1.0, (32, 64, 128), 256),
                                                (1.5, (48, 96, 192), 384)])
def test_cnn1d_shapes_and_feature_dim(width, channels, d):
    m = make_model("cnn1d", 10, width, input_shape=(1, 40)).eval()
    assert m.channels == channels and m.feature_dim == d
    assert m.classifier.in_features == d and m.classifier.out_features == 10
    assert m.classifier.bias is not None
    x = torch.randn(5, 1, 40)
    h = m.features(x)
    assert h.shape == (5, d) and bool((h >= 0).all())  # post-ReLU
    assert torch.equal(m(x), m.classifier(h))


@pytest.mark.parametrize("width", [0.1, 0.25, 0.5, 1.0, 1.3, 2.0, 4.0])
@pytest.mark.parametrize("shape, k", [((1, 40), 10), ((3, 17), 7), ((2, 1), 3)])
def test_cnn1d_parameter_count_formula(width, shape, k):
    with torch.device("meta"):
        m = make_model("cnn1d", k, width, input_shape=shape)
    assert parameter_count("cnn1d", k, width, shape) == count_parameters(m)


@pytest.mark.parametrize("shape, needle", [((3, 32, 32), "wrn18"), ((64,), "mlp"), (None, "input_shape")])
def test_cnn1d_refuses_images_and_vectors(shape, needle):
    with pytest.raises(ParameterError, match=needle) as e:
        make_model("cnn1d", 10, 1.0, input_shape=shape)
    assert e.value.key == "model"
    if shape is not None:
        with pytest.raises(ParameterError) as e2:
            parameter_count("cnn1d", 10, 1.0, shape)
        assert e2.value.key == "model"


def test_conv_nets_on_signals_suggest_cnn1d_and_mlp_takes_them():
    with pytest.raises(ParameterError, match="cnn1d") as e:
        make_model("wrn18", 10, 1.0, input_shape=(1, 40))
    assert e.value.key == "model"
    m = make_model("mlp", 10, 1.0, input_shape=(1, 40))
    assert m.in_features == 40 and m(torch.randn(3, 1, 40)).shape == (3, 10)
    assert parameter_count("mlp", 10, 1.0, (1, 40)) == count_parameters(m)


@pytest.mark.parametrize("model", ["cnn1d", "mlp"])
def test_models_train_on_mnist1d(tmp_path, one_thread, model):
    sink = ListSink()
    spec = tiny_spec(dataset="mnist1d", model=model, width=0.5, epochs=2, batch_size=64,
                     data_root=str(tmp_path), dataset_params={"num_samples": 500})
    assert train_run(spec, sink) == "done"
    loss = sink.metric("train_loss")
    assert all(math.isfinite(v) for v in loss) and loss[-1] < loss[0]
