"""A real ``mlflow server --artifacts-destination``: a run tracked through it keeps its artifacts
on the server, none in the job's working directory."""

from __future__ import annotations

import pytest
from conftest import FAST, run_cli
from mlflow.tracking import MlflowClient

pytest_plugins = ["store_servers"]  # its session fixtures: the servers, the PostgreSQL jobs
pytestmark = pytest.mark.slow


def test_run_artifacts_reach_the_server(tmp_path, mlflow_server):
    run_cli(tmp_path, mlflow_server.url, *FAST, "tracking.experiment=server-run")

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("server-run")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert 0.3 < run.data.metrics["test/acc"] <= 1.0
    # The server chose the location: proxied artifacts, not a path on the job's machine.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "weights", "checkpoints"} <= listed, listed
    models = client.search_logged_models([experiment.experiment_id])
    assert {m.name for m in models} >= {"model"}  # the logged MLflow model, on the server too
    assert all(m.artifact_location.startswith("mlflow-artifacts:") for m in models), models

    # On the server's disk: <artifacts-destination>/<experiment id>/<run id>/artifacts/...
    found = [p for p in mlflow_server.artifacts.rglob(run.info.run_id) if p.is_dir()]
    assert len(found) == 1, found
    artifacts = found[0] / "artifacts"
    assert (artifacts / "config.yaml").is_file()
    assert (artifacts / "weights" / "final_weights.safetensors").is_file()
    assert any(p.suffix == ".ckpt" for p in (artifacts / "checkpoints").iterdir())

    # Nothing in the job's working directory looks like a local store.
    local = [p for p in tmp_path.rglob("*") if p.name == "mlruns"]
    assert local == [], local
