"""A sweep's comparison as a saved MLflow runs view.

The view is an experiment tag ``mlflow.sharedViewState.<key>`` (what the UI's *Views -> Save*
writes, and what its ``viewStateShareKey`` URL parameter reads): the jobs of the sweep's parent
run, sorted by the objective, a table of the few metrics a user compares and the swept params, a
first chart section with the objective, every job shown in the charts.  The value is the
saved-view envelope (``name``, ``createdAt``, ``state``: listed under *Views* by MLflow 3.17) and,
at the top level too, the state itself (what older UIs read).  The newest ``LISTED_VIEWS`` sweeps
stay listed (the UI lets an experiment save 40 views); older ones keep their link but leave the
list.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

VIEW_TAG = "mlflow.sharedViewState."
VIEW_PREFIX = "initlab-sweep-"
LISTED_VIEWS = 20
HEADLINE_METRICS = ("val/acc", "test/acc", "val/loss", "test/loss", "train/loss", "train/acc")


def jobs_filter(parent_run_id: str) -> str:
    return f"tags.`mlflow.parentRunId` = '{parent_run_id}'"


# ---- descriptions: what the run page shows first -----------------------------------------


def _bar(uuid: str, section: str, metric: str, runs: int) -> dict[str, Any]:
    return {"uuid": uuid, "type": "BAR", "runsCountToCompare": runs, "metricSectionId": section,
            "deleted": False, "isGenerated": False, "displayName": metric, "metricKey": metric}


def _line(uuid: str, section: str, metric: str, runs: int) -> dict[str, Any]:
    return {"uuid": uuid, "type": "LINE", "runsCountToCompare": runs, "metricSectionId": section,
            "deleted": False, "isGenerated": False, "displayName": metric, "metricKey": metric,
            "lineSmoothness": 0, "xAxisKey": "step", "xAxisScaleType": "linear",
            "scaleType": "log" if "loss" in metric else "linear", "range": {},
            "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [],
            "ignoreOutliers": False, "useGlobalXaxisKey": True, "useGlobalLineSmoothing": True}


def sweep_view_state(parent_run_id: str, objective: str | None, maximize: bool,
                     params: Sequence[str], runs: int = 100) -> dict[str, Any]:
    """The UI state of a sweep's comparison (the runs view's search facets and UI state, as
    MLflow's *Views -> Save* writes them).  The table: the swept params, then the objective and
    the other headline metrics (no per-layer column).  The charts' first section holds the
    objective (a bar per job, then its curve), the test accuracy and the losses (log axis);
    the UI adds the other metrics' sections (``diag/layerN``, ``init/...``) after it."""
    objective = objective or "val/acc"
    metrics = [objective, *(m for m in HEADLINE_METRICS if m != objective)]
    columns = [f"params.`{p}`" for p in params] + [f"metrics.`{m}`" for m in metrics[:5]]
    tag = parent_run_id[:12]
    section = f"initlab-{tag}-objective"
    better = "higher" if maximize else "lower"
    runs = max(10, runs)
    charts = [_bar(f"initlab-{tag}-0", section, objective, runs)]
    if "test/acc" != objective:
        charts.append(_bar(f"initlab-{tag}-1", section, "test/acc", runs))
    charts += [_line(f"initlab-{tag}-{i}", section, metric, runs)
               for i, metric in enumerate(dict.fromkeys([objective, "train/loss", "val/loss"]),
                                          start=2)]
    return {
        "searchFilter": jobs_filter(parent_run_id),
        "orderByKey": f"metrics.`{objective}`", "orderByAsc": not maximize,
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns, "columnOrder": columns, "columnWidths": {},
        "runsExpanded": {parent_run_id: True}, "runsPinned": [], "runsHidden": [],
        "runsVisibilityMap": {}, "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": [{"uuid": section, "name": f"{objective} ({better} is better)",
                                "display": True, "isReordered": False, "deleted": False,
                                "isGenerated": False}],
        "isAccordionReordered": True,   # keep that section first
        "hideEmptyCharts": True, "useGroupedValuesInCharts": True, "viewMaximized": False,
        "runListHidden": False, "groupBy": None, "groupsExpanded": {},
    }


def view_key(parent_run_id: str) -> str:
    return f"{VIEW_PREFIX}{parent_run_id}"


def save_sweep_view(client: Any, experiment_id: str, parent_run_id: str, name: str,
                    state: Mapping[str, Any]) -> str:
    """Store the view as an experiment tag; return its key (the link's ``viewStateShareKey``)."""
    now = int(time.time() * 1000)
    value = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state),
             **state}
    key = view_key(parent_run_id)
    client.set_experiment_tag(experiment_id, VIEW_TAG + key, json.dumps(value))
    with contextlib.suppress(Exception):  # only the Views list's length is at stake
        _unlist_old_views(client, experiment_id)
    return key


def _unlist_old_views(client: Any, experiment_id: str, keep: int = LISTED_VIEWS) -> None:
    """Older sweeps' views lose their envelope (``name``...): the UI no longer lists them, and
    their links still open them."""
    tags = client.get_experiment(experiment_id).tags
    listed = []
    for key, value in tags.items():
        if key.startswith(VIEW_TAG + VIEW_PREFIX):
            with contextlib.suppress(ValueError, TypeError):
                view = json.loads(value)
                if "name" in view and "state" in view:
                    listed.append((view.get("createdAt", 0), key, view))
    for _, key, view in sorted(listed, reverse=True)[keep:]:
        state = {k: v for k, v in view.items()
                 if k not in ("name", "createdAt", "updatedAt", "state")}
        client.set_experiment_tag(experiment_id, key, json.dumps(state))
