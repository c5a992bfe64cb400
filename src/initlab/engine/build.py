"""From a composed config to the objects a job trains: data, network (initialised), optimizer,
scheduler, and the Lightning callbacks of the ``callbacks`` group."""

from __future__ import annotations

import ctypes
import inspect
import os
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as L
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from initlab import inits
from initlab.engine.datamodule import TensorDataModule
from initlab.engine.module import ClassifierModule
from initlab.nets import check_fits_data

# Keys of a config node that describe it but are not arguments of its ``_target_``.
_META_KEYS = ("name",)
# A scheduler node's keys for Lightning's lr_scheduler config, not for the scheduler itself.
SCHEDULER_KEYS = ("interval", "frequency", "monitor")


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, minus the descriptive keys (``name``) that the target does
    not take as arguments."""
    container = OmegaConf.to_container(node, resolve=True)
    accepted = inspect.signature(get_object(container["_target_"])).parameters
    for key in _META_KEYS:
        if key not in accepted:
            container.pop(key, None)
    return instantiate(container, **kwargs)

FLOAT64_PRECISIONS = {"64", "64-true", "double"}  # Lightning's names for float64 training


@dataclass
class Job:
    """A job ready to train: data loaded, network built and initialised, nothing recorded."""

    datamodule: TensorDataModule
    module: ClassifierModule


def prepare(cfg: DictConfig) -> Job:
    """Load the data, build and initialise the network, wrap it in the LightningModule."""
    skip_nvml_probe_without_driver()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.dataset)
    datamodule.setup()
    model = build(cfg.model)
    if str(cfg.trainer.get("precision")) in FLOAT64_PRECISIONS:
        # Draw the init in float64: a float32 draw that Lightning casts up later is only
        # float32-accurate (an orthogonal matrix to ~3e-6 instead of 1e-15).
        model = model.double()
    check_fits_data(model, datamodule.shape, datamodule.num_classes, cfg.dataset.name)
    probe_x, _ = datamodule.probe_batch()
    probe_x = probe_x.to(next(model.parameters(), probe_x).dtype)  # LSUV's probe, as the net
    inits.initialize(model, OmegaConf.to_container(cfg.init, resolve=True), probe=probe_x)
    optimizer = build(cfg.optimizer)
    scheduler, scheduler_config = None, {}
    if cfg.get("scheduler"):
        node = OmegaConf.to_container(cfg.scheduler, resolve=True)
        scheduler_config = {k: node.pop(k) for k in SCHEDULER_KEYS if k in node}
        scheduler = build(OmegaConf.create(node))
    return Job(datamodule, ClassifierModule(model, optimizer, scheduler, scheduler_config))


def configured_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Every ``callbacks.<name>`` node of the config (each a ``_target_``; null disables it):
    the ``callbacks`` group's Lightning callbacks, diagnostics, Optuna pruning."""
    return [build(node) for node in (cfg.get("callbacks") or {}).values()
            if node is not None and node.get("_target_")]


def skip_nvml_probe_without_driver() -> None:
    """Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that ``torch.cuda.is_available()``
    asks NVML instead of initialising CUDA.  Without an NVIDIA driver that check tries to dlopen
    the missing NVML on every call and then asks the CUDA runtime anyway; Adam calls it at every
    step (0.3 ms a step in the benchmark's bare Fashion-MNIST loop).  Where NVML cannot be
    loaded, the flag only costs time: drop it."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
