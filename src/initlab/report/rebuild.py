"""A run's final model and its 2-D data, rebuilt from plain values in its record.

The class comes from the project's own registry (``initlab.nets.NETS``), chosen by the run's
``model.name`` (the names of ``conf/model/*.yaml``) or, for a model config of the user's own,
by which params it has; its arguments are the run's recorded ``model.*`` params parsed as
literals; its weights are tensors (safetensors).  Nothing stored in the run names code to
import or call: a ``_target_`` in the run's ``config.yaml`` is never read.  The data set is
rebuilt the same way, from ``initlab.data.loaders.LOADERS`` and numeric ``dataset.options.*``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from initlab.data import loaders
from initlab.nets import NETS
from initlab.report.query import params_under

# conf/model/*.yaml: `name` -> the registry class its `_target_` names.
MODEL_CLASSES = {"lenet": "LeNet", "mlp": "MLP", "logistic": "MLP", "mlp100x4": "MLP",
                 "mlp100x5": "MLP", "mlp512x4": "MLP", "mlp2-10-5-1": "MLP"}
# A model config not in the table: the registry class whose required arguments it records.
SIGNATURES = (("LeNet", {"in_channels", "image_size"}), ("MLP", {"in_features", "hidden"}))
MAX_OPTION = 1_000_000  # a larger count in a stored data-set option is not taken on trust
MAX_PARAMS = 50_000_000  # nor a model with more parameters than this


class Unusable(ValueError):
    """The run's record does not describe a model / data set this project can rebuild."""


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def model_class(params: Mapping[str, Any]) -> type:
    """The registry class for a run's ``model.*`` params."""
    name = str(params.get("name", ""))
    cls_name = MODEL_CLASSES.get(name)
    if cls_name is None:
        cls_name = next((c for c, keys in SIGNATURES if keys <= set(params)), None)
    if cls_name not in NETS:
        raise Unusable(f"model {name!r} is not one of the project's nets ({', '.join(NETS)})")
    return NETS[cls_name]


def model_kwargs(cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of ``cls`` that the params give, checked to be plain values
    (a string where the constructor wants a number is refused by the constructor itself)."""
    kwargs = {}
    for name, arg in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        if name in params:
            if not _is_plain(params[name]):
                raise Unusable(f"model.{name}={params[name]!r} is not a plain value")
            kwargs[name] = params[name]
        elif arg.default is inspect.Parameter.empty:
            raise Unusable(f"the run records no model.{name}")
    return kwargs


def build_model(run, weights: Mapping[str, Any]):
    """The run's network with its final ``weights`` (a state dict of tensors), in eval mode.

    Built on the meta device and given the loaded tensors (``assign=True``), so a record that
    asks for a huge net allocates nothing beyond the weights file; a state dict that does not
    fit the net raises ``Unusable``."""
    import torch

    params = params_under(run, "model")
    cls = model_class(params)
    kwargs = model_kwargs(cls, params)
    if sum(t.numel() for t in weights.values()) > MAX_PARAMS:
        raise Unusable(f"the weights hold more than {MAX_PARAMS:,} numbers")
    try:
        with torch.device("meta"):
            model = cls(**kwargs)
        model.load_state_dict(dict(weights), strict=True, assign=True)
    except Exception as exc:  # bad sizes (ConfigError), unknown activation, shape mismatch
        raise Unusable(f"{cls.__name__}({kwargs}) does not match the weights: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if any(t.is_meta for t in model.state_dict().values()):
        raise Unusable("the weights leave some of the net's tensors unset")
    return model.float().eval()


def load_points(run) -> tuple[Any, Any]:
    """The run's data set (its training points) as ``(x, y)``, from the project's loaders."""
    name = str(params_under(run, "dataset").get("name", ""))
    if name not in loaders.LOADERS:
        raise Unusable(f"data set {name!r} is not one of the project's loaders")
    options = params_under(run, "dataset.options")
    for key, value in options.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, (int, float)) for v in values):
            raise Unusable(f"dataset.options.{key}={value!r} is not numeric")
        if any(isinstance(v, (int, float)) and abs(v) > MAX_OPTION for v in values):
            raise Unusable(f"dataset.options.{key}={value!r} is larger than {MAX_OPTION:,}")
    try:
        raw = loaders.load(name, **options)
    except Exception as exc:  # options the loader does not take, data not on this machine
        raise Unusable(f"data set {name!r} could not be loaded: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if raw.x.ndim != 2 or raw.x.shape[1] != 2:
        raise Unusable(f"data set {name!r} is not 2-D (samples of shape {tuple(raw.x.shape[1:])})")
    return raw.x, raw.y
