"""A job's MLflow run: created with its params and tags, and always ended with the status that
says what happened: FINISHED on success, FAILED with ``traceback.txt`` on an exception, KILLED
on Ctrl-C or SIGTERM; never left RUNNING.

A multirun's jobs are children (``mlflow.parentRunId``) of the sweep's parent run
(``tracking.sweep``), tagged with the sweep id, so the UI shows a sweep as one expandable row.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import platform
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback as LightningCallback
from omegaconf import DictConfig, OmegaConf

from initlab.tracking import interrupts, system
from initlab.tracking.context import HydraContext
from initlab.tracking.heartbeat import (DEFAULT_INTERVAL_S, TAG_HEARTBEAT, TAG_HEARTBEAT_S,
                                        Heartbeat, exit_orphan, stamp)
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
    flush_every_s: float = DEFAULT_INTERVAL_S
    loggers: list[RunLogger] = field(default_factory=list)
    system_metrics: Any = None  # MLflow's SystemMetricsMonitor with tracking.system_metrics

    def logger(self) -> RunLogger:
        """The run's Lightning logger; ``tracked_run`` writes what it buffered before the run
        ends, whatever ends it."""
        logger = RunLogger(tracking_uri=self.tracking_uri, run_id=self.run_id,
                           experiment_name=self.experiment, flush_every_s=self.flush_every_s)
        self.loggers.append(logger)
        return logger

    def log_artifact(self, path: Path | str, folder: str | None = None) -> None:
        if Path(path).exists():
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def set_tag(self, key: str, value: Any) -> None:
        self.client.set_tag(self.run_id, key, str(value))

    def tags(self) -> dict[str, str]:
        return self.client.get_run(self.run_id).data.tags


_EXTRA_TAGS: contextvars.ContextVar[tuple[dict[str, str], list[str]] | None] = \
    contextvars.ContextVar("initlab_extra_run_tags", default=None)


@contextlib.contextmanager
def extra_run_tags(tags: Mapping[str, Any]) -> Iterator[list[str]]:
    """Runs created inside the block get ``tags`` at creation; the block gets the list of
    their run ids (``jobs.seeds``: a job's k seed runs share a group tag)."""
    created: list[str] = []
    token = _EXTRA_TAGS.set(({k: str(v) for k, v in tags.items()}, created))
    try:
        yield created
    finally:
        _EXTRA_TAGS.reset(token)


class MultirunStopping(KeyboardInterrupt):
    """The multirun this job belongs to is being interrupted: the job does not start a run."""


def _run_tags(cfg: DictConfig, device: str, hydra: HydraContext,
              parent: dict[str, Any] | None, heartbeat_s: float) -> dict[str, str]:
    tags = {
        "mlflow.runName": run_name(cfg),
        "mlflow.source.name": "train.py",
        "mlflow.source.type": "LOCAL",
        TAG_OVERRIDES: mask(" ".join(hydra.overrides)) or "(none)",
        "device": device,
        "host": platform.node(),
        "initlab.pid": str(os.getpid()),
        TAG_HEARTBEAT: stamp(),
        TAG_HEARTBEAT_S: f"{heartbeat_s:g}",
        **versions(),
    }
    commit = git_commit(hydra.cwd)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if parent is not None:
        tags["mlflow.parentRunId"] = parent["run_id"]
        tags[TAG_SWEEP_ID] = parent["sweep_id"]
    if hydra.output_dir is not None:
        tags["initlab.output_dir"] = str(hydra.output_dir)
    link = cfg.get("optuna")  # the sweeper's link to this job's trial: repair fails it too
    if link is not None and link.get("trial") is not None and link.get("study") is not None:
        tags["optuna.trial_number"] = str(link.get("trial"))
        tags["optuna.study_name"] = str(link.get("study"))
    return tags


def _watched_parent(parent: dict[str, Any] | None) -> int | None:
    """The multirun's main process, when this job runs in one of its worker processes on the
    same machine (joblib's loky workers): the heartbeat stops the run if it disappears."""
    if parent is None or parent.get("host") != platform.node():
        return None
    pid = parent.get("pid")
    return int(pid) if pid and int(pid) != os.getpid() and int(pid) == os.getppid() else None


@contextlib.contextmanager
def tracked_run(cfg: DictConfig, device: str, own_heartbeat: bool = True,
                heartbeat_s: float | None = None) -> Iterator[TrackedRun]:
    """Create the job's MLflow run, log its params and tags, and always end it with the status
    that says what happened.

    The signal handlers are installed before the run is created, and its creation is one store
    write: a Ctrl-C or SIGTERM that comes meanwhile acts once the run exists, and ends it KILLED.
    While it runs, a heartbeat stamps it, and an exception that ends another thread fails it.
    ``own_heartbeat=False``: the caller stamps it (the ensemble engine: one thread for all the
    runs of a group, not one each), every ``heartbeat_s`` seconds if given (the run's
    ``initlab.heartbeat_interval`` tag), else every ``tracking.heartbeat_s``."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    tracking = OmegaConf.to_container(cfg.tracking, resolve=True)
    if heartbeat_s is None or own_heartbeat:
        heartbeat_s = float(tracking.get("heartbeat_s") or DEFAULT_INTERVAL_S)
    hydra = HydraContext.current()
    handle: TrackedRun | None = None
    heartbeat: Heartbeat | None = None
    with interrupts.handling(), interrupts.watching_threads() as thread_failure:
        try:
            with interrupts.store_write():  # never cut a schema migration in half
                experiment_id = prepare_store(tracking)
            client = MlflowClient(tracking["tracking_uri"])
            parent = read_parent_run(hydra.sweep_dir)
            if parent is not None and parent.get("stopping"):
                raise MultirunStopping(f"multirun {parent['sweep_id']} is being interrupted")
            tags = _run_tags(cfg, device, hydra, parent, heartbeat_s)
            extra = _EXTRA_TAGS.get()
            if extra is not None:
                tags.update(extra[0])
            items = [Param(k, v) for k, v in run_params(cfg).items()]
            monitor = system.monitor_class() if tracking.get("system_metrics") else None
            with interrupts.store_write():  # a signal now acts once the run exists
                run = client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"])
                if extra is not None:
                    extra[1].append(run.info.run_id)
                handle = TrackedRun(client, run.info.run_id, experiment_id, tracking["experiment"],
                                    tracking["tracking_uri"], flush_every_s=heartbeat_s)
                if own_heartbeat:
                    heartbeat = Heartbeat(client, handle.run_id, heartbeat_s,
                                          parent_pid=_watched_parent(parent)).start()
                for start in range(0, len(items), 100):
                    client.log_batch(handle.run_id, params=items[start:start + 100])
                if monitor is not None:
                    handle.system_metrics = system.start(monitor, handle.run_id,
                                                         tracking["tracking_uri"])
            yield handle
            failure = thread_failure()
            if failure is not None:
                raise interrupts.ThreadFailed(failure)
        except KeyboardInterrupt:
            _close(handle, heartbeat, "KILLED")
            exit_orphan(heartbeat)
            raise
        except SystemExit as exit_:
            if isinstance(handle.recorder.exception if handle else None, KeyboardInterrupt):
                _close(handle, heartbeat, "KILLED")  # Lightning turned Ctrl-C into sys.exit(1)
                exit_orphan(heartbeat)
                raise handle.recorder.exception from exit_
            _close(handle, heartbeat, "FAILED")
            raise
        except BaseException:
            _close(handle, heartbeat, "FAILED")
            raise
        else:
            _close(handle, heartbeat, "FINISHED")


def _close(handle: TrackedRun | None, heartbeat: Heartbeat | None, status: str) -> None:
    """End the run (if it was created): stop its heartbeat, write the metrics its loggers still
    buffer, its traceback when FAILED, then its status.  A second signal meanwhile waits."""
    if handle is None:
        if heartbeat is not None:
            heartbeat.stop()
        return
    with interrupts.store_write():
        if heartbeat is not None:
            heartbeat.stop()
        if handle.system_metrics is not None:  # its last samples, while the run still runs
            handle.system_metrics.finish()
        for logger in handle.loggers:
            try:
                logger.close()
            except Exception:  # noqa: BLE001 - the store may be gone: still try the status
                log.exception("could not write the buffered metrics of run %s", handle.run_id)
        if status == "FAILED":
            with contextlib.suppress(Exception):
                handle.log_text(mask(traceback.format_exc()), "traceback.txt")
        try:
            handle.client.set_terminated(handle.run_id, status)
        except Exception:  # the store itself is gone: say so, do not mask the original error
            log.exception("could not mark MLflow run %s as %s", handle.run_id, status)
