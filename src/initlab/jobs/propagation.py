"""S1's forward-only study: how activations are distributed layer by layer at initialization.

``run_propagation(cfg)`` builds the configured model, initializes it, sends one probe batch
(S1: 1,000 standard-normal inputs of dimension 100) through it and records, in one MLflow run,
the per-layer statistics and mean-field predictions (metrics ``diag/<layer>/<stat>``), the
activation histograms (``diagnostics/activation_histograms.png`` and ``init_stats.json``, the
same artifacts a training run's diagnostics write) and the std-through-depth figure.  No
training: a case takes about a second.  Preset: ``conf/experiment/s1_histograms.yaml``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf

from initlab import inits
from initlab.config import validate
from initlab.diagnostics.records import (ARTIFACT_DIR, HIST_FILE, STATS_FILE, classify_signal,
                                         flat_metrics, init_record, predictions)
from initlab.diagnostics.histograms import histogram_data, plot_row
from initlab.diagnostics.layerstats import measure, signal_ratio
from initlab.nets import check_fits_data
from initlab.tracking.store import log_metrics, read_parent_run
from initlab.tracking.run import HydraContext, tracked_run
from initlab.tracking.secrets import mask
from initlab.engine.build import build
from initlab.inits.labels import init_label

log = logging.getLogger(__name__)
DEFAULTS = {"probe_size": 1000, "histogram_bins": 30, "saturation_threshold": 0.01,
            "vanishing_below": 0.1, "exploding_above": 10.0}


def case_label(cfg: DictConfig) -> str:
    return f"{cfg.model.get('activation', '?')} {init_label(OmegaConf.to_container(cfg.init))}"


def run_propagation(cfg: DictConfig) -> dict[str, float]:
    """One forward pass at initialization; returns the flat ``diag/...`` metrics."""
    options = {**DEFAULTS, **OmegaConf.to_container(cfg.get("propagation") or {}, resolve=True)}
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.dataset)
    datamodule.setup()
    model = build(cfg.model)
    check_fits_data(model, datamodule.shape, datamodule.num_classes, cfg.dataset.name)
    x, _ = datamodule.probe_batch(int(options["probe_size"]))
    inits.initialize(model, OmegaConf.to_container(cfg.init, resolve=True), probe=x)
    m = measure(model, x, threshold=float(options["saturation_threshold"]))
    preds = predictions(m, model)
    metrics = {**flat_metrics(m, preds), **inits.init_metrics(model)}
    hists = histogram_data(m, int(options["histogram_bins"]))
    label = case_label(cfg)
    signal = classify_signal(signal_ratio(m), options["vanishing_below"], options["exploding_above"])
    _print_summary(label, m, preds, signal)
    if not cfg.tracking.get("enabled", True):
        return metrics
    from mlflow.entities import Metric

    with tracked_run(cfg, "cpu") as run, tempfile.TemporaryDirectory(prefix="initlab-") as tmp:
        run.set_tag("mlflow.runName", f"s1-{label.replace(' ', '-')}-seed{cfg.seed}")
        run.set_tag("initlab.kind", "propagation")
        run.set_tag("initlab.diag.signal", signal)
        log_metrics(run.client, run.run_id, [Metric(k, float(v), 0, 0)
                                             for k, v in metrics.items()])
        record = init_record(m, preds, hists, probe_size=len(x), label=label,
                             threshold=options["saturation_threshold"])
        (Path(tmp) / STATS_FILE).write_text(json.dumps(record))
        run.log_artifact(Path(tmp) / STATS_FILE, ARTIFACT_DIR)
        run.log_artifact(plot_row(hists, f"S1: {label} (activations, 1,000 inputs)",
                                  Path(tmp) / HIST_FILE), ARTIFACT_DIR)
        from initlab.report.figures import plot_depth

        run.log_artifact(plot_depth({label: [record]}, Path(tmp) / "depth.png"), ARTIFACT_DIR)
        (Path(tmp) / "config.yaml").write_text(mask(OmegaConf.to_yaml(cfg, resolve=True)))
        run.log_artifact(Path(tmp) / "config.yaml")
    print(f"MLflow run {run.run_id} in experiment '{run.experiment}', store {mask(run.tracking_uri)}",
          flush=True)
    parent = read_parent_run(HydraContext.current().sweep_dir)
    if parent is not None:
        print(f"All cases side by side: python -m initlab.compare --sweep-id {parent['sweep_id']} "
              f"--tracking-uri {mask(run.tracking_uri)}", flush=True)
    return metrics


def _print_summary(label: str, m, preds, signal: str) -> None:
    lines = [f"{label}: signal {signal} (last/first activation std {signal_ratio(m) or 0:.3g})"]
    for i, layer in enumerate(m.layers):
        s = m.stats[layer.name]
        pred = f", predicted {preds[i]['preact_var']:.3g}" if preds else ""
        extra = "".join(f", {k} {s[k]:.0%}" for k in ("saturated", "dead") if k in s)
        lines.append(f"  {layer.name}: act mean {s['act_mean']:.3g} std {s['act_std']:.3g}, "
                     f"preact E[h^2] {s['preact_var']:.3g}{pred}{extra}")
    text = "\n".join(lines)
    log.info(text)
    print(text, flush=True)
