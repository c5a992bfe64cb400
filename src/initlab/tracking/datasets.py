"""A run's data set as MLflow dataset inputs: one per split (contexts train / val / test), so
the UI's Dataset column names it.

Each input is the data set config's name, a digest of the split's tensors as the job holds
them (BLAKE2 over the raw bytes, no copy and no second load), a schema (features and targets as
tensor specs) and a profile with the split's rows and every split's size; its source is what
rebuilds it: the loader's name and options, the split seed and sizes, standardisation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

CONTEXTS = ("train", "val", "test")
SOURCE_TYPE = "initlab"


def digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """8 hex digits (MLflow's digest length) over the shapes, dtypes and bytes of x and y."""
    h = hashlib.blake2b(digest_size=4)
    for t in (x, y):
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{a.dtype}{a.shape}".encode())
        if a.size:  # an empty split (val_fraction 0) has no bytes: memoryview refuses it
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _schema(x: torch.Tensor, y: torch.Tensor) -> str:
    """Features and targets as MLflow tensor specs (any number of rows)."""
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import Schema, TensorSpec

    def spec(t: torch.Tensor, name: str) -> Schema:
        dtype = np.dtype(str(t.dtype).removeprefix("torch."))
        return Schema([TensorSpec(dtype, (-1, *t.shape[1:]), name)])

    return json.dumps(TensorDatasetSchema(spec(x, "features"), spec(y, "targets")).to_dict())


def dataset_inputs(name: str, splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   source: Mapping[str, Any], contexts=CONTEXTS) -> list:
    """The ``DatasetInput``s of ``splits`` (those in ``contexts``)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    sizes = {split: len(xy[0]) for split, xy in splits.items()}
    source_json = json.dumps({**source, "split_sizes": sizes}, default=str)
    inputs = []
    for split in contexts:
        x, y = splits[split]
        profile = {"split": split, "num_rows": len(x), "split_sizes": sizes,
                   "features_shape": [len(x), *x.shape[1:]]}
        dataset = Dataset(name=name, digest=digest(x, y), source_type=SOURCE_TYPE,
                          source=source_json, schema=_schema(x, y), profile=json.dumps(profile))
        inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)]))
    return inputs


def source_of(datamodule) -> dict[str, Any]:
    return {"loader": datamodule.name, "options": dict(datamodule.options),
            "split_seed": datamodule.split_seed, "standardize": datamodule.standardize}


def log_datasets(run, name: str, datamodule, contexts=CONTEXTS) -> None:
    """Log the datamodule's splits as the run's dataset inputs."""
    run.client.log_inputs(run.run_id, datasets=dataset_inputs(
        name, datamodule.splits, source_of(datamodule), contexts))
