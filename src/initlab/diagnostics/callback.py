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

import json
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

from initlab.diagnostics import backward, figures, jacobian
from initlab.diagnostics.histograms import histogram_data, plot_row
from initlab.diagnostics.layerstats import Layer, Measurement, layers_of, measure, signal_ratio
from initlab.diagnostics.records import (ARTIFACT_DIR, HIST_FILE, PREFIX, STATS_FILE,
                                         classify_signal, flat_metrics, init_record, predictions,
                                         probe_loss)
from initlab.tracking.artifacts import save_weights
from initlab.tracking.logger import mlflow_logger

log = logging.getLogger(__name__)

TAG_SIGNAL = "initlab.diag.signal"
TAG_RATIO = "initlab.diag.signal_ratio"
BACKWARD_FILE = "backward.png"
SPECTRUM_FILE = "jacobian_spectrum.png"  # at init; jacobian_spectrum_step<N>.png at the last
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
        signal = classify_signal(ratio, self.vanishing_below, self.exploding_above)
        if signal == self.signal:
            return
        first = self.signal is None
        self.signal = signal
        logger = self._mlflow(trainer)
        if logger is not None and (first or signal != "ok"):
            logger.experiment.set_tag(logger.run_id, TAG_SIGNAL, signal)
            logger.experiment.set_tag(logger.run_id, TAG_RATIO,
                                      "n/a" if ratio is None else f"{ratio:.4g}")
        if signal in ("vanishing", "exploding"):
            log.warning(
                "%s signal %s: last/first hidden-layer activation std = %.3g (thresholds %g / %g); "
                "the init may not suit this depth and activation", when, signal, ratio,
                self.vanishing_below, self.exploding_above)

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
        m = measure(net, self._probe[0], threshold=self.threshold, loss_fn=loss_fn,
                    layers=self._layers)
        preds = predictions(m, net)
        back_preds = self._backward(net, loss_fn, m, preds)
        jac = self._jacobian(net, preds)
        self._log(trainer, {**flat_metrics(m, preds), **jacobian.flat_metrics(jac, PREFIX)},
                  step=0)
        self._check_signal(trainer, signal_ratio(m), "at initialization:")
        if logger is not None:
            hists = histogram_data(m, self.bins)
            record = init_record(m, preds, hists, probe_size=len(x),
                                 threshold=self.threshold, jacobian=jac)
            with tempfile.TemporaryDirectory(prefix="initlab-diag-") as tmp:
                path = Path(tmp) / STATS_FILE
                path.write_text(json.dumps(record))
                logger.experiment.log_artifact(logger.run_id, str(path), ARTIFACT_DIR)
                title = self._title(logger)
                pngs = []
                if self.plot and hists:
                    pngs.append(plot_row(hists, f"activations at init ({title})",
                                         Path(tmp) / HIST_FILE))
                if self.plot and self.backward:
                    pngs.append(figures.plot_backward(
                        [layer.name for layer in m.layers], m.stats, back_preds,
                        f"backward signal at init ({title})", Path(tmp) / BACKWARD_FILE))
                if self.plot and jac is not None:
                    pngs.append(figures.plot_spectrum(jac, f"Jacobian at init ({title})",
                                                      Path(tmp) / SPECTRUM_FILE))
                for png in pngs:
                    logger.experiment.log_artifact(logger.run_id, str(png), ARTIFACT_DIR)
        m.captured.pre.clear()
        m.captured.act.clear()
        self.seconds += time.perf_counter() - start

    def _backward(self, net, loss_fn, m: Measurement,
                  preds: list[dict[str, float]] | None) -> list[dict[str, float]] | None:
        """Backward statistics into ``m.stats`` and their predictions into ``preds``."""
        if not self.backward:
            return None
        back = backward.measure_backward(net, self._probe[0], loss_fn, self._layers)
        for name, row in back.items():
            m.stats[name].update(row)
        if preds is None:
            return None
        back_preds = backward.predictions(back, self._layers, preds)
        for row, extra in zip(preds, back_preds):
            row.update(extra)
        return back_preds

    def _jacobian(self, net, preds: list[dict[str, float]] | None) -> dict | None:
        if not self.jacobian:
            return None
        q = [row["preact_var"] for row in preds] if preds is not None else None
        return jacobian.measure_jacobian(net, self._probe[0][: self.jacobian_inputs],
                                         self._layers, q)

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
            jac = self._jacobian(self._net(pl_module), None)
            if jac is not None:
                self._last_jacobian = (trainer.global_step, jac)
                self._log(trainer, jacobian.flat_metrics(jac, PREFIX), step=trainer.global_step)
            self.seconds += time.perf_counter() - start
        if not self._sample or not self._before:
            return
        start = time.perf_counter()
        self._sample = False
        rows = []
        for layer, before, grad in zip(self._layers, self._before, self._grad_norms):
            w = layer.weight.weight.detach()
            ratio = (w - before).norm() / before.norm().clamp_min(1e-12)
            rows.append(torch.stack([grad if grad is not None else ratio.new_tensor(float("nan")),
                                     ratio]))
        values = torch.stack(rows).tolist()
        self._before = []
        self._step_stats = {layer.name: {"grad_norm": g, "update_ratio": r}
                            for layer, (g, r) in zip(self._layers, values)}
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
        net = self._net(pl_module)
        m = measure(net, self._probe[0], threshold=self.threshold, layers=self._layers)
        self._backward(net, probe_loss(pl_module, self._probe[1]), m, None)
        self._log(trainer, flat_metrics(m, extra=self._step_stats), step=trainer.global_step)
        self._step_stats = {}
        if not self._checked_first_epoch:
            self._checked_first_epoch = True
            self._check_signal(trainer, signal_ratio(m), "after the first diagnostics step:")

    def on_train_end(self, trainer, pl_module) -> None:
        """The Jacobian histogram at the last sampled step, while the run is still open."""
        logger = self._mlflow(trainer)
        if not (trainer.is_global_zero and self.plot and self._last_jacobian and logger):
            return
        start = time.perf_counter()
        step, jac = self._last_jacobian
        with tempfile.TemporaryDirectory(prefix="initlab-diag-") as tmp:
            name = SPECTRUM_FILE.replace(".png", f"_step{step}.png")
            png = figures.plot_spectrum(jac, f"Jacobian at step {step} ({self._title(logger)})",
                                        Path(tmp) / name)
            logger.experiment.log_artifact(logger.run_id, str(png), ARTIFACT_DIR)
        self.seconds += time.perf_counter() - start

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            log.info("diagnostics took %.2f s", self.seconds)
