"""The study's bookkeeping: which trials count as done, which RUNNING trials belong to dead
processes, and how several processes share one study.

* A trial counts toward ``n_trials`` when it is COMPLETE, PRUNED, or FAIL because its run
  failed (``initlab.failed = error``).  Trials that never ran to an end (interrupted, left by
  a dead process, surplus) are FAIL with another reason and do not count; their parameters are
  queued again, so a resumed study evaluates them instead of losing them.
* Heartbeats work the same on every storage (SQLite, PostgreSQL, journal files): the sweeper
  that owns a RUNNING trial stamps ``initlab.heartbeat`` every ``heartbeat_interval`` seconds;
  any sweeper that sees a stamp older than ``grace_period`` fails the trial as ``stale``.
* Claiming a trial is serialised by a file lock for local storages (``_storage.claim_lock``),
  and checked afterwards by trial number for every storage: a trial whose number ranks past
  ``n_trials`` among counted and running trials is surplus and withdrawn before it gets
  parameters.

Trials are addressed by number; writes go through the storage object the sweeper built itself
(``_storage.StorageSpec.storage``), with Optuna's public storage API.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from initlab.search.trial import ATTR_FAILED, ATTR_HEARTBEAT, ATTR_RETRY_OF

log = logging.getLogger(__name__)

COUNTED_FAILURES = ("error",)
# Optuna's own convention, not part of its API: ``Study.enqueue_trial`` keeps the queued
# parameters in this system attribute of the WAITING trial, and ``ask`` hands them out when the
# trial is suggested.  A surplus trial is withdrawn before anything is suggested, so its queued
# parameters can only be read here.  tests/search/test_sweeper_internals.py pins it.
OPTUNA_FIXED_PARAMS = "fixed_params"


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


# ---- writing trials ------------------------------------------------------------------------
class Trials:
    """The study's trials by number, read and written through ``storage`` (the object the
    study was created on)."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
        self.study, self.storage = study, storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self._ids: dict[int, int] = {}

    def trial_id(self, number: int) -> int:
        if number not in self._ids:
            self._ids[number] = self.storage.get_trial_id_from_study_id_trial_number(
                self.study_id, number)
        return self._ids[number]

    def get(self, number: int) -> FrozenTrial:
        return self.storage.get_trial(self.trial_id(number))

    def set_attr(self, number: int, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.trial_id(number), key, value)

    @staticmethod
    def queued_params(frozen: FrozenTrial) -> dict[str, Any] | None:
        """The parameters ``enqueue_trial`` gave this trial, before any was suggested."""
        return frozen.system_attrs.get(OPTUNA_FIXED_PARAMS)

    def abandon(self, number: int, reason: str) -> bool:
        """Mark a RUNNING trial FAIL for ``reason`` and queue its parameters again; False when
        another process got there first."""
        try:
            trial_id = self.trial_id(number)
            frozen = self.storage.get_trial(trial_id)
            if frozen.state != TrialState.RUNNING:
                return False
            self.storage.set_trial_user_attr(trial_id, ATTR_FAILED, reason)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except Exception as err:  # noqa: BLE001 - finished meanwhile by its owner or a peer
            log.debug("could not fail trial %s: %s", number, err)
            return False
        if frozen.params:
            self.study.enqueue_trial(frozen.params, user_attrs={ATTR_RETRY_OF: frozen.number},
                                     skip_if_exists=False)
        return True

    def fail_stale(self, grace_period: float, own: Container[int]) -> list[int]:
        """Fail (and queue again) RUNNING trials, other than this process's ``own`` numbers,
        whose heartbeat is older than ``grace_period`` seconds."""
        now = time.time()
        stale = []
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in own:
                continue
            beat = trial.user_attrs.get(ATTR_HEARTBEAT)
            if beat is None and trial.datetime_start is not None:
                beat = trial.datetime_start.timestamp()
            if beat is not None and now - float(beat) > grace_period:
                if self.abandon(trial.number, "stale"):
                    stale.append(trial.number)
        if stale:
            log.warning("trials %s were left RUNNING by a process that stopped (no heartbeat for "
                        "%ss): marked FAIL, their parameters queued again", stale, grace_period)
        return stale


class Heartbeat:
    """A thread that stamps this process's running trials (by number)."""

    def __init__(self, trials: Trials, interval: float) -> None:
        self.trials, self.interval = trials, max(0.5, float(interval))
        self.numbers: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
        self._thread.start()

    def add(self, number: int) -> None:
        self.beat(number)
        with self._lock:
            self.numbers.add(number)

    def discard(self, number: int) -> None:
        with self._lock:
            self.numbers.discard(number)

    def beat(self, number: int) -> None:
        with contextlib.suppress(Exception):  # finished meanwhile
            self.trials.set_attr(number, ATTR_HEARTBEAT, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                numbers = list(self.numbers)
            for number in numbers:
                self.beat(number)

    def stop(self) -> None:
        self._stop.set()
