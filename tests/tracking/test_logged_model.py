"""What the record holds besides metrics: the nets as MLflow logged models (pyfunc from code,
signature, input example), the data set as dataset inputs, and system metrics behind one switch.
A tiny real run (S4's circles, its 2-10-5-1 net, one epoch) in a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from conftest import CONF
from initlab.engine.build import build
from initlab.jobs import train
from initlab.tracking.artifacts import WEIGHTS_ARTIFACT, load_weights
from initlab.tracking.datasets import digest
from initlab.tracking.models import BEST_MODEL, FINAL_MODEL, TAG_WEIGHTS, build_net

TINY = ["dataset=circles", "dataset.steps_per_epoch=20", "model=mlp_s4", "trainer.max_epochs=1",
        "diagnostics=off", "trainer.enable_progress_bar=false"]


def compose_train(tmp, *overrides):
    store = f"sqlite:///{tmp}/mlruns/mlflow.db"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, *overrides, f"tracking.tracking_uri={store}",
                                          f"tracking.artifact_root={tmp}/mlruns/artifacts"])
    return cfg, store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logged")
    cfg, store = compose_train(tmp)
    metrics = train(cfg)
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("initlab").experiment_id])
    return cfg, store, client, client.get_run(run.info.run_id), metrics, tmp


@pytest.fixture
def the_store(trained, monkeypatch):
    """The run's store as MLflow's default (``runs:/`` and ``models:/`` URIs name no store),
    through the environment only: nothing global outlives the test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained[1])
    return trained


def test_the_final_model_loads_with_pyfunc_and_predicts_as_the_trained_net(the_store):
    _, store, client, run, _, tmp = the_store
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/{FINAL_MODEL}")
    example = model.input_example
    assert isinstance(example, np.ndarray) and example.shape == (5, 2)
    assert example.dtype == np.float32
    # The trained net: its final weights as the run recorded them (safetensors, tensors only).
    weights = load_weights(client.download_artifacts(run.info.run_id, WEIGHTS_ARTIFACT, str(tmp)))
    spec = {"class": "MLP", "kwargs": {"in_features": 2, "num_outputs": 1, "hidden": [10, 5],
                                       "activation": "relu"}}
    expected = build_net(spec, weights)(torch.from_numpy(example)).detach().numpy()
    np.testing.assert_array_equal(model.predict(example), expected)
    # The signature: float32 rows of the data set's shape -> one logit per output.
    signature = model.metadata.signature
    (inputs,), (outputs,) = signature.inputs.inputs, signature.outputs.inputs
    assert (inputs.type, inputs.shape) == (np.dtype("float32"), (-1, 2))
    assert (outputs.type, outputs.shape) == (np.dtype("float32"), (-1, 1))


def test_final_and_best_models_are_logged_models_of_the_run(the_store):
    _, store, client, run, _, tmp = the_store
    ids = [m.model_id for m in run.outputs.model_outputs]
    models = {client.get_logged_model(i).name: client.get_logged_model(i) for i in ids}
    assert set(models) == {FINAL_MODEL, BEST_MODEL}
    for model in models.values():
        assert model.source_run_id == run.info.run_id and str(model.status).endswith("READY")
        assert model.tags["initlab.outputs"] == "logits"
    assert models[FINAL_MODEL].tags[TAG_WEIGHTS] == "final"
    assert models[BEST_MODEL].tags[TAG_WEIGHTS].startswith("best (best-epoch0-step20")
    best = mlflow.pyfunc.load_model(f"models:/{models[BEST_MODEL].model_id}")
    assert best.predict(best.input_example).shape == (5, 1)
    # No pickle in the model: its code, net.json, the weights as safetensors, MLmodel, example.
    (tmp / "final_model").mkdir()
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{models[FINAL_MODEL].model_id}",
                                                     dst_path=str(tmp / "final_model")))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {"MLmodel", "pyfunc_model.py", "artifacts/weights.safetensors",
            "artifacts/net.json", "input_example.json"} <= files
    assert not any(f.endswith((".pkl", ".pickle", ".pt", ".cloudpickle")) for f in files)


def test_the_data_set_is_logged_as_three_dataset_inputs(trained):
    cfg, _, _, run, _, _ = trained
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "val", "test"}
    datamodule = build(cfg.dataset)
    datamodule.setup()
    for split, dataset in inputs.items():
        assert dataset.name == "circles"
        assert dataset.digest == digest(*datamodule.splits[split])
        profile = json.loads(dataset.profile)
        assert profile["split_sizes"] == {"train": 300, "val": 100, "test": 100}
        assert profile["num_rows"] == len(datamodule.splits[split][0])


def test_system_metrics_only_with_the_switch(trained, tmp_path, monkeypatch):
    _, _, _, run, _, _ = trained
    assert not [k for k in run.data.metrics if k.startswith("system/")]
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    cfg, store = compose_train(tmp_path, "tracking.system_metrics=true", "callbacks=none")
    train(cfg)
    client = MlflowClient(store)
    (on,) = client.search_runs([client.get_experiment_by_name("initlab").experiment_id])
    assert on.info.status == "FINISHED"
    assert "system/cpu_utilization_percentage" in on.data.metrics
    assert "system/system_memory_usage_megabytes" in on.data.metrics


def test_an_empty_split_has_a_digest_too():
    """A data set without a validation split (val_fraction 0) is still logged."""
    import torch

    from initlab.tracking.datasets import digest

    empty = digest(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert len(empty) == 8 and empty != digest(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long))
