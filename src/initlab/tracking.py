"""MLflow: the store, one run per job with its params and tags, and the run's final status.

* The store defaults to SQLite (``sqlite:///mlruns/mlflow.db``, artifacts under ``mlruns/``).
  Jobs that start together would race on SQLite's schema and on experiment creation, so the
  store and experiment are created once, under a file lock, and before a multirun's jobs by
  ``SweepParentRun`` (a Hydra callback).
* A multirun gets a parent run; each job is a child (``mlflow.parentRunId``) tagged with the
  sweep id, so the UI shows a sweep as one expandable row.
* ``tracked_run`` owns the run's status: FINISHED on success, FAILED with ``traceback.txt`` on an
  exception, KILLED on Ctrl-C or SIGTERM; a run is never left RUNNING.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import platform
import re
import signal
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from lightning.pytorch.callbacks import Callback as LightningCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from initlab import interrupts
from initlab.store import PARENT_RUN_FILE, log_metrics, read_parent_run, sqlite_path

log = logging.getLogger(__name__)

TAG_SWEEP_ID = "initlab.sweep_id"
TAG_DIVERGED = "initlab.diverged"
TAG_OVERRIDES = "initlab.overrides"
_PACKAGES = ("torch", "lightning", "mlflow", "hydra-core", "optuna", "initlab")


# ---- the store -----------------------------------------------------------------------------
def artifact_location(tracking: Mapping[str, Any], experiment: str) -> str | None:
    """Local stores keep artifacts under ``artifact_root``; a server decides for itself."""
    root = tracking.get("artifact_root")
    if not root or sqlite_path(tracking["tracking_uri"]) is None:
        return None
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
        if experiment is None:
            return client.create_experiment(name, artifact_location=artifact_location(tracking, name))
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id


# ---- what a run records besides metrics ----------------------------------------------------
def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'init': {'name': 'he'}} -> {'init.name': 'he'}; private keys (``_target_``) dropped."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if str(key).startswith("_"):
                continue
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def run_params(cfg: DictConfig) -> dict[str, str]:
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return {k: str(v)[:6000] for k, v in flatten(container).items()}


def _git_commit(cwd: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    tags = {}
    for package in _PACKAGES:
        try:
            tags[f"versions.{package}"] = version(package)
        except PackageNotFoundError:
            pass
    return tags


def run_name(cfg: DictConfig) -> str:
    """e.g. ``he-mlp-mnist5k-seed0``; a scale other than 1 is shown: ``he-x2-mlp-…``."""
    scale = cfg.init.get("scale", 1.0)
    init = cfg.init.name if scale == 1 else f"{cfg.init.name}-x{scale:g}"
    return f"{init}-{cfg.model.name}-{cfg.dataset.name}-seed{cfg.seed}"


@dataclass
class HydraContext:
    """What a job knows about its Hydra launch (all empty outside a Hydra app)."""

    overrides: list[str] = field(default_factory=list)
    output_dir: Path | None = None
    sweep_dir: Path | None = None
    cwd: str = field(default_factory=os.getcwd)

    @classmethod
    def current(cls) -> HydraContext:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls(
            overrides=list(hc.overrides.task),
            output_dir=Path(hc.runtime.output_dir) if hc.runtime.output_dir else None,
            sweep_dir=Path(hc.sweep.dir).resolve() if multirun else None,
            cwd=hc.runtime.cwd,
        )


# ---- the job's run -------------------------------------------------------------------------
class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger bound to a run that ``tracked_run`` owns: Lightning logs the
    metrics, but must not end the run (it would mark FINISHED after fit, before the test).

    Metrics are buffered and written in one ``log_batch`` every ``flush_every_s`` seconds and
    when fit or test ends (``finalize``, also on failure): a synchronous SQLite transaction per
    logging step cost about 15 ms, a quarter of a Fashion-MNIST epoch."""

    def __init__(self, *args: Any, flush_every_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every_s = flush_every_s
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        self._pending += [Metric(re.sub(r"[^a-zA-Z0-9_/. -]+", "", k), float(v), now_ms, step or 0)
                          for k, v in metrics.items() if not isinstance(v, str)]
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write the buffered metrics (MLflow takes at most 1,000 per batch)."""
        pending, self._pending = self._pending, []
        with interrupts.store_write():
            log_metrics(self.experiment, self.run_id, pending)
        self._last_flush = time.monotonic()

    def finalize(self, status: str = "success") -> None:  # noqa: D102
        self.flush()

    def log_hyperparams(self, params: Any) -> None:  # params are logged flat by tracked_run
        pass


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
        TAG_OVERRIDES: " ".join(hydra.overrides) or "(none)",
        "device": device,
        "host": platform.node(),
        **_versions(),
    }
    commit = _git_commit(hydra.cwd)
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
        handle.log_text(traceback.format_exc(), "traceback.txt")
    _end(handle, "FAILED")


def _end(handle: TrackedRun, status: str) -> None:
    try:
        with interrupts.store_write():
            handle.client.set_terminated(handle.run_id, status)
    except Exception:  # the store itself is gone: say so, do not mask the original error
        log.exception("could not mark MLflow run %s as %s", handle.run_id, status)


# ---- the sweep's parent run ----------------------------------------------------------------
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
        overrides = " ".join(config.hydra.overrides.task) or "(none)"
        self._client = MlflowClient(tracking["tracking_uri"])
        run = self._client.create_run(
            experiment_id, run_name=f"sweep {sweep_id}",
            tags={TAG_SWEEP_ID: sweep_id, TAG_OVERRIDES: overrides, "initlab.kind": "sweep",
                  "initlab.sweep_dir": str(sweep_dir)},
        )
        self._run_id = run.info.run_id
        (sweep_dir / PARENT_RUN_FILE).write_text(json.dumps(
            {"run_id": self._run_id, "sweep_id": sweep_id, "experiment_id": experiment_id,
             "tracking_uri": tracking["tracking_uri"]}))
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
