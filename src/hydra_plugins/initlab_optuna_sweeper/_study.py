"""The study's bookkeeping: where it is stored, which trials count as done, which RUNNING
trials belong to dead processes, and how several processes share one study.

* A trial counts toward ``n_trials`` when it is COMPLETE, PRUNED, or FAIL because its run
  failed (``initlab.failed = error``).  Trials that never ran to an end (interrupted, left by
  a dead process, surplus) are FAIL with another reason and do not count; their parameters are
  queued again, so a resumed study evaluates them instead of losing them.
* Heartbeats work the same on every storage (SQLite, PostgreSQL, journal files): the sweeper
  that owns a RUNNING trial stamps ``initlab.heartbeat`` every ``heartbeat_interval`` seconds;
  any sweeper that sees a stamp older than ``grace_period`` fails the trial as ``stale``.
* Claiming a trial is serialised by a file lock for local storages, and checked afterwards by
  trial number for every storage: a trial whose number ranks past ``n_trials`` among counted and
  running trials is surplus and withdrawn before it gets parameters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from initlab.store import sqlite_path

log = logging.getLogger(__name__)

ATTR_HEARTBEAT = "initlab.heartbeat"
ATTR_FAILED = "initlab.failed"          # error | interrupted | stale | surplus | config
ATTR_RETRY_OF = "initlab.retry_of"
ATTR_PRUNED = "initlab.pruned_at_step"  # set by the job's pruning callback
ATTR_DIVERGED = "initlab.diverged_at_step"
ATTR_MLFLOW_RUN = "mlflow_run_id"
COUNTED_FAILURES = ("error",)


# ---- storage -------------------------------------------------------------------------------
@dataclass
class StorageSpec:
    storage: Any                 # what optuna.create_study takes
    for_jobs: Any                # what a job needs to open it (URL or a _target_ dict), or None
    lock_file: Path | None       # a file beside a local storage, for claiming trials
    text: str                    # for logs and the results file


def default_storage_url(config: DictConfig) -> str:
    """SQLite beside the MLflow store: ``<dir of mlflow.db>/optuna.db``."""
    uri = OmegaConf.select(config, "tracking.tracking_uri", default=None)
    db = sqlite_path(uri) if isinstance(uri, str) else None
    folder = db.parent if db is not None else Path("mlruns")
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    db = sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        # Several processes write to one SQLite file: wait for the lock instead of failing.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    return optuna.storages.RDBStorage(url, **kwargs)


def resolve_storage(spec: Any, config: DictConfig) -> StorageSpec:
    if spec is None or spec in ("memory", "inmemory"):
        return StorageSpec(None, None, None, "in-memory (lost when the sweep ends)")
    if isinstance(spec, str):
        url = default_storage_url(config) if spec == "auto" else spec
        db = sqlite_path(url)
        if db is not None:  # absolute, so every job and worker opens the same file
            url = f"sqlite:///{db.resolve()}"
            db = db.resolve()
        return StorageSpec(rdb_storage(url), url, Path(f"{db}.claim.lock") if db else None, url)
    if isinstance(spec, (Mapping, DictConfig)) and "_target_" in spec:
        node = OmegaConf.to_container(OmegaConf.create(spec), resolve=True) \
            if not isinstance(spec, DictConfig) else OmegaConf.to_container(spec, resolve=True)
        storage = instantiate(node)
        lock = None
        backend = getattr(storage, "_backend", None)
        path = getattr(backend, "_file_path", None)
        if path:
            lock = Path(f"{Path(path).resolve()}.claim.lock")
        where = path or next((v for v in node.values() if isinstance(v, str)
                              and v != node["_target_"]), "")
        return StorageSpec(storage, node, lock, f"{node['_target_'].rsplit('.', 1)[-1]} {where}".strip())
    raise ValueError(f"hydra.sweeper.storage must be a URL, a _target_ node or null, not {spec!r}")


def open_storage(spec: Any) -> Any:
    """In a job: the storage the sweeper passed (a URL or a _target_ dict)."""
    if isinstance(spec, str):
        return rdb_storage(spec)
    if isinstance(spec, (Mapping, DictConfig)):
        return instantiate(OmegaConf.to_container(OmegaConf.create(dict(spec)), resolve=True)
                           if not isinstance(spec, DictConfig) else spec)
    raise ValueError(f"cannot open Optuna storage {spec!r}")


# ---- counting ------------------------------------------------------------------------------
def counts(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get(ATTR_FAILED) in COUNTED_FAILURES


@dataclass
class Progress:
    done: int
    running: list[FrozenTrial]
    waiting: int

    def active(self) -> int:
        return self.done + len(self.running)


def progress(study: optuna.Study) -> Progress:
    trials = study.get_trials(deepcopy=False)
    return Progress(sum(counts(t) for t in trials),
                    [t for t in trials if t.state == TrialState.RUNNING],
                    sum(t.state == TrialState.WAITING for t in trials))


def rank(study: optuna.Study, number: int) -> int:
    """How many counted or running trials have a smaller number."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < number and (counts(t) or t.state == TrialState.RUNNING))


def abandon(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Mark a RUNNING trial FAIL for ``reason`` and queue its parameters again; False when
    another process got there first."""
    storage = study._storage
    try:
        frozen = storage.get_trial(trial_id)
        if frozen.state != TrialState.RUNNING:
            return False
        storage.set_trial_user_attr(trial_id, ATTR_FAILED, reason)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except Exception as err:  # noqa: BLE001 - finished meanwhile by its owner or a peer
        log.debug("could not fail trial %s: %s", trial_id, err)
        return False
    if frozen.params:
        study.enqueue_trial(frozen.params, user_attrs={ATTR_RETRY_OF: frozen.number},
                            skip_if_exists=False)
    return True


def fail_stale_trials(study: optuna.Study, grace_period: float, own: set[int]) -> list[int]:
    now = time.time()
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id in own:
            continue
        beat = trial.user_attrs.get(ATTR_HEARTBEAT)
        if beat is None and trial.datetime_start is not None:
            beat = trial.datetime_start.timestamp()
        if beat is not None and now - float(beat) > grace_period:
            if abandon(study, trial._trial_id, "stale"):
                stale.append(trial.number)
    if stale:
        log.warning("trials %s were left RUNNING by a process that stopped (no heartbeat for "
                    "%ss): marked FAIL, their parameters queued again", stale, grace_period)
    return stale


class Heartbeat:
    """A thread that stamps this process's running trials."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self.study, self.interval = study, max(0.5, float(interval))
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        self.beat(trial_id)
        with self._lock:
            self.trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    def beat(self, trial_id: int) -> None:
        with contextlib.suppress(Exception):  # finished meanwhile
            self.study._storage.set_trial_user_attr(trial_id, ATTR_HEARTBEAT, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                self.beat(trial_id)

    def stop(self) -> None:
        self._stop.set()


@contextlib.contextmanager
def claim_lock(lock_file: Path | None) -> Iterator[None]:
    if lock_file is None:
        yield
        return
    from filelock import FileLock

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_file), timeout=600):
        yield
