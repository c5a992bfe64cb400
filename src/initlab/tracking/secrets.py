"""No secret written down: every URL the platform records, prints or saves has its password
replaced by ``***`` (``postgresql+psycopg2://user:***@host/db``).

Credentials can stay out of URLs altogether: MLflow reads ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` for a tracking server, and PostgreSQL's driver reads
``PGPASSWORD`` or ``~/.pgpass``.  Where a URL does carry one, it is masked in MLflow params and
tags, the files a run or sweep writes (Hydra's ``.hydra/*.yaml`` and ``multirun.yaml`` too, by
``MaskSecrets``), the logs (``MaskingFilter``) and the console.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

MASK = "***"
# MLflow prints "View run ... at: <tracking URI>/..." with the URI's userinfo when a run ends;
# initlab prints its own links, masked.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# scheme://user:password@  (the password: anything up to the last "@" before the host)
_URL_WITH_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*):(?P<password>[^\s'\"]+)@(?=[^@\s'\"]*(?:[/\s'\"?]|$))")
# Files a run or sweep writes that can hold a config or overrides.
_TEXT_SUFFIXES = (".yaml", ".yml", ".json", ".txt", ".csv", ".log")


def mask(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_WITH_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)


def mask_tree(node: Any) -> Any:
    """A plain container (dicts, lists, strings) with every string masked."""
    if isinstance(node, str):
        return mask(node)
    if isinstance(node, Mapping):
        return {k: mask_tree(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(mask_tree(v) for v in node)
    return node


def mask_file(path: Path) -> None:
    """Rewrite a text file in place with its passwords masked (no-op when there are none)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return
    masked = mask(text)
    if masked != text:
        path.write_text(masked)


def mask_folder(folder: Path, recursive: bool = False) -> None:
    if not folder.is_dir():
        return
    for path in (folder.rglob("*") if recursive else folder.iterdir()):
        if path.is_file() and path.suffix in _TEXT_SUFFIXES:
            mask_file(path)


class MaskingFilter(logging.Filter):
    """A logging filter that masks URL passwords in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


class MaskSecrets(Callback):
    """Hydra callback: mask the config files Hydra itself writes (``.hydra/config.yaml``,
    ``hydra.yaml``, ``overrides.yaml`` before each job runs; the sweep's ``multirun.yaml``)."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return
        hc = HydraConfig.get()
        if hc.output_subdir is not None:
            mask_folder(Path(hc.runtime.output_dir) / hc.output_subdir)
        if hc.mode is not None and hc.mode.name == "MULTIRUN":
            mask_folder(Path(hc.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        mask_folder(Path(config.hydra.sweep.dir))
