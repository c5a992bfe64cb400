"""The training progress bar: optimizer steps, the loss and the accuracies, nothing else.

Lightning's ``TQDMProgressBar`` counts batches (with ``accumulate_grad_batches=4`` an epoch of
40 batches shows 40, for 10 optimizer steps) and shows ``v_num`` (a fragment of the MLflow run
id) and every logged metric by its full name.  This one counts optimizer steps
(``trainer.global_step`` since the epoch began, so ``progress_refresh_rate`` is in steps too) and
shows ``loss`` (the last logged step's), ``acc``, ``val_loss`` and ``val_acc`` (the last epoch's).
Only public hooks and properties of the bar, the trainer and tqdm are used.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import TQDMProgressBar

# Logged name -> short name on the bar, in the bar's order.
SHOWN = {"train/loss_step": "loss", "train/acc": "acc", "val/loss": "val_loss",
         "val/acc": "val_acc"}


class StepProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` in optimizer steps with short metric names (see the module doc)."""

    def __init__(self, refresh_rate: int = 1, process_position: int = 0,
                 leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position,
                         leave=leave)
        self._first_step = 0  # trainer.global_step when the epoch began

    @property
    def total_train_batches(self) -> int | float:
        """Optimizer steps in this epoch (the bar's total): a step every
        ``accumulate_grad_batches`` batches and one at the epoch's end; at most the steps left
        when ``max_steps`` ends the run."""
        trainer = self.trainer
        batches = trainer.num_training_batches
        steps = batches if math.isinf(batches) else math.ceil(
            batches / max(1, trainer.accumulate_grad_batches))
        if trainer.max_steps is not None and trainer.max_steps > 0:
            steps = min(steps, max(0, trainer.max_steps - trainer.global_step))
        return steps

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._first_step = trainer.global_step
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.unit = "step"

    def _steps(self, trainer: L.Trainer) -> int:
        return trainer.global_step - self._first_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        bar, n = self.train_progress_bar, self._steps(trainer)
        if bar is None or bar.disable or n == bar.n:
            return
        if n % max(1, self.refresh_rate) == 0 or n == bar.total:
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = self._steps(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    def get_metrics(self, trainer: L.Trainer,
                    pl_module: L.LightningModule) -> dict[str, int | str | float | dict[str, float]]:
        """The loss and accuracies under short names; no ``v_num``, no other metric.  ``loss``
        is the last logged step's (every ``log_every_n_steps``), else the last epoch's mean."""
        items = super().get_metrics(trainer, pl_module)
        if "train/loss_step" not in items and "train/loss" in items:
            items["train/loss_step"] = items["train/loss"]
        return {short: items[name] for name, short in SHOWN.items() if name in items}
