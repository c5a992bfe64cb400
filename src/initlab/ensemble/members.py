"""One member of a stacked group: its job (config, data module, own net), its MLflow run, its
Optuna trial, and where it stands (training, diverged, pruned, done).

Each member's run is opened with ``tracking.tracked_run`` under the member's own Hydra context
(``enter``), so it carries exactly the params, tags and parent run its ordinary job would, plus
the tag ``initlab.engine=ensemble``; it ends as soon as the member stops, while the others go
on."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from initlab.engine.build import Job
from initlab.search.trial import ATTR_DIVERGED, ATTR_MLFLOW_RUN, ATTR_PRUNED, load_trial
from initlab.tracking import interrupts
from initlab.tracking.heartbeat import ACTIVE_RUNS, TAG_HEARTBEAT, stamp
from initlab.tracking.record import TAG_DIVERGED
from initlab.tracking.run import TrackedRun, extra_run_tags, tracked_run

log = logging.getLogger(__name__)
TAG_ENGINE = "initlab.engine"
ENGINE = "ensemble"


@dataclass
class Member:
    """``enter`` makes the member's Hydra job context current (set by the launcher)."""

    index: int
    cfg: DictConfig
    job: Job
    name: str
    enter: Callable[[], None] = lambda: None
    output_dir: Path | None = None  # its job's output directory (where curves.png goes)
    run: TrackedRun | None = None
    logger: Any = None
    trial: Any = None
    monitor: str | None = None
    diverged_at: int | None = None
    pruned_at: int | None = None
    done: bool = False
    error: BaseException | None = None  # what ended the member's run FAILED / KILLED
    metrics: dict[str, float] = field(default_factory=dict)
    stamped: float = 0.0  # time.monotonic() of the run's last heartbeat stamp
    drawings: list = field(default_factory=list)  # ensemble.figures.Drawing: logged at close
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _pending: list = field(default_factory=list)

    # ---- the run ---------------------------------------------------------------------------
    def open(self, device: str, heartbeat_s: float) -> None:
        """Create the run (its heartbeat is the group's, every ``heartbeat_s`` seconds:
        ``GroupHeartbeat``)."""
        self.enter()
        if self.cfg.tracking.get("enabled", True):
            with extra_run_tags({TAG_ENGINE: ENGINE}):  # set at creation: one store write less
                self.run = self._stack.enter_context(tracked_run(
                    self.cfg, device, own_heartbeat=False, heartbeat_s=heartbeat_s))
            self.stamped = time.monotonic()
            ACTIVE_RUNS.add(self.run.run_id)
            self._stack.callback(ACTIVE_RUNS.discard, self.run.run_id)
        self._link_trial()

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Buffer metrics for the run (written by ``flush``: every few seconds, from the
        training thread, for all members; ``logger``, if set, takes them instead)."""
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=step)
        elif self.run is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def flush(self) -> None:
        """Write the buffered metrics with a heartbeat stamp: one store transaction (per 1000
        metrics) that also tells ``GroupHeartbeat`` this run needs no stamp for a while."""
        if self.run is None or not self._pending:
            return
        from mlflow.entities import RunTag

        pending, self._pending = self._pending, []
        with interrupts.store_write():
            for start in range(0, len(pending), 1000):
                tags = [RunTag(TAG_HEARTBEAT, stamp())] if start == 0 else []
                self.run.client.log_batch(self.run.run_id, metrics=pending[start:start + 1000],
                                          tags=tags)
        self.stamped = time.monotonic()

    def log_drawings(self, wait: bool = True) -> None:
        """Log the member's figures into its run (``wait=False``: those already drawn)."""
        drawings, self.drawings = self.drawings, []
        for d in drawings:
            if self.run is None or not (wait or d.future.done()):
                continue
            path = d.path()
            if path is not None:
                with interrupts.store_write():
                    self.run.log_artifact(path, d.folder)

    def tag(self, key: str, value: Any) -> None:
        if self.run is not None:
            self.run.set_tag(key, value)

    def close(self, error: BaseException | None = None) -> None:
        """End the run: FINISHED, or FAILED (KILLED on an interrupt) with ``error``."""
        self.done, self.error = True, error
        self.enter()
        try:
            self.flush()
            self.log_drawings(wait=error is None)
        except Exception:  # noqa: BLE001 - the store is gone: still end the run
            if error is None:
                raise
            log.exception("could not write the last records of %s", self.name)
        if error is None:
            self._stack.close()
        else:
            self._stack.__exit__(type(error), error, error.__traceback__)

    # ---- divergence and pruning ------------------------------------------------------------
    def diverged(self, step: int) -> None:
        self.diverged_at = step
        log.warning("%s: the training loss is not finite at step %d: the member diverged, "
                    "masking it out", self.name, step)
        self.tag(TAG_DIVERGED, "true")
        self.tag("initlab.diverged_step", step)
        if self.trial is not None:
            with interrupts.store_write():
                self.trial.set_user_attr(ATTR_DIVERGED, int(step))

    def report(self, value: float, epoch: int) -> bool:
        """Report the monitored metric to the member's trial; True if the pruner prunes it."""
        if self.trial is None or not math.isfinite(value):
            return False
        with interrupts.store_write():
            self.trial.report(value, epoch)
            prune = self.trial.should_prune()
        if prune:
            self.pruned_at = epoch
            with interrupts.store_write():
                self.trial.set_user_attr(ATTR_PRUNED, epoch)
            log.info("Optuna pruned trial %s (%s): %s=%.4g at epoch %d",
                     self.trial.number, self.name, self.monitor, value, epoch)
            self.tag("optuna.state", "PRUNED")
            self.tag("optuna.pruned_at_epoch", epoch)
        return prune

    def _link_trial(self) -> None:
        node = (self.cfg.get("callbacks") or {}).get("optuna_pruning")
        link = node.get("trial") if node is not None else None
        if link is None:
            return
        self.monitor = str(node.get("monitor"))
        with interrupts.store_write():
            self.trial = load_trial(OmegaConf.to_container(link, resolve=True), sweeper_pruner())
            if self.run is not None:
                self.trial.set_user_attr(ATTR_MLFLOW_RUN, self.run.run_id)
        self.tag("optuna.trial_number", link["trial"])
        self.tag("optuna.study_name", link["study"])


def group_interval_s(heartbeat_s: float, members: int) -> float:
    """Seconds between a group's metrics writes and heartbeats: ``tracking.heartbeat_s`` for
    up to 10 members, one more such interval per 10 more, at most 30 s (or ``heartbeat_s`` if
    longer).  Each write is one store transaction per member: 60 members every 3 s would be 20
    transactions a second, on the thread that trains."""
    longer = heartbeat_s * math.ceil(members / 10)
    return max(heartbeat_s, min(longer, 30.0))


def sweeper_pruner() -> Any:
    """The sweeper's pruner (``hydra.sweeper.pruner``), as the pruning callback builds it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    if not HydraConfig.initialized():
        return None
    node = HydraConfig.get().sweeper.get("pruner")
    return instantiate(node) if node else None


class GroupHeartbeat:
    """Stamps every open member run (``initlab.heartbeat``) not stamped by a metrics write
    (``Member.flush``) for ``interval_s`` seconds, from one daemon thread: a thread per run
    (and its own store connection) would have 60 threads contend for one SQLite store."""

    def __init__(self, members: list[Member], interval_s: float) -> None:
        self.members, self.interval_s = members, max(0.1, float(interval_s))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="initlab-ensemble-heartbeat")

    def __enter__(self) -> GroupHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for m in list(self.members):
                run = m.run
                if run is None or m.done or time.monotonic() - m.stamped < self.interval_s:
                    continue
                try:
                    run.client.set_tag(run.run_id, TAG_HEARTBEAT, stamp())
                    m.stamped = time.monotonic()
                except Exception as err:  # noqa: BLE001 - a busy store: the next beat will do
                    log.debug("heartbeat of run %s: %s", run.run_id, err)
