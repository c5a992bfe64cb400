"""What a run records besides metrics: its params (the resolved config, flattened), its name,
and the tags that say where it came from (git commit, package versions)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
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


# Not hyperparameters: where the run is recorded, the sweeper's handle on its trial (the run's
# ``optuna.*`` tags say which trial), and console settings.  Keys, or prefixes ending in a dot.
NOISE_PARAMS = ("tracking.", "logger.", "optuna.", "callbacks.optuna_pruning.trial.", "progress_refresh_rate",
                "trainer.enable_progress_bar", "trainer.enable_model_summary")


def is_noise(key: str) -> bool:
    return any(key.startswith(n) if n.endswith(".") else key == n for n in NOISE_PARAMS)


def run_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config, flattened, without Hydra's own node and the ``NOISE_PARAMS``."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return {k: mask(str(v))[:6000] for k, v in flatten(container).items() if not is_noise(k)}


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


def _number(text: str, digits: int | None) -> str:
    """A number as typed (``digits`` None), else to ``digits`` significant digits."""
    if digits is None:
        return text
    try:
        value = float(text)
    except ValueError:
        return text
    return f"{value:.{digits}g}" if not text.lstrip("+-").isdigit() else text


def _override_values(overrides: Sequence[str]) -> dict[str, str]:
    """``["init=he", "++optuna.trial=3"]`` -> ``{"init": "he", "optuna.trial": "3"}``."""
    values = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep:
            values[key.lstrip("+~")] = value
    return values


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """``optimizer.lr`` -> ``lr``, ``init.bias.sigma_b2`` -> ``bias.sigma_b2``; the full key
    where two short ones would read the same."""
    short = {k: k.split(".", 1)[1] if "." in k else k for k in keys}
    clash = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {k: k if s in clash else s for k, s in short.items()}


def swept_tokens(cfg: DictConfig, swept: Sequence[str], overrides: Sequence[str],
                 init_part: str, digits: int | None = None) -> list[str]:
    """``key=value`` for each swept key the rest of the name does not already say: the init
    family, its options and scale (``init_part``) and the seed; a swept model or data set is
    its option's name (``mlp_512x4``)."""
    values = _override_values(overrides)
    keys = []
    for key in swept:
        if key in ("seed", "init", "init.scale") or key.startswith(("hydra.", "optuna.")):
            continue
        if key.startswith("init.") and not key.startswith("init.bias.") \
                and f"{key[len('init.'):]}=" in init_part:
            continue
        keys.append(key)
    short = _short_keys(keys)
    tokens = []
    for key in keys:
        value = values.get(key)
        if value is None:
            value = str(OmegaConf.select(cfg, f"{key}.name" if key in _GROUPS else key,
                                         default=None))
        value = _number(value, digits).replace(" ", "")
        tokens.append(value if key in _GROUPS else f"{short[key]}={value}")
    return tokens


_GROUPS = ("model", "dataset")  # named by their option when swept (``mlp_512x4``), else at the end


def run_name(cfg: DictConfig, swept: Sequence[str] | None = None,
             overrides: Sequence[str] | None = None) -> str:
    """What sets the run apart, most telling first: the init family with the options that
    differ from its defaults (a fixed-std family's std always) and its scale when not 1, the
    seed, each other swept key (``swept``: a multirun's swept keys, read from the sweep folder
    when None), model and data set; a search's trial number last, which makes the names of a
    study unique (a grid multirun's already differ in a swept value).

    ``he-seed0-mlp-mnist5k``, ``he-x2-seed1-lr=0.01-mlp-digits`` (a multirun sweeping seed
    and optimizer.lr), ``normal(std=0.01)-x4.64-seed0-mlp-mnist5k-trial7`` (a search),
    ``xavier(distribution=normal,sigma_w2=0.5)-seed0-mlp_512x4-mnist5k`` (sweeping model).
    ``overrides``: the job's Hydra overrides (read from Hydra when None)."""
    from initlab.inits.labels import init_label

    if swept is None or overrides is None:
        from initlab.tracking.context import HydraContext

        hydra = HydraContext.current()
        overrides = hydra.overrides if overrides is None else overrides
        swept = read_swept_keys(hydra.sweep_dir) if swept is None else swept
    trial = OmegaConf.select(cfg, "optuna.trial", default=None)
    digits = 3 if trial is not None else None  # a sampler's floats: 0.193511408 -> 0.194
    init = OmegaConf.to_container(cfg.init, resolve=True)
    init_part = init_label(init, with_scale=False).replace(", ", ",")
    scale = init.get("scale", 1.0)
    if isinstance(scale, (int, float)) and scale != 1:
        init_part += f"-x{scale:.{digits}g}" if digits else f"-x{scale:g}"
    parts = [init_part, f"seed{cfg.seed}",
             *swept_tokens(cfg, swept, overrides, init_part, digits),
             *(str(cfg[group].name) for group in _GROUPS if group not in swept)]
    if trial is not None:
        parts.append(f"trial{trial}")
    return "-".join(parts)


SWEPT_KEYS_FILE = "swept_keys.json"  # written into the sweep dir by initlab.tracking.links


def read_swept_keys(sweep_dir: Path | None) -> list[str]:
    """The keys a multirun sweeps (``[]`` outside one, or when the file is missing)."""
    if sweep_dir is None:
        return []
    try:
        return list(json.loads((Path(sweep_dir) / SWEPT_KEYS_FILE).read_text()))
    except (OSError, ValueError):
        return []
