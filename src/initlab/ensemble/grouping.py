"""The grouping rule: jobs whose resolved configs are equal once the stackable keys are set
aside train together.  Stackable: ``seed`` (and the shuffle seed that follows it), the whole
``init`` node (family, scale, sigma_w2, bias), and the Optuna trial link of a search.  Anything
else that differs (learning rate, optimizer, net, data, trainer) makes another group: each
member must take exactly the steps its own job would, and one stacked optimizer has one lr."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

STACKABLE = ("seed", "init", "optuna", "dataset.shuffle_seed", "callbacks.optuna_pruning.trial")


def _drop(node: dict[str, Any], dotted: str) -> None:
    *path, last = dotted.split(".")
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(last, None)


def task_node(cfg: DictConfig) -> dict[str, Any]:
    """The job's config without the ``hydra`` node, resolved, as plain containers."""
    keys = [k for k in cfg.keys() if k != "hydra"]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)


def group_key(cfg: DictConfig) -> str:
    """The job's config, resolved, minus ``hydra`` and the stackable keys, as canonical JSON."""
    node = task_node(cfg)
    for key in STACKABLE:
        _drop(node, key)
    return json.dumps(node, sort_keys=True, default=str)


def group_jobs(cfgs: Sequence[DictConfig], max_members: int | None = None) -> list[list[int]]:
    """Indices of ``cfgs`` by group, in order of first appearance; a group longer than
    ``max_members`` is cut into chunks of at most that many."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(group_key(cfg), []).append(i)
    out: list[list[int]] = []
    for members in groups.values():
        size = max_members or len(members)
        out += [members[i:i + size] for i in range(0, len(members), size)]
    return out
