"""Data sets load offline into memory, split by a fixed seed, and batch by slicing."""

import pytest
import torch

from initlab import datasets
from initlab.datamodule import TensorBatches, TensorDataModule
from initlab.errors import ConfigError, DatasetUnavailableError


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


def test_batches_depend_on_the_seed_only():
    x, y = torch.arange(100.0).unsqueeze(1), torch.arange(100)
    first = [b[1].tolist() for b in TensorBatches(x, y, 10, shuffle=True, seed=3)]
    again = [b[1].tolist() for b in TensorBatches(x, y, 10, shuffle=True, seed=3)]
    other = [b[1].tolist() for b in TensorBatches(x, y, 10, shuffle=True, seed=4)]
    assert first == again and first != other
    assert sorted(sum(first, [])) == list(range(100))  # an epoch is a permutation


def test_epochs_reshuffle_and_drop_last():
    x, y = torch.zeros(105, 1), torch.arange(105)
    batches = TensorBatches(x, y, 10, shuffle=True, seed=0, drop_last=True)
    e1, e2 = [b[1].tolist() for b in batches], [b[1].tolist() for b in batches]
    assert len(batches) == len(e1) == 10 and e1 != e2


def test_full_batch_and_steps_per_epoch():
    x, y = torch.randn(300, 2), torch.randint(2, (300,))
    batches = TensorBatches(x, y, None, steps_per_epoch=500)
    out = list(batches)
    assert len(out) == 500 and all(b[0] is x for b in out)


def test_replacement_draws_fixed_count_batches():
    x, y = torch.zeros(50, 1), torch.arange(50)
    out = list(TensorBatches(x, y, 128, replacement=True, steps_per_epoch=7, seed=0))
    assert len(out) == 7 and all(len(b[1]) == 128 for b in out)


def test_ddp_ranks_split_one_permutation():
    x, y = torch.zeros(100, 1), torch.arange(100)
    ranks = [[i for b in TensorBatches(x, y, 10, shuffle=True, seed=0, rank=r, world_size=2)
              for i in b[1].tolist()] for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and len(ranks[0]) == len(ranks[1]) == 50


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


def _flat(batches):
    """Mini-batches of an iteration, blocks unpacked: [(x, y), ...]."""
    out = []
    for xs, ys in batches:
        if isinstance(xs, tuple):
            out += list(zip(xs, ys))
        else:
            out.append((xs, ys))
    return out


@pytest.mark.parametrize("kw", [
    dict(batch_size=10, shuffle=True, seed=3),                          # last batch of 5
    dict(batch_size=10, shuffle=True, seed=3, drop_last=True),
    dict(batch_size=16, replacement=True, steps_per_epoch=13, seed=1),  # S1
    dict(batch_size=10, shuffle=True, seed=0, rank=1, world_size=2),    # one DDP rank
    dict(batch_size=None, steps_per_epoch=45),                          # S4: full batch
])
def test_blocks_hold_the_same_mini_batches_in_the_same_order(kw):
    x, y = torch.randn(105, 3), torch.arange(105)
    plain = TensorBatches(x, y, **kw)
    blocked = TensorBatches(x, y, **kw, steps_per_block=4)
    for _ in range(2):  # two epochs: the reshuffle is the same too
        expected, blocks = list(plain), list(blocked)
        assert len(blocks) == len(blocked) == -(-len(plain) // 4)
        assert all(len(xs) <= 4 for xs, _ in blocks)
        got = _flat(blocks)
        assert len(got) == len(expected)
        for (xa, ya), (xb, yb) in zip(got, expected):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_full_batch_blocks_repeat_the_set_without_copying_it():
    x, y = torch.randn(300, 2), torch.randint(2, (300,))
    blocks = list(TensorBatches(x, y, None, steps_per_epoch=500, steps_per_block=50))
    assert len(blocks) == 10 and all(b is x for xs, _ in blocks for b in xs)


def test_steps_per_block_must_be_positive():
    with pytest.raises(ConfigError, match="steps_per_block must be at least 1"):
        module(steps_per_block=0)
