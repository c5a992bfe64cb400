"""Checks the Optuna sweeper runs on composed trial configs before the first trial
(``hydra.sweeper.check_trial_config``): the values a job would reject, and an objective the
run never logs."""

from __future__ import annotations

from omegaconf import DictConfig

from initlab.errors import ConfigError


def check_trial_config(cfg: DictConfig) -> None:
    if cfg.get("task", "train") != "train":
        return
    from initlab.training import check_config

    check_config(cfg)
    if not cfg.get("optimized_metric"):  # check_config has checked a named one is logged
        raise ConfigError("optimized_metric is empty: the sweep has nothing to optimize")
