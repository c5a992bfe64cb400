"""Mean-field predictions against measurements on real networks (wide layers, several seeds)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from initlab.diagnostics import meanfield
from initlab.diagnostics.records import predictions
from initlab.inits import initialize
from initlab.diagnostics.layerstats import measure
from initlab.nets import MLP, LeNet


def _second_moments(init: dict, activation: str, width: int, depth: int, seed: int,
                    batch: int = 200) -> tuple[list[float], list[float]]:
    """Measured E[h^2] per hidden layer and the prediction from the actual weights."""
    torch.manual_seed(seed)
    model = MLP(width, 10, [width] * depth, activation)
    initialize(model, {**init, "bias": {"name": "zeros"}})
    x = torch.randn(batch, width)
    m = measure(model, x)
    preds = predictions(m, model)
    hidden = m.layers[:depth]
    return ([m.stats[layer.name]["preact_var"] for layer in hidden],
            [p["preact_var"] for p in preds[:depth]])


def _averaged(init: dict, activation: str, seeds: int = 10, width: int = 1000, depth: int = 10):
    runs = [_second_moments(init, activation, width, depth, seed) for seed in range(seeds)]
    measured = [statistics.fmean(col) for col in zip(*(r[0] for r in runs))]
    predicted = [statistics.fmean(col) for col in zip(*(r[1] for r in runs))]
    return measured, predicted


def test_relu_closed_form_and_quadrature():
    for q in (0.01, 1.0, 7.0):
        assert meanfield.act_moments("relu", q)[1] == pytest.approx(q / 2)
        assert meanfield.act_moments("linear", q) == (0.0, q)
        z = torch.randn(400_000, dtype=torch.float64) * math.sqrt(q)
        mean, m2 = meanfield.act_moments("tanh", q)
        assert mean == pytest.approx(0.0, abs=1e-9)
        assert m2 == pytest.approx(float(torch.tanh(z).pow(2).mean()), rel=0.01)


def test_he_keeps_relu_second_moment_within_10_percent():
    """10 layers x 1000 ReLU units, He init: E[h^2] stays at q_1 = 2 E[x^2] at every layer,
    and matches the mean-field prediction within 10% (average of 10 seeds)."""
    measured, predicted = _averaged({"name": "he"}, "relu")
    for layer, (got, want) in enumerate(zip(measured, predicted), 1):
        assert got == pytest.approx(want, rel=0.10), f"layer {layer}"
        assert want == pytest.approx(2.0, rel=0.05)  # sigma_w^2 = 2, E[x^2] = 1: constant


def test_lecun_halves_relu_second_moment_per_layer():
    measured, predicted = _averaged({"name": "lecun"}, "relu")
    for layer in range(1, len(measured)):
        assert measured[layer] / measured[layer - 1] == pytest.approx(0.5, rel=0.10)
        assert measured[layer] == pytest.approx(predicted[layer], rel=0.10)


def test_tanh_prediction_matches_wide_net():
    measured, predicted = _averaged({"name": "normal", "std": 1.5 / math.sqrt(1000)}, "tanh",
                                    seeds=3, depth=6)
    for got, want in zip(measured, predicted):
        assert got == pytest.approx(want, rel=0.10)


def test_finite_width_spread_is_kept_per_seed():
    """At width 100 one draw scatters around the prediction (Hanin & Rolnick): the measured
    last/first ratio differs from seed to seed, the prediction barely does."""
    ratios, predicted = [], []
    for seed in range(12):
        got, want = _second_moments({"name": "he"}, "relu", width=100, depth=10, seed=seed)
        ratios.append(got[-1] / got[0])
        predicted.append(want[-1] / want[0])
    assert max(ratios) / min(ratios) > 1.3
    assert statistics.pstdev(ratios) > 3 * statistics.pstdev(predicted)


def test_theory_applies_to_mlps_only():
    assert meanfield.applies_to(MLP(4, 2, [3, 3], "tanh"))
    assert not meanfield.applies_to(LeNet(1, 28, 10))


def test_derivative_moments_and_chi1_closed_forms():
    assert meanfield.dphi_moments("relu", 3.0) == (0.5, 0.5)
    assert meanfield.dphi_moments("linear", 3.0) == meanfield.dphi_moments(None, 3.0) == (1.0, 1.0)
    mu1, mu2 = meanfield.dphi_moments("tanh", 1e-8)  # tanh'(0) = 1
    assert mu1 == pytest.approx(1.0, abs=1e-6) and mu2 == pytest.approx(1.0, abs=1e-6)
    z = torch.randn(2_000_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    d = 1 - torch.tanh(math.sqrt(0.7) * z) ** 2  # tanh'(h), h ~ N(0, 0.7)
    mu1, mu2 = meanfield.dphi_moments("tanh", 0.7)
    assert mu1 == pytest.approx(float((d**2).mean()), rel=2e-3)
    assert mu2 == pytest.approx(float((d**4).mean()), rel=3e-3)
    assert meanfield.chi1("relu", 2.0, 1.0) == 1.0  # He: the edge of chaos for ReLU
    assert meanfield.critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, abs=1e-6)
    assert meanfield.fixed_point("relu", 1.5, 0.1) == pytest.approx(0.4)  # 0.1 / (1 - 0.75)
    assert meanfield.fixed_point("relu", 2.5, 0.0) == math.inf


def test_random_matrix_and_backward_predictions_closed_forms():
    # Deep linear, square: Gaussian weights add 1 per layer to Var(s^2) / E[s^2]^2, orthogonal 0.
    gaussian = meanfield.jacobian_predict([1.0] * 5, [1.0] * 5, ["linear"] * 5, [1.0] * 5)
    assert gaussian == {"s2_mean": 1.0, "s2_var": 5.0}
    ortho = meanfield.jacobian_predict([1.0] * 5, [0.0] * 5, ["linear"] * 5, [1.0] * 5)
    assert ortho == {"s2_mean": 1.0, "s2_var": 0.0}
    # ReLU at sigma_w^2 = 2: mean 1 per layer; D^2 in {0, 1} adds mu_2 / mu_1^2 - 1 = 1.
    relu = meanfield.jacobian_predict([2.0] * 3, [0.0] * 3, ["relu"] * 3, [1.0] * 3)
    assert relu == {"s2_mean": 1.0, "s2_var": 3.0}
    # Backward: a factor sigma_w^2 E[phi'^2] (N_{l+1} / N_l) per layer going back.
    grads = meanfield.backward_predict([2.0, 2.0, 2.0], ["relu", "relu", None], [100, 100, 10],
                                       [1.0, 1.0, 1.0], 0.5)
    assert grads == pytest.approx([0.5 * 0.1, 0.5 * 0.1, 0.5])
