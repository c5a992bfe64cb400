"""What a finished job leaves in its run besides metrics: the resolved config, the overrides,
the final weights (safetensors: tensors only, nothing a reader could execute), the checkpoints,
Hydra's job log, the data set (dataset inputs) and the nets as MLflow logged models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from initlab.tracking.context import HydraContext
from initlab.tracking.run import TrackedRun
from initlab.tracking.secrets import mask

WEIGHTS_FILE = "final_weights.safetensors"
WEIGHTS_DIR = "weights"   # not "model": that name is the run's logged MLflow model (tracking.models)
WEIGHTS_ARTIFACT = f"{WEIGHTS_DIR}/{WEIGHTS_FILE}"
CHECKPOINT_DIR = "checkpoints"


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    """The model's state dict as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(path))
    return path


def load_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """Tensors only: a safetensors file cannot carry code."""
    from safetensors.torch import load_file

    return load_file(str(path))


def record_job(run: TrackedRun, cfg: DictConfig, model: torch.nn.Module, out: Path,
               checkpoints: Sequence[Path] = (), datamodule=None) -> dict[str, str]:
    """Log the job's files; with its ``datamodule``, also its data set (dataset inputs) and
    its nets as MLflow logged models (``tracking.models``).  Returns model name -> model id."""
    hydra = HydraContext.current()
    (out / "config.yaml").write_text(mask(OmegaConf.to_yaml(cfg, resolve=True)))
    run.log_artifact(out / "config.yaml")
    run.log_text(mask("\n".join(hydra.overrides)) + "\n", "overrides.txt")
    run.log_artifact(save_weights(model, out / WEIGHTS_FILE), WEIGHTS_DIR)
    for path in checkpoints:
        run.log_artifact(path, CHECKPOINT_DIR)
    if hydra.output_dir is not None:  # Hydra's job log, <job name>.log
        for log_file in hydra.output_dir.glob("*.log"):
            run.log_artifact(log_file)
    if datamodule is None:
        return {}
    from initlab.tracking.datasets import log_datasets
    from initlab.tracking.models import log_models

    log_datasets(run, str(cfg.dataset.name), datamodule)
    return log_models(run, model, OmegaConf.to_container(cfg.model, resolve=True), datamodule,
                      checkpoints)
