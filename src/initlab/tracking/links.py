"""Links into the MLflow UI: the run a job recorded, and the comparison of a multirun's or a
search's jobs, both in MLflow's model-training view.

MLflow 3 opens an experiment in its GenAI view (Overview, traces, "No data") unless told
otherwise.  Two handles exist: the experiment tag ``mlflow.experimentKind`` (set by
``prepare_store``) and the ``workflowType=machine_learning`` URL parameter.  MLflow 3.17, in
Chromium on a fresh profile, honours the parameter and ignores the tag (its UI reads the tag
only where the GenAI / Model training toggle is switched off); so every link carries the
parameter, and the tag stays for UIs that read it.

A sweep's link opens a runs view of exactly its jobs, saved in the experiment
(``initlab.tracking.views``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from initlab.tracking.record import SWEPT_KEYS_FILE
from initlab.tracking.secrets import mask
from initlab.tracking.store import read_parent_run
from initlab.tracking.views import (HEADLINE_METRICS, jobs_filter, save_sweep_view,
                                    sweep_view_state)

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"   # MLflow's "Model training" experiments
WORKFLOW = {"workflowType": "machine_learning"}
LOCAL_UI = "http://127.0.0.1:5000"             # where `mlflow ui` listens by default
# The metrics a user compares, in this order (those a run logs; the objective goes first).


# ---- where the UI is ---------------------------------------------------------------------
def ui_base(tracking_uri: str) -> str | None:
    """The UI's address: a tracking server's own (``http(s)://``), ``mlflow ui``'s default for a
    database store; None where MLflow has no UI of its own to point at (Databricks)."""
    scheme = tracking_uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        return tracking_uri.rstrip("/")
    if scheme.startswith("databricks"):
        return None
    return LOCAL_UI


def open_hint(tracking_uri: str, url: str | None, verb: str = "Open it") -> str:
    """``Open it: mlflow ui --backend-store-uri sqlite:///...  ->  http://...`` (a local store),
    ``Open it: http://server/...`` (a tracking server); the password of a URI masked."""
    if url is None:
        return f"{verb}: in the MLflow UI of {mask(tracking_uri)}"
    if url.startswith(LOCAL_UI) and ui_base(tracking_uri) == LOCAL_UI:
        return f"{verb}: mlflow ui --backend-store-uri {mask(tracking_uri)}  ->  {mask(url)}"
    return f"{verb}: {mask(url)}"


def _link(base: str, route: str, params: Mapping[str, Any]) -> str:
    return f"{base}/#{route}?{urlencode(params, quote_via=quote)}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page, in the model-training view."""
    base = ui_base(tracking_uri)
    return None if base is None else _link(base, f"/experiments/{experiment_id}/runs/{run_id}",
                                            WORKFLOW)


def sweep_url(tracking_uri: str, experiment_id: str, view_key: str | None,
              parent_run_id: str) -> str | None:
    """The comparison of a sweep's jobs: its saved view (charts first), or, without one, the
    runs view filtered to the jobs of the parent run (a search facet in the URL would make the
    UI ignore the saved view, so a link carries one or the other)."""
    base = ui_base(tracking_uri)
    if base is None:
        return None
    route = f"/experiments/{experiment_id}/runs"
    if view_key is not None:
        return _link(base, route, {**WORKFLOW, "compareRunsMode": "CHART",
                                   "viewStateShareKey": view_key})
    return _link(base, route, {**WORKFLOW, "searchFilter": jobs_filter(parent_run_id)})


NOTE_TAG = "mlflow.note.content"  # the run page's "Description"


def _value(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


def run_note(metrics: Mapping[str, float], objective: str | None) -> str | None:
    """A run's description: its headline metrics (the objective first) in a small table, and
    where the per-layer diagnostics are; None when it logged none of them."""
    names = list(dict.fromkeys([*([objective] if objective else []), *HEADLINE_METRICS]))
    shown = [(n, float(metrics[n])) for n in names if n in metrics]
    if not shown:
        return None
    head = " | ".join(f"{n} (objective)" if n == objective else n for n, _ in shown)
    return (f"| {head} |\n|{'---|' * len(shown)}\n| "
            + " | ".join(_value(v) for _, v in shown) + " |\n\n"
            "Per-layer diagnostics (`diag/layerN/...`) and the weights' variance at init "
            "(`init/...`): charts under *Model metrics*, search them by name.")


def describe(client: Any, run_id: str, text: str | None) -> None:
    """Set the run's description, unless it has one (a user's own stays)."""
    if text and NOTE_TAG not in client.get_run(run_id).data.tags:
        client.set_tag(run_id, NOTE_TAG, text)


# ---- the sweep's view --------------------------------------------------------------------
def objective_of(config: DictConfig) -> tuple[str | None, bool]:
    """The sweep's objective (``optimized_metric``) and whether higher is better: the Optuna
    sweeper's (first) direction, else a loss is minimised and anything else maximised."""
    metric = OmegaConf.select(config, "optimized_metric", default=None)
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if isinstance(direction, (list, tuple, ListConfig)):
        direction = direction[0] if len(direction) else None
    if direction is not None:
        return metric, str(getattr(direction, "name", direction)).lower() == "maximize"
    return metric, not (metric and "loss" in str(metric))


def param_columns(config: DictConfig, swept: Sequence[str]) -> list[str]:
    """The params a comparison shows: the init family, then each swept key (a config group as
    its ``name``), without repeats."""
    columns = ["init.name"]
    for key in swept:
        node = OmegaConf.select(config, key, default=None)
        param = f"{key}.name" if isinstance(node, DictConfig) and "name" in node else key
        if param not in columns:
            columns.append(param)
    return columns


# ---- what a multirun sweeps --------------------------------------------------------------
def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun sweeps: command-line overrides with several values
    (``init=xavier,he``, ``seed=range(3)``) and the sweeper's ``params`` that are sweeps
    (an Optuna search space: ``choice(...)``, ``interval(...)``), in that order; Hydra's own
    ``hydra.*`` keys left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    task = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    candidates = task + [f"{k}={v}" for k, v in params.items()]
    keys: list[str] = []
    for text in candidates:
        try:
            override = parser.parse_overrides([text])[0]
        except Exception:  # noqa: BLE001 - an override Hydra will refuse itself
            continue
        key = override.get_key_element().lstrip("+~")
        if override.is_sweep_override() and not key.startswith("hydra.") and key not in keys:
            keys.append(key)
    return keys


# ---- the Hydra callback ------------------------------------------------------------------
class SweepLinks(Callback):
    """Hydra callback (after ``mlflow_parent_run``): writes the multirun's swept keys into the
    sweep folder (jobs put them in their run names), saves the sweep's view in the experiment,
    and prints the link to it when the multirun starts and when it ends."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._sweep: dict[str, Any] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep = None
        if not self.enabled:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        swept = swept_keys(config)
        with contextlib.suppress(OSError):
            sweep_dir.mkdir(parents=True, exist_ok=True)
            (sweep_dir / SWEPT_KEYS_FILE).write_text(json.dumps(swept))
        parent = read_parent_run(sweep_dir)
        if parent is None or not OmegaConf.select(config, "tracking.enabled", default=False):
            return
        uri = str(config.tracking.tracking_uri)
        key = None
        try:
            from mlflow.tracking import MlflowClient

            objective, maximize = objective_of(config)
            state = sweep_view_state(parent["run_id"], objective, maximize,
                                     param_columns(config, swept), runs=_jobs_hint(config))
            key = save_sweep_view(MlflowClient(uri), parent["experiment_id"], parent["run_id"],
                                  f"sweep {parent['sweep_id']}", state)
        except Exception as err:  # noqa: BLE001 - a link without the view is still a link
            log.warning("MLflow: could not save the sweep's view (%s); the link filters the "
                        "runs view instead", err)
        url = sweep_url(uri, parent["experiment_id"], key, parent["run_id"])
        self._sweep = {"uri": uri, "url": url, **parent}
        if url is not None:  # the parent run's page links to the comparison (same host)
            with contextlib.suppress(Exception):
                from mlflow.tracking import MlflowClient

                describe(MlflowClient(uri), parent["run_id"],
                         f"The jobs of sweep {parent['sweep_id']}, compared: "
                         f"[open the comparison]({url[url.index('#'):]})")
        print(open_hint(uri, url, "Follow the sweep"), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep, self._sweep = self._sweep, None
        if sweep is None:
            return
        jobs = ""
        with contextlib.suppress(Exception):
            from mlflow.tracking import MlflowClient

            runs = MlflowClient(sweep["uri"]).search_runs(
                [sweep["experiment_id"]], jobs_filter(sweep["run_id"]), max_results=50000)
            jobs = f"{len(runs)} run(s) "
        print(f"Sweep {sweep['sweep_id']}: {jobs}under parent run {sweep['run_id']} in "
              f"experiment {sweep['experiment_id']}, store {mask(sweep['uri'])}\n"
              + open_hint(sweep["uri"], sweep["url"], "Compare them"), flush=True)


def _jobs_hint(config: DictConfig) -> int:
    """How many jobs the bar charts make room for: a search's n_trials, else 100."""
    trials = OmegaConf.select(config, "hydra.sweeper.n_trials", default=None)
    return int(trials) if isinstance(trials, int) and trials > 0 else 100
