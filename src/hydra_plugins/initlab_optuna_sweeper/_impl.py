"""The sweep: ask Optuna for a trial, launch its Hydra job, tell Optuna how it ended.

``n_jobs`` workers (threads of this process) each run that loop with one job per launch, so a
slow trial holds back nobody: a worker that finishes asks for the next trial at once.  Jobs run
in the launcher's processes (joblib locally, submitit on SLURM); the job reports its validation
metric to its trial every epoch (``initlab.pruning.OptunaPruning``) and stops when the pruner
says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import Trial, TrialState

from . import _study
from ._report import Reporter
from ._space import SearchSpace, SearchSpaceError, parse

log = logging.getLogger(__name__)
_WAIT = object()


def _hydra_value(value: Any) -> str:
    """A Python value written in Hydra's override grammar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _directions(direction: Any) -> list[str]:
    items = list(direction) if isinstance(direction, (list, tuple, ListConfig)) else [direction]
    out = [getattr(d, "name", str(d)).lower() for d in items]
    for d in out:
        if d not in ("minimize", "maximize"):
            raise SearchSpaceError(f"hydra.sweeper.direction must be minimize or maximize, not {d!r}")
    return out


class OptunaSweeperImpl:
    def __init__(self, sampler: Any, direction: Any, storage: Any, study_name: str | None,
                 n_trials: int, n_jobs: int, max_failure_rate: float = 1.0,
                 search_space: Any = None, params: Any = None, custom_search_space: str | None = None,
                 pruner: Any = None, heartbeat_interval: float = 20, grace_period: float = 90,
                 check_trial_config: str | None = None, plots: bool = True) -> None:
        self.sampler_conf, self.pruner_conf = sampler, pruner
        self.direction, self.storage_conf, self.study_name = direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.search_space, self.params = search_space, params
        self.custom_search_space = custom_search_space
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.check_trial_config, self.plots = check_trial_config, plots

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    # ---- before the first trial --------------------------------------------------------
    def _check_settings(self, space: SearchSpace) -> None:
        if self.search_space:
            raise SearchSpaceError("hydra.sweeper.search_space is the official plugin's deprecated "
                                   "form; write the space as hydra.sweeper.params "
                                   "(name: choice(...) / interval(...) / range(...))")
        if not space.distributions and not self.custom_search_space:
            raise SearchSpaceError("nothing to search: hydra.sweeper.params (or the command line) "
                                   "has no choice/range/interval")
        if int(self.n_trials) < 1:
            raise SearchSpaceError(f"hydra.sweeper.n_trials must be >= 1, got {self.n_trials}")
        if int(self.n_jobs) < 1:
            raise SearchSpaceError(f"hydra.sweeper.n_jobs must be >= 1, got {self.n_jobs}")
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise SearchSpaceError("hydra.sweeper.max_failure_rate must be within [0, 1]")

    def _check_trial_configs(self, space: SearchSpace) -> None:
        """Compose a few trial configs (every choice, both ends of every range): an unknown key,
        a config-group option that does not exist or a value the task rejects stops the search
        here, with Hydra's or the task's message."""
        check = get_method(self.check_trial_config) if self.check_trial_config else None
        loader = self.hydra_context.config_loader
        for probe in space.probes() or [{}]:
            overrides = [f"{k}={v}" for k, v in probe.items()] + list(space.fixed.values())
            try:
                cfg = loader.load_sweep_config(self.config, overrides)
            except Exception as err:  # noqa: BLE001 - Hydra's own composition errors
                raise SearchSpaceError(f"a trial with {' '.join(overrides)} cannot be composed: "
                                       f"{err}") from None
            if check is not None:
                try:
                    check(cfg)
                except Exception as err:  # noqa: BLE001
                    raise SearchSpaceError(f"a trial with {' '.join(overrides)} would be rejected: "
                                           f"{err}") from None

    def _default_study_name(self, arguments: Sequence[str]) -> str:
        """Stable across re-runs of one command (so it resumes), different for another search:
        hashed from the search space and the command line, ``hydra.*`` settings left out (so
        raising ``hydra.sweeper.n_trials`` extends the same study)."""
        parts = sorted(f"{k}={v}" for k, v in (self.params or {}).items())
        parts += sorted(a for a in arguments if not a.lstrip("+~").startswith("hydra."))
        digest = hashlib.sha1("\n".join(parts).encode()).hexdigest()[:10]
        return f"{self.config.hydra.job.name}-{digest}"

    def _sampler(self, space: SearchSpace) -> optuna.samplers.BaseSampler | None:
        if not self.sampler_conf:
            return None
        sampler = _build(self.sampler_conf)
        if callable(sampler) and not isinstance(sampler, optuna.samplers.BaseSampler):
            sampler = sampler(space.grid())  # GridSampler is partial: the grid comes from params
        return sampler

    # ---- the sweep ---------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Any]:
        try:
            space = parse(self.params, arguments)
            self._check_settings(space)
            directions = _directions(self.direction)
            self._check_trial_configs(space)
        except SearchSpaceError as err:  # one paragraph, no traceback, nothing left behind
            Reporter(self.sweep_dir).discard_parent_run()
            sys.exit(f"initlab: search configuration error: {err}")
        self.space, self.directions = space, directions
        # Hydra instantiated the sweeper's nodes; the jobs need the storage's node, not an object.
        storage_conf = OmegaConf.select(self.config, "hydra.sweeper.storage", default=None)
        storage = _study.resolve_storage(storage_conf, self.config)
        sampler = self._sampler(space)
        if isinstance(sampler, optuna.samplers.GridSampler):
            grid = math.prod(len(v) for v in space.grid().values())
            if grid < self.n_trials:
                log.info("grid sampler: n_trials lowered from %d to the grid's %d points",
                         self.n_trials, grid)
                self.n_trials = grid
        pruner = _build(self.pruner_conf) if self.pruner_conf else None
        name = self.study_name or self._default_study_name(arguments)
        study = optuna.create_study(study_name=name, storage=storage.storage, sampler=sampler,
                                    pruner=pruner, directions=directions, load_if_exists=True)
        previous = len(study.get_trials(deepcopy=False))
        if previous and not isinstance(sampler, optuna.samplers.GridSampler):
            # A seeded sampler would replay the first run's points: shift its seed by the
            # number of trials so far (still reproducible for the same history).
            node = OmegaConf.select(self.config, "hydra.sweeper.sampler", default=None)
            if node is not None and node.get("seed") is not None:
                study.sampler = instantiate(node, seed=int(node.seed) + previous)
        existing = [d.name.lower() for d in study.directions]
        if existing != directions:
            Reporter(self.sweep_dir).discard_parent_run()
            sys.exit(f"initlab: search configuration error: study {name!r} in {storage.text} "
                     f"optimizes {existing}, not {directions}: choose another study_name")
        self.study, self.storage, self.custom = study, storage, None
        if self.custom_search_space:
            self.custom = get_method(self.custom_search_space)
        if storage.for_jobs is None and pruner is not None \
                and not isinstance(pruner, optuna.pruners.NopPruner):
            log.warning("an in-memory study cannot be reached from the jobs: no pruning")

        workers = int(self.n_jobs)
        if workers > 1 and type(self.launcher).__name__ == "BasicLauncher":
            log.warning("n_jobs=%d, but the basic launcher runs jobs in this process one at a "
                        "time; use hydra/launcher=joblib (or submitit) for parallel trials", workers)
            workers = 1
        joblib = getattr(self.launcher, "joblib", None)
        if isinstance(joblib, dict) and joblib.get("n_jobs") in (None, -1):
            joblib["n_jobs"] = workers  # the joblib launcher's pool: one process per worker
        before = _study.progress(study)
        log.info("Study %r in %s: %d of %d trials done%s; sampler %s, pruner %s, %d worker(s)",
                 name, storage.text, before.done, self.n_trials,
                 f", {len(before.running)} running elsewhere" if before.running else "",
                 type(study.sampler).__name__, type(study.pruner).__name__, workers)

        self.reporter = Reporter(self.sweep_dir)
        self.reporter.start(study, storage.text, self.n_trials)
        self._run(workers)
        return self.reporter.finish(study, storage.text, self.n_trials, self.plots,
                                    interrupted=False)

    def _run(self, workers: int) -> None:
        self.heartbeat = _study.Heartbeat(self.study, self.heartbeat_interval)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._job_idx, self._finished, self._failures, self._waiting_logged = 0, 0, 0, False
        previous = None
        with contextlib.suppress(ValueError):  # SIGTERM (a killed sweep): end like Ctrl-C
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            if workers == 1:
                self._worker()
            else:
                threads = [threading.Thread(target=self._worker, name=f"optuna-worker-{i}",
                                            daemon=True) for i in range(workers)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    while thread.is_alive():
                        thread.join(0.5)
        except KeyboardInterrupt:
            self._stop.set()
            self._abandon_own("interrupted")
            log.warning("interrupted: unfinished trials marked FAIL and queued again; re-run the "
                        "same command to finish the study")
            self.reporter.finish(self.study, self.storage.text, self.n_trials, False,
                                 interrupted=True)
            raise
        finally:
            self.heartbeat.stop()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if self._fatal is not None:
            raise self._fatal

    def _abandon_own(self, reason: str) -> None:
        for trial_id in list(self.heartbeat.trial_ids):
            _study.abandon(self.study, trial_id, reason)
            self.heartbeat.discard(trial_id)

    # ---- one worker --------------------------------------------------------------------
    def _worker(self) -> None:
        poll = max(0.5, min(5.0, float(self.heartbeat_interval)))
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
                ret = self.launcher.launch([overrides], initial_job_idx=idx)[0]
            except SystemExit as err:  # the task's configuration error: stop the search
                self._abort(trial, "config", err)
                return
            except KeyboardInterrupt:
                if threading.current_thread() is threading.main_thread():
                    raise
                self._interrupted(trial)  # a job killed (SIGTERM/Ctrl-C) in a worker process
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
            self._finish(trial, ret, None, time.time() - started)

    def _claim(self) -> Any:
        """Under the claim lock: fail stale trials, and either return (trial, overrides,
        job index), ``_WAIT`` (trials still running elsewhere), or None (the study is done)."""
        study = self.study
        with self._lock, _study.claim_lock(self.storage.lock_file):
            if self._stop.is_set():
                return None
            _study.fail_stale_trials(study, self.grace_period, self.heartbeat.trial_ids)
            progress = _study.progress(study)
            if progress.done >= self.n_trials:
                return None
            if self._finished and self._failures / self._finished > self.max_failure_rate:
                log.error("%d of %d trials failed (max_failure_rate=%s): no more trials",
                          self._failures, self._finished, self.max_failure_rate)
                return None
            if progress.active() >= self.n_trials:
                if not self._waiting_logged and not self.heartbeat.trial_ids:
                    log.info("waiting for %d trial(s) running in other processes",
                             len(progress.running))
                    self._waiting_logged = True
                return _WAIT
            trial = study.ask()
            self.heartbeat.add(trial._trial_id)
            if _study.rank(study, trial.number) >= self.n_trials:
                frozen = study._storage.get_trial(trial._trial_id)
                queued = frozen.system_attrs.get("fixed_params")
                _study.abandon(study, trial._trial_id, "surplus")
                if queued:
                    study.enqueue_trial(queued, user_attrs=dict(frozen.user_attrs))
                self.heartbeat.discard(trial._trial_id)
                return _WAIT
            overrides = self._configure(trial)
            idx = self._job_idx
            self._job_idx += 1
        log.info("trial %d: %s", trial.number, " ".join(overrides[:len(trial.params)]))
        return trial, overrides, idx

    def _configure(self, trial: Trial) -> list[str]:
        for name, dist in self.space.distributions.items():
            trial._suggest(name, dist)
        if self.custom is not None:
            self.custom(self.config, trial)
        overrides = [f"{name}={value}" for name, value in trial.params.items()]
        overrides += list(self.space.fixed.values())
        overrides += [f"++optuna.study={_hydra_value(self.study.study_name)}",
                      f"++optuna.trial={trial.number}"]
        if self.storage.for_jobs is not None:
            overrides.append(f"++optuna.storage={_hydra_value(self.storage.for_jobs)}")
        trial.set_user_attr("overrides", overrides[:len(trial.params) + len(self.space.fixed)])
        return overrides

    # ---- after a trial -----------------------------------------------------------------
    def _outcome(self, frozen: optuna.trial.FrozenTrial, ret: JobReturn | None,
                 error: BaseException | None) -> tuple[TrialState, list[float] | None, str]:
        if ret is not None and ret.status == JobStatus.FAILED:
            error = ret._return_value
        if isinstance(error, optuna.TrialPruned) or _study.ATTR_PRUNED in frozen.user_attrs:
            return TrialState.PRUNED, None, f"pruned at step {frozen.user_attrs.get(_study.ATTR_PRUNED)}"
        if _study.ATTR_DIVERGED in frozen.user_attrs:
            return TrialState.PRUNED, None, f"diverged at step {frozen.user_attrs[_study.ATTR_DIVERGED]}"
        if error is not None:
            return TrialState.FAIL, None, f"{type(error).__name__}: {error}"
        value = ret.return_value if ret is not None else None
        try:
            values = [float(v) for v in value] if len(self.directions) > 1 else [float(value)]
        except (TypeError, ValueError):
            return TrialState.FAIL, None, f"the job returned {value!r}, not a number"
        if len(values) != len(self.directions):
            return TrialState.FAIL, None, f"the job returned {len(values)} values for " \
                                          f"{len(self.directions)} objectives"
        if not all(math.isfinite(v) for v in values):
            return TrialState.FAIL, None, f"the job returned a non-finite value {values}"
        return TrialState.COMPLETE, values, ""

    def _finish(self, trial: Trial, ret: JobReturn | None, error: BaseException | None,
                seconds: float) -> None:
        storage = self.study._storage
        frozen = storage.get_trial(trial._trial_id)
        state, values, why = self._outcome(frozen, ret, error)
        if state == TrialState.FAIL:
            with contextlib.suppress(Exception):
                storage.set_trial_user_attr(trial._trial_id, _study.ATTR_FAILED, "error")
                storage.set_trial_user_attr(trial._trial_id, "fail_reason", why[:1000])
        try:
            self.study.tell(trial, values=values, state=state, skip_if_finished=True)
        except RuntimeError as err:  # GridSampler calls study.stop() when the grid is exhausted
            if "Study.stop" not in str(err):
                raise
        finally:
            self.heartbeat.discard(trial._trial_id)
        frozen = storage.get_trial(trial._trial_id)
        with self._lock:
            self._finished += 1
            self._failures += state == TrialState.FAIL
        shown = f"value {frozen.values[0] if len(frozen.values or []) == 1 else frozen.values}" \
            if frozen.values else ""
        log_fn = log.warning if state == TrialState.FAIL else log.info
        log_fn("trial %d %s %s%s (%.0f s)", frozen.number, state.name, shown,
               f" [{why}]" if why else "", seconds)
        self.reporter.trial_done(frozen, ret, why)

    def _interrupted(self, trial: Trial) -> None:
        _study.abandon(self.study, trial._trial_id, "interrupted")
        self.heartbeat.discard(trial._trial_id)
        log.warning("trial %d was interrupted: marked FAIL (not counted), parameters queued again",
                    trial.number)

    def _abort(self, trial: Trial, reason: str, err: BaseException) -> None:
        _study.abandon(self.study, trial._trial_id, reason)
        self.heartbeat.discard(trial._trial_id)
        self._fatal = err
        self._stop.set()
        log.error("trial %d stopped the search: %s", trial.number, err)


def _build(node: Any) -> Any:
    """A sampler or pruner: Hydra has usually instantiated it already."""
    if isinstance(node, (DictConfig, dict)) and "_target_" in node:
        return instantiate(node)
    return node


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()
