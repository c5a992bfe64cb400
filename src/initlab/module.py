"""The LightningModule: a classifier trained with the configured optimizer.

Softmax cross-entropy for several classes; for one output, a sigmoid output with binary
cross-entropy (S4).  Optimization is manual: a Lightning training step is a *block* of several
optimizer steps (``dataset.steps_per_block``), so Lightning's per-step cost is paid once per
block.  Epoch metrics are accumulated as tensors and logged once per epoch; the train loss of
every ``log_every_n_steps``-th step is logged too, at its own step, read from the device once per
block: no step pays for a host sync it does not need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn

from initlab.datamodule import as_block


def _count_plain_steps(trainer: L.Trainer, n: int) -> None:
    """Add ``n`` optimizer steps taken outside Lightning to ``trainer.global_step`` (in manual
    optimization, the count of ``LightningOptimizer.step`` calls)."""
    if n > 0:
        trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.increment_by(n)


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
        self._plain_steps = False
        self.automatic_optimization = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ---- loss and accuracy -----------------------------------------------------------------
    def _loss_and_correct(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None):
        """Loss and number of correct predictions; ``target`` is ``y`` as the loss wants it."""
        logits = self.model(x)
        if self.binary:
            logits = logits.squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(
                logits, target if target is not None else y.to(logits.dtype))
            correct = ((logits > 0) == y).sum()
        else:
            loss = F.cross_entropy(logits, y)
            correct = (logits.argmax(dim=-1) == y).sum()
        return loss, correct

    def _accumulate(self, split: str, loss_sum: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        stats = torch.stack([loss_sum, correct.to(loss_sum.dtype), loss_sum.new_tensor(float(n))])
        self._sums[split] = self._sums[split] + stats if split in self._sums else stats

    def _log_epoch(self, split: str) -> None:
        stats = self._sums.pop(split, None)
        if stats is None:
            return
        stats = self.all_gather(stats).reshape(-1, 3).sum(0) if self.trainer.world_size > 1 else stats
        loss_sum, correct, n = stats
        # "step": Lightning's loggers then put the point at this optimizer step, the x-axis of
        # every other metric (its own default counts training batches, i.e. blocks).
        self.log_dict({f"{split}/loss": loss_sum / n, f"{split}/acc": correct / n,
                       "step": float(self.global_step)},
                      on_step=False, on_epoch=True, rank_zero_only=True)

    # ---- training: a block of optimizer steps per Lightning step ---------------------------
    def on_train_start(self) -> None:
        # Plain steps (``loss.backward()``, the bare optimizer) are exactly what Lightning would
        # do on one device in 32-bit precision; elsewhere (DDP's gradient sync, loss scaling)
        # every step goes through Lightning.
        self._plain_steps = (isinstance(self.trainer.strategy, SingleDeviceStrategy)
                             and type(self.trainer.precision_plugin) is Precision)

    def training_step(self, block, block_idx: int) -> torch.Tensor | None:
        """One optimizer step per mini-batch of the block (``TensorBatches``: k consecutive
        mini-batches, or the full batch k times).  Lightning's per-step machinery (hooks,
        progress bar, callbacks' ``on_before_optimizer_step``...) runs once per block, around its
        last step; the other steps are plain PyTorch, counted into ``global_step``.  Returns the
        block's mean loss (non-finite if any step's loss was)."""
        xs, ys = as_block(block)
        first = self.global_step
        steps = len(xs)
        if self.trainer.max_steps is not None and self.trainer.max_steps >= 0:
            steps = min(steps, self.trainer.max_steps - first)
        if steps <= 0:
            return None
        optimizer = self.optimizers()
        loss_sum = torch.zeros((), device=self.device)
        correct_sum = torch.zeros((), device=self.device, dtype=torch.long)
        samples: list[tuple[int, torch.Tensor]] = []
        target, n, uncounted = None, 0, 0
        for i in range(steps):
            x, y = xs[i], ys[i]
            if self.binary and (target is None or ys[i] is not ys[i - 1]):
                target = y.to(self.dtype)
            loss, correct = self._loss_and_correct(x, y, target)
            loss_sum.add_(loss.detach(), alpha=len(y))
            correct_sum.add_(correct)
            n += len(y)
            if (first + i) % self.log_every_n_steps == 0:
                samples.append((first + i, loss.detach()))
            if self._plain_steps and i < steps - 1:
                optimizer.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.optimizer.step()
                uncounted += 1
            else:
                _count_plain_steps(self.trainer, uncounted)
                uncounted = 0
                optimizer.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                optimizer.step()
        self._accumulate("train", loss_sum, correct_sum, n)
        self._log_loss_samples(samples)
        return loss_sum / n

    def _log_loss_samples(self, samples: list[tuple[int, torch.Tensor]]) -> None:
        """``train/loss_step`` at every ``log_every_n_steps``-th step of the block, each at its
        own step (one host sync per block)."""
        if not samples:
            return
        values = torch.stack([loss for _, loss in samples])
        self.log("train/loss_step", values[-1], on_step=True, on_epoch=False, logger=False)
        if self.loggers:
            for (step, _), value in zip(samples, values.tolist()):
                for logger in self.loggers:
                    logger.log_metrics({"train/loss_step": value}, step=step)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        optimizer = self.trainer.optimizers[0]
        self.log("lr", float(optimizer.param_groups[0]["lr"]), on_step=False, on_epoch=True)
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # manual optimization: Lightning leaves schedulers to us
            scheduler.step()

    def _evaluate(self, split: str, batch) -> None:
        x, y = batch
        loss, correct = self._loss_and_correct(x, y)
        self._accumulate(split, loss.detach() * len(y), correct, len(y))

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
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
