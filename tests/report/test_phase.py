"""The tanh phase diagram (Schoenholz et al. 2017, Fig. 5): the depth scale xi_c against an
independent numerical integration, the figure from synthetic results, the preset composed and
(slow) run as a tiny real sweep that ends with the figure in its parent run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from scipy import integrate

from initlab.diagnostics import meanfield
from initlab.report.phase import TRAINABLE_DEPTH_FACTOR, phase_figure

from conftest import CONF, run_cli


def _gauss(f, q: float) -> float:
    """E[f(h)], h ~ N(0, q), by adaptive quadrature (independent of meanfield's Hermite rule)."""
    s = math.sqrt(q)
    return integrate.quad(lambda z: f(s * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                          -12, 12, limit=200)[0]


def _dtanh(h: float) -> float:
    return 1.0 / math.cosh(h) ** 2


def test_depth_scale_diverges_on_the_critical_line_and_is_finite_off_it():
    critical = meanfield.critical_sigma_w2("tanh", 0.05)
    assert critical == pytest.approx(1.761, abs=2e-3)   # Schoenholz et al. 2017, Fig. 1/5
    assert meanfield.depth_scale("tanh", critical, 0.05) > 1e4
    xi = {s: meanfield.depth_scale("tanh", s, 0.05) for s in (1.0, 1.5, 2.0, 2.5, 4.0)}
    assert all(0 < v < 100 for v in xi.values()), xi
    # growing towards the critical line from either side
    assert xi[1.0] < xi[1.5] and xi[4.0] < xi[2.5] < xi[2.0]


def test_depth_scale_in_the_ordered_phase_is_minus_one_over_ln_chi1():
    # sigma_b^2 = 0.05, sigma_w^2 = 1: q* by iterating the length map, chi_1 by quad.
    sw2, sb2 = 1.0, 0.05
    q = 1.0
    for _ in range(500):
        q = sw2 * _gauss(lambda h: math.tanh(h) ** 2, q) + sb2
    assert meanfield.fixed_point("tanh", sw2, sb2) == pytest.approx(q, rel=1e-6)
    chi1 = sw2 * _gauss(lambda h: _dtanh(h) ** 2, q)
    assert meanfield.correlation_fixed_point("tanh", sw2, sb2) == 1.0
    assert meanfield.depth_scale("tanh", sw2, sb2) == pytest.approx(-1 / math.log(chi1), rel=1e-5)


def test_depth_scale_in_the_chaotic_phase_against_monte_carlo():
    # sigma_w^2 = 2.5, sigma_b^2 = 0.05: c* < 1 solves the correlation map, chi_c < 1 < chi_1.
    sw2, sb2 = 2.5, 0.05
    q = meanfield.fixed_point("tanh", sw2, sb2)
    c = meanfield.correlation_fixed_point("tanh", sw2, sb2)
    assert 0.3 < c < 0.6
    z1, z2 = np.random.default_rng(0).standard_normal((2, 2_000_000))
    u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    mapped = (sw2 * np.mean(np.tanh(u1) * np.tanh(u2)) + sb2) / q
    assert mapped == pytest.approx(c, abs=3e-3)          # MC error ~ 1e-3
    chi_c = sw2 * np.mean(1 / np.cosh(u1) ** 2 / np.cosh(u2) ** 2)
    assert meanfield.chi_c("tanh", sw2, sb2) == pytest.approx(chi_c, abs=3e-3)
    assert meanfield.chi1("tanh", sw2, q) > 1 > chi_c
    # sigma_b^2 = 0 (odd phi, no bias): c* = 0 and chi_c = sigma_w^2 E[phi'(u)]^2
    q0 = meanfield.fixed_point("tanh", 2.0, 0.0)
    assert meanfield.correlation_fixed_point("tanh", 2.0, 0.0) == 0.0
    assert meanfield.chi_c("tanh", 2.0, 0.0) == pytest.approx(
        2.0 * _gauss(_dtanh, q0) ** 2, rel=1e-4)


def test_phase_figure_draws_the_heatmap_and_the_depth_scale():
    sws, depths = [1.0, 1.76, 3.0], [5, 20, 60]
    points = [{"sigma_w2": s, "depth": d, "sigma_b2": 0.05,
               "value": 0.9 if d <= 6 * meanfield.depth_scale("tanh", s, 0.05) else 0.1}
              for s in sws for d in depths]
    fig = phase_figure(points, "train/acc", curve_points=15)
    ax = fig.axes[0]
    (mesh,) = ax.collections
    cells = np.asarray(mesh.get_array()).reshape(len(depths), len(sws))
    assert cells[0].tolist() == [0.9, 0.9, 0.9]           # depth 5 trains everywhere
    assert cells[2].tolist() == [0.1, 0.9, 0.1]           # depth 60 only near the critical line
    curve = next(line for line in ax.lines if "xi_c" in line.get_label())
    x, y = curve.get_data()
    i = int(np.argmin(abs(x - 3.0)))
    assert y[i] == pytest.approx(TRAINABLE_DEPTH_FACTOR
                                 * meanfield.depth_scale("tanh", float(x[i]), 0.05), rel=1e-9)
    assert y.max() > depths[-1]                             # through the top near 1.76
    critical = next(line for line in ax.lines if "critical" in line.get_label())
    assert critical.get_xdata()[0] == pytest.approx(1.761, abs=2e-3)


def _compose(*overrides: str):
    """The job config and Hydra's own (the sweeper's params, the callbacks)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, "tracking=none"],
                       return_hydra_config=True)


def test_the_presets_compose():
    cfg = _compose("experiment=phase_tanh")
    assert cfg.model.activation == "tanh" and cfg.model.width == 100
    assert cfg.init.bias.sigma_b2 == 0.05 and cfg.dataset.standardize
    assert set(cfg.hydra.sweeper.params) == {"init.sigma_w2", "model.depth"}
    assert cfg.hydra.callbacks.phase_figure.figure == "phase"
    iso = _compose("experiment=isometry", "init=orthogonal", "model.activation=linear")
    assert iso.init.sigma_w2 == 1.0 and iso.init.bias.sigma_b2 == 0.0
    assert iso.trainer.precision == "64-true" and iso.model.depth == 32
    tanh = _compose("experiment=isometry", "init=normal", "model.activation=tanh")
    assert tanh.init.sigma_w2 == pytest.approx(
        meanfield.critical_sigma_w2("tanh", tanh.init.bias.sigma_b2), abs=1e-3)


def _parent_figure(tmp_path: Path, store: str, file: str) -> tuple[dict, list]:
    parent = json.loads((tmp_path / "multirun/mlflow_parent_run.json").read_text())
    client = MlflowClient(store)
    run = client.get_run(parent["run_id"])
    assert run.info.status == "FINISHED"
    assert f"figures/{file}" in {a.path for a in client.list_artifacts(run.info.run_id,
                                                                        "figures")}
    jobs = client.search_runs([parent["experiment_id"]],
                              f"tags.`mlflow.parentRunId` = '{parent['run_id']}'")
    return parent, jobs


@pytest.mark.slow  # four short trainings
def test_a_tiny_phase_sweep_ends_with_the_figure_in_its_parent_run(tmp_path: Path, store: str):
    proc = run_cli(tmp_path, store, "-m", "experiment=phase_tanh", "init.sigma_w2=1.0,2.0",
                   "model.depth=2,4", "model.width=16", "trainer.max_epochs=1",
                   "trainer.enable_progress_bar=false")
    assert "phase figure: figures/phase_diagram.png" in proc.stdout
    _, jobs = _parent_figure(tmp_path, store, "phase_diagram.png")
    assert len(jobs) == 4 and all(j.info.status == "FINISHED" for j in jobs)
