"""Report the validation metric to the job's Optuna trial every epoch; stop when pruned.

The Optuna sweeper (``hydra/sweeper=initlab_optuna``) gives every job the overrides
``optuna.study``, ``optuna.trial`` and ``optuna.storage``; ``conf/hparams_search/*.yaml`` passes
them to this callback.  Outside such a sweep (``trial`` is null) it does nothing.

A pruned run is not an error: training stops, the test still runs, the MLflow run ends FINISHED
and is tagged ``optuna.state=PRUNED``, and the trial is told PRUNED by the sweeper (which reads
the ``initlab.pruned_at_step`` attribute set here).  A run whose loss diverged is pruned the
same way.  The pruner is the sweeper's (``hydra.sweeper.pruner``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback

from initlab.engine.callbacks import DivergenceGuard
from initlab.search.trial import ATTR_DIVERGED, ATTR_MLFLOW_RUN, ATTR_PRUNED, load_trial
from initlab.tracking import interrupts
from initlab.tracking.logger import mlflow_logger, set_run_tag

log = logging.getLogger(__name__)


def _sweeper_pruner() -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    if not HydraConfig.initialized():
        return None
    node = HydraConfig.get().sweeper.get("pruner")
    return instantiate(node) if node else None


class OptunaPruning(Callback):
    """``monitor``: the metric reported (the sweep's ``optimized_metric``); ``trial``: the
    ``optuna`` node the sweeper adds (study, trial number, storage), or None."""

    def __init__(self, monitor: str, trial: Mapping[str, Any] | None = None,
                 pruner: Any = None) -> None:
        self.monitor = monitor
        self.link = dict(trial) if trial else None
        self.pruner = pruner
        self.trial = None
        self.pruned_at: int | None = None
        self._reported: set[int] = set()

    # ---- the link to the trial -----------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.link is None or self.trial is not None or not trainer.is_global_zero:
            return
        pruner = self.pruner if self.pruner is not None else _sweeper_pruner()
        with interrupts.store_write():  # a signal must not cut an Optuna transaction in half
            self.trial = load_trial(self.link, pruner)
        logger = mlflow_logger(trainer)
        if logger is not None:
            with interrupts.store_write():
                self.trial.set_user_attr(ATTR_MLFLOW_RUN, logger.run_id)
        set_run_tag(trainer, "optuna.trial_number", self.link["trial"])
        set_run_tag(trainer, "optuna.study_name", self.link["study"])

    # ---- every epoch ---------------------------------------------------------------------
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor.startswith("val") and not trainer.sanity_checking:
            self._report(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.monitor.startswith("val"):
            self._report(trainer)
        self._check_divergence(trainer)

    def _report(self, trainer: L.Trainer) -> None:
        if self.trial is None or self.pruned_at is not None:
            return
        step = trainer.current_epoch
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or step in self._reported:
            return
        value = float(value)
        self._reported.add(step)
        if not math.isfinite(value):
            return
        with interrupts.store_write():
            self.trial.report(value, step)
            prune = self.trial.should_prune()
        if prune:
            self._prune(trainer, step, f"{self.monitor}={value:.4g} at epoch {step}")

    def _check_divergence(self, trainer: L.Trainer) -> None:
        if self.trial is None or self.pruned_at is not None:
            return
        for callback in trainer.callbacks:
            if isinstance(callback, DivergenceGuard) and callback.diverged_at is not None:
                with interrupts.store_write():
                    self.trial.set_user_attr(ATTR_DIVERGED, int(callback.diverged_at))
                self.pruned_at = trainer.current_epoch

    def _prune(self, trainer: L.Trainer, step: int, why: str) -> None:
        self.pruned_at = step
        with interrupts.store_write():
            self.trial.set_user_attr(ATTR_PRUNED, step)
        trainer.should_stop = True
        log.info("Optuna pruned trial %s: %s", self.link["trial"], why)
        set_run_tag(trainer, "optuna.state", "PRUNED")
        set_run_tag(trainer, "optuna.pruned_at_epoch", step)
