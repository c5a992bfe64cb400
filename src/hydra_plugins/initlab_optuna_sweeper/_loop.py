"""The ask-tell loop: ask Optuna for a trial, launch its Hydra job, tell Optuna how it ended.

``workers`` threads of this process each run that loop with one job per launch, so a slow trial
holds back nobody: a worker that finishes asks for the next trial at once.  Ctrl-C and SIGTERM
(``initlab.tracking.interrupts.handling``) end the sweep with this process's unfinished trials
marked FAIL (``interrupted``, not counted) and queued again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from omegaconf import DictConfig
from optuna.trial import Trial, TrialState

from initlab.search.trial import (ATTR_FAILED, ATTR_HEARTBEAT, ATTR_OBJECTIVE_SE,
                                  ATTR_OBJECTIVE_VALUES)
from initlab.tracking import interrupts

from . import _study
from ._report import Reporter
from initlab.config.search_space import SearchSpace
from ._storage import StorageSpec, claim_lock
from ._trial import job_overrides, outcome

log = logging.getLogger(__name__)
_WAIT = object()


@dataclass
class Search:
    """Everything the loop needs, set up by the sweeper."""
    study: optuna.Study
    storage: StorageSpec
    launcher: Any
    config: DictConfig
    space: SearchSpace
    custom: Callable[[DictConfig, Trial], Any] | None
    objectives: int
    n_trials: int
    max_failure_rate: float
    heartbeat_interval: float
    grace_period: float
    reporter: Reporter


class AskTellLoop:
    def __init__(self, search: Search) -> None:
        self.s = search
        self.trials = _study.Trials(search.study, search.storage.storage)
        self.heartbeat = _study.Heartbeat(self.trials, search.heartbeat_interval)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._job_idx, self._finished, self._failures, self._waiting_logged = 0, 0, 0, False

    def run(self, workers: int) -> None:
        s = self.s
        try:
            with interrupts.handling():  # SIGTERM (a killed sweep) ends like Ctrl-C
                try:
                    self._work(workers)
                except KeyboardInterrupt:
                    self._stop.set()
                    with interrupts.store_write():  # a second signal does not cut these short
                        self._abandon_own("interrupted")
                    log.warning("interrupted: unfinished trials marked FAIL and queued again; "
                                "re-run the same command to finish the study")
                    s.reporter.finish(s.study, s.storage.text, s.n_trials, False,
                                      interrupted=True)
                    raise
        finally:
            self.heartbeat.stop()
        if self._fatal is not None:
            raise self._fatal

    def _work(self, workers: int) -> None:
        if workers == 1:
            self._worker()
            return
        threads = [threading.Thread(target=self._worker, name=f"optuna-worker-{i}", daemon=True)
                   for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # short joins: the main thread stays able to take signals
                thread.join(0.5)

    def _abandon_own(self, reason: str) -> None:
        for number in list(self.heartbeat.numbers):
            self.trials.abandon(number, reason)
            self.heartbeat.discard(number)

    # ---- one worker --------------------------------------------------------------------
    def _worker(self) -> None:
        """One worker thread: claim a trial, run it as a job, finish it; until done or stopped.
        An exception that escapes (a bug, not a failed job) fails the claimed trial and stops
        the search, which then re-raises it: non-zero exit, parent run FAILED."""
        try:
            self._work_trials()
        except BaseException as err:  # noqa: BLE001 - re-raised by run() in the main thread
            if threading.current_thread() is threading.main_thread():
                raise
            self._fatal = err
            self._stop.set()
            log.error("an Optuna worker thread failed: %r", err)

    def _work_trials(self) -> None:
        poll = max(0.5, min(5.0, float(self.s.heartbeat_interval)))
        while not self._stop.is_set():
            claimed = self._claim()
            if claimed is None:
                return
            if claimed is _WAIT:
                self._stop.wait(poll)
                continue
            trial, overrides, idx = claimed
            started = time.time()
            try:
                ret = self.s.launcher.launch([overrides], initial_job_idx=idx)[0]
            except SystemExit as err:  # the task's configuration error: stop the search
                self._abort(trial, "config", err)
                return
            except KeyboardInterrupt:
                if threading.current_thread() is threading.main_thread():
                    raise
                self._interrupted(trial)  # a job killed (SIGTERM/Ctrl-C) in a worker process
                if interrupts.received() is not None:  # the sweep itself is stopping
                    return
                continue
            except Exception as err:  # noqa: BLE001 - the launcher itself failed for this job
                if self._stop.is_set():
                    self._interrupted(trial)
                    return
                if "executor" in str(err) and "shut" in str(err):  # joblib: a peer job was killed
                    self._interrupted(trial)
                    continue
                self._finish(trial, None, err, time.time() - started)
                continue
            except BaseException as err:  # not a job's failure: fail its trial, stop the search
                self._abort(trial, "error", err)
                raise
            self._finish(trial, ret, None, time.time() - started)

    def _claim(self) -> Any:
        """Under the claim lock: fail stale trials, and either return (trial, overrides,
        job index), ``_WAIT`` (trials still running elsewhere), or None (the study is done)."""
        s, study = self.s, self.s.study
        with self._lock, claim_lock(s.storage.lock_file):
            if self._stop.is_set() or interrupts.received() is not None:
                return None
            self.trials.fail_stale(s.grace_period, self.heartbeat.numbers)
            progress = _study.progress(study)
            if progress.done >= s.n_trials:
                return None
            if self._finished and self._failures / self._finished > s.max_failure_rate:
                log.error("%d of %d trials failed (max_failure_rate=%s): no more trials",
                          self._failures, self._finished, s.max_failure_rate)
                return None
            if progress.active() >= s.n_trials:
                if not self._waiting_logged and not self.heartbeat.numbers:
                    log.info("waiting for %d trial(s) running in other processes",
                             len(progress.running))
                    self._waiting_logged = True
                return _WAIT
            trial = study.ask()
            self.heartbeat.add(trial.number)
            if _study.rank(study, trial.number) >= s.n_trials:
                self._withdraw(trial.number)
                return _WAIT
            overrides = job_overrides(trial, s.space, s.config, s.custom, study.study_name,
                                      s.storage.for_jobs)
            idx = self._job_idx
            self._job_idx += 1
        log.info("trial %d: %s", trial.number, " ".join(overrides[:len(trial.params)]))
        return trial, overrides, idx

    def _withdraw(self, number: int) -> None:
        """A surplus trial (a peer claimed one at the same time): fail it before it gets
        parameters, and put back in the queue what it had taken from there."""
        frozen = self.trials.get(number)
        queued = self.trials.queued_params(frozen)
        self.trials.abandon(number, "surplus")
        if queued:
            attrs = {k: v for k, v in frozen.user_attrs.items() if k != ATTR_HEARTBEAT}
            self.s.study.enqueue_trial(queued, user_attrs=attrs)
        self.heartbeat.discard(number)

    # ---- after a trial -----------------------------------------------------------------
    def _finish(self, trial: Trial, ret: JobReturn | None, error: BaseException | None,
                seconds: float) -> None:
        s = self.s
        state, values, why = outcome(self.trials.get(trial.number), ret, error, s.objectives)
        if state == TrialState.FAIL:
            with contextlib.suppress(Exception):
                self.trials.set_attr(trial.number, ATTR_FAILED, "error")
                self.trials.set_attr(trial.number, "fail_reason", why[:1000])
        try:
            s.study.tell(trial, values=values, state=state, skip_if_finished=True)
        except RuntimeError as err:  # GridSampler calls study.stop() when the grid is exhausted
            if "Study.stop" not in str(err):
                raise
        finally:
            self.heartbeat.discard(trial.number)
        frozen = self.trials.get(trial.number)
        with self._lock:
            self._finished += 1
            self._failures += state == TrialState.FAIL
        shown = f"value {frozen.values[0] if len(frozen.values or []) == 1 else frozen.values}" \
            if frozen.values else ""
        if frozen.values and ATTR_OBJECTIVE_SE in frozen.user_attrs:  # a mean over seeds
            shown += f" ± {frozen.user_attrs[ATTR_OBJECTIVE_SE]:.2g} (standard error over " \
                     f"{len(frozen.user_attrs[ATTR_OBJECTIVE_VALUES])} seeds)"
        log_fn = log.warning if state == TrialState.FAIL else log.info
        log_fn("trial %d %s %s%s (%.0f s)", frozen.number, state.name, shown,
               f" [{why}]" if why else "", seconds)
        s.reporter.trial_done(frozen, ret, why)

    def _interrupted(self, trial: Trial) -> None:
        self.trials.abandon(trial.number, "interrupted")
        self.heartbeat.discard(trial.number)
        log.warning("trial %d was interrupted: marked FAIL (not counted), parameters queued again",
                    trial.number)

    def _abort(self, trial: Trial, reason: str, err: BaseException) -> None:
        self.trials.abandon(trial.number, reason)
        self.heartbeat.discard(trial.number)
        self._fatal = err
        self._stop.set()
        log.error("trial %d stopped the search: %s", trial.number, err)
