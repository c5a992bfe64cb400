"""Checks the Optuna sweeper runs on composed trial configs before the first trial
(``hydra.sweeper.check_trial_config``): the whole config schema, and an objective to optimize."""

from __future__ import annotations

from omegaconf import DictConfig

from initlab.errors import ConfigError


def check_trial_config(cfg: DictConfig) -> None:
    from initlab.config import validate

    validate(cfg)
    if cfg.get("task", "train") == "train" and not cfg.get("optimized_metric"):
        raise ConfigError("optimized_metric is empty: the sweep has nothing to optimize")
