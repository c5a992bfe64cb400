"""Each init family draws what its formula says: empirical std of a large layer within 2%."""

import math

import pytest
import torch
from torch import nn

from initlab import inits

FAN_IN, FAN_OUT = 800, 1200  # 960,000 weights: the std estimate is good to ~0.1%


def drawn(name, **options):
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    inits.initialize(layer, {"name": name, **options})
    return layer


# family, options, expected std of the weights (formula), at scale 1 and scale 3
CASES = [
    ("normal", {"std": 0.01}, 0.01),
    ("normal", {"std": 1.0}, 1.0),
    ("uniform", {"bound": 0.05}, 0.05 / math.sqrt(3)),
    ("xavier", {}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("xavier", {"distribution": "normal"}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("he", {}, math.sqrt(2 / FAN_IN)),
    ("he", {"distribution": "uniform"}, math.sqrt(2 / FAN_IN)),
    ("he", {"mode": "fan_out"}, math.sqrt(2 / FAN_OUT)),
    ("lecun", {}, math.sqrt(1 / FAN_IN)),
    ("orthogonal", {}, math.sqrt(1 / FAN_OUT)),  # rows of a 1200x800 semi-orthogonal matrix
    ("default", {}, 1 / math.sqrt(FAN_IN) / math.sqrt(3)),
    ("random", {}, 10.0),
    ("truncated_normal", {"std": 0.1}, 0.1 * 0.8796),  # TF's +-2 sigma cut keeps 0.88 sigma
]


@pytest.mark.parametrize("scale", [1.0, 3.0])
@pytest.mark.parametrize("name,options,std", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_empirical_std_matches_formula(name, options, std, scale):
    weight = drawn(name, scale=scale, **options).weight
    assert weight.std().item() == pytest.approx(std * scale, rel=0.02)
    assert abs(weight.mean().item()) < 0.01 * std * scale + 1e-3 * std


def test_uniform_families_respect_their_bound():
    assert drawn("xavier").weight.abs().max() <= math.sqrt(6 / (FAN_IN + FAN_OUT))
    assert drawn("he", distribution="uniform").weight.abs().max() <= math.sqrt(6 / FAN_IN)
    assert drawn("truncated_normal", std=0.1).weight.abs().max() <= 0.2


def test_default_is_pytorchs_own_draw():
    torch.manual_seed(5)
    ours = nn.Linear(30, 20)
    torch.manual_seed(5)
    theirs = nn.Linear(30, 20)
    torch.manual_seed(5)
    inits.initialize(ours, {"name": "default", "bias": {"name": "default"}})
    torch.manual_seed(5)
    theirs.reset_parameters()
    assert torch.equal(ours.weight, theirs.weight)


def test_conv_layers_use_in_channels_times_kernel_area():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 256, kernel_size=5)  # fan_in = 64 * 25 = 1600
    inits.initialize(conv, {"name": "he"})
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 1600), rel=0.02)


def test_zeros_and_constant_make_units_identical():
    for name in ("zeros", "constant"):
        w = drawn(name).weight
        assert torch.all(w == w[0, 0])
    assert drawn("constant", value=0.1, scale=2.0).weight[0, 0].item() == pytest.approx(0.2)


@pytest.mark.parametrize("bias,check", [
    ({"name": "zeros"}, lambda b: torch.all(b == 0)),
    ({"name": "constant", "value": 0.5}, lambda b: torch.all(b == 0.5)),
    ({"name": "normal", "sigma_b2": 1.0}, lambda b: abs(b.std().item() - 1.0) < 0.1),
    ({"name": "default"}, lambda b: b.abs().max() <= 1 / math.sqrt(FAN_IN)),
])
def test_bias_init_is_separate(bias, check):
    layer = drawn("he", bias=bias)
    assert check(layer.bias.detach())
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / FAN_IN), rel=0.02)


def test_lsuv_gives_each_layer_unit_output_variance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(),
                          nn.Linear(200, 10))
    probe = torch.randn(512, 100) * 3
    inits.initialize(model, {"name": "lsuv", "scale": 1.0, "bias": {"name": "zeros"}}, probe=probe)
    x = probe
    for layer in model:
        x = layer(x)
        if isinstance(layer, nn.Linear):
            assert x.std().item() == pytest.approx(1.0, abs=0.02)


def test_same_seed_same_weights():
    assert torch.equal(drawn("he").weight, drawn("he").weight)
