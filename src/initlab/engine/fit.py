"""Fit, validate and test one prepared job with a Lightning Trainer; nothing else."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from initlab.engine.build import Job, build, configured_callbacks
from initlab.engine.callbacks import DivergenceGuard, InterruptCheck
from initlab.engine.checkpoints import place_checkpoints

# Lightning's start-up banners (accelerator lines, tips) say nothing about the experiment.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch 2.14 vs Lightning 2.6 noise


def make_trainer(cfg: DictConfig, out: Path, logger: Logger | None,
                 extra: list[L.Callback] = ()) -> L.Trainer:
    """The configured Trainer with the engine's callbacks (divergence guard, interrupt check, a
    progress bar unless the config names one), the ``callbacks`` group's, and ``extra``."""
    callbacks: list[L.Callback] = [DivergenceGuard(cfg.get("divergence_check_every", 20)),
                                   InterruptCheck(), *configured_callbacks(cfg), *extra]
    if (cfg.trainer.get("enable_progress_bar", True)
            and not any(isinstance(c, ProgressBar) for c in callbacks)):
        callbacks.append(TQDMProgressBar(refresh_rate=cfg.get("progress_refresh_rate", 10)))
    checkpointing = place_checkpoints(callbacks, out)
    return build(cfg.trainer, logger=logger if logger is not None else False,
                 callbacks=callbacks, enable_checkpointing=checkpointing,
                 default_root_dir=str(out))


def fit_and_test(trainer: L.Trainer, job: Job, ckpt_path: str | None = None) -> dict[str, float]:
    """Fit (resuming from ``ckpt_path``, loaded as tensors only), then validate the final model
    if fitting ended before any validation, then test; the run's final metrics."""
    trainer.fit(job.module, datamodule=job.datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = final_metrics(trainer)
    if "val/acc" not in metrics and len(job.datamodule.splits["val"][0]) and trainer.limit_val_batches:
        trainer.validate(job.module, datamodule=job.datamodule, verbose=False)
        metrics.update(final_metrics(trainer))
    trainer.test(job.module, datamodule=job.datamodule, verbose=False)
    metrics.update(final_metrics(trainer))
    metrics.setdefault("diverged", 0.0)
    return metrics


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
