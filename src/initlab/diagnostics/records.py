"""What the diagnostics record: mean-field predictions for a measurement, the flat
``diag/<layer>/<stat>`` metrics, the JSON document ``compare`` reads, the signal class, and the
probe loss."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as L
import torch

from initlab.diagnostics import meanfield
from initlab.diagnostics.layerstats import Measurement, signal_ratio, weight_variances

PREFIX = "diag"
ARTIFACT_DIR = "diagnostics"  # where a run keeps its diagnostics artifacts
STATS_FILE = "init_stats.json"  # the record that compare redraws
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


def probe_loss(pl_module: L.LightningModule, y: torch.Tensor):
    """The module's own training loss on the probe labels (ClassifierModule), else
    cross-entropy."""
    def loss(out: torch.Tensor) -> torch.Tensor:
        if getattr(pl_module, "binary", False):
            return torch.nn.functional.binary_cross_entropy_with_logits(
                out.squeeze(-1), y.to(out.dtype))
        return torch.nn.functional.cross_entropy(out, y)
    return loss
