"""A group's members from Hydra jobs to ensemble members and back to ``JobReturn``s.

``prepare_member`` runs the job through Hydra's ``run_job`` with a task function that only
checks and prepares it (``initlab.engine.build.prepare``, under the member's seed: initial
weights bit for bit those of its ordinary job).  ``train`` trains the prepared members in
chunks (``initlab.ensemble.memory``) and fills each ``JobReturn`` with the member's objective,
or with the exception that ended the group."""


import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    config: DictConfig          # its hydra node (runtime.output_dir set by run_job)
    job_return: JobReturn
    member: Any = None


def prepare_member(launcher: Any, cfg: DictConfig) -> Prepared:
    from initlab.config import refuse, validate
    from initlab.engine.build import prepare
    from initlab.ensemble.members import Member
    from initlab.errors import ConfigError
    from initlab.tracking.record import run_name

    made: dict[str, Any] = {}

    def task(task_cfg: DictConfig) -> None:
        try:
            validate(task_cfg)
            made["job"] = prepare(task_cfg)
            made["hydra"] = HydraConfig.instance().cfg  # its hydra node, output_dir set
            made["name"] = run_name(task_cfg)
        except ConfigError as err:
            refuse(err)

    ret = launcher._run(cfg, task, configure_logging=False)  # the group's log: _log_files
    if ret.status != JobStatus.COMPLETED:
        raise ret._return_value  # an exception while preparing: not a training failure
    hydra = made["hydra"]
    enter = lambda: HydraConfig.instance().set_config(hydra)  # noqa: E731
    member = Member(index=int(cfg.hydra.job.num), cfg=ret.cfg, job=made["job"],
                    name=made["name"], enter=enter)
    return Prepared(hydra, ret, member)


def _finish(member: Any, figures: bool = True) -> None:
    """What ``jobs.train`` adds to a finished run: the curves figure and the run's summary."""
    from initlab.jobs.train import CURVE_METRICS, summarize
    from initlab.report.curves import metric_history, plot_curves
    from initlab.tracking.context import HydraContext

    run = member.run
    if run is not None:
        member.flush()
        history = metric_history(run.client, run.run_id, CURVE_METRICS)
        out = HydraContext.current().output_dir
        if figures and history and out is not None:
            run.log_artifact(plot_curves(history, member.name, Path(out) / "curves.png"))
    summarize(member.cfg, member.metrics, run)


def _log_files(prepared: list[Prepared]) -> list[logging.Handler]:
    """Every member's job log (``<output dir>/<job name>.log``) gets the group's log lines."""
    handlers = []
    fmt = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for p in prepared:
        path = Path(p.config.hydra.runtime.output_dir) / f"{p.config.hydra.job.name}.log"
        handler = logging.FileHandler(path, mode="a")
        handler.setFormatter(fmt)
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
    return handlers


def chunks(launcher: Any, prepared: list[Prepared]) -> list[list[Prepared]]:
    import torch

    from initlab.ensemble.checks import PRECISIONS
    from initlab.ensemble.memory import member_bytes, members_per_chunk

    first = prepared[0].member
    dm, model = first.job.datamodule, first.job.module.model
    n_train = len(dm.splits["train"][0])
    batch = min(dm.batch_size or n_train, n_train)
    dtype = getattr(torch, PRECISIONS[str(first.cfg.trainer.get("precision", "32-true"))])
    size = members_per_chunk(member_bytes(model, batch, dm.splits["train"][0][0].numel(), dtype),
                             launcher.memory_budget_mb, launcher.max_members)
    if size < len(prepared):
        log.info("%d members in chunks of at most %d (hydra.launcher.memory_budget_mb=%g, "
                 "max_members=%s)", len(prepared), size, launcher.memory_budget_mb,
                 launcher.max_members)
    return [prepared[i:i + size] for i in range(0, len(prepared), size)]


def train(launcher: Any, prepared: list[Prepared]) -> None:
    from initlab.ensemble.engine import GroupTrainer
    from initlab.jobs.train import objective

    handlers = _log_files(prepared)
    try:
        for chunk in chunks(launcher, prepared):
            try:
                full = launcher.records == "full"
                GroupTrainer([p.member for p in chunk], finish=lambda m: _finish(m, full),
                             logged_models=full).run()
            except Exception:  # noqa: BLE001 - the members it ended fail with it (below)
                log.exception("the stacked group failed")
            for p in chunk:
                if p.member.error is not None:  # the members that had not finished
                    p.job_return.status = JobStatus.FAILED
                    p.job_return.return_value = p.member.error
                    continue
                try:
                    p.job_return.return_value = objective(p.member.cfg, p.member.metrics)
                    p.job_return.status = JobStatus.COMPLETED
                except Exception as err:  # noqa: BLE001 - e.g. optimized_metric never logged
                    p.job_return.status, p.job_return.return_value = JobStatus.FAILED, err
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
