"""Fit, validate and test one prepared job with a Lightning Trainer; nothing else."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from initlab.engine.build import Job, build, configured_callbacks
from initlab.engine.callbacks import DivergenceGuard, InterruptCheck
from initlab.engine.checkpoints import LAST, checkpoint_files, place_checkpoints
from initlab.engine.progress import StepProgressBar
from initlab.tracking import interrupts
from initlab.tracking.context import HydraContext
from initlab.tracking.logger import mlflow_logger
from initlab.tracking.loggers import local_logs, metric_loggers

# Lightning's start-up banners (accelerator lines, tips) say nothing about the experiment.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
# "Received SIGTERM: 15": train.py says it in its one line (tracking.interrupts).
logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch 2.14 vs Lightning 2.6 noise


class InterruptNote(L.Callback):
    """When a signal stops training: notes what the job keeps (its run, the epochs and steps
    whose metrics were logged, the last checkpoint) for the one line ``train.py`` prints."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        run = mlflow_logger(trainer)
        ckpts = [p for p in checkpoint_files(trainer) if p.name == LAST] \
            or checkpoint_files(trainer)
        interrupts.note_kept(interrupts.Kept(
            run_id=run.run_id if run is not None else None, epochs=trainer.current_epoch,
            steps=trainer.global_step, checkpoint=str(ckpts[-1]) if ckpts else None,
            files=local_logs(trainer.loggers), job=" ".join(HydraContext.current().overrides)))


def make_trainer(cfg: DictConfig, out: Path, logger: Logger | None,
                 extra: list[L.Callback] = ()) -> L.Trainer:
    """The configured Trainer with the ``logger`` group's loggers (``logger``: the tracked run's
    MLflow logger, None without tracking: ``tracking.loggers``), the engine's callbacks
    (divergence guard, interrupt check and note, a progress bar in optimizer steps unless the
    config names one), the ``callbacks`` group's, and ``extra``."""
    callbacks: list[L.Callback] = [DivergenceGuard(cfg.get("divergence_check_every", 20)),
                                   InterruptCheck(), InterruptNote(), *configured_callbacks(cfg),
                                   *extra]
    if (cfg.trainer.get("enable_progress_bar", True)
            and not any(isinstance(c, ProgressBar) for c in callbacks)):
        callbacks.append(StepProgressBar(refresh_rate=cfg.get("progress_refresh_rate", 10)))
    checkpointing = place_checkpoints(callbacks, out)
    loggers = metric_loggers(cfg, out, logger)
    return build(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                 enable_checkpointing=checkpointing, default_root_dir=str(out))


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
