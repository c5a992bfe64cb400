"""Backward and Jacobian diagnostics on real small nets, against the closed-form predictions of
mean-field theory (Schoenholz et al. 2017) and random-matrix theory (Pennington et al. 2017)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.diagnostics import backward, jacobian, meanfield
from initlab.diagnostics.layerstats import layers_of, measure
from initlab.diagnostics.records import predictions as forward_predictions
from probe_nets import mlp


def probe(width: int, n: int = 256, scale: float = 1.0, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=g, dtype=torch.float64) * scale
    return x.to(dtype), torch.randint(0, 10, (n,), generator=g)


def backward_of(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    layers = layers_of(net)
    forward = forward_predictions(measure(net, x, layers=layers), net)
    stats = backward.measure_backward(
        net, x, lambda out: nn.functional.cross_entropy(out, y), layers)
    return layers, stats, backward.predictions(stats, layers, forward)


def geometric_mean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


@pytest.mark.parametrize("sigma_w2, expected", [(2.0, 1.0), (1.0, 0.5)])
def test_relu_backward_variance_ratio_per_layer(sigma_w2, expected):
    """He (sigma_w^2 = 2): E[(dl/dh)^2] is the same in every hidden layer of a deep ReLU net;
    LeCun (1) halves it at each layer going back."""
    ratios = []
    for seed in range(2):
        x, y = probe(256, seed=seed)
        layers, stats, preds = backward_of(mlp("relu", sigma_w2, 10, 256, seed=seed), x, y)
        g = [stats[layer.name]["grad_preact_var"] for layer in layers]
        hidden = [g[i] / g[i + 1] for i in range(len(g) - 2)]  # layer l over layer l + 1
        assert all(0.85 * expected < r < 1.18 * expected for r in hidden), hidden
        ratios += hidden
        for layer, pred in zip(layers, preds):  # the prediction, layer by layer
            assert stats[layer.name]["grad_preact_var"] == pytest.approx(
                pred["grad_preact_var"], rel=0.25)
            assert stats[layer.name]["grad_weight_var"] > 0
    assert geometric_mean(ratios) == pytest.approx(expected, rel=0.05)


def test_chi1_crosses_one_at_the_tanh_critical_line():
    # Mean-field theory: chi_1 = sigma_w^2 E[phi'(h)^2] at the fixed point q*.
    assert meanfield.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-4)
    critical = meanfield.critical_sigma_w2("tanh", 0.05)
    assert 1.7 < critical < 1.8  # Schoenholz et al. 2017, Fig. 1
    # side: -1 ordered (chi_1 < 1), 0 critical, +1 chaotic (chi_1 > 1)
    for sw2, sb2, side in [(0.5, 0.0, -1), (1.0, 0.0, 0), (2.0, 0.0, 1),
                           (0.8 * critical, 0.05, -1), (critical, 0.05, 0),
                           (1.25 * critical, 0.05, 1)]:
        q_star = meanfield.fixed_point("tanh", sw2, sb2)
        chi_star = meanfield.chi1("tanh", sw2, q_star)
        if side == 0:
            assert chi_star == pytest.approx(1.0, abs=1e-6)
        else:
            assert (chi_star - 1.0) * side > 0.05

        # Measured on a deep tanh net whose inputs start at the fixed point (at 1e-3 when q* = 0).
        x, y = probe(256, scale=math.sqrt(max(q_star, 1e-3) / sw2))
        layers, stats, preds = backward_of(mlp("tanh", sw2, 12, 256, sigma_b2=sb2), x, y)
        deep = [stats[layer.name]["chi1"] for layer in layers[-4:-1]]
        for layer, pred in zip(layers[:-1], preds):
            assert stats[layer.name]["chi1"] == pytest.approx(pred["chi1"], rel=0.03)
        if side == 0:
            assert sum(deep) / 3 == pytest.approx(1.0, abs=0.03)
        else:
            assert all((c - 1.0) * side > 0.03 for c in deep), (sw2, sb2, deep)
            assert sum(deep) / 3 == pytest.approx(chi_star, rel=0.03)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_orthogonal_deep_linear_net_is_an_isometry(dtype, tol):
    """Saxe et al. 2014 / Pennington et al. 2017: every singular value of the input-output
    Jacobian of an orthogonal deep linear net is 1."""
    net = mlp("linear", 1.0, 10, 128, orthogonal=True, dtype=dtype)
    x, _ = probe(128, n=8, dtype=dtype)
    layers = layers_of(net)
    forward = forward_predictions(measure(net, x, layers=layers), net)
    result = jacobian.measure_jacobian(net, x, layers, [p["preact_var"] for p in forward])
    assert result["depth"] == 9 and result["shape"] == [128, 128] and result["inputs"] == 8
    stats = result["stats"]
    assert stats["s_max"] == pytest.approx(1.0, abs=tol)
    assert stats["s_min"] == pytest.approx(1.0, abs=tol)
    assert stats["cond"] == pytest.approx(1.0, abs=2 * tol)
    assert stats["s2_var"] < tol and stats["zero_frac"] == 0
    assert result["hist"]["zeros"] == 0 and sum(result["hist"]["counts"]) == 8 * 128
    assert result["pred"]["s2_mean"] == pytest.approx(1.0, abs=1e-5)
    assert result["pred"]["s2_var"] == pytest.approx(0.0, abs=1e-5)


def test_gaussian_deep_linear_spread_grows_with_depth():
    """Gaussian weights at sigma_w^2 = 1: E[s^2] stays 1, but Var(s^2) grows like the depth
    (free products of Marchenko-Pastur laws), where orthogonal weights keep it at 0."""
    spread = {}
    for depth in (3, 6, 12):
        net = mlp("linear", 1.0, depth, 200)
        x, _ = probe(200, n=4)
        layers = layers_of(net)
        forward = forward_predictions(measure(net, x, layers=layers), net)
        result = jacobian.measure_jacobian(net, x, layers, [p["preact_var"] for p in forward])
        chain = depth - 1
        assert result["depth"] == chain
        assert result["stats"]["s2_mean"] == pytest.approx(1.0, rel=0.1)
        assert result["pred"]["s2_var"] == pytest.approx(chain, rel=0.15)
        assert result["stats"]["s2_var"] == pytest.approx(result["pred"]["s2_var"], rel=0.35)
        assert result["stats"]["cond"] > 10
        spread[depth] = result["stats"]["s2_var"]
    assert spread[3] < spread[6] < spread[12]


def test_chi1_of_a_convolution_matches_its_exact_jacobian():
    """Conv layers: the Hutchinson estimate of ||D W||_F^2 / N matches the exact Jacobian."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.Tanh(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    x = torch.randn(64, 3, 6, 6)
    y = torch.randint(0, 10, (64,))
    layers = layers_of(net)
    stats = backward.measure_backward(net, x, lambda o: nn.functional.cross_entropy(o, y), layers)
    prefix = nn.Sequential()
    for k, name in ((0, "layer1"), (2, "layer2")):
        conv, act = net[k], net[k + 1]
        h_in = prefix(x)
        jac = torch.func.vmap(torch.func.jacrev(
            lambda z, conv=conv, act=act: act(conv(z[None]))[0]))(h_in)
        exact = jac.flatten(1).pow(2).sum(1).mean() / (8 * 6 * 6)
        assert stats[name]["chi1"] == pytest.approx(exact.item(), rel=0.05)
        prefix = nn.Sequential(*prefix, conv, act)
    # The global RNG is untouched (training with and without diagnostics stays identical).
    state = torch.get_rng_state()
    backward.measure_backward(net, x, lambda o: nn.functional.cross_entropy(o, y), layers)
    assert torch.equal(state, torch.get_rng_state())


def test_dead_relu_units_make_the_jacobian_rank_deficient():
    """ReLU: D has zeros, so about half the singular values vanish (counted in zero_frac and
    apart from the histogram), where those of an orthogonal tanh net are all positive."""
    x, _ = probe(128, n=8)
    fractions = {}
    for activation in ("relu", "tanh"):
        net = mlp(activation, 2.0 if activation == "relu" else 1.0, 4, 128,
                  orthogonal=activation == "tanh")
        result = jacobian.measure_jacobian(net, x, layers_of(net))
        fractions[activation] = result["stats"]["zero_frac"]
        assert result["hist"]["zeros"] + sum(result["hist"]["counts"]) == 8 * 128
    assert 0.3 < fractions["relu"] < 0.7 and fractions["tanh"] == 0


def test_jacobian_of_a_net_without_two_hidden_layers_is_skipped():
    net = mlp("tanh", 1.0, 1, 16)
    x, _ = probe(16, n=4)
    assert jacobian.measure_jacobian(net, x, layers_of(net)) is None


def test_jacobian_of_a_cnn_matches_autograd():
    from initlab.nets import LeNet

    torch.manual_seed(0)
    net = LeNet(1, 16, 10, activation="tanh")
    x = torch.randn(3, 1, 16, 16)
    layers = layers_of(net)
    result = jacobian.measure_jacobian(net, x, layers)
    assert result["shape"] == [84, 6 * 16 * 16] and result["pred"] is None
    jac = jacobian.io_jacobian(net, x, layers, max_rows=64)  # several chunks
    rest = lambda z: net.classifier[:5](net.features[2:](z[None]))[0]  # noqa: E731
    z = net.features[:2](x)
    expected = torch.func.vmap(torch.func.jacrev(rest))(z).flatten(2)
    assert torch.allclose(jac, expected, atol=1e-6)
    assert all(math.isfinite(v) for v in result["stats"].values())
