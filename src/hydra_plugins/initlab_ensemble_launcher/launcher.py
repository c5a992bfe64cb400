"""The ensemble launcher: groups a multirun's jobs (``initlab.ensemble.grouping``), trains each
group of two or more in this process as one stacked model, and runs the others as ordinary jobs
(Hydra's public ``run_job``, as the basic launcher does).  One ``JobReturn`` per job, in order,
with that job's own return value (``cfg.optimized_metric``), so any sweeper works unchanged.

Each member still goes through ``run_job`` first, with a task function that only prepares it
(data, net, initial weights under its seed): Hydra itself makes its output directory, writes
its ``.hydra/`` files and runs the ``on_job_start`` callbacks.  Its config (with the ``hydra``
node) is then made current with ``HydraConfig.set_config`` whenever its run is created or
recorded.  The Optuna sweeper hands over one trial per call from each of its ``n_jobs`` worker
threads: calls that arrive together (``batch_window_s``) are trained together.

Groups' chunks are spread over ``devices`` (``initlab.ensemble.placement``, one worker thread
per device); with ``submitit`` (local or slurm) each group is instead one submitit job that
runs this launcher on that group alone in a fresh process (``initlab.ensemble.submit``)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def _cuda_count_for(accelerator: str) -> int:
    """CUDA devices for ``trainer.accelerator``: none asked for on the CPU (no torch import,
    which the sweep's check would otherwise pay before the workers start)."""
    return _cuda_count() if accelerator in ("gpu", "cuda", "auto") else 0


def settings_error(devices: Any, submitit: Any, accelerator: str = "gpu",
                   cuda_count: int | None = None) -> Any:
    """The ``ConfigError`` for bad ``hydra.launcher.devices`` / ``submitit``, or None.  Without
    ``cuda_count`` only the shape of ``devices`` is checked."""
    from initlab.ensemble.placement import device_names
    from initlab.errors import ConfigError

    if submitit not in (None, "local", "slurm"):
        return ConfigError(f"hydra.launcher.submitit = {submitit} is not allowed: null (train "
                           "here), local or slurm (one submitit job per group) is expected.",
                           key="hydra.launcher.submitit", value=submitit,
                           allowed="null, local, slurm")
    try:
        device_names(devices, accelerator, 1 << 16 if cuda_count is None else cuda_count)
    except (ValueError, TypeError) as err:
        return ConfigError(f"hydra.launcher.devices = {devices} is not allowed ({err}): null, a "
                           "count N or a list of cpu / cuda:<index> naming devices this "
                           "machine has is expected.", key="hydra.launcher.devices",
                           value=devices, allowed="null, N >= 1, [cpu | cuda:<index>, ...]")
    return None


def check_job(cfg: DictConfig) -> None:
    """``hydra.launcher.config_check``: what the engine cannot train exactly
    (``initlab.ensemble.checks``), then the launcher's own settings; CUDA devices are checked
    against this machine's unless the groups go to submitit jobs."""
    from initlab.ensemble.checks import check_ensemble

    check_ensemble(cfg)
    node = OmegaConf.select(cfg, "hydra.launcher") or {}
    devices = node.get("devices")
    devices = OmegaConf.to_container(devices) if OmegaConf.is_config(devices) else devices
    submitit = node.get("submitit")
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    err = settings_error(devices, submitit, accelerator,
                         None if submitit is not None else _cuda_count())
    if err is not None:
        raise err


def cpu_processes(devices: Any, submitit: Any, accelerator: str, members: int) -> int:
    """How many processes train ``members`` stacked members (``placement.cpu_workers``): 1
    (this one) unless every device is the CPU and the groups stay here (no submitit); more
    than 1: this one and worker processes (``initlab.ensemble.workers``)."""
    from initlab.ensemble.placement import cpu_workers, device_names, usable_cores

    if submitit is not None:
        return 1
    try:
        names = device_names(devices, accelerator, _cuda_count_for(accelerator))
    except (ValueError, TypeError):
        return 1  # refused by the check, or where the devices are placed
    if any(n != "cpu" for n in names):
        return 1
    return cpu_workers(devices, members, usable_cores())


def warm_up(cfg: DictConfig, jobs: int) -> None:
    """``hydra.launcher.warm_up``: called by the sweep's check (``initlab.config.sweep``) with
    the number of jobs one launch will get, before it composes them.  Starts the worker
    processes that many jobs will use on the CPU (``initlab.ensemble.workers``): their imports
    overlap the composition.  If the sweep is refused, they end with this process."""
    from initlab.ensemble import workers

    node = OmegaConf.select(cfg, "hydra.launcher") or {}
    devices = node.get("devices")
    devices = OmegaConf.to_container(devices) if OmegaConf.is_config(devices) else devices
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    processes = cpu_processes(devices, node.get("submitit"), accelerator, jobs)
    if processes > 1:
        workers.start(processes)


class EnsembleLauncher(Launcher):
    def __init__(self, max_members: int | None = None, memory_budget_mb: float = 2048.0,
                 batch_window_s: float = 1.0, records: str = "full",
                 config_check: str | None = None, warm_up: str | None = None,
                 figure_helper: bool | None = None,
                 devices: Any = None,
                 submitit: str | None = None, submitit_params: Any = None,
                 worker: bool = False) -> None:
        from .members import RecordLock
        if records not in ("full", "fast"):
            from initlab.config import refuse
            from initlab.errors import ConfigError

            refuse(ConfigError(f"hydra.launcher.records = {records} is not allowed: full or fast "
                               "is expected.", key="hydra.launcher.records", value=records,
                               allowed="full, fast"))
        self.records, self.figure_helper = records, figure_helper
        self.max_members, self.memory_budget_mb = max_members, float(memory_budget_mb)
        self.batch_window_s = float(batch_window_s)
        self.devices = OmegaConf.to_container(devices) if OmegaConf.is_config(devices) else devices
        self.submitit = submitit
        self.submitit_params = (OmegaConf.to_container(submitit_params, resolve=True)
                                if OmegaConf.is_config(submitit_params) else submitit_params) or {}
        self.settings = {"max_members": max_members, "memory_budget_mb": memory_budget_mb,
                         "records": records, "figure_helper": figure_helper,
                         "devices": self.devices}  # for a submitit job
        self.record_lock = RecordLock()
        self.worker = worker  # a worker process's launcher (initlab.ensemble.workers)
        self._check_settings()
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self._cv = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._leader = False
        self._run_lock = threading.Lock()

    def _check_settings(self) -> None:
        from initlab.config import refuse

        err = settings_error(self.devices, self.submitit)
        if err is not None:
            refuse(err)

    def placement_devices(self, cfg: DictConfig) -> list:
        """The devices chunks are placed on, with their budgets (``initlab.ensemble.placement``)."""
        from initlab.config import refuse
        from initlab.ensemble.placement import budgets, device_names

        accelerator = str(cfg.trainer.get("accelerator", "cpu"))
        err = settings_error(self.devices, self.submitit, accelerator, _cuda_count())
        if err is not None:
            refuse(err)
        names = device_names(self.devices, accelerator, _cuda_count())
        if all(n == "cpu" for n in names):  # the CPU's workers are processes (_run_parallel)
            names = ["cpu"]
        return budgets(names, self.memory_budget_mb)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from initlab.config.sweep import ReusingLoader

        if not isinstance(hydra_context.config_loader, ReusingLoader):  # shared with the sweeper
            hydra_context.config_loader = ReusingLoader(hydra_context.config_loader)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    # ---- worker processes on the CPU (initlab.ensemble.workers) ----------------------------
    def _cpu_processes(self, cfg: DictConfig, members: int) -> int:
        """Processes for ``members`` stacked members (1: this one alone; always in a worker)."""
        if self.worker:
            return 1
        return cpu_processes(self.devices, self.submitit,
                             str(cfg.trainer.get("accelerator", "cpu")), members)

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
            results = self.launch_all(jobs)
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
    def launch_all(self, jobs: list[tuple[list[str], int]]) -> list[JobReturn]:
        from initlab.config import refuse
        from initlab.config.sweep import take_composed
        from initlab.ensemble.checks import check_ensemble
        from initlab.ensemble.grouping import group_jobs
        from initlab.errors import ConfigError

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        configs, composed = [], 0
        for overrides, idx in jobs:
            cfg = take_composed(overrides)  # composed by the sweep's check, or compose it
            composed += cfg is None
            if cfg is None:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                         list(overrides))
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
        log.debug("%d of %d job configs composed here (the others by the sweep's check)",
                  composed, len(jobs))
        if self.submitit is None:
            self.placement_devices(configs[0])  # refused before anything exists
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        groups = group_jobs(configs)
        log.info("Launching %d jobs: %d stacked group(s), %d ordinary job(s)", len(jobs),
                 sum(len(g) > 1 for g in groups), sum(len(g) == 1 for g in groups))
        results: dict[int, JobReturn] = {}
        with self._run_lock:
            if self.submitit is not None:
                from initlab.ensemble.submit import submit_groups

                returns = submit_groups(self, [[jobs[i] for i in g] for g in groups],
                                        [[configs[i] for i in g] for g in groups])
                return _in_order(groups, returns)
            stacked = []
            for group in groups:
                if len(group) == 1:
                    i = group[0]
                    log.info("\t#%d : %s", jobs[i][1], " ".join(filter_overrides(jobs[i][0])))
                    results[i] = self.run_one(configs[i], self.task_function)
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                else:
                    stacked.append([(i, configs[i], jobs[i]) for i in group])
            if stacked:
                from initlab.ensemble import workers

                processes = self._cpu_processes(configs[0], sum(len(g) for g in stacked))
                others = workers.start(processes) if processes > 1 else []
                if others:
                    results.update(self._run_parallel(stacked, others))
                else:
                    results.update(self._run_groups(stacked))
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [results[i] for i in range(len(jobs))]

    def run_one(self, cfg: DictConfig, task: TaskFunction, configure_logging: bool = True) -> JobReturn:
        return run_job(hydra_context=self.hydra_context, task_function=task, config=cfg,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir",
                       configure_logging=configure_logging)

    def _run_groups(self, groups: list[list[tuple[int, DictConfig, tuple]]]
                    ) -> dict[int, JobReturn]:
        from . import members

        prepared_groups = []
        for group in groups:
            log.info("Stacking %d jobs: #%s", len(group),
                     ", #".join(str(job[1]) for _, _, job in group))
            prepared = []
            for _, cfg, _ in group:
                prepared.append(members.prepare_member(self, cfg))
                # One copy of the data for the group: its members' data configs are equal
                # (the shuffle seed aside, which only the samplers use).
                prepared[-1].member.job.datamodule.splits = \
                    prepared[0].member.job.datamodule.splits
            prepared_groups.append(prepared)
        members.train(self, prepared_groups)
        return {i: p.job_return for group, prepared in zip(groups, prepared_groups)
                for (i, _, _), p in zip(group, prepared)}

    def _run_parallel(self, groups: list[list[tuple[int, DictConfig, tuple]]], others: list
                      ) -> dict[int, JobReturn]:
        """The groups' shares over this process and the worker processes ``others``; every
        share's ``JobReturn``s once all have ended."""
        import cloudpickle

        from initlab.ensemble.placement import plan, split_groups
        from initlab.ensemble.submit import Outcome, job_return
        from initlab.ensemble.workers import PartsJob, threads_each, torch_threads

        count = len(others) + 1
        parts = [groups[g][a:b] for g, a, b in split_groups([len(g) for g in groups], count)]
        epochs = [int(part[0][1].trainer.max_epochs) for part in parts]
        placed = plan([len(p) * e for p, e in zip(parts, epochs)], count)
        log.info("%d stacked jobs over %d processes (this one and %d worker(s)): %s members",
                 sum(len(p) for p in parts), count, count - 1,
                 ", ".join(str(sum(len(parts[i]) for i in share)) for share in placed))
        work = cloudpickle.dumps(PartsJob(self))
        configs = {i: cfg for part in parts for i, cfg, _ in part}
        sent, mine = [], list(placed[0])
        for worker, share in zip(others, placed[1:]):
            if not share:
                continue
            try:
                worker.send(work, [parts[i] for i in share])
            except OSError:  # the worker ended (killed): its share is trained here
                log.warning("a worker process has ended: its %d members train here",
                            sum(len(parts[i]) for i in share))
                mine += share
                continue
            sent.append((worker, [i for k in share for i, _, _ in parts[k]]))
        results: dict[int, JobReturn] = {}
        here: BaseException | None = None
        try:
            with torch_threads(threads_each(count)):
                results.update(self._run_groups([parts[i] for i in mine]))
        except BaseException as err:  # noqa: BLE001 - raised once every share has ended
            here = err
        interrupt: BaseException | None = None
        for worker, indices in sent:  # interrupted too: each worker ends its runs KILLED
            try:
                outcomes = worker.result()
            except KeyboardInterrupt as err:
                interrupt = err
                outcomes = {i: Outcome("FAILED", error="interrupted") for i in indices}
            except Exception as err:  # noqa: BLE001 - the process died: its members fail
                log.error("a worker process failed: %s: %s", type(err).__name__, err)
                failed = Outcome("FAILED", error=f"worker process: {type(err).__name__}: {err}")
                outcomes = {i: failed for i in indices}
            results.update({i: job_return(configs[i], o) for i, o in outcomes.items()})
        if here is not None:
            raise here
        if interrupt is not None:
            raise interrupt
        return results


def _in_order(groups: list[list[int]], returns: list[list[JobReturn]]) -> list[JobReturn]:
    """Each group's ``JobReturn``s back in the jobs' order."""
    by_job = {i: r for group, rets in zip(groups, returns) for i, r in zip(group, rets)}
    return [by_job[i] for i in range(len(by_job))]
