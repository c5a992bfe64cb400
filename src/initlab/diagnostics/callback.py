"""Initialization diagnostics for every run: a Lightning callback (``InitDiagnostics``).

On a fixed probe batch of training inputs:

* **at fit start, before the first step**: per layer the pre-activation and activation mean and
  std, the pre-activation second moment beside its mean-field prediction (``meanfield``), the
  fraction of saturated (sigmoid/tanh) or dead (ReLU) units, the weight std and the weight
  gradient norm of the loss on the probe batch; metrics ``diag/<layer>/<stat>`` at step 0, the
  S1-style histogram figure ``diagnostics/activation_histograms.png`` and everything as
  ``diagnostics/init_stats.json`` (what ``initlab.report.compare`` redraws);
* **during training**, every ``every_n_epochs`` epochs (or ``every_n_steps`` steps): per layer
  weight std, gradient norm and update/weight ratio of one optimizer step, and the
  activation statistics;
* **backward and Jacobian** (``backward``, ``jacobian``; see those modules): per layer
  E[(dl/dh)^2], Var(dL/dW) and chi_1 beside their mean-field predictions, at init and with the
  training-time statistics; the input-output Jacobian's singular values at init and every
  ``jacobian_every_n_steps`` steps (``diag/jacobian/<stat>``), with histogram figures;
* **initial weights**: ``weights/initial_weights.safetensors`` before the first step;
* **signal check**: the last/first hidden layer activation std ratio; below ``vanishing_below``
  or above ``exploding_above`` (at init or after the first epoch) the run is tagged
  ``initlab.diag.signal`` = vanishing / exploding and a WARNING is logged.

Metrics go through the run's logger (buffered, one ``log_batch`` every few seconds).  Only rank
zero measures and logs.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger

from initlab.diagnostics import jacobian, probes
from initlab.diagnostics.layerstats import Layer, layers_of
from initlab.diagnostics.probes import (BACKWARD_FILE, SPECTRUM_FILE, TAG_RATIO,  # noqa: F401
                                        TAG_SIGNAL)
from initlab.diagnostics.records import ARTIFACT_DIR, PREFIX, probe_loss
from initlab.tracking.artifacts import save_weights
from initlab.tracking.logger import mlflow_logger

log = logging.getLogger(__name__)

INITIAL_WEIGHTS = "initial_weights.safetensors"  # in the run's weights/, beside final_weights


class InitDiagnostics(Callback):
    def __init__(self, probe_size: int = 256, every_n_epochs: int = 1,
                 every_n_steps: int | None = None, saturation_threshold: float = 0.01,
                 vanishing_below: float = 0.1, exploding_above: float = 10.0,
                 histogram_bins: int = 30, plot: bool = True, train_stats: bool = True,
                 backward: bool = True, jacobian: bool = True,
                 jacobian_every_n_steps: int | None = None, jacobian_inputs: int = 8,
                 initial_weights: bool = True) -> None:
        self.probe_size = int(probe_size)
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.every_n_steps = int(every_n_steps) if every_n_steps else None
        self.threshold = float(saturation_threshold)
        self.vanishing_below, self.exploding_above = float(vanishing_below), float(exploding_above)
        self.bins, self.plot, self.train_stats = int(histogram_bins), bool(plot), bool(train_stats)
        self.backward, self.jacobian = bool(backward), bool(jacobian)
        self.jacobian_every = int(jacobian_every_n_steps) if jacobian_every_n_steps else None
        self.jacobian_inputs, self.initial_weights = int(jacobian_inputs), bool(initial_weights)
        self._last_jacobian: tuple[int, dict] | None = None  # (step, result) after init
        self.signal: str | None = None
        self.seconds = 0.0  # time spent in this callback (reported in the log)
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self._layers: list[Layer] = []
        self._sample = False
        self._before: list[torch.Tensor] = []  # weights before a sampled optimizer step
        self._grad_norms: list[torch.Tensor | None] = []
        self._step_stats: dict[str, dict[str, float]] = {}
        self._checked_first_epoch = False

    @property
    def settings(self) -> probes.Settings:
        """What the measurements need (``initlab.diagnostics.probes``)."""
        return probes.Settings(threshold=self.threshold, backward=self.backward,
                               jacobian=self.jacobian, jacobian_inputs=self.jacobian_inputs,
                               bins=self.bins, plot=self.plot)

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _net(pl_module: L.LightningModule) -> torch.nn.Module:
        return getattr(pl_module, "model", pl_module)

    @staticmethod
    def _mlflow(trainer: L.Trainer) -> MLFlowLogger | None:
        return mlflow_logger(trainer)

    def _log(self, trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
        """Through the run's logger, which buffers (``RunLogger``): no store write mid-epoch."""
        logger = self._mlflow(trainer)
        if logger is None or not metrics:
            return
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        if finite:
            logger.log_metrics(finite, step=step)

    def _check_signal(self, trainer: L.Trainer, ratio: float | None, when: str) -> None:
        logger = self._mlflow(trainer)
        set_tag = (None if logger is None else
                   lambda key, value: logger.experiment.set_tag(logger.run_id, key, value))
        self.signal = probes.signal_change(self.signal, ratio, self.vanishing_below,
                                           self.exploding_above, set_tag, when, log)

    # ---- at initialization -----------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        resumed = trainer.ckpt_path is not None  # its init was measured by the run it continues
        datamodule = getattr(trainer, "datamodule", None)
        if not hasattr(datamodule, "probe_batch"):
            log.warning("diagnostics need a datamodule with probe_batch(); none, so they are off")
            return
        start = time.perf_counter()
        net = self._net(pl_module)
        x, y = datamodule.probe_batch(self.probe_size)
        # The probe in the model's own dtype (float64 runs: trainer.precision=64-true).
        self._probe = (x.to(pl_module.device, pl_module.dtype), y.to(pl_module.device))
        self._layers = layers_of(net)
        if resumed:
            return
        logger = self._mlflow(trainer)
        if logger is not None and self.initial_weights:
            with tempfile.TemporaryDirectory(prefix="initlab-diag-") as tmp:
                path = save_weights(net, Path(tmp) / INITIAL_WEIGHTS)
                logger.experiment.log_artifact(logger.run_id, str(path), "weights")
        loss_fn = probe_loss(pl_module, self._probe[1])
        r = probes.measure_at_init(net, self._probe[0], loss_fn, self._layers, self.settings)
        self._log(trainer, r.metrics, step=0)
        self._check_signal(trainer, r.ratio, "at initialization:")
        if logger is not None:
            with tempfile.TemporaryDirectory(prefix="initlab-diag-") as tmp:
                for path in probes.init_files(r, len(x), self.settings, self._title(logger),
                                              Path(tmp)):
                    logger.experiment.log_artifact(logger.run_id, str(path), ARTIFACT_DIR)
        probes.release(r.m)
        self.seconds += time.perf_counter() - start

    @staticmethod
    def _title(logger: MLFlowLogger) -> str:
        run = logger.experiment.get_run(logger.run_id)
        return run.data.tags.get("mlflow.runName", logger.run_id)

    # ---- during training ---------------------------------------------------------------------
    def _due_step(self, trainer: L.Trainer, batch: Any, batch_idx: int) -> bool:
        """Whether the coming optimizer step is sampled: the one that reaches a multiple of
        ``every_n_steps``, or the last step of a due epoch."""
        if self.every_n_steps:
            return (trainer.global_step + 1) % self.every_n_steps == 0
        last = batch_idx + 1 >= trainer.num_training_batches
        return last and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._sample = (self.train_stats and trainer.is_global_zero and self._probe is not None
                        and self._due_step(trainer, batch, batch_idx))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._sample:
            return
        weights = [layer.weight.weight for layer in self._layers]
        self._before = [w.detach().clone() for w in weights]
        self._grad_norms = [w.grad.detach().norm() if w.grad is not None else None
                            for w in weights]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._jacobian_due(trainer):
            start = time.perf_counter()
            jac = probes.jacobian_of(self._net(pl_module), self._probe[0], self._layers,
                                     self.settings, None)
            if jac is not None:
                self._last_jacobian = (trainer.global_step, jac)
                self._log(trainer, jacobian.flat_metrics(jac, PREFIX), step=trainer.global_step)
            self.seconds += time.perf_counter() - start
        if not self._sample or not self._before:
            return
        start = time.perf_counter()
        self._sample = False
        after = [layer.weight.weight.detach() for layer in self._layers]
        self._step_stats = probes.update_stats(self._layers, self._before, after,
                                               self._grad_norms)
        self._before = []
        if self.every_n_steps:
            self._measure_and_log(trainer, pl_module)
        self.seconds += time.perf_counter() - start

    def _jacobian_due(self, trainer) -> bool:
        step = trainer.global_step
        return (self.jacobian and self.jacobian_every is not None and trainer.is_global_zero
                and self._probe is not None and step > 0 and step % self.jacobian_every == 0
                and (self._last_jacobian is None or self._last_jacobian[0] != step))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_steps or not self._step_stats or not trainer.is_global_zero:
            return
        start = time.perf_counter()
        self._measure_and_log(trainer, pl_module)
        self.seconds += time.perf_counter() - start

    def _measure_and_log(self, trainer, pl_module) -> None:
        metrics, ratio = probes.measure_during(self._net(pl_module), self._probe[0],
                                               probe_loss(pl_module, self._probe[1]),
                                               self._layers, self.settings, self._step_stats)
        self._log(trainer, metrics, step=trainer.global_step)
        self._step_stats = {}
        if not self._checked_first_epoch:
            self._checked_first_epoch = True
            self._check_signal(trainer, ratio, "after the first diagnostics step:")

    def on_train_end(self, trainer, pl_module) -> None:
        """The Jacobian histogram at the last sampled step, while the run is still open."""
        logger = self._mlflow(trainer)
        if not (trainer.is_global_zero and self.plot and self._last_jacobian and logger):
            return
        start = time.perf_counter()
        step, jac = self._last_jacobian
        with tempfile.TemporaryDirectory(prefix="initlab-diag-") as tmp:
            png = probes.spectrum_file(jac, step, self._title(logger), Path(tmp))
            logger.experiment.log_artifact(logger.run_id, str(png), ARTIFACT_DIR)
        self.seconds += time.perf_counter() - start

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            log.info("diagnostics took %.2f s", self.seconds)
