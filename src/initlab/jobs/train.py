"""``train(cfg)``: one job, from a checked config to a tracked, tested model.

The config is checked against the schema first (``initlab.config.validate``), and everything
that needs data (loading it, fitting the net to it) happens in ``prepare`` before the MLflow run
is created, so bad input leaves nothing behind.  Then the engine trains, and the tracking layer
records; this module only puts them in order.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig

from initlab.config import validate
from initlab.engine.build import prepare
from initlab.inits import init_metrics
from initlab.engine.checkpoints import checkpoint_files, resolve_ckpt_path
from initlab.engine.fit import fit_and_test, make_trainer
from initlab.errors import ConfigError
from initlab.report.curves import metric_history, plot_curves
from initlab.tracking import interrupts
from initlab.tracking.artifacts import record_job
from initlab.tracking.context import HydraContext
from initlab.tracking.links import describe, open_hint, run_note, run_url
from initlab.tracking.loggers import local_logs
from initlab.tracking.record import TAG_RESUMED_FROM, run_name
from initlab.tracking.run import TrackedRun, tracked_run
from initlab.tracking.secrets import mask

log = logging.getLogger(__name__)
CURVE_METRICS = ["train/loss", "val/loss", "train/acc", "val/acc", "train/loss_step"]


def device_of(cfg: DictConfig) -> str:
    accelerator = cfg.trainer.get("accelerator", "cpu")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}) x{cfg.trainer.get('devices', 1)}"
    return f"cpu x{cfg.trainer.get('devices', 1)}"


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, validate and test one configuration; return its final metrics.

    With ``tracking.enabled`` the run is recorded in MLflow (params, tags, metrics, artifacts)
    and always ends FINISHED, FAILED or KILLED."""
    validate(cfg)
    tracking = cfg.tracking.get("enabled", True)
    ckpt, resumed_from = resolve_ckpt_path(cfg.get("ckpt_path"),
                                           cfg.tracking.get("tracking_uri") if tracking else None)
    job = prepare(cfg)
    hydra = HydraContext.current()
    out = hydra.output_dir or Path(tempfile.mkdtemp(prefix="initlab-"))
    if not tracking:  # no MLflow run: the metrics go to the output dir (tracking.loggers)
        with interrupts.handling():
            trainer = make_trainer(cfg, out, None)
            try:
                metrics = fit_and_test(trainer, job, ckpt)
            except SystemExit as exit_:  # Lightning turns a Ctrl-C into sys.exit(1)
                if interrupts.received() is None:
                    raise
                raise interrupts.exception_for(interrupts.received()) from exit_
        summarize(cfg, metrics, None, local_logs(trainer.loggers))
        return metrics
    with tracked_run(cfg, device_of(cfg)) as run:
        if ckpt:
            run.set_tag(TAG_RESUMED_FROM, resumed_from or ckpt)
        trainer = make_trainer(cfg, out, run.logger(), [run.recorder])
        if not ckpt:  # the weights as drawn: effective sigma_w2 / sigma_b2 per layer, step 0
            trainer.logger.log_metrics(init_metrics(job.module.model), step=0)
        metrics = fit_and_test(trainer, job, ckpt)
        record_job(run, cfg, job.module.model, out, checkpoint_files(trainer), job.datamodule)
        history = metric_history(run.client, run.run_id, CURVE_METRICS)
        if history:
            run.log_artifact(plot_curves(history, run_name(cfg), out / "curves.png",
                                         cfg.dataset.get("num_classes")))
    summarize(cfg, metrics, run, local_logs(trainer.loggers))
    return metrics


def summarize(cfg: DictConfig, metrics: dict[str, float], run: TrackedRun | None,
              files: list[str] = ()) -> None:
    """The job's final print: the test result, where the MLflow run is, and ``files``, the
    metric files written into the output dir (CSV, TensorBoard)."""
    acc, loss = metrics.get("test/acc", float("nan")), metrics.get("test/loss", float("nan"))
    lines = [f"{run_name(cfg)}: test accuracy {acc:.4f}, test loss {loss:.4f}"
             + ("  [DIVERGED]" if metrics.get("diverged") else "")]
    lines += [f"metrics: {place}" for place in files]
    if run is not None:
        lines += [
            f"MLflow run {run.run_id} in experiment '{run.experiment}' (id {run.experiment_id}), "
            f"store {mask(run.tracking_uri)}",
            open_hint(run.tracking_uri, run_url(run.tracking_uri, run.experiment_id, run.run_id)),
        ]
    text = "\n".join(lines)
    log.info(text)
    print(text, flush=True)
    if run is not None:  # the run page's description: the headline metrics, objective first
        try:
            describe(run.client, run.run_id, run_note(metrics, cfg.get("optimized_metric")))
        except Exception as err:  # noqa: BLE001 - the record is complete without it
            log.debug("no description for run %s: %s", run.run_id, err)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The one number a sweeper optimizes: ``cfg.optimized_metric`` of the finished run."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric {name!r} was never logged; logged: {sorted(metrics)}")
    return metrics[name]
