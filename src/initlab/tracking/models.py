"""A run's nets as MLflow logged models: the final model (``model``) and, when the run has a
best checkpoint, its weights (``best_model``).

Each is a pyfunc "model from code" (``pyfunc_model.py``) with two artifacts: the weights as
safetensors and ``net.json``, the net's registry class and plain constructor arguments.  No
pickle: loading rebuilds the net from ``initlab.nets.NETS``.  The model carries a signature
(float32 input of the data set's feature shape -> float32 logits) and a few real input rows.
Logged with the client's public LoggedModel calls (create, upload, link to the run, finalize),
so the run's own client and store are used, not the fluent API's global state.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from initlab.nets import NETS

log = logging.getLogger(__name__)
FINAL_MODEL = "model"       # runs:/<run id>/model, MLflow's usual name
BEST_MODEL = "best_model"   # runs:/<run id>/best_model: the best checkpoint's weights
CODE = Path(__file__).with_name("pyfunc_model.py")
EXAMPLE_ROWS = 5
TAG_WEIGHTS = "initlab.weights"  # final | best (<checkpoint file name>)


def net_spec(model: torch.nn.Module, model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The net's registry class and the constructor arguments its config gives (plain values)."""
    name = type(model).__name__
    if NETS.get(name) is not type(model):
        raise ValueError(f"{name} is not one of the project's nets ({', '.join(NETS)})")
    accepted = inspect.signature(type(model).__init__).parameters
    kwargs = {k: v for k, v in model_cfg.items() if k in accepted and k != "self"}
    return {"class": name, "kwargs": kwargs}


def build_net(spec: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The net a spec names, from the registry only, with ``weights`` (strict), in eval mode."""
    cls = NETS.get(str(spec.get("class")))
    if cls is None:
        raise ValueError(f"net {spec.get('class')!r} is not one of the project's nets "
                         f"({', '.join(NETS)})")
    with torch.device("meta"):
        net = cls(**dict(spec.get("kwargs") or {}))
    net.load_state_dict(dict(weights), strict=True, assign=True)
    return net.float().eval()


def checkpoint_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """The net's tensors in a Lightning checkpoint of ``ClassifierModule`` (its ``model.``
    entries), loaded with ``weights_only=True``: tensors and plain containers only."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise ValueError(f"{path} holds no Lightning state_dict")
    return {k[len("model."):]: v for k, v in state["state_dict"].items()
            if k.startswith("model.") and isinstance(v, torch.Tensor)}


def signature(shape: Sequence[int], num_outputs: int):
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_outputs))]))


def requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "torch", "safetensors", "numpy", "initlab")]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Without the console noise of saving or reading a model: the progress bars of copying
    artifacts and MLflow's info lines."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    before = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    pyfunc_log = logging.getLogger("mlflow.pyfunc")  # "Validating input example against ..."
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pyfunc_log.setLevel(level)
        if before is None:
            os.environ.pop(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, None)
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = before


def log_model(run, name: str, spec: Mapping[str, Any], weights: Mapping[str, torch.Tensor],
              example, num_outputs: int, tags: Mapping[str, str] | None = None) -> str:
    """Log one net as a LoggedModel linked to ``run`` (its output); its model id."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model
    from safetensors.torch import save_file

    client = run.client
    logged = client.create_logged_model(
        run.experiment_id, name=name, source_run_id=run.run_id, model_type="initlab-classifier",
        params={"net.class": spec["class"],
                **{f"net.{k}": str(v) for k, v in spec["kwargs"].items()}},
        tags={**(tags or {}), "initlab.outputs": "logits"})
    try:
        with tempfile.TemporaryDirectory(prefix="initlab-model-") as tmp:
            weights_file, net_file = Path(tmp, "weights.safetensors"), Path(tmp, "net.json")
            save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()},
                      str(weights_file))
            net_file.write_text(json.dumps(spec, indent=1))
            with quiet():
                mlflow.pyfunc.save_model(
                    path=str(Path(tmp, "model")), python_model=str(CODE),
                    artifacts={"weights": str(weights_file), "net": str(net_file)},
                    signature=signature(example.shape[1:], num_outputs), input_example=example,
                    pip_requirements=requirements(),
                    mlflow_model=Model(artifact_path=logged.artifact_location,
                                       run_id=run.run_id, model_uuid=logged.model_id,
                                       model_id=logged.model_id))
            client.log_model_artifacts(logged.model_id, str(Path(tmp, "model")))
        client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=0)])
        client.finalize_logged_model(logged.model_id, "READY")
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    return logged.model_id


def log_models(run, model: torch.nn.Module, model_cfg: Mapping[str, Any], datamodule,
               checkpoints: Sequence[Path] = ()) -> dict[str, str]:
    """The final model and the best checkpoint's (a file other than ``last.ckpt``) as logged
    models of ``run``; name -> model id.  A net outside the project's registry (a model config
    of the user's own) cannot be rebuilt without running its code: it is left out, with a
    warning, and the run keeps its weights file."""
    try:
        spec = net_spec(model, model_cfg)
    except ValueError as err:
        log.warning("no MLflow logged model for run %s: %s", run.run_id, err)
        return {}
    example = datamodule.splits["train"][0][:EXAMPLE_ROWS].detach().cpu().float().numpy()
    outputs = int(datamodule.num_outputs)
    ids = {FINAL_MODEL: log_model(run, FINAL_MODEL, spec, model.state_dict(), example, outputs,
                                  {TAG_WEIGHTS: "final"})}
    best = [Path(p) for p in checkpoints if Path(p).name != "last.ckpt"]
    if best:
        ids[BEST_MODEL] = log_model(run, BEST_MODEL, spec, checkpoint_weights(best[0]), example,
                                    outputs, {TAG_WEIGHTS: f"best ({best[0].name})"})
    return ids
