"""The diagnostics callback on real tiny trainings, and per-layer statistics checked by hand."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from mlflow.tracking import MlflowClient

from initlab.diagnostics.callback import TAG_SIGNAL
from initlab.inits import initialize
from initlab.diagnostics.layerstats import measure
from initlab.nets import MLP
from initlab.engine.build import prepare
from initlab.jobs import train

TINY = ["dataset=digits", "model=mlp", "model.hidden=[32,32,32]", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false", "dataset.batch_size=200"]


def _run(client: MlflowClient):
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    return runs[0]


def test_init_statistics_match_an_independent_computation(make_cfg, tmp_path):
    cfg = make_cfg(*TINY, "init=he", "callbacks.diagnostics.probe_size=128")
    train(cfg)
    client = MlflowClient(cfg.tracking.tracking_uri)
    run = _run(client)
    history = lambda key: client.get_metric_history(run.info.run_id, key)  # noqa: E731

    # The same seed gives the same initial network: recompute layer by layer with plain torch.
    job = prepare(cfg)
    net = job.module.model
    x, y = job.datamodule.probe_batch(128)
    h = net[0](x)
    for k, i in enumerate((1, 3, 5), start=1):
        pre = net[i](h)
        h = torch.relu(pre)
        at_init = {m.key: m.value for key in ("act_std", "preact_std", "weight_std", "dead")
                   for m in history(f"diag/layer{k}/{key}") if m.step == 0}
        assert at_init[f"diag/layer{k}/act_std"] == pytest.approx(h.std().item(), rel=1e-4)
        assert at_init[f"diag/layer{k}/preact_std"] == pytest.approx(pre.std().item(), rel=1e-4)
        assert at_init[f"diag/layer{k}/weight_std"] == pytest.approx(
            net[i].weight.std().item(), rel=1e-4)
        dead = (h == 0).all(dim=0).float().mean().item()
        assert at_init[f"diag/layer{k}/dead"] == pytest.approx(dead)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    grad = torch.autograd.grad(loss, net[1].weight)[0].norm().item()
    assert history("diag/layer1/grad_norm")[0].value == pytest.approx(grad, rel=1e-4)
    assert {m.step for m in history("diag/layer2/preact_var_pred")} == {0}

    # During training: one point per epoch, at the epoch's last step.
    steps = sorted(m.step for m in history("diag/layer2/update_ratio"))
    assert len(steps) == 2 and steps[0] > 0
    assert all(0 < m.value < 1 for m in history("diag/layer2/update_ratio"))
    assert len(history("diag/layer2/act_std")) == 3  # init + 2 epochs

    # Artifacts: the S1-style figure and the JSON that compare reads.
    names = {a.path for a in client.list_artifacts(run.info.run_id, "diagnostics")}
    assert names == {"diagnostics/activation_histograms.png", "diagnostics/init_stats.json",
                     "diagnostics/backward.png", "diagnostics/jacobian_spectrum.png"}
    local = client.download_artifacts(run.info.run_id, "diagnostics/init_stats.json", str(tmp_path))
    record = json.loads(open(local).read())
    assert [layer["name"] for layer in record["layers"]] == ["layer1", "layer2", "layer3", "layer4"]
    assert len(record["histograms"]) == 3 and record["layers"][0]["pred"]["preact_var"] > 0
    assert run.data.tags[TAG_SIGNAL] == "ok"


def test_diagnostics_do_not_change_training_and_can_be_switched_off(make_cfg, store):
    results, seen = {}, set()
    client = MlflowClient(store)
    for name in ("on", "off"):
        extra = ["diagnostics=off"] if name == "off" else []
        results[name] = train(make_cfg(*TINY, *extra))
        (run,) = [r for r in client.search_runs([e.experiment_id for e in
                                                 client.search_experiments()])
                  if r.info.run_id not in seen]
        seen.add(run.info.run_id)
        has_diag = any(k.startswith("diag/") for k in run.data.metrics)
        assert has_diag == (name == "on")
    assert results["on"]["test/loss"] == results["off"]["test/loss"]


def test_vanishing_signal_is_tagged_and_warned_before_training(make_cfg, caplog):
    cfg = make_cfg(*TINY, "init=normal", "trainer.max_epochs=1")  # std 0.01, 3 ReLU layers
    with caplog.at_level(logging.WARNING, logger="initlab.diagnostics.callback"):
        train(cfg)
    run = _run(MlflowClient(cfg.tracking.tracking_uri))
    assert run.data.tags[TAG_SIGNAL] == "vanishing"
    assert float(run.data.tags["initlab.diag.signal_ratio"]) < 0.01
    assert any("at initialization" in r.message and "vanishing" in r.message
               for r in caplog.records)


def test_sigmoid_with_std_one_saturates_most_units():
    """S1: sigmoid net, 5 x 100, weights N(0, 1): activations pile up at 0 and 1."""
    torch.manual_seed(0)
    x = torch.randn(1000, 100)
    fractions = {}
    for std in (1.0, 0.1):
        model = MLP(100, 10, [100] * 5, "sigmoid")
        initialize(model, {"name": "normal", "std": std, "bias": {"name": "zeros"}})
        for threshold in (0.01, 0.05):
            m = measure(model, x, threshold=threshold)
            fractions[std, threshold] = [m.stats[f"layer{k}"]["saturated"] for k in range(1, 6)]
    assert min(fractions[1.0, 0.01]) > 0.4 and sum(fractions[1.0, 0.01]) / 5 > 0.45
    assert sum(fractions[1.0, 0.05]) / 5 > 0.6  # most units within 5% of 0 or 1
    assert max(fractions[0.1, 0.01]) < 0.01  # "Xavier" (0.1 = 1/sqrt(100)): hardly any


def test_float64_run_records_backward_jacobian_and_initial_weights(make_cfg, tmp_path):
    """``trainer.precision=64-true`` with everything on (``diagnostics=full``), on an orthogonal
    deep linear net: the Jacobian is an isometry at init and chi_1 = 1 in every layer."""
    from initlab.tracking.artifacts import load_weights

    cfg = make_cfg(*TINY, "trainer.precision=64-true", "diagnostics=full", "init=orthogonal",
                   "model.activation=linear", "callbacks.diagnostics.jacobian_every_n_steps=5")
    train(cfg)
    client = MlflowClient(cfg.tracking.tracking_uri)
    run = _run(client)
    history = lambda key: {m.step: m.value  # noqa: E731
                           for m in client.get_metric_history(run.info.run_id, key)}

    for stat in ("s_min", "s_max", "cond"):
        assert history(f"diag/jacobian/{stat}")[0] == pytest.approx(1.0, abs=1e-5)
    assert history("diag/jacobian/s2_var_pred")[0] == pytest.approx(0.0, abs=1e-5)
    steps = sorted(history("diag/jacobian/s2_mean"))
    assert steps[:3] == [0, 5, 10] and all(s % 5 == 0 for s in steps)
    assert list(history("diag/jacobian/s2_mean_pred")) == [0]
    for k in (1, 2, 3):
        assert history(f"diag/layer{k}/chi1")[0] == pytest.approx(1.0, abs=1e-4)
        assert history(f"diag/layer{k}/chi1_pred")[0] == pytest.approx(1.0, abs=0.02)
    grads = history("diag/layer2/grad_preact_var")
    assert len(grads) == 3 and all(v > 0 for v in grads.values())  # init + 2 epochs
    assert history("diag/layer2/grad_preact_var_pred")[0] == pytest.approx(grads[0], rel=0.3)
    assert history("diag/layer2/grad_weight_var")[0] > 0

    names = {a.path for a in client.list_artifacts(run.info.run_id, "diagnostics")}
    assert {"diagnostics/backward.png", "diagnostics/jacobian_spectrum.png",
            f"diagnostics/jacobian_spectrum_step{steps[-1]}.png"} <= names
    model = {a.path for a in client.list_artifacts(run.info.run_id, "weights")}
    assert model == {"weights/initial_weights.safetensors", "weights/final_weights.safetensors"}
    initial = load_weights(client.download_artifacts(
        run.info.run_id, "weights/initial_weights.safetensors", str(tmp_path)))
    final = load_weights(client.download_artifacts(
        run.info.run_id, "weights/final_weights.safetensors", str(tmp_path)))
    fresh = prepare(cfg).module.model.state_dict()  # same seed: the same initial network
    assert set(initial) == set(fresh) == set(final)
    for key, value in initial.items():
        assert value.dtype == torch.float64
        assert torch.equal(value, fresh[key].double())
        assert not torch.equal(value, final[key])
