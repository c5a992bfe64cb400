"""The ensemble launcher: groups a multirun's jobs (``initlab.ensemble.grouping``), trains each
group of two or more in this process as one stacked model, and runs the others as ordinary jobs
(Hydra's public ``run_job``, as the basic launcher does).  One ``JobReturn`` per job, in order,
with that job's own return value (``cfg.optimized_metric``), so any sweeper works unchanged.

Each member still goes through ``run_job`` first, with a task function that only prepares it
(data, net, initial weights under its seed): Hydra itself makes its output directory, writes
its ``.hydra/`` files and runs the ``on_job_start`` callbacks.  Its config (with the ``hydra``
node) is then made current with ``HydraConfig.set_config`` whenever its run is created or
recorded.  The Optuna sweeper hands over one trial per call from each of its ``n_jobs`` worker
threads: calls that arrive together (``batch_window_s``) are trained together."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, \
    setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class EnsembleLauncher(Launcher):
    def __init__(self, max_members: int | None = None, memory_budget_mb: float = 2048.0,
                 batch_window_s: float = 1.0, records: str = "full",
                 config_check: str | None = None) -> None:
        if records not in ("full", "fast"):
            from initlab.config import refuse
            from initlab.errors import ConfigError

            refuse(ConfigError(f"hydra.launcher.records = {records} is not allowed: full or fast "
                               "is expected.", key="hydra.launcher.records", value=records,
                               allowed="full, fast"))
        self.records = records
        self.max_members, self.memory_budget_mb = max_members, float(memory_budget_mb)
        self.batch_window_s = float(batch_window_s)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self._cv = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._leader = False
        self._run_lock = threading.Lock()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    # ---- calls from the sweeper (several threads for the Optuna sweeper) -------------------
    def _expected_calls(self) -> int:
        sweeper = self.config.hydra.sweeper
        return int(sweeper.get("n_jobs", 1) or 1) if "n_trials" in sweeper else 1

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        request = {"jobs": [list(o) for o in job_overrides], "idx": initial_job_idx,
                   "done": False, "result": None, "error": None}
        with self._cv:
            self._queue.append(request)
            self._cv.notify_all()
            lead = not self._leader
            if lead:
                self._leader = True
                last = time.monotonic()
                seen = len(self._queue)
                while len(self._queue) < self._expected_calls():
                    self._cv.wait(0.05)
                    if len(self._queue) != seen:
                        seen, last = len(self._queue), time.monotonic()
                    elif time.monotonic() - last > self.batch_window_s:
                        break
                batch, self._queue = self._queue, []
            else:
                while not request["done"]:
                    self._cv.wait(0.1)
                if request["error"] is not None:
                    raise request["error"]
                return request["result"]
        try:
            jobs = [(o, r["idx"] + k) for r in batch for k, o in enumerate(r["jobs"])]
            results = self._launch_all(jobs)
            error = None
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller
            results, error = [], err
        with self._cv:
            at = 0
            for r in batch:
                r["result"], r["error"] = results[at:at + len(r["jobs"])], error
                at += len(r["jobs"])
                r["done"] = True
            self._leader = False
            self._cv.notify_all()
        if error is not None:
            raise error
        return request["result"]

    # ---- one batch of jobs -----------------------------------------------------------------
    def _launch_all(self, jobs: list[tuple[list[str], int]]) -> list[JobReturn]:
        from initlab.config import refuse
        from initlab.ensemble.checks import check_ensemble
        from initlab.ensemble.grouping import group_jobs
        from initlab.errors import ConfigError

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for overrides, idx in jobs:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = idx
                cfg.hydra.job.num = idx
            HydraConfig.instance().set_config(cfg)  # ${hydra:...} resolves for the checks
            try:
                check_ensemble(cfg)
            except ConfigError as err:
                refuse(ConfigError(f"in job {idx} ({' '.join(filter_overrides(overrides))}): "
                                   f"{err}", key=err.key, value=err.value, allowed=err.allowed))
            configs.append(cfg)
        groups = group_jobs(configs)
        log.info("Launching %d jobs: %d stacked group(s), %d ordinary job(s)", len(jobs),
                 sum(len(g) > 1 for g in groups), sum(len(g) == 1 for g in groups))
        results: dict[int, JobReturn] = {}
        with self._run_lock:
            for group in groups:
                if len(group) == 1:
                    i = group[0]
                    log.info("\t#%d : %s", jobs[i][1], " ".join(filter_overrides(jobs[i][0])))
                    results[i] = self._run(configs[i], self.task_function)
                else:
                    results.update(self._run_group([(i, configs[i], jobs[i]) for i in group]))
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [results[i] for i in range(len(jobs))]

    def _run(self, cfg: DictConfig, task: TaskFunction, configure_logging: bool = True) -> JobReturn:
        return run_job(hydra_context=self.hydra_context, task_function=task, config=cfg,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir",
                       configure_logging=configure_logging)

    def _run_group(self, group: list[tuple[int, DictConfig, tuple]]) -> dict[int, JobReturn]:
        from . import members

        log.info("Stacking %d jobs: #%s", len(group), ", #".join(str(job[1]) for _, _, job in group))
        prepared = []
        for _, cfg, _ in group:
            prepared.append(members.prepare_member(self, cfg))
            # One copy of the data for the group: its members' data configs are equal (the
            # shuffle seed aside, which only the samplers use).
            prepared[-1].member.job.datamodule.splits = prepared[0].member.job.datamodule.splits
        members.train(self, prepared)
        return {i: p.job_return for (i, _, _), p in zip(group, prepared)}
