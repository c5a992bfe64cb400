"""Data options are never ignored: ``dataset.standardize`` for every data set (statistics from
the training split only, applied to every split), and an option a loader does not take is
refused naming the key."""

import pytest
import torch
from omegaconf import OmegaConf

from initlab.data import loaders
from initlab.engine.build import build
from initlab.engine.datamodule import TensorDataModule
from initlab.errors import ConfigError

SETS = {  # name: shape, classes, val_size, test_size (circles/moons bring their own splits)
    "digits": ([1, 8, 8], 10, 200, 300),
    "mnist5k": ([1, 28, 28], 10, 500, 500),
    "circles": ([2], 2, 0, 0),
    "moons": ([2], 2, 0, 0),
    "gaussian": ([100], 10, 100, 100),
}


def module(name: str, standardize: bool, **kw) -> TensorDataModule:
    shape, classes, val, test = SETS[name]
    dm = TensorDataModule(name, shape=shape, num_classes=classes, val_size=val, test_size=test,
                          standardize=standardize, **kw)
    dm.setup()
    return dm


@pytest.mark.parametrize("name", sorted(SETS))
def test_standardised_train_split_has_mean_0_std_1_and_others_use_its_statistics(name):
    raw, std = module(name, False), module(name, True)
    x_raw = raw.splits["train"][0]
    varying = x_raw.std(dim=0, correction=0) > 0
    assert varying.any()
    sd, mean = torch.std_mean(std.splits["train"][0], dim=0, correction=0)
    assert mean.abs().max().item() < 1e-5
    assert torch.allclose(sd[varying], torch.ones_like(sd[varying]), atol=1e-4)
    # constant training features (MNIST's border pixels) are centred, not divided by 0
    assert torch.all(sd[~varying] == 0)
    # the statistics are the training split's: the same from a module that never saw val/test
    train_mean = x_raw.mean(dim=0)
    train_std = x_raw.std(dim=0, correction=0)
    assert torch.allclose(std.feature_mean, train_mean, atol=1e-6)
    scale = torch.where(varying, train_std, torch.ones_like(train_std))
    for split in ("val", "test"):
        expected = (raw.splits[split][0] - train_mean) / scale
        assert torch.allclose(std.splits[split][0], expected, atol=1e-4), split
        assert torch.equal(std.splits[split][1], raw.splits[split][1])
    # and they are not the val or test split's own (those are not standardised to 0 / 1)
    if len(raw.splits["test"][0]) > 1:
        test_mean = std.splits["test"][0].mean(dim=0)
        assert test_mean.abs().max().item() > 1e-3
    assert torch.equal(std.probe_batch(8)[0], std.splits["train"][0][:8])


def test_standardize_false_leaves_the_data_as_loaded():
    dm = module("digits", False)
    x = dm.splits["train"][0]
    assert dm.feature_mean is None and 0.0 <= x.min() and x.max() <= 1.0


def test_standardize_from_the_config(make_cfg):
    cfg = make_cfg("dataset=digits", "dataset.standardize=true", tracking=False)
    dm = build(cfg.dataset)
    dm.setup()
    assert dm.standardize is True
    assert dm.splits["train"][0].mean(dim=0).abs().max().item() < 1e-5
    base = make_cfg("dataset=circles", tracking=False)
    assert OmegaConf.select(base, "dataset.standardize") is False   # every data set has the key


@pytest.mark.parametrize("name,options,key", [
    ("digits", {"standardize": True}, "dataset.options.standardize"),
    ("mnist5k", {"root": "data"}, "dataset.options.root"),
    ("circles", {"dim": 3}, "dataset.options.dim"),
    ("moons", {"factor": 0.5}, "dataset.options.factor"),
    ("gaussian", {"noise": 0.1}, "dataset.options.noise"),
    ("mnist", {"factor": 0.5}, "dataset.options.factor"),
])
def test_an_option_the_loader_does_not_take_is_refused_naming_the_key(name, options, key):
    with pytest.raises(ConfigError) as err:
        loaders.load(name, **options)
    assert err.value.key == key
    assert key in str(err.value) and name in str(err.value)


def test_the_datamodule_refuses_unsupported_options_too():
    with pytest.raises(ConfigError) as err:
        module("digits", False, options={"standardize": True})
    assert err.value.key == "dataset.options.standardize"
    assert "dataset.standardize" in str(err.value)   # points at the key that does it
