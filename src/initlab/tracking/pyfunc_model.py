"""The code of a run's MLflow model ("model from code", copied into the logged model).

``mlflow.pyfunc.load_model("runs:/<run id>/model")`` runs this file: the net is rebuilt from the
project's registry (``initlab.nets.NETS``) with the plain arguments of the model's ``net.json``
and given the tensors of its ``weights.safetensors``.  Nothing is unpickled.  ``predict`` takes
float32 rows of the data set's feature shape (as the net saw them: after ``dataset.standardize``
when it was on) and returns the net's logits (one column per output; softmax, or a sigmoid for
one output, gives the probabilities).  Needs initlab installed where the model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel


def _rows(model_input):
    """float32 rows from an array, a one-entry dict (``{"inputs": rows}``) or a DataFrame."""
    import numpy as np

    if isinstance(model_input, dict) and len(model_input) == 1:
        model_input = next(iter(model_input.values()))
    if hasattr(model_input, "to_numpy"):
        model_input = model_input.to_numpy()
    return np.ascontiguousarray(model_input, dtype=np.float32)


class _Net:
    """The model's methods.  Kept out of the ``PythonModel`` subclass's own body, where MLflow
    would wrap ``predict`` for type-hint validation and, finding no hints, print its advice to
    add them on every load: the input is described by the logged signature instead."""

    def load_context(self, context) -> None:
        from initlab.tracking.artifacts import load_weights
        from initlab.tracking.models import build_net

        spec = json.loads(Path(context.artifacts["net"]).read_text())
        self.net = build_net(spec, load_weights(context.artifacts["weights"]))

    def predict(self, context, model_input, params=None):
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(_rows(model_input))).numpy()


class InitlabNet(_Net, PythonModel):
    """A net of initlab.nets, as an MLflow pyfunc model."""


mlflow.models.set_model(InitlabNet())
