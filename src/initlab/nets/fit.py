"""Whether a net fits a data set: its input shape and its number of outputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from initlab.errors import ConfigError

def check_fits_data(model: nn.Module, sample_shape: Sequence[int], num_classes: int,
                    dataset: str) -> None:
    """Fail before training when the model's input or output does not match the data set."""
    shape = tuple(int(s) for s in sample_shape)
    if hasattr(model, "accepts") and not model.accepts(shape):
        raise ConfigError(
            f"model/data mismatch: the model expects {model.expected_input()}, but data set "
            f"{dataset!r} gives samples of shape {shape} ({math.prod(shape)} features). "
            f"Leave model.in_features at its default (${{dataset.in_features}}) or pick a "
            f"data set of that shape."
        )
    wanted = 1 if num_classes == 2 else num_classes
    outputs = getattr(model, "num_outputs", wanted)
    if outputs != wanted and not (num_classes == 2 and outputs == 2):
        raise ConfigError(
            f"model/data mismatch: the model has {outputs} outputs, but data set {dataset!r} has "
            f"{num_classes} classes (use {wanted} output{'s' if wanted > 1 else ''})."
        )
