"""S1's forward-only histogram study: runs without training and logs its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initlab.jobs.propagation import run_propagation

from conftest import run_cli


def test_one_case_logs_figures_and_statistics(make_cfg):
    cfg = make_cfg("experiment=s1_histograms", "experiment/s1_case=relu_xavier")
    assert cfg.task == "propagation" and cfg.model.activation == "relu"
    metrics = run_propagation(cfg)
    # "Xavier" N(0, 1/n_in) with ReLU: the std shrinks by about 0.71 per layer (S1).
    per_layer = (metrics["diag/layer5/act_std"] / metrics["diag/layer1/act_std"]) ** 0.25
    assert per_layer == pytest.approx(0.71, abs=0.05)
    client = MlflowClient(cfg.tracking.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("s1_histograms").experiment_id])
    assert run.info.status == "FINISHED"
    assert not any(k.startswith(("train/", "val/", "test/")) for k in run.data.metrics)
    names = {a.path for a in client.list_artifacts(run.info.run_id, "diagnostics")}
    assert {"diagnostics/activation_histograms.png", "diagnostics/init_stats.json",
            "diagnostics/depth.png"} <= names
    assert run.data.params["model.bias"] == "False"
    assert run.data.metrics["diag/layer3/preact_var"] == pytest.approx(
        run.data.metrics["diag/layer3/preact_var_pred"], rel=0.2)


@pytest.mark.slow  # six train.py jobs
def test_preset_multirun_draws_the_six_cases(tmp_path: Path, store: str):
    run_cli(tmp_path, store, "-m", "experiment=s1_histograms")
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("s1_histograms").experiment_id])
    jobs = [r for r in runs if r.data.tags.get("initlab.kind") == "propagation"]
    assert len(jobs) == 6 and all(r.info.status == "FINISHED" for r in jobs)
    cases = {(r.data.params["model.activation"], r.data.params["init.name"],
              r.data.params.get("init.std")) for r in jobs}
    assert cases == {("sigmoid", "normal", "1.0"), ("sigmoid", "normal", "0.01"),
                     ("sigmoid", "lecun", None), ("relu", "normal", "0.01"),
                     ("relu", "lecun", None), ("relu", "he", None)}
    by_case = {(r.data.params["model.activation"], r.data.params["init.name"],
                r.data.params.get("init.std")): r for r in jobs}
    # S1's qualitative picture, in numbers.
    assert by_case["sigmoid", "normal", "1.0"].data.metrics["diag/layer3/saturated"] > 0.4
    assert by_case["sigmoid", "normal", "0.01"].data.metrics["diag/layer5/act_std"] < 0.03
    assert by_case["relu", "normal", "0.01"].data.tags["initlab.diag.signal"] == "vanishing"
    he = by_case["relu", "he", None].data.metrics
    assert 0.6 < he["diag/layer5/act_std"] / he["diag/layer1/act_std"] < 1.6
    for run in jobs:
        local = client.download_artifacts(run.info.run_id, "diagnostics/init_stats.json",
                                          str(tmp_path))
        assert len(json.loads(Path(local).read_text())["histograms"]) == 5
