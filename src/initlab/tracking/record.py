"""What a run records besides metrics: its params (the resolved config, flattened), its name,
and the tags that say where it came from (git commit, package versions)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from omegaconf import DictConfig, OmegaConf

from initlab.tracking.secrets import mask

TAG_SWEEP_ID = "initlab.sweep_id"
TAG_DIVERGED = "initlab.diverged"
TAG_OVERRIDES = "initlab.overrides"
TAG_RESUMED_FROM = "initlab.resumed_from"
_PACKAGES = ("torch", "lightning", "mlflow", "hydra-core", "optuna", "initlab")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'init': {'name': 'he'}} -> {'init.name': 'he'}; private keys (``_target_``) dropped."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if str(key).startswith("_"):
                continue
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def run_params(cfg: DictConfig) -> dict[str, str]:
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return {k: mask(str(v))[:6000] for k, v in flatten(container).items()}


def git_commit(cwd: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    tags = {}
    for package in _PACKAGES:
        try:
            tags[f"versions.{package}"] = version(package)
        except PackageNotFoundError:
            pass
    return tags


def run_name(cfg: DictConfig) -> str:
    """e.g. ``he-mlp-mnist5k-seed0``; a sigma_w2 or a scale other than 1 is shown:
    ``he-sw2=4-mlp-…``, ``he-x2-mlp-…``."""
    init = cfg.init.name
    if cfg.init.get("sigma_w2") is not None:
        init = f"{init}-sw2={cfg.init.sigma_w2:g}"
    elif cfg.init.get("scale", 1.0) != 1:
        init = f"{init}-x{cfg.init.scale:g}"
    return f"{init}-{cfg.model.name}-{cfg.dataset.name}-seed{cfg.seed}"
