"""A study's figure at the end of its multirun: a Hydra callback that draws it from the sweep's
finished jobs and logs it to the sweep's parent run, so one command
(``python train.py -m experiment=phase_tanh``) leaves the figure in MLflow.

Registered by the presets that want it (``hydra.callbacks`` in ``conf/experiment/``), after
``mlflow_parent_run``: Hydra runs ``on_multirun_end`` callbacks in reverse order, so this one
runs while the parent run is still open.  A failure here is a warning: the jobs' runs stand.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from initlab.report.isometry import ISOMETRY_FILE, plot_isometry
from initlab.report.phase import PHASE_FILE, plot_phase
from initlab.tracking.views import jobs_filter
from initlab.tracking.secrets import mask
from initlab.tracking.store import read_parent_run

log = logging.getLogger(__name__)
ARTIFACT_DIR = "figures"
FIGURES = {  # name -> (file, draw(client, runs, path) -> path or None)
    "phase": (PHASE_FILE, lambda client, runs, path: plot_phase(runs, path)),
    "isometry": (ISOMETRY_FILE, plot_isometry),
}


def draw_and_log(client: Any, parent_run_id: str, experiment_id: str, figure: str) -> str | None:
    """Draw ``figure`` from the parent run's finished jobs; log it to the parent run under
    ``figures/``; return its artifact path (None when the jobs lack the data)."""
    runs = client.search_runs([experiment_id], jobs_filter(parent_run_id), max_results=50000)
    runs = [r for r in runs if r.info.status == "FINISHED"]
    if not runs:
        return None
    file, draw = FIGURES[figure]
    with tempfile.TemporaryDirectory(prefix="initlab-figure-") as tmp:
        path = draw(client, runs, Path(tmp) / file)
        if path is None:
            return None
        client.log_artifact(parent_run_id, str(path), ARTIFACT_DIR)
    return f"{ARTIFACT_DIR}/{file}"


class SweepFigure(Callback):
    """Hydra callback: at the end of a multirun, ``figure`` (``phase`` or ``isometry``) of its
    jobs, logged to the parent run."""

    def __init__(self, figure: str, enabled: bool = True) -> None:
        if figure not in FIGURES:
            raise ValueError(f"SweepFigure: figure {figure!r} is not one of {sorted(FIGURES)}")
        self.figure, self.enabled = figure, enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or not OmegaConf.select(config, "tracking.enabled", default=False):
            return
        parent = read_parent_run(Path(config.hydra.sweep.dir))
        if parent is None:
            return
        uri = str(config.tracking.tracking_uri)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            from mlflow.tracking import MlflowClient

            logged = draw_and_log(MlflowClient(uri), parent["run_id"], parent["experiment_id"],
                                  self.figure)
        except Exception as err:  # noqa: BLE001 - the jobs' runs stand without the figure
            log.warning("%s figure: not drawn (%s: %s)", self.figure, type(err).__name__, err)
            return
        if logged is None:
            print(f"{self.figure} figure: the sweep's runs lack its data; none drawn", flush=True)
        else:
            print(f"{self.figure} figure: {logged} in the sweep's parent run {parent['run_id']} "
                  f"(store {mask(uri)})", flush=True)
