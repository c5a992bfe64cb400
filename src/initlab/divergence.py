"""Stop a run whose loss is NaN or inf, tag it as diverged, and let the sweep go on."""

from __future__ import annotations

import logging
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger

from initlab.tracking import TAG_DIVERGED

log = logging.getLogger(__name__)


class DivergenceGuard(Callback):
    """Checks the training loss every ``check_every_n_steps`` steps (one host sync each time);
    on a non-finite loss it stops training, tags the MLflow run ``initlab.diverged=true`` and
    logs the metric ``diverged`` = 1 (0 for runs that stayed finite)."""

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.every = max(1, int(check_every_n_steps))
        self.diverged_at: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.diverged_at is not None or trainer.global_step % self.every:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or bool(torch.isfinite(loss.detach()).all()):
            return
        self.diverged_at = trainer.global_step
        trainer.should_stop = True
        log.warning("loss is %s at step %d: the run diverged, stopping it early",
                    loss.item(), trainer.global_step)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, MLFlowLogger):
                    logger.experiment.set_tag(logger.run_id, TAG_DIVERGED, "true")
                    logger.experiment.set_tag(logger.run_id, "initlab.diverged_step",
                                              str(trainer.global_step))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("diverged", float(self.diverged_at is not None), on_step=False,
                      on_epoch=True, rank_zero_only=True)

