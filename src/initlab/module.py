"""The LightningModule: a classifier trained with the configured optimizer.

Softmax cross-entropy for several classes; for one output, a sigmoid output with binary
cross-entropy (S4).  Epoch metrics are accumulated as tensors and logged once per epoch; the
train loss is also logged every ``log_every_n_steps`` steps, so no step pays for a host sync
it does not need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn


class ClassifierModule(L.LightningModule):
    # Every metric a run ends with (what ``optimized_metric`` may name).
    METRICS = frozenset({f"{split}/{stat}" for split in ("train", "val", "test")
                         for stat in ("loss", "acc")} | {"train/loss_step", "lr", "diverged"})

    def __init__(self, model: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, log_every_n_steps: int = 50) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.binary = getattr(model, "num_outputs", None) == 1
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self._sums: dict[str, torch.Tensor] = {}
        self.automatic_optimization = False

    @property
    def steps_per_batch(self) -> int:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        return int(getattr(datamodule, "steps_per_batch", 1) or 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ---- loss and accuracy -----------------------------------------------------------------
    def _loss_and_correct(self, batch: tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        logits = self.model(x)
        if self.binary:
            logits = logits.squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
            correct = ((logits > 0).long() == y).sum()
        else:
            loss = F.cross_entropy(logits, y)
            correct = (logits.argmax(dim=-1) == y).sum()
        return loss, correct, y.numel()

    def _accumulate(self, split: str, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        stats = torch.stack([loss.detach() * n, correct.to(loss.dtype), loss.new_tensor(float(n))])
        self._sums[split] = self._sums[split] + stats if split in self._sums else stats

    def _log_epoch(self, split: str) -> None:
        stats = self._sums.pop(split, None)
        if stats is None:
            return
        stats = self.all_gather(stats).reshape(-1, 3).sum(0) if self.trainer.world_size > 1 else stats
        loss_sum, correct, n = stats
        self.log_dict({f"{split}/loss": loss_sum / n, f"{split}/acc": correct / n},
                      on_step=False, on_epoch=True, rank_zero_only=True)

    # ---- Lightning hooks -------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """``steps_per_batch`` optimizer steps on this batch (1, or more for full-batch gradient
        descent, where every step sees the same batch: the same arithmetic with a fraction of
        Lightning's per-step work).  Optimization is manual for that reason."""
        optimizer = self.optimizers()
        sampled = None  # the loss at a step that is a multiple of log_every_n_steps
        for _ in range(self.steps_per_batch):
            loss, correct, n = self._loss_and_correct(batch)
            self._accumulate("train", loss, correct, n)
            if self.global_step % self.log_every_n_steps == 0:
                sampled = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
        if sampled is not None:
            self.log("train/loss_step", sampled, on_step=True, on_epoch=False)
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        optimizer = self.trainer.optimizers[0]
        self.log("lr", float(optimizer.param_groups[0]["lr"]), on_step=False, on_epoch=True)
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # manual optimization: Lightning leaves schedulers to us
            scheduler.step()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._accumulate("val", *self._loss_and_correct(batch))

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._accumulate("test", *self._loss_and_correct(batch))

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
