"""Where runs live, with no heavy imports: the MLflow store's SQLite path, the sweep's
parent-run file, and metric writes chunked to MLflow's limit.  Shared by ``tracking``,
the diagnostics and the Optuna sweeper plugin (which must not import Lightning to start)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PARENT_RUN_FILE = "mlflow_parent_run.json"  # written into the sweep dir by SweepParentRun
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def read_parent_run(sweep_dir: Path | None) -> dict[str, str] | None:
    """The multirun's parent run (``run_id``, ``sweep_id``, ``tracking_uri``…), if there is one."""
    if sweep_dir is None or not (Path(sweep_dir) / PARENT_RUN_FILE).exists():
        return None
    return json.loads((Path(sweep_dir) / PARENT_RUN_FILE).read_text())


def log_metrics(client: Any, run_id: str, metrics: Sequence[Any]) -> None:
    """Write ``mlflow.entities.Metric`` objects in as few ``log_batch`` calls as MLflow allows."""
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(metrics[start:start + MAX_METRICS_PER_BATCH]))
