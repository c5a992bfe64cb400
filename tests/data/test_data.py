"""Data sets load offline into memory and split by a fixed seed; the DataModule serves them."""

import pytest
import torch

from initlab.data import loaders as datasets
from initlab.engine.datamodule import TensorDataModule
from initlab.errors import DatasetUnavailableError


def module(name="digits", **kw):
    shapes = {"digits": [1, 8, 8], "mnist5k": [1, 28, 28], "circles": [2], "gaussian": [100]}
    defaults = dict(shape=shapes[name], num_classes=2 if name == "circles" else 10,
                    val_size=100, test_size=200)
    dm = TensorDataModule(name, **{**defaults, **kw})
    dm.setup()
    return dm


def test_embedded_mnist5k_is_real_mnist_in_memory():
    dm = module("mnist5k", val_size=500, test_size=500)
    x, y = dm.splits["train"]
    assert x.shape == (4000, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.bincount(torch.cat([dm.splits[s][1] for s in dm.splits])).tolist() == [500] * 10


def test_split_is_fixed_by_split_seed_not_by_run_seed():
    a, b = module(shuffle_seed=1), module(shuffle_seed=2)
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])
    assert not torch.equal(module(split_seed=1).splits["test"][0], a.splits["test"][0])


def test_circles_follow_s4s_numpy_seeds():
    from sklearn.datasets import make_circles
    import numpy as np

    raw = datasets.load("circles")
    np.random.seed(1)
    x, y = make_circles(n_samples=300, noise=0.05)
    assert torch.allclose(raw.x, torch.from_numpy(x).float()) and raw.y.tolist() == y.tolist()
    np.random.seed(2)
    xt, _ = make_circles(n_samples=100, noise=0.05)
    assert torch.allclose(raw.x_test, torch.from_numpy(xt).float())


def test_missing_dataset_offline_names_the_alternatives(tmp_path):
    with pytest.raises(DatasetUnavailableError) as err:
        datasets.load("mnist", root=str(tmp_path), download=False)
    message = str(err.value)
    assert "mnist5k" in message and "digits" in message and "dataset-fashion-mnist" in message


def test_fashion_mnist_reads_debians_copy_when_installed(tmp_path):
    if not (datasets.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    raw = datasets.load("fashion_mnist", root=str(tmp_path), download=False)
    assert raw.x.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
