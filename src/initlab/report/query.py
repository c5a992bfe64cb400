"""Reading runs back from an MLflow store: which runs, and each run's params, metric curves,
diagnostics record and final weights.

This is the only module of ``initlab.report`` that talks to the store, and everything it
returns is data: params are parsed as literals (``plain_value`` / ``ast.literal_eval``, never
``eval``), the record is JSON, the weights are safetensors tensors.  A weights file that could
carry code (an old ``model/final_weights.pt`` pickle) is never opened.
"""

from __future__ import annotations

import ast
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from initlab.inits.labels import plain_value

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
STATS_ARTIFACT = "diagnostics/init_stats.json"
PICKLED_WEIGHTS = "model/final_weights.pt"  # runs from before safetensors: never unpickled
SKIP_KINDS = ("sweep", "comparison")


# ---- choosing runs ---------------------------------------------------------------------------
def select_runs(client, experiment: str | None = None, sweep_id: str | None = None,
                run_ids: Sequence[str] | None = None) -> list:
    """Finished job runs (not sweep parents, not comparisons), oldest first; ``run_ids`` are
    taken as given."""
    if run_ids:
        runs = [_get_run(client, r) for r in run_ids]
    else:
        if experiment is not None:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise SystemExit(f"compare: no MLflow experiment named {experiment!r}")
            ids = [found.experiment_id]
        else:
            ids = [e.experiment_id for e in client.search_experiments()]
        query = f"tags.`initlab.sweep_id` = '{sweep_id}'" if sweep_id else ""
        runs = client.search_runs(ids, filter_string=query, max_results=5000)
        runs = [r for r in runs if r.data.tags.get("initlab.kind") not in SKIP_KINDS
                and r.info.status == "FINISHED"]
    runs.sort(key=lambda r: r.info.start_time or 0)
    if not runs:
        raise SystemExit("compare: no finished runs matched")
    return runs


def _get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise SystemExit(f"compare: no run {run_id!r} in this store "
                         f"({str(exc).splitlines()[0] if str(exc) else 'not found'})") from None


# ---- params ----------------------------------------------------------------------------------
def param_value(text: Any) -> Any:
    """A recorded param (a string) back to a plain value: number, bool, None, or a list /
    tuple of them (``'[10, 5]'``); anything else stays the string it was."""
    value = plain_value(text)
    if isinstance(value, str) and value.startswith(("[", "(")):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
    return value


def params_under(run, prefix: str) -> dict[str, Any]:
    """``model.hidden='[10, 5]'`` -> ``{'hidden': [10, 5]}`` for ``prefix='model'`` (direct
    children only), values parsed by ``param_value``."""
    head = prefix + "."
    return {key[len(head):]: param_value(value) for key, value in run.data.params.items()
            if key.startswith(head) and "." not in key[len(head):]}


# ---- metrics and records ---------------------------------------------------------------------
def metric_history(client, run_id: str, keys: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """Metric curves as the store holds them (what the UI shows): key -> [(step, value)]."""
    out = {}
    for key in keys:
        points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        if points:
            out[key] = [(m.step, m.value) for m in points]
    return out


def first_history(client, run_id: str, keys: Sequence[str]) -> list[tuple[int, float]]:
    """The curve of the first of ``keys`` the run has (``[]`` if none), one value per step."""
    for key in keys:
        points = metric_history(client, run_id, [key]).get(key)
        if points:
            return sorted(dict(points).items())
    return []


def load_record(client, run_id: str) -> dict[str, Any] | None:
    """The run's ``diagnostics/init_stats.json`` (None if it has none)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, STATS_ARTIFACT, tmp)
            return json.loads(Path(local).read_text())
    except Exception:  # no diagnostics in this run (diagnostics=off, older run)
        return None


# ---- weights ---------------------------------------------------------------------------------
def _artifact_paths(client, run_id: str, folder: str) -> set[str]:
    try:
        return {a.path for a in client.list_artifacts(run_id, folder)}
    except Exception:  # no such folder / unreadable artifact store
        return set()


def load_run_weights(client, run_id: str) -> dict | None:
    """The run's final weights as tensors (safetensors), or None.

    A run that only has the pickled ``model/final_weights.pt`` of older versions is skipped
    with a warning: unpickling a file from a store can run any code its author chose."""
    from initlab.tracking.artifacts import WEIGHTS_ARTIFACT, WEIGHTS_DIR, load_weights

    if WEIGHTS_ARTIFACT not in _artifact_paths(client, run_id, WEIGHTS_DIR):
        if PICKLED_WEIGHTS in _artifact_paths(client, run_id, "model"):
            log.warning("compare: run %s has only %s (a pickle from an older version); "
                        "skipped for decision boundaries, the file is never unpickled",
                        run_id, PICKLED_WEIGHTS)
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return load_weights(client.download_artifacts(run_id, WEIGHTS_ARTIFACT, tmp))
    except Exception as exc:  # a truncated or foreign file: safetensors refuses it
        log.warning("compare: run %s: unreadable %s (%s); skipped for decision boundaries",
                    run_id, WEIGHTS_ARTIFACT, str(exc).splitlines()[0] if str(exc) else
                    type(exc).__name__)
        return None
