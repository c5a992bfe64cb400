"""A job's MLflow run: created with its params and tags, and always ended with the status that
says what happened: FINISHED on success, FAILED with ``traceback.txt`` on an exception, KILLED
on Ctrl-C or SIGTERM; never left RUNNING.

A multirun's jobs are children (``mlflow.parentRunId``) of the sweep's parent run
(``tracking.sweep``), tagged with the sweep id, so the UI shows a sweep as one expandable row.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import signal
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback as LightningCallback
from omegaconf import DictConfig, OmegaConf

from initlab.tracking import interrupts
from initlab.tracking.context import HydraContext
from initlab.tracking.logger import RunLogger
from initlab.tracking.secrets import mask
from initlab.tracking.record import (TAG_OVERRIDES, TAG_SWEEP_ID, git_commit, run_name,
                                     run_params, versions)
from initlab.tracking.store import prepare_store, read_parent_run

log = logging.getLogger(__name__)


class ExceptionRecorder(LightningCallback):
    """Remembers the exception Lightning swallowed: on Ctrl-C Lightning calls ``sys.exit(1)``,
    and only this tells a KeyboardInterrupt from another exit."""

    def __init__(self) -> None:
        self.exception: BaseException | None = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.exception = exception


@dataclass
class TrackedRun:
    client: Any
    run_id: str
    experiment_id: str
    experiment: str
    tracking_uri: str
    recorder: ExceptionRecorder = field(default_factory=ExceptionRecorder)

    def logger(self) -> RunLogger:
        return RunLogger(tracking_uri=self.tracking_uri, run_id=self.run_id,
                         experiment_name=self.experiment)

    def log_artifact(self, path: Path | str, folder: str | None = None) -> None:
        if Path(path).exists():
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def set_tag(self, key: str, value: Any) -> None:
        self.client.set_tag(self.run_id, key, str(value))

    def tags(self) -> dict[str, str]:
        return self.client.get_run(self.run_id).data.tags


@contextlib.contextmanager
def tracked_run(cfg: DictConfig, device: str) -> Iterator[TrackedRun]:
    """Create the job's MLflow run, log its params and tags, and always end it with the status
    that says what happened."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    tracking = OmegaConf.to_container(cfg.tracking, resolve=True)
    experiment_id = prepare_store(tracking)
    client = MlflowClient(tracking["tracking_uri"])
    hydra = HydraContext.current()
    tags = {
        "mlflow.runName": run_name(cfg),
        "mlflow.source.name": "train.py",
        "mlflow.source.type": "LOCAL",
        TAG_OVERRIDES: mask(" ".join(hydra.overrides)) or "(none)",
        "device": device,
        "host": platform.node(),
        **versions(),
    }
    commit = git_commit(hydra.cwd)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    parent = read_parent_run(hydra.sweep_dir)
    if parent is not None:
        tags["mlflow.parentRunId"] = parent["run_id"]
        tags[TAG_SWEEP_ID] = parent["sweep_id"]
    if hydra.output_dir is not None:
        tags["initlab.output_dir"] = str(hydra.output_dir)
    run = client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"])
    handle = TrackedRun(client, run.info.run_id, experiment_id, tracking["experiment"],
                        tracking["tracking_uri"])
    items = [Param(k, v) for k, v in run_params(cfg).items()]
    for start in range(0, len(items), 100):
        client.log_batch(handle.run_id, params=items[start:start + 100])

    with interrupts.handling():  # Ctrl-C / SIGTERM: KILLED, never mid-write
        try:
            yield handle
        except KeyboardInterrupt:
            _end(handle, "KILLED")
            raise
        except SystemExit as exit_:
            if isinstance(handle.recorder.exception, KeyboardInterrupt):
                _end(handle, "KILLED")  # Lightning turned Ctrl-C into sys.exit(1)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt from exit_
            _fail(handle)
            raise
        except BaseException:
            _fail(handle)
            raise
        else:
            _end(handle, "FINISHED")


def _fail(handle: TrackedRun) -> None:
    with contextlib.suppress(Exception):
        handle.log_text(mask(traceback.format_exc()), "traceback.txt")
    _end(handle, "FAILED")


def _end(handle: TrackedRun, status: str) -> None:
    try:
        with interrupts.store_write():
            handle.client.set_terminated(handle.run_id, status)
    except Exception:  # the store itself is gone: say so, do not mask the original error
        log.exception("could not mark MLflow run %s as %s", handle.run_id, status)
