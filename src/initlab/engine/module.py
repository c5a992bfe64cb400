"""The LightningModule: a classifier trained with the configured optimizer.

Softmax cross-entropy for several classes; for one output, a sigmoid output with binary
cross-entropy (S4).  Optimization is Lightning's automatic optimization, one optimizer step per
training batch, so every Trainer option (gradient clipping, accumulation, precision, schedulers
with ``interval: step``) and every callback hook behaves as Lightning documents.

Nothing in a step forces a host sync: the step loss goes to ``self.log`` as a tensor, on the
steps where Lightning writes to its loggers (every ``trainer.log_every_n_steps``) and only there:
each ``self.log`` call costs about 0.5 ms of Lightning bookkeeping, more than a small net's whole
step.  The epoch's loss and accuracy are summed on the device and logged once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn


def classification_loss(logits: torch.Tensor, y: torch.Tensor,
                        binary: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and number of correct predictions of a batch's logits: binary cross-entropy on
    one sigmoid output, softmax cross-entropy otherwise.  One definition for both engines: the
    Trainer path gives one net's logits ``[batch, outputs]``; the ensemble engine gives a stacked
    group's ``[members, batch, outputs]`` (``y``: ``[batch]`` shared, or ``[members, batch]``) and
    gets each member's mean loss and count (``[members]``), or calls it under ``torch.vmap``."""
    if logits.dim() == 3:  # members first: each member's own mean over its batch
        if binary:
            logits = logits.squeeze(-1)
            target = y.to(logits.dtype).expand_as(logits)
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            correct = ((logits > 0) == y).sum(-1)
        else:
            target = y.expand(logits.shape[:2])
            loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            correct = (logits.argmax(dim=-1) == y).sum(-1)
        return loss.mean(-1), correct
    if binary:
        logits = logits.squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
        correct = ((logits > 0) == y).sum()
    else:
        loss = F.cross_entropy(logits, y)
        correct = (logits.argmax(dim=-1) == y).sum()
    return loss, correct


class ClassifierModule(L.LightningModule):
    # Every metric a run ends with (what ``optimized_metric`` may name).
    METRICS = frozenset({f"{split}/{stat}" for split in ("train", "val", "test")
                         for stat in ("loss", "acc")} | {"train/loss_step", "lr", "diverged"})

    def __init__(self, model: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None,
                 scheduler_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Lightning's lr_scheduler config keys: interval (epoch | step), frequency, monitor.
        self.scheduler_config = dict(scheduler_config or {})
        self.binary = getattr(model, "num_outputs", None) == 1
        self._sums: dict[str, list] = {}  # split -> [loss sum, correct, count]
        self._epoch_lr = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ---- loss and accuracy -----------------------------------------------------------------
    def loss_and_correct(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and number of correct predictions of a batch."""
        return classification_loss(self.model(x), y, self.binary)

    def _accumulate(self, split: str, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        """Add a batch to the split's running (loss sum, correct) on the device, in place, and
        its size to a Python count: no host sync, no new tensor from a Python number."""
        sums = self._sums.get(split)
        if sums is None:
            sums = self._sums[split] = [torch.zeros((), device=loss.device, dtype=loss.dtype),
                                        torch.zeros((), device=loss.device, dtype=torch.long), 0]
        sums[0].add_(loss.detach(), alpha=n)
        sums[1].add_(correct)
        sums[2] += n

    def _log_epoch(self, split: str) -> None:
        sums = self._sums.pop(split, None)
        if sums is None:
            return
        loss_sum, correct, n = sums
        stats = torch.stack([loss_sum, correct.to(loss_sum.dtype), loss_sum.new_tensor(float(n))])
        if self.trainer.world_size > 1:
            stats = self.all_gather(stats).reshape(-1, 3).sum(0)
        loss_sum, correct, n = stats
        self.log_dict({f"{split}/loss": loss_sum / n, f"{split}/acc": correct / n},
                      on_step=False, on_epoch=True, rank_zero_only=True, prog_bar=split != "test")

    # ---- steps -----------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss, correct = self.loss_and_correct(x, y)
        self._accumulate("train", loss, correct, len(y))
        # Lightning's own condition for writing step metrics to the loggers: the step that
        # completes a multiple of log_every_n_steps (counted in optimizer steps).
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        # The epoch's learning rate, read before Lightning steps an epoch-interval scheduler
        # (it does so after the epoch's last batch, before on_train_epoch_end).
        self._epoch_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        self.log("lr", self._epoch_lr, on_step=False, on_epoch=True)

    def _evaluate(self, split: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        loss, correct = self.loss_and_correct(x, y)
        self._accumulate(split, loss, correct, len(y))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler_factory(optimizer), **self.scheduler_config}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
