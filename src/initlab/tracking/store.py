"""Where runs live, with no heavy imports at module level: the MLflow store (created once,
under a file lock beside a SQLite database, so parallel jobs never race on its schema or on
``create_experiment``), the sweep's parent-run file, and metric writes chunked to MLflow's
limit.  Shared by the tracking layer and the Optuna sweeper plugin (which must start without
Lightning)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PARENT_RUN_FILE = "mlflow_parent_run.json"  # written into the sweep dir by SweepParentRun
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def read_parent_run(sweep_dir: Path | None) -> dict[str, str] | None:
    """The multirun's parent run (``run_id``, ``sweep_id``, ``experiment_id``, ``store`` with its
    password masked), if there is one."""
    if sweep_dir is None or not (Path(sweep_dir) / PARENT_RUN_FILE).exists():
        return None
    return json.loads((Path(sweep_dir) / PARENT_RUN_FILE).read_text())


def log_metrics(client: Any, run_id: str, metrics: Sequence[Any]) -> None:
    """Write ``mlflow.entities.Metric`` objects in as few ``log_batch`` calls as MLflow allows."""
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(metrics[start:start + MAX_METRICS_PER_BATCH]))


def artifact_location(tracking: Mapping[str, Any], experiment: str) -> str | None:
    """Database stores (SQLite, PostgreSQL, ...) keep a new experiment's artifacts under
    ``artifact_root`` (a folder, or a URI such as ``s3://bucket/path``); a tracking server
    decides for itself."""
    root, uri = tracking.get("artifact_root"), tracking["tracking_uri"]
    if not root or uri.split(":", 1)[0] in ("http", "https", "databricks", "databricks-uc"):
        return None
    if "://" in str(root):
        return f"{str(root).rstrip('/')}/{experiment}"
    return (Path(root).resolve() / experiment).as_uri()


def prepare_store(tracking: Mapping[str, Any]) -> str:
    """Create the store (schema) and the experiment if missing; return the experiment id.

    Serialised by a file lock beside a SQLite database, so parallel jobs never race on schema
    migration or on ``create_experiment``."""
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    uri, name = tracking["tracking_uri"], tracking["experiment"]
    db = sqlite_path(uri)
    lock: contextlib.AbstractContextManager = contextlib.nullcontext()
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(db) + ".lock", timeout=300)
    with lock:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:  # tagged a "Model training" experiment (docs/tracking.md)
            return client.create_experiment(
                name, artifact_location=artifact_location(tracking, name),
                tags={"mlflow.experimentKind": "custom_model_development"})
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
