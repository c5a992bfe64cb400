"""The bias is a first-class knob: ``init.bias.name`` and ``sigma_b2`` = Var(b), zero unless
asked, no hidden N(0, 1)."""

import math

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf
from torch import nn

from initlab import inits
from initlab.errors import ConfigError

UNITS = 200_000                       # biases per layer: Var(b) good to sqrt(2 / UNITS) = 0.3%
TOL = 6 * math.sqrt(2 / UNITS)


def biases(bias: dict | None, fan_in: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, UNITS)
    init = {"name": "he"} if bias is None else {"name": "he", "bias": bias}
    inits.initialize(layer, init)
    return layer.bias.detach()


@pytest.mark.parametrize("sigma_b2", [0.05, 1.0, 4.0])
def test_normal_bias_variance_is_sigma_b2(sigma_b2):
    b = biases({"name": "normal", "sigma_b2": sigma_b2})
    assert b.var(correction=0).item() == pytest.approx(sigma_b2, rel=TOL)
    assert abs(b.mean().item()) < 6 * math.sqrt(sigma_b2 / UNITS)


def test_default_bias_is_pytorchs_or_has_the_given_variance():
    fan_in = 16
    own = biases({"name": "default"}, fan_in)
    assert own.var(correction=0).item() == pytest.approx(1 / (3 * fan_in), rel=TOL)
    assert own.abs().max().item() <= 1 / math.sqrt(fan_in)
    given = biases({"name": "default", "sigma_b2": 0.5})
    assert given.var(correction=0).item() == pytest.approx(0.5, rel=TOL)
    assert given.abs().max().item() <= math.sqrt(3 * 0.5)


def test_bias_is_zero_unless_asked():
    for bias in (None, {}, {"name": "zeros"}, {"name": "zeros", "sigma_b2": 0.0},
                 {"name": "normal", "sigma_b2": 0.0}):
        assert torch.all(biases(bias) == 0), bias
    assert torch.all(biases({"name": "constant", "value": 0.3}) == 0.3)


def test_effective_sigma_b2_measures_each_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, UNITS), nn.ReLU(), nn.Linear(UNITS, 3, bias=False))
    inits.initialize(model, {"name": "he", "bias": {"name": "normal", "sigma_b2": 0.25}})
    assert list(inits.effective_sigma_b2(model)) == ["layer1"]       # layer2 has no bias
    assert inits.effective_sigma_b2(model)["layer1"] == pytest.approx(0.25, rel=TOL)


@pytest.mark.parametrize("bias,key", [
    ({"name": "normal"}, "init.bias.sigma_b2"),                     # no hidden N(0, 1)
    ({"name": "zeros", "sigma_b2": 0.5}, "init.bias.sigma_b2"),
    ({"name": "constant", "value": 0.1, "sigma_b2": 0.5}, "init.bias.sigma_b2"),
    ({"name": "normal", "sigma_b2": -1.0}, "init.bias.sigma_b2"),
    ({"name": "normal", "sigma_b2": 1.0, "value": 0.2}, "init.bias.value"),
    ({"name": "normal", "std": 1.0}, "init.bias.std"),              # the old key is gone
    ({"name": "ones"}, "init.bias.name"),
])
def test_bias_options_its_family_would_not_use_are_refused(bias, key):
    with pytest.raises(ConfigError) as err:
        biases(bias)
    assert err.value.key == key


def test_every_init_config_states_its_bias_variance():
    for path in sorted((CONF / "init").glob("*.yaml")):
        node = OmegaConf.load(path)
        assert "sigma_b2" in node.bias, path.name
        if node.name not in ("zeros", "constant", "lsuv"):
            assert "sigma_w2" in node and node.sigma_w2 is None, path.name


def test_s0_draws_standard_normal_biases_explicitly(make_cfg):
    cfg = make_cfg("experiment=s0_truncnormal_5k", tracking=False)
    init = OmegaConf.to_container(cfg.init, resolve=True)
    assert init["bias"] == {"name": "normal", "sigma_b2": 1.0}
    torch.manual_seed(0)
    layer = nn.Linear(8, UNITS)
    inits.initialize(layer, init)
    assert layer.bias.detach().var(correction=0).item() == pytest.approx(1.0, rel=TOL)
    # the weights: TF's truncated normal, std 0.1 cut at +-2 std (realised std 0.088)
    layer = nn.Linear(784, 2000)
    inits.initialize(layer, init)
    assert inits.effective_sigma_w2(layer)["layer1"] == pytest.approx(
        784 * 0.01 * 0.8796 ** 2, rel=0.01)
