"""Beyond one machine: each group of the ensemble launcher as one submitit job.

``hydra.launcher.submitit=slurm`` (or ``local``: the same through submitit's local executor,
one process per group on this machine) submits one job per group, stacked or not.  The job is a
``GroupJob``: in a fresh process it restores Hydra's state, as Hydra's submitit launcher does,
and runs the ensemble launcher (without submitit) on that group alone, so the members are made,
trained and recorded there exactly as they would be here.  It returns plain ``Outcome``s
(status, return value or the error's text, output directory): not Hydra objects, nor
exceptions that may not unpickle.  The launcher waits for every job and rebuilds one
``JobReturn`` per job, in order.  The executor's parameters are ``hydra.launcher.
submitit_params``, the keys of ``hydra/launcher=slurm`` (submitit's generic names as they are,
the others prefixed with the cluster's name, as Hydra's submitit launcher does)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

log = logging.getLogger(__name__)

GENERIC = {"timeout_min", "gpus_per_node", "cpus_per_task", "tasks_per_node", "mem_gb", "nodes",
           "name", "stderr_to_stdout"}  # submitit.AutoExecutor's own parameter names


class GroupJobFailed(RuntimeError):
    """A member's job failed in its submitit job (the message holds the error there)."""


@dataclass
class Outcome:
    status: str                 # JobStatus name
    value: Any = None           # the objective, when COMPLETED
    error: str | None = None    # the error's type and text, when FAILED
    output_dir: str | None = None


def executor_parameters(cluster: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(folder, parameters for update_parameters)`` from ``submitit_params``; on the local
    executor, the SLURM-only keys are left out."""
    params = {k: v for k, v in params.items() if v is not None}
    folder = str(params.pop("submitit_folder", ".submitit/%j"))
    out = {}
    for key, value in params.items():
        if key in GENERIC:
            out[key] = value
        elif cluster == "slurm":
            out[key if key.startswith("slurm_") else f"slurm_{key}"] = value
    return folder, out


class GroupJob:
    """What one submitit job runs: one group's jobs through the ensemble launcher."""

    def __init__(self, launcher: Any) -> None:
        self.settings = dict(launcher.settings)
        self.config, self.hydra_context = launcher.config, launcher.hydra_context
        self.task_function = launcher.task_function
        self.state = Singleton.get_state()

    def __call__(self, jobs: list[tuple[list[str], int]]) -> list[Outcome]:
        from hydra_plugins.initlab_ensemble_launcher.launcher import EnsembleLauncher

        Singleton.set_state(self.state)
        launcher = EnsembleLauncher(**self.settings)
        launcher.setup(hydra_context=self.hydra_context, task_function=self.task_function,
                       config=self.config)
        return [outcome(r) for r in launcher.launch_all(jobs)]


def outcome(ret: JobReturn) -> Outcome:
    out = str(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else None
    try:
        return Outcome(JobStatus.COMPLETED.name, ret.return_value, None, out)
    except Exception as err:  # noqa: BLE001 - JobReturn.return_value raises a job's error
        return Outcome(JobStatus.FAILED.name, None, f"{type(err).__name__}: {err}", out)


def job_return(cfg: DictConfig, outcome: Outcome) -> JobReturn:
    ret = JobReturn(overrides=list(cfg.hydra.overrides.task), cfg=cfg, hydra_cfg=cfg,
                    working_dir=outcome.output_dir or "", task_name=str(cfg.hydra.job.name))
    if outcome.status == JobStatus.COMPLETED.name:
        ret.status, ret.return_value = JobStatus.COMPLETED, outcome.value
    else:
        ret.status, ret.return_value = JobStatus.FAILED, GroupJobFailed(outcome.error)
    return ret


def submit_groups(launcher: Any, groups: list[list[tuple[list[str], int]]],
                  configs: list[list[DictConfig]]) -> list[list[JobReturn]]:
    """Submit one job per group, wait for all, and return each group's ``JobReturn``s."""
    import submitit

    cluster = launcher.submitit
    folder, params = executor_parameters(cluster, launcher.submitit_params)
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**params)
    work = GroupJob(launcher)
    submitted = []
    for group in groups:
        submitted.append(executor.submit(work, group))
        log.info("submitit %s job %s: jobs #%s", cluster, submitted[-1].job_id,
                 ", #".join(str(idx) for _, idx in group))
    returns = []
    for job, group_configs in zip(submitted, configs):
        try:
            outcomes = job.result()
        except Exception as err:  # noqa: BLE001 - the whole job failed (node, time limit)
            log.error("submitit job %s failed: %s", job.job_id, err)
            outcomes = [Outcome(JobStatus.FAILED.name, error=f"submitit job {job.job_id}: "
                                f"{type(err).__name__}: {err}")] * len(group_configs)
        returns.append([job_return(cfg, o) for cfg, o in zip(group_configs, outcomes)])
    return returns
