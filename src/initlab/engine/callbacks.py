"""The engine's own Lightning callbacks: stop a run whose loss diverged, and make sure a
recorded Ctrl-C / SIGTERM stops training even where its first raise was swallowed."""

from __future__ import annotations

import logging

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback

from initlab.tracking import interrupts
from initlab.tracking.logger import set_run_tag
from initlab.tracking.record import TAG_DIVERGED

log = logging.getLogger(__name__)


class DivergenceGuard(Callback):
    """Stops a run whose training loss became NaN or inf, tags its MLflow run
    ``initlab.diverged=true`` (and ``initlab.diverged_step``), and logs the metric ``diverged``
    (1, or 0 for runs that stayed finite), so the other jobs of a sweep go on.

    Each step's loss is added to a running sum on the device (no host sync: a sum of finite
    losses stays finite, one NaN or inf makes it so for good); the sum is read every
    ``check_every_n_steps`` optimizer steps and at the end of every epoch, so a diverged run
    stops within that many steps."""

    def __init__(self, check_every_n_steps: int = 20) -> None:
        self.every = max(1, int(check_every_n_steps))
        self.diverged_at: int | None = None
        self._loss_sum: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or self.diverged_at is not None:
            return
        loss = loss.detach()
        self._loss_sum = loss.clone() if self._loss_sum is None else self._loss_sum.add_(loss)
        if trainer.global_step % self.every == 0:
            self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        if self._loss_sum is None or self.diverged_at is not None:
            return
        finite = bool(torch.isfinite(self._loss_sum))
        diverged = bool(trainer.strategy.reduce_boolean_decision(not finite, all=False))
        self._loss_sum = None
        if not diverged:
            return
        self.diverged_at = trainer.global_step
        trainer.should_stop = True
        log.warning("the training loss is not finite at step %d: the run diverged, stopping it",
                    trainer.global_step)
        set_run_tag(trainer, TAG_DIVERGED, "true")
        set_run_tag(trainer, "initlab.diverged_step", trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)
        pl_module.log("diverged", float(self.diverged_at is not None), on_step=False,
                      on_epoch=True, rank_zero_only=True)


class InterruptCheck(Callback):
    """At the end of every training and validation batch: raises the recorded signal's
    exception again where its first raise was swallowed (or where the job runs in a thread other
    than the one that took the signal), and raises ``ThreadFailed`` when an exception ended
    another thread of the job (``tracking.interrupts.watching_threads``)."""

    def _check(self) -> None:
        signum = interrupts.pending()
        if signum is not None:
            raise interrupts.exception_for(signum)
        failure = interrupts.thread_failure()
        if failure is not None:
            raise interrupts.ThreadFailed(failure)

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self._check()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        self._check()
