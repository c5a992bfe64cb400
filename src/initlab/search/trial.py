"""A job's link to its Optuna trial, on Optuna's public API only: the names of the trial
attributes the sweeper and its jobs share, how a job opens the study's storage, and how it
finds its own trial from the ``optuna`` node the sweeper adds to every trial's config
(``study``, ``trial`` number, ``storage``).  The sweeper plugin imports these; initlab never
imports the plugin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ATTR_HEARTBEAT = "initlab.heartbeat"
ATTR_FAILED = "initlab.failed"          # error | interrupted | stale | surplus | config
ATTR_RETRY_OF = "initlab.retry_of"
ATTR_PRUNED = "initlab.pruned_at_step"  # set by the job's pruning callback
ATTR_DIVERGED = "initlab.diverged_at_step"
ATTR_MLFLOW_RUN = "mlflow_run_id"
# Several seeds per trial (``objective_seeds``, ``initlab.jobs.seeds``): the objective is the mean.
ATTR_OBJECTIVE_MEAN = "objective_mean"
ATTR_OBJECTIVE_SE = "objective_se"          # standard error of the mean: sd / sqrt(k)
ATTR_OBJECTIVE_VALUES = "objective_values"  # optimized_metric of each seed, in seed order
ATTR_OBJECTIVE_SEEDS = "objective_seeds"    # the seeds trained
ATTR_SEED_GROUP = "objective_seed_group"    # the seed runs' tag initlab.seed_group
ATTR_SEED_RUNS = "objective_runs"           # the seed runs' MLflow run ids


def rdb_storage(url: str) -> Any:
    """An Optuna RDB storage; for SQLite, one that waits for the file lock instead of failing
    (several processes write to one file)."""
    import optuna

    from initlab.tracking.store import sqlite_path

    db = sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    return optuna.storages.RDBStorage(url, **kwargs)


def open_storage(spec: Any) -> Any:
    """The storage the sweeper passed to a job: a URL, or a ``_target_`` node (journal files)."""
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if isinstance(spec, str):
        return rdb_storage(spec)
    if isinstance(spec, DictConfig):
        return instantiate(spec)
    if isinstance(spec, Mapping):
        return instantiate(OmegaConf.to_container(OmegaConf.create(dict(spec)), resolve=True))
    raise ValueError(f"cannot open Optuna storage {spec!r}")


def load_trial(link: Mapping[str, Any], pruner: Any = None) -> Any:
    """The ``optuna.trial.Trial`` that ``link`` (``study``, ``trial``, ``storage``) names, able to
    ``report`` and ``should_prune`` with ``pruner``."""
    import optuna

    storage = open_storage(link["storage"])
    name = str(link["study"])
    study_id = storage.get_study_id_from_name(name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(link["trial"]))
    study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    return optuna.trial.Trial(study, trial_id)
