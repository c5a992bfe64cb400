"""Checkpoints: where ``ModelCheckpoint`` writes them, what a run resumes from, and loading
that never runs code (``weights_only=True``: tensors and plain containers only)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint

from initlab.errors import ConfigError

# An MLflow run id: 32 hex digits.
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
ARTIFACT_DIR = "checkpoints"  # where a run's checkpoints live among its MLflow artifacts
LAST = "last.ckpt"


def place_checkpoints(callbacks: list[L.Callback], out: Path) -> bool:
    """Give every ``ModelCheckpoint`` without a ``dirpath`` the job's ``<output>/checkpoints``;
    True if there is one (Lightning then keeps checkpointing on)."""
    found = False
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint):
            found = True
            if callback.dirpath is None:
                callback.dirpath = str(out / ARTIFACT_DIR)
    return found


def checkpoint_files(trainer: L.Trainer) -> list[Path]:
    """The best and last checkpoint files the trainer's ``ModelCheckpoint``s wrote."""
    files: list[Path] = []
    for callback in trainer.checkpoint_callbacks:
        for path in (callback.best_model_path, callback.last_model_path):
            if path and Path(path).is_file() and Path(path) not in files:
                files.append(Path(path))
    return files


def resolve_ckpt_path(ckpt_path: str | None, tracking_uri: str | None) -> tuple[str | None, str | None]:
    """``ckpt_path`` as a file to resume from, and the MLflow run it came from (if a run id).

    A run id means that run's ``checkpoints/last.ckpt``, downloaded from its artifacts."""
    if not ckpt_path:
        return None, None
    text = str(ckpt_path)
    if Path(text).is_file():
        return str(Path(text).resolve()), None
    if not _RUN_ID.match(text):
        raise ConfigError(f"ckpt_path = {text!r} is neither a checkpoint file nor an MLflow run "
                          f"id (32 hex digits)")
    if not tracking_uri:
        raise ConfigError(f"ckpt_path = {text!r} is an MLflow run id, but tracking is off")
    import mlflow.artifacts

    folder = tempfile.mkdtemp(prefix="initlab-resume-")
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=text, artifact_path=f"{ARTIFACT_DIR}/{LAST}", dst_path=folder,
            tracking_uri=tracking_uri)
    except Exception as err:  # the run or its checkpoint is not there
        raise ConfigError(f"ckpt_path = {text!r}: no {ARTIFACT_DIR}/{LAST} in that MLflow run "
                          f"({type(err).__name__}: {err})") from None
    return local, text
