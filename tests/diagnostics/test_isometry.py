"""Closed-form checks of mean-field and random-matrix theory on real nets: chi_1 measured on
tanh nets crosses 1 where ``critical_sigma_w2`` says; an orthogonal deep linear net is an exact
isometry in float64 while a Gaussian one spreads with depth; the isometry preset as a tiny real
sweep (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from initlab.diagnostics import backward, jacobian, meanfield
from initlab.diagnostics.layerstats import layers_of

from conftest import run_cli
from probe_nets import mlp


def _deep_chi1(sigma_w2: float, sigma_b2: float, seed: int) -> float:
    """chi_1 measured on a tanh net (width 256, 12 hidden layers; inputs at q*), averaged over
    layers 4-12, where the pre-activations have reached q*."""
    width = 256
    q = meanfield.fixed_point("tanh", sigma_w2, sigma_b2)
    net = mlp("tanh", sigma_w2, 12, width, sigma_b2=sigma_b2, seed=seed,
              dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(128, width, generator=g, dtype=torch.float64) * math.sqrt(q)
    y = torch.randint(0, 10, (128,), generator=g)
    layers = layers_of(net)
    stats = backward.measure_backward(net, x, lambda out: nn.functional.cross_entropy(out, y),
                                      layers)
    return sum(stats[layer.name]["chi1"] for layer in layers[3:12]) / 9


def test_measured_chi1_crosses_one_at_the_critical_sigma_w2():
    # sigma_b^2 = 0.05: critical sigma_w^2 = 1.761.  chi_1 of one net of width 256, averaged
    # over 9 deep layers, scatters by about 0.01 and sits ~0.01 below the infinite-width value;
    # so each measurement is within 0.03 of sigma_w^2 E[phi'(h)^2], and the measured curve
    # crosses 1 within 5% of the critical sigma_w^2 (seen over seeds 0-3: 1.5-3.3% above).
    critical = meanfield.critical_sigma_w2("tanh", 0.05)
    factors = (0.9, 1.0, 1.1)
    measured = [_deep_chi1(f * critical, 0.05, seed=1) for f in factors]
    predicted = [meanfield.chi1("tanh", f * critical,
                                meanfield.fixed_point("tanh", f * critical, 0.05))
                 for f in factors]
    assert predicted[1] == pytest.approx(1.0, abs=1e-6)
    assert predicted[0] < 1 < predicted[2]
    assert measured == pytest.approx(predicted, abs=0.03)
    assert measured[0] < 1 < measured[2], measured
    i = 0 if measured[1] > 1 else 1  # the bracket [factors[i], factors[i + 1]] holds the crossing
    crossing = factors[i] + (factors[i + 1] - factors[i]) * (1 - measured[i]) / (
        measured[i + 1] - measured[i])
    assert crossing == pytest.approx(1.0, abs=0.05), crossing


def _spectrum(orthogonal: bool, depth: int, width: int = 64, seed: int = 0) -> torch.Tensor:
    net = mlp("linear", 1.0, depth, width, orthogonal=orthogonal, seed=seed, dtype=torch.float64)
    x = torch.randn(2, width, dtype=torch.float64)
    layers = layers_of(net)
    return jacobian.singular_values(jacobian.io_jacobian(net, x, layers))


def test_orthogonal_deep_linear_is_an_exact_isometry_in_float64():
    for depth in (4, 32):
        s = _spectrum(True, depth)
        assert (s - 1).abs().max() < 1e-12, float((s - 1).abs().max())
    # Gaussian at the same sigma_w^2 = 1: E[s^2] stays near 1, the spread grows with depth
    # (free probability: Var(s^2) ~ number of layers in the chain).
    spread = {depth: float(_spectrum(False, depth).pow(2).var()) for depth in (4, 16, 32)}
    assert 1.5 < spread[4] < spread[16] < spread[32], spread
    s = _spectrum(False, 32)
    assert float(s.max() / s.min()) > 100


def test_every_diagnostic_runs_in_float64_and_orthogonal_linear_is_exact(make_cfg):
    """A tiny training run under ``trainer.precision=64-true`` with ``diagnostics=full``, the
    net built in float64 (``model.dtype``) so the orthogonal init is drawn in float64: every
    diagnostic metric is finite, and the Jacobian's singular values are 1 to 1e-12."""
    from initlab.jobs import train

    cfg = make_cfg("dataset=digits", "model=mlp_deep", "model.depth=6", "model.width=32",
                   "model.activation=linear", "model.dtype=float64", "init=orthogonal",
                   "trainer.precision=64-true", "diagnostics=full", "trainer.max_epochs=1",
                   "callbacks=none", "trainer.enable_progress_bar=false",
                   "dataset.steps_per_epoch=3")
    train(cfg)
    client = MlflowClient(cfg.tracking.tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    diag = {k: v for k, v in run.data.metrics.items() if k.startswith("diag/")}
    for key in ("diag/jacobian/s_min", "diag/jacobian/s_max", "diag/layer3/chi1",
                "diag/layer3/grad_preact_var", "diag/layer3/preact_var_pred"):
        assert key in diag
    assert all(math.isfinite(v) for v in diag.values())
    first = {k: client.get_metric_history(run.info.run_id, k)[0].value
             for k in ("diag/jacobian/s_min", "diag/jacobian/s_max", "diag/layer3/chi1")}
    assert abs(first["diag/jacobian/s_min"] - 1) < 1e-12
    assert abs(first["diag/jacobian/s_max"] - 1) < 1e-12
    assert first["diag/layer3/chi1"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.slow  # four short trainings of 32-layer float64 nets
def test_a_tiny_isometry_sweep_ends_with_the_figure_in_its_parent_run(tmp_path: Path, store: str):
    proc = run_cli(tmp_path, store, "-m", "experiment=isometry", "model.depth=6",
                   "model.width=32", "trainer.max_epochs=1", "trainer.enable_progress_bar=false")
    assert "isometry figure: figures/isometry.png" in proc.stdout
    parent = json.loads((tmp_path / "multirun/mlflow_parent_run.json").read_text())
    client = MlflowClient(store)
    assert client.get_run(parent["run_id"]).info.status == "FINISHED"
    assert "figures/isometry.png" in {
        a.path for a in client.list_artifacts(parent["run_id"], "figures")}
    jobs = client.search_runs([parent["experiment_id"]],
                              f"tags.`mlflow.parentRunId` = '{parent['run_id']}'")
    assert len(jobs) == 4
    ortho_linear = [j for j in jobs if j.data.params["init.name"] == "orthogonal"
                    and j.data.params["model.activation"] == "linear"]
    assert abs(ortho_linear[0].data.metrics["diag/jacobian/s_max"] - 1) < 1e-12
    assert abs(ortho_linear[0].data.metrics["diag/jacobian/s_min"] - 1) < 1e-12
