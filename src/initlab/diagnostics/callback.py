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

from initlab.diagnostics import meanfield
from initlab.diagnostics.histograms import histogram_data, plot_row
from initlab.tracking.logger import mlflow_logger
from initlab.diagnostics.layerstats import Layer, Measurement, layers_of, measure, signal_ratio, weight_variances

log = logging.getLogger(__name__)

PREFIX = "diag"
TAG_SIGNAL = "initlab.diag.signal"
TAG_RATIO = "initlab.diag.signal_ratio"
ARTIFACT_DIR = "diagnostics"
STATS_FILE = "init_stats.json"
HIST_FILE = "activation_histograms.png"


def predictions(measurement: Measurement, model: torch.nn.Module) -> list[dict[str, float]] | None:
    """Mean-field predictions per layer from the actual weights, or None where the theory does
    not apply (convolutions, pooling)."""
    if not meanfield.applies_to(model):
        return None
    sw2, sb2 = weight_variances(measurement.layers)
    return meanfield.predict(sw2, sb2, [layer.kind for layer in measurement.layers],
                             measurement.input_m2)


def flat_metrics(measurement: Measurement, preds: list[dict[str, float]] | None = None,
                 extra: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """``{"diag/layer1/act_std": ..., "diag/layer1/preact_var_pred": ..., "diag/signal_ratio": ...}``"""
    out = {}
    for i, layer in enumerate(measurement.layers):
        row = dict(measurement.stats[layer.name])
        row.update((extra or {}).get(layer.name, {}))
        if preds is not None:
            row.update({f"{k}_pred": v for k, v in preds[i].items()})
        out.update({f"{PREFIX}/{layer.name}/{k}": v for k, v in row.items()})
    ratio = signal_ratio(measurement)
    if ratio is not None:
        out[f"{PREFIX}/signal_ratio"] = ratio
    return out


def init_record(measurement: Measurement, preds: list[dict[str, float]] | None,
                hists: list[dict[str, Any]], **info: Any) -> dict[str, Any]:
    """The JSON document ``compare`` reads: per layer stats and predictions, histograms."""
    return {
        "layers": [{"name": layer.name, "kind": layer.kind, "stats": measurement.stats[layer.name],
                    "pred": preds[i] if preds is not None else None}
                   for i, layer in enumerate(measurement.layers)],
        "histograms": hists,
        "signal_ratio": signal_ratio(measurement),
        "input_m2": measurement.input_m2,
        **info,
    }


def classify_signal(ratio: float | None, vanishing_below: float, exploding_above: float) -> str:
    if ratio is None or math.isnan(ratio):
        return "n/a"
    if ratio < vanishing_below:
        return "vanishing"
    if ratio > exploding_above:
        return "exploding"
    return "ok"


def _loss_fn(pl_module: L.LightningModule, y: torch.Tensor):
    """The module's own training loss on the probe labels (ClassifierModule), else
    cross-entropy."""
    def loss(out: torch.Tensor) -> torch.Tensor:
        if getattr(pl_module, "binary", False):
            return torch.nn.functional.binary_cross_entropy_with_logits(
                out.squeeze(-1), y.to(out.dtype))
        return torch.nn.functional.cross_entropy(out, y)
    return loss


class InitDiagnostics(Callback):
    def __init__(self, probe_size: int = 256, every_n_epochs: int = 1,
                 every_n_steps: int | None = None, saturation_threshold: float = 0.01,
                 vanishing_below: float = 0.1, exploding_above: float = 10.0,
                 histogram_bins: int = 30, plot: bool = True, train_stats: bool = True) -> None:
        self.probe_size = int(probe_size)
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.every_n_steps = int(every_n_steps) if every_n_steps else None
        self.threshold = float(saturation_threshold)
        self.vanishing_below, self.exploding_above = float(vanishing_below), float(exploding_above)
        self.bins, self.plot, self.train_stats = int(histogram_bins), bool(plot), bool(train_stats)
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
        m = measure(net, self._probe[0], threshold=self.threshold,
                    loss_fn=_loss_fn(pl_module, self._probe[1]), layers=self._layers)
        preds = predictions(m, net)
        self._log(trainer, flat_metrics(m, preds), step=0)
        self._check_signal(trainer, signal_ratio(m), "at initialization:")
        logger = self._mlflow(trainer)
        if logger is not None:
            hists = histogram_data(m, self.bins)
            record = init_record(m, preds, hists, probe_size=len(x),
                                 threshold=self.threshold)
            with tempfile.TemporaryDirectory(prefix="initlab-diag-") as tmp:
                path = Path(tmp) / STATS_FILE
                path.write_text(json.dumps(record))
                logger.experiment.log_artifact(logger.run_id, str(path), ARTIFACT_DIR)
                if self.plot and hists:
                    title = f"activations at init ({self._title(logger)})"
                    png = plot_row(hists, title, Path(tmp) / HIST_FILE)
                    logger.experiment.log_artifact(logger.run_id, str(png), ARTIFACT_DIR)
        m.captured.pre.clear()
        m.captured.act.clear()
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

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_steps or not self._step_stats or not trainer.is_global_zero:
            return
        start = time.perf_counter()
        self._measure_and_log(trainer, pl_module)
        self.seconds += time.perf_counter() - start

    def _measure_and_log(self, trainer, pl_module) -> None:
        net = self._net(pl_module)
        m = measure(net, self._probe[0], threshold=self.threshold, layers=self._layers)
        self._log(trainer, flat_metrics(m, extra=self._step_stats), step=trainer.global_step)
        self._step_stats = {}
        if not self._checked_first_epoch:
            self._checked_first_epoch = True
            self._check_signal(trainer, signal_ratio(m), "after the first diagnostics step:")

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            log.info("diagnostics took %.2f s", self.seconds)
