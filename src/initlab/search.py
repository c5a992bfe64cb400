"""Checks the Optuna sweeper runs on composed trial configs before the first trial
(``hydra.sweeper.check_trial_config``): the values a job would reject, and an objective the
run never logs."""

from __future__ import annotations

from omegaconf import DictConfig

from initlab.errors import ConfigError
from initlab.module import ClassifierModule


def check_trial_config(cfg: DictConfig) -> None:
    if cfg.get("task", "train") != "train":
        return
    from initlab.training import check_config

    check_config(cfg)
    metric = cfg.get("optimized_metric")
    if not metric:
        raise ConfigError("optimized_metric is empty: the sweep has nothing to optimize")
    if metric not in ClassifierModule.METRICS:
        raise ConfigError(f"optimized_metric {metric!r} is never logged by a training run; "
                          f"choose one of {sorted(ClassifierModule.METRICS)}")
