"""The sweep's parent run: a Hydra callback that, before a multirun's jobs start, creates the
store and experiment once and opens a parent run the jobs attach to."""

from __future__ import annotations

import atexit
import contextlib
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from initlab.tracking.record import TAG_OVERRIDES, TAG_SWEEP_ID
from initlab.tracking.secrets import mask
from initlab.tracking.store import PARENT_RUN_FILE, prepare_store


class SweepParentRun(Callback):
    """Hydra callback: before a multirun's jobs start, create the store and experiment once and
    open a parent run that the jobs attach to; end it when the multirun ends (or the process
    exits, whatever the reason)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._client = None
        self._run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or not config.get("tracking") or not config.tracking.get("enabled"):
            return
        from mlflow.tracking import MlflowClient

        tracking = OmegaConf.to_container(config.tracking, resolve=True)
        experiment_id = prepare_store(tracking)
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sweep_id = f"{sweep_dir.parent.name}/{sweep_dir.name}"
        overrides = mask(" ".join(config.hydra.overrides.task)) or "(none)"
        self._client = MlflowClient(tracking["tracking_uri"])
        run = self._client.create_run(
            experiment_id, run_name=f"sweep {sweep_id}",
            tags={TAG_SWEEP_ID: sweep_id, TAG_OVERRIDES: overrides, "initlab.kind": "sweep",
                  "initlab.sweep_dir": str(sweep_dir)},
        )
        self._run_id = run.info.run_id
        (sweep_dir / PARENT_RUN_FILE).write_text(json.dumps(
            {"run_id": self._run_id, "sweep_id": sweep_id, "experiment_id": experiment_id,
             "store": mask(tracking["tracking_uri"])}))  # jobs use their own config's URI
        atexit.register(self._end, "FAILED")  # the multirun did not reach its end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        if self._run_id is None:
            return
        run_id, self._run_id = self._run_id, None
        with contextlib.suppress(Exception):
            if self._client.get_run(run_id).info.status == "RUNNING":
                self._client.set_terminated(run_id, status)
