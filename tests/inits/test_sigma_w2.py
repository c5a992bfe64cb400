"""One sigma_w^2 = fan_in x Var(W) axis for every family with random weights: each family's
classic default is a known point on it, ``init.sigma_w2`` drives every family to the same
measured value, and ``effective_sigma_w2`` measures it layer by layer as the diagnostics name
the layers."""

import math

import pytest
import torch
from scipy.stats import truncnorm
from torch import nn

from initlab import inits
from initlab.diagnostics.layerstats import layers_of
from initlab.errors import ConfigError
from initlab.inits.labels import init_label
from initlab.inits.variance import truncation_factor

FAN_IN, FAN_OUT = 800, 1200          # a tall layer: 960,000 weights
N = FAN_IN * FAN_OUT
# Sampling error of a variance estimated from N iid draws: sqrt((kurtosis - 1) / N) relative,
# at most sqrt(2 / N) for these distributions (normal: kurtosis 3; uniform 1.8; truncated and
# orthogonal less).  Six standard errors: 0.87%.
TOL = 6 * math.sqrt(2 / N)
AXIS_FAMILIES = ["normal", "truncated_normal", "uniform", "xavier", "he", "lecun", "orthogonal",
                 "default", "random"]


def measured(init: dict, layer: nn.Module | None = None) -> float:
    torch.manual_seed(0)
    layer = layer if layer is not None else nn.Linear(FAN_IN, FAN_OUT)
    inits.initialize(layer, init)
    return inits.effective_sigma_w2(layer)["layer1"]


# family and options -> its classic sigma_w^2 for the 800 -> 1200 layer, written out from the
# papers' formulas (not from initlab.inits.variance)
CLASSIC = [
    ("he", {}, 2.0),                                              # He et al. 2015, ReLU
    ("he", {"distribution": "uniform"}, 2.0),
    ("he", {"mode": "fan_out"}, 2.0 * FAN_IN / FAN_OUT),
    ("he", {"nonlinearity": "leaky_relu", "negative_slope": 0.2}, 2.0 / (1 + 0.2 ** 2)),
    ("lecun", {}, 1.0),                                           # LeCun 1998; S1's "Xavier"
    ("xavier", {}, 2.0 * FAN_IN / (FAN_IN + FAN_OUT)),            # Glorot & Bengio 2010
    ("xavier", {"distribution": "normal"}, 2.0 * FAN_IN / (FAN_IN + FAN_OUT)),
    ("default", {}, 1.0 / 3.0),                                   # U(+-1/sqrt(fan_in))
    ("normal", {"std": 0.01}, FAN_IN * 0.01 ** 2),                # S1's std 0.01
    ("uniform", {"bound": 0.05}, FAN_IN * 0.05 ** 2 / 3.0),       # Var U(-b, b) = b^2 / 3
    ("truncated_normal", {"std": 0.1},                            # S0, +-2 sigma (TF)
     FAN_IN * 0.1 ** 2 * truncnorm(-2, 2).var()),
    ("truncated_normal", {"std": 0.1, "cutoff": 1.0}, FAN_IN * 0.1 ** 2 * truncnorm(-1, 1).var()),
    ("orthogonal", {}, FAN_IN / FAN_OUT),                         # orthonormal columns
    ("random", {"factor": 10.0}, FAN_IN * 100.0),                 # S4's N(0, 1) x 10
    ("zeros", {}, 0.0),
    ("constant", {"value": 0.1}, 0.0),
]


@pytest.mark.parametrize("name,options,classic", CLASSIC,
                         ids=[f"{c[0]}{c[1] or ''}" for c in CLASSIC])
def test_each_family_default_is_its_classic_point_on_the_axis(name, options, classic):
    init = {"name": name, **options}
    assert inits.nominal_sigma_w2(init, (FAN_OUT, FAN_IN)) == pytest.approx(classic, rel=1e-9)
    assert measured(init) == pytest.approx(classic, rel=TOL, abs=1e-12)


def test_truncation_factor_is_the_truncated_normals_variance():
    for c in (0.5, 1.0, 2.0, 3.0):
        assert truncation_factor(c) == pytest.approx(truncnorm(-c, c).var(), rel=1e-12)
    assert math.sqrt(truncation_factor(2.0)) == pytest.approx(0.8796, abs=1e-4)  # SEEDS.md S0


@pytest.mark.parametrize("scale", [0.5, 3.0])
@pytest.mark.parametrize("name", ["he", "lecun", "xavier", "normal", "truncated_normal",
                                  "uniform", "default"])
def test_scale_multiplies_sigma_w2_by_its_square(name, scale):
    classic = measured({"name": name})
    assert measured({"name": name, "scale": scale}) == pytest.approx(
        classic * scale ** 2, rel=2 * TOL)


AXIS_CASES = [(name, {}) for name in AXIS_FAMILIES] + [
    ("xavier", {"distribution": "normal"}), ("he", {"distribution": "uniform"}),
    ("he", {"mode": "fan_out", "nonlinearity": "tanh"}), ("lecun", {"distribution": "uniform"}),
    ("truncated_normal", {"cutoff": 1.0}), ("normal", {"std": 5.0}), ("uniform", {"bound": 9.0}),
]


@pytest.mark.parametrize("sigma_w2", [0.5, 2.0])
@pytest.mark.parametrize("name,options", AXIS_CASES, ids=[f"{c[0]}{c[1] or ''}" for c in AXIS_CASES])
def test_sigma_w2_drives_every_family_to_the_same_measured_value(name, options, sigma_w2):
    init = {"name": name, "sigma_w2": sigma_w2, **options}
    assert measured(init) == pytest.approx(sigma_w2, rel=TOL)
    assert inits.nominal_sigma_w2(init, (FAN_OUT, FAN_IN)) == sigma_w2


@pytest.mark.parametrize("name", AXIS_FAMILIES)
def test_sigma_w2_counts_a_conv_layers_fan_in_as_channels_times_kernel(name):
    conv = nn.Conv2d(64, 256, kernel_size=5)          # fan_in 1,600; 409,600 weights
    tol = 6 * math.sqrt(2 / conv.weight.numel())
    assert measured({"name": name, "sigma_w2": 2.0}, conv) == pytest.approx(2.0, rel=tol)


def test_sigma_w2_keeps_each_familys_shape():
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    inits.initialize(layer, {"name": "truncated_normal", "sigma_w2": 2.0, "cutoff": 2.0})
    s = math.sqrt(2.0 / FAN_IN / truncation_factor(2.0))      # the nominal std before the cut
    assert layer.weight.abs().max().item() <= 2.0 * s * (1 + 1e-6)
    assert layer.weight.abs().max().item() > 1.95 * s         # cut there, not before
    inits.initialize(layer, {"name": "xavier", "sigma_w2": 2.0})          # uniform
    bound = math.sqrt(3 * 2.0 / FAN_IN)
    assert bound * 0.999 < layer.weight.abs().max().item() <= bound
    square = nn.Linear(500, 500)
    inits.initialize(square, {"name": "orthogonal", "sigma_w2": 2.0})
    w = square.weight.detach().double()
    assert torch.allclose(w @ w.T, 2.0 * torch.eye(500, dtype=torch.float64), atol=1e-4)


def test_classic_draws_are_unchanged_by_the_axis():
    """sigma_w2 null is the family's own draw, bit for bit (presets reproduce)."""
    for name, reference in (("he", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
                            ("xavier", nn.init.xavier_uniform_)):
        torch.manual_seed(3)
        ours = torch.empty(300, 200)
        inits.INIT_FAMILIES[name](ours, sigma_w2=None)
        torch.manual_seed(3)
        theirs = reference(torch.empty(300, 200))
        assert torch.equal(ours, theirs)


def test_scale_and_sigma_w2_together_are_refused():
    with pytest.raises(ConfigError) as err:
        measured({"name": "he", "scale": 2.0, "sigma_w2": 2.0})
    assert err.value.key == "init.sigma_w2"
    with pytest.raises(ConfigError) as err:
        measured({"name": "lsuv", "sigma_w2": 1.0})
    assert err.value.key == "init.sigma_w2"


def test_effective_sigma_w2_names_layers_as_the_diagnostics_do():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    inits.initialize(model, {"name": "xavier", "distribution": "normal"})
    per_layer = inits.effective_sigma_w2(model)
    assert list(per_layer) == [layer.name for layer in layers_of(model)]
    for layer, value in zip(inits.weight_layers(model), per_layer.values()):
        fan_out, fan_in = layer.weight.shape
        expected = 2 * fan_in / (fan_in + fan_out)          # 1.51, 1, 1.92
        assert value == pytest.approx(expected, rel=6 * math.sqrt(2 / layer.weight.numel()))
    inits.initialize(model, {"name": "normal", "sigma_w2": 2.0})
    metrics = inits.init_metrics(model)
    assert metrics["init/sigma_w2"] == pytest.approx(2.0, rel=0.05)
    assert {k for k in metrics if k.startswith("init/sigma_w2/")} == {
        f"init/sigma_w2/layer{i}" for i in (1, 2, 3)}


def test_summary_is_the_geometric_mean():
    assert inits.summary_sigma_w2({"layer1": 1.0, "layer2": 4.0}) == pytest.approx(2.0)
    assert inits.summary_sigma_w2({"layer1": 0.0, "layer2": 4.0}) == 0.0


def test_lsuv_has_no_nominal_value_but_a_measured_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 200), nn.Tanh(), nn.Linear(200, 10))
    probe = torch.randn(512, 100) * 3
    init = {"name": "lsuv", "scale": 1.0}
    assert inits.nominal_sigma_w2(init, (200, 100)) is None
    inits.initialize(model, init, probe=probe)
    # unit output std from inputs of std 3: the first layer's sigma_w^2 is about 1 / 9
    assert inits.effective_sigma_w2(model)["layer1"] == pytest.approx(1 / 9, rel=0.1)


def test_constant_sigma_w2_and_labels_use_the_axis():
    assert inits.constant_sigma_w2({"name": "he"}) == pytest.approx(2.0)
    assert inits.constant_sigma_w2({"name": "lecun", "scale": 2.0}) == pytest.approx(4.0)
    assert inits.constant_sigma_w2({"name": "default"}) == pytest.approx(1 / 3)
    assert inits.constant_sigma_w2({"name": "xavier"}) is None            # per layer
    assert inits.constant_sigma_w2({"name": "normal", "std": 0.01}) is None
    assert inits.constant_sigma_w2({"name": "normal", "sigma_w2": 0.7}) == 0.7
    assert inits.constant_sigma_w2({"name": "lsuv"}) is None
    # MLflow params are strings; the options sigma_w2 replaces are not shown
    assert init_label({"name": "normal", "std": "0.01", "scale": "1.0",
                       "sigma_w2": "2.5"}) == "normal(sigma_w2=2.5)"
    assert init_label({"name": "he", "mode": "fan_out", "distribution": "uniform",
                       "sigma_w2": "2"}) == "he(distribution=uniform, sigma_w2=2)"
    assert init_label({"name": "normal", "std": "0.01", "scale": "4.6",
                       "sigma_w2": "None"}) == "normal(std=0.01) x4.6"
