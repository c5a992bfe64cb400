"""Where the study lives: ``hydra.sweeper.storage`` resolved to the storage object the sweeper
holds (and writes its bookkeeping through), what each job needs to open the same storage, and
the file lock beside a local storage that serialises claiming trials.

``auto`` is SQLite beside the MLflow store; a string is an SQLAlchemy URL; a ``_target_`` node
is instantiated (e.g. ``optuna.storages.JournalStorage`` over a ``JournalFileBackend``); null is
a throw-away in-memory study.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from initlab.tracking.secrets import mask
from initlab.search.trial import rdb_storage
from initlab.tracking.store import sqlite_path


@dataclass
class StorageSpec:
    storage: optuna.storages.BaseStorage  # passed to optuna.create_study, and written through
    for_jobs: Any                # what a job needs to open it (URL or a _target_ dict), or None
    lock_file: Path | None       # a file beside a local storage, for claiming trials
    text: str                    # for logs and the results file


def default_storage_url(config: DictConfig) -> str:
    """SQLite beside the MLflow store: ``<dir of mlflow.db>/optuna.db``."""
    uri = OmegaConf.select(config, "tracking.tracking_uri", default=None)
    db = sqlite_path(uri) if isinstance(uri, str) else None
    folder = db.parent if db is not None else Path("mlruns")
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def node_file_path(node: Any) -> str | None:
    """The ``file_path`` argument anywhere in a ``_target_`` node (a journal file backend's),
    read from the node itself rather than from the storage object it builds."""
    if isinstance(node, Mapping):
        if isinstance(node.get("file_path"), str):
            return node["file_path"]
        found = (node_file_path(v) for v in node.values())
    elif isinstance(node, (list, tuple)):
        found = (node_file_path(v) for v in node)
    else:
        return None
    return next((f for f in found if f), None)


def resolve_storage(spec: Any, config: DictConfig) -> StorageSpec:
    if spec is None or spec in ("memory", "inmemory"):
        return StorageSpec(optuna.storages.InMemoryStorage(), None, None,
                           "in-memory (lost when the sweep ends)")
    if isinstance(spec, str):
        url = default_storage_url(config) if spec == "auto" else spec
        db = sqlite_path(url)
        if db is not None:  # absolute, so every job and worker opens the same file
            db = db.resolve()
            url = f"sqlite:///{db}"
        return StorageSpec(rdb_storage(url), url, Path(f"{db}.claim.lock") if db else None,
                           mask(url))
    if isinstance(spec, (Mapping, DictConfig)) and "_target_" in spec:
        node = OmegaConf.to_container(spec if isinstance(spec, DictConfig)
                                      else OmegaConf.create(dict(spec)), resolve=True)
        path = node_file_path(node)
        if path:  # every job and worker opens the same file, wherever it runs from
            absolute = str(Path(path).resolve())
            node, path = _with_file_path(node, path, absolute), absolute
        storage = instantiate(node)
        lock = Path(f"{path}.claim.lock") if path else None
        where = path or next((v for k, v in node.items() if isinstance(v, str)
                              and k != "_target_"), "")
        kind = node["_target_"].rsplit(".", 1)[-1]
        return StorageSpec(storage, node, lock, mask(f"{kind} {where}".strip()))
    raise ValueError(f"hydra.sweeper.storage must be a URL, a _target_ node or null, not {spec!r}")


def _with_file_path(node: Any, old: str, new: str) -> Any:
    if isinstance(node, Mapping):
        return {k: new if k == "file_path" and v == old else _with_file_path(v, old, new)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_with_file_path(v, old, new) for v in node]
    return node


@contextlib.contextmanager
def claim_lock(lock_file: Path | None) -> Iterator[None]:
    """Serialise claiming trials among the sweepers on this machine (local storages only)."""
    if lock_file is None:
        yield
        return
    from filelock import FileLock

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_file), timeout=600):
        yield
