"""``train(cfg)``: one job, from a composed config to a tracked, tested model.

Everything that can be wrong with the config (values, model/data shapes, a data set that is not
available) is checked before the MLflow run is created, so bad input leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import inspect
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from initlab import inits
from initlab.curves import metric_history, plot_curves
from initlab.datamodule import TensorDataModule
from initlab.divergence import DivergenceGuard
from initlab.errors import ConfigError
from initlab.interrupts import InterruptCheck, handling
from initlab.models import check_fits_data
from initlab.module import ClassifierModule
from initlab.tracking import HydraContext, TrackedRun, run_name, tracked_run

log = logging.getLogger(__name__)
# Lightning's start-up banners (accelerator lines, tips) say nothing about the experiment.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch 2.14 vs Lightning 2.6 noise
# Lightning compares its log_every_n_steps with the training batches, here blocks of optimizer
# steps; the module logs the step loss every log_every_n_steps optimizer steps itself.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
# Keys of a config node that describe it but are not arguments of its ``_target_``.
_META_KEYS = ("name",)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, minus the descriptive keys (``name``) that the target does
    not take as arguments."""
    container = OmegaConf.to_container(node, resolve=True)
    accepted = inspect.signature(get_object(container["_target_"])).parameters
    for key in _META_KEYS:
        if key not in accepted:
            container.pop(key, None)
    return instantiate(container, **kwargs)


@dataclass
class Prepared:
    """A job ready to train: every check passed, nothing recorded yet."""

    datamodule: TensorDataModule
    module: ClassifierModule


def check_config(cfg: DictConfig) -> None:
    """Value checks that need no data."""
    inits.check_init_config(OmegaConf.to_container(cfg.init, resolve=True))
    lr = cfg.optimizer.get("lr")
    if lr is None or lr <= 0:
        raise ConfigError(f"optimizer.lr must be positive, got {lr}")
    metric = cfg.get("optimized_metric")
    if metric and cfg.get("task", "train") == "train" and metric not in ClassifierModule.METRICS:
        raise ConfigError(f"optimized_metric {metric!r} is never logged; "
                          f"choose one of {', '.join(sorted(ClassifierModule.METRICS))}")
    if cfg.trainer.get("max_epochs", 1) in (None, 0) and cfg.trainer.get("max_steps", -1) in (None, 0, -1):
        raise ConfigError("set trainer.max_epochs or trainer.max_steps to a positive number")


def prepare(cfg: DictConfig) -> Prepared:
    """Check the config, load the data, build and initialize the model: all before tracking."""
    check_config(cfg)
    skip_nvml_probe_without_driver()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.dataset)
    datamodule.setup()
    model = build(cfg.model)
    check_fits_data(model, datamodule.shape, datamodule.num_classes, cfg.dataset.name)
    probe_x, _ = datamodule.probe_batch()
    inits.initialize(model, OmegaConf.to_container(cfg.init, resolve=True), probe=probe_x)
    optimizer = build(cfg.optimizer)
    scheduler = build(cfg.scheduler) if cfg.get("scheduler") else None
    module = ClassifierModule(model, optimizer, scheduler,
                              log_every_n_steps=cfg.trainer.get("log_every_n_steps", 50))
    return Prepared(datamodule, module)


def skip_nvml_probe_without_driver() -> None:
    """Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that ``torch.cuda.is_available()``
    asks NVML instead of initialising CUDA.  Without an NVIDIA driver that check tries to dlopen
    the missing NVML on every call and then asks the CUDA runtime anyway; Adam calls it at every
    step.  About 35 us a call alone, it cost 0.3 ms a step inside a training loop (the benchmark's
    bare Fashion-MNIST epoch: 0.99 s with the flag, 0.79 s without, 2 threads).  Where NVML
    cannot be loaded, the flag only costs time: drop it."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def _device(cfg: DictConfig) -> str:
    accelerator = cfg.trainer.get("accelerator", "cpu")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}) x{cfg.trainer.get('devices', 1)}"
    return f"cpu x{cfg.trainer.get('devices', 1)}"


def _callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The divergence guard, the interrupt check and the progress bar, plus every
    ``callbacks.<name>`` node of the config (each a ``_target_``; null disables it), e.g.
    diagnostics or an Optuna pruning callback."""
    callbacks: list[L.Callback] = [DivergenceGuard(cfg.get("divergence_check_every", 1)),
                                   InterruptCheck()]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=cfg.get("progress_refresh_rate", 10)))
    for node in (cfg.get("callbacks") or {}).values():
        if node is not None and node.get("_target_"):
            callbacks.append(build(node))
    return callbacks


def _fit_and_test(cfg: DictConfig, job: Prepared, run: TrackedRun | None) -> dict[str, float]:
    callbacks = _callbacks(cfg)
    if run is not None:
        callbacks.append(run.recorder)
    trainer: L.Trainer = build(cfg.trainer, logger=run.logger() if run else False,
                               callbacks=callbacks, enable_checkpointing=False)
    trainer.fit(job.module, datamodule=job.datamodule)
    metrics = _final_metrics(trainer)
    if "val/acc" not in metrics and len(job.datamodule.splits["val"][0]):
        # max_steps ended training before any epoch's validation: validate the final model.
        trainer.validate(job.module, datamodule=job.datamodule, verbose=False)
        metrics.update(_final_metrics(trainer))
    trainer.test(job.module, datamodule=job.datamodule, verbose=False)
    metrics.update(_final_metrics(trainer))
    metrics.setdefault("diverged", 0.0)
    return metrics


def _final_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The trainer's latest metrics, less ``step`` (the x-axis the module gives its loggers)."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k != "step"}


def _record_artifacts(cfg: DictConfig, run: TrackedRun, job: Prepared, out: Path) -> None:
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    run.log_artifact(out / "config.yaml")
    run.log_text("\n".join(HydraContext.current().overrides) + "\n", "overrides.txt")
    torch.save({"state_dict": job.module.model.state_dict(),
                "config": OmegaConf.to_container(cfg, resolve=True)}, out / "final_weights.pt")
    run.log_artifact(out / "final_weights.pt", "model")
    history = metric_history(run.client, run.run_id,
                             ["train/loss", "val/loss", "train/acc", "val/acc", "train/loss_step"])
    if history:
        run.log_artifact(plot_curves(history, run_name(cfg), out / "curves.png"))


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, validate and test one configuration; return its final metrics.

    With ``tracking.enabled`` the run is recorded in MLflow (params, tags, metrics, artifacts)
    and always ends FINISHED, FAILED or KILLED."""
    job = prepare(cfg)
    hydra = HydraContext.current()
    out = hydra.output_dir or Path(tempfile.mkdtemp(prefix="initlab-"))
    if not cfg.tracking.get("enabled", True):
        with handling():
            metrics = _fit_and_test(cfg, job, None)
        _summarize(cfg, metrics, None)
        return metrics
    with tracked_run(cfg, _device(cfg)) as run:
        metrics = _fit_and_test(cfg, job, run)
        _record_artifacts(cfg, run, job, out)
        if hydra.output_dir is not None:  # Hydra's job log, <job name>.log
            for log_file in hydra.output_dir.glob("*.log"):
                run.log_artifact(log_file)
    _summarize(cfg, metrics, run)
    return metrics


def _summarize(cfg: DictConfig, metrics: dict[str, float], run: TrackedRun | None) -> None:
    acc, loss = metrics.get("test/acc", float("nan")), metrics.get("test/loss", float("nan"))
    lines = [f"{run_name(cfg)}: test accuracy {acc:.4f}, test loss {loss:.4f}"
             + ("  [DIVERGED]" if metrics.get("diverged") else "")]
    if run is not None:
        uri = run.tracking_uri
        lines += [
            f"MLflow run {run.run_id} in experiment '{run.experiment}' (id {run.experiment_id}), "
            f"store {uri}",
            f"Open it: mlflow ui --backend-store-uri {uri}  ->  "
            f"http://127.0.0.1:5000/#/experiments/{run.experiment_id}/runs/{run.run_id}",
        ]
    text = "\n".join(lines)
    log.info(text)
    print(text, flush=True)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The one number a sweeper optimizes: ``cfg.optimized_metric`` of the finished run."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric {name!r} was never logged; logged: {sorted(metrics)}")
    return metrics[name]
