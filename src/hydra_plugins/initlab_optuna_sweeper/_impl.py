"""The sweeper: check the search before any trial, open (or resume) the study, and hand it to
the ask-tell loop (``_loop``); the results are reported by ``_report``.

Jobs run in the launcher's processes (joblib locally, submitit on SLURM); the job reports its
validation metric to its trial every epoch (``initlab.search.pruning.OptunaPruning``) and stops
when the pruner says so.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import optuna
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from . import _study
from ._loop import AskTellLoop, Search
from ._report import Reporter
from initlab.config.search_space import SearchSpace, SearchSpaceError, parse
from ._storage import StorageSpec, resolve_storage

log = logging.getLogger(__name__)


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
            self._refuse(str(err))
        sampler = self._sampler(space)
        if isinstance(sampler, optuna.samplers.GridSampler):
            grid = math.prod(len(v) for v in space.grid().values())
            if grid < self.n_trials:
                log.info("grid sampler: n_trials lowered from %d to the grid's %d points",
                         self.n_trials, grid)
                self.n_trials = grid
        study, storage = self._open_study(arguments, sampler, directions)
        custom = get_method(self.custom_search_space) if self.custom_search_space else None
        workers = self._workers()
        before = _study.progress(study)
        log.info("Study %r in %s: %d of %d trials done%s; sampler %s, pruner %s, %d worker(s)",
                 study.study_name, storage.text, before.done, self.n_trials,
                 f", {len(before.running)} running elsewhere" if before.running else "",
                 type(study.sampler).__name__, type(study.pruner).__name__, workers)

        reporter = self._reporter()
        reporter.start(study, storage.text, self.n_trials)
        AskTellLoop(Search(
            study=study, storage=storage, launcher=self.launcher, config=self.config,
            space=space, custom=custom, objectives=len(directions), n_trials=self.n_trials,
            max_failure_rate=self.max_failure_rate, heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period, reporter=reporter)).run(workers)
        return reporter.finish(study, storage.text, self.n_trials, self.plots, interrupted=False)

    def _reporter(self) -> Reporter:
        return Reporter(self.sweep_dir,
                        OmegaConf.select(self.config, "tracking.tracking_uri", default=None),
                        OmegaConf.select(self.config, "optimized_metric", default=None))

    def _refuse(self, why: str) -> NoReturn:
        self._reporter().discard_parent_run()
        sys.exit(f"initlab: search configuration error: {why}")

    def _open_study(self, arguments: Sequence[str], sampler: Any,
                    directions: list[str]) -> tuple[optuna.Study, StorageSpec]:
        # Hydra instantiated the sweeper's nodes; the jobs need the storage's node, not an object.
        storage_conf = OmegaConf.select(self.config, "hydra.sweeper.storage", default=None)
        storage = resolve_storage(storage_conf, self.config)
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
            self._refuse(f"study {name!r} in {storage.text} optimizes {existing}, not "
                         f"{directions}: choose another study_name")
        if storage.for_jobs is None and pruner is not None \
                and not isinstance(pruner, optuna.pruners.NopPruner):
            log.warning("an in-memory study cannot be reached from the jobs: no pruning")
        return study, storage

    def _workers(self) -> int:
        workers = int(self.n_jobs)
        if workers > 1 and type(self.launcher).__name__ == "BasicLauncher":
            log.warning("n_jobs=%d, but the basic launcher runs jobs in this process one at a "
                        "time; use hydra/launcher=joblib (or submitit) for parallel trials", workers)
            workers = 1
        joblib = getattr(self.launcher, "joblib", None)
        if isinstance(joblib, dict) and joblib.get("n_jobs") in (None, -1):
            joblib["n_jobs"] = workers  # the joblib launcher's pool: one process per worker
        return workers


def _build(node: Any) -> Any:
    """A sampler or pruner: Hydra has usually instantiated it already."""
    if isinstance(node, (DictConfig, dict)) and "_target_" in node:
        return instantiate(node)
    return node
