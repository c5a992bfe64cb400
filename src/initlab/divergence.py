"""Stop a run whose loss is NaN or inf, tag it as diverged, and let the sweep go on."""

from __future__ import annotations

import logging
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger

from initlab.tracking import TAG_DIVERGED

log = logging.getLogger(__name__)


class DivergenceGuard(Callback):
    """Checks the training loss at the end of a training step (a block of optimizer steps, whose
    mean loss is non-finite if any of its losses was) once at least ``check_every_n_steps``
    optimizer steps have passed since the last check: one host sync each time.  On a non-finite
    loss it stops training, tags the MLflow run ``initlab.diverged=true`` and logs the metric
    ``diverged`` = 1 (0 for runs that stayed finite)."""

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.every = max(1, int(check_every_n_steps))
        self.diverged_at: int | None = None
        self._checked = 0  # global_step // every at the last check

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = trainer.global_step // self.every
        if self.diverged_at is not None or due == self._checked:
            return
        self._checked = due
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

