"""A job's config checked as a whole: every group against its schema (``schema``), then the
combinations that cannot work together: the net against the data's shape and classes, the
objective against what the run logs, a run with no end (or no steps), split sizes against the
data set, and a device that is not there."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from initlab.config import schema as S
from initlab.errors import ConfigError

# What each data set's loader gives: sample shape, classes, and the pool that val_size and
# test_size are cut from (None: the loader brings its own split).
IMAGE_SETS = {"mnist5k": ([1, 28, 28], 10, 5000, True), "digits": ([1, 8, 8], 10, 1797, True),
              "mnist": ([1, 28, 28], 10, 60000, False),
              "fashion_mnist": ([1, 28, 28], 10, 60000, False),
              "cifar10": ([3, 32, 32], 10, 50000, False)}  # name: shape, classes, pool, cuts test
IMAGE_SET_NAMES = ", ".join(IMAGE_SETS)


# ---- resolving -----------------------------------------------------------------------------
def _raw(cfg: DictConfig, full_key: str) -> Any:
    """The value as written (an interpolation stays ``${...}``)."""
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in re.findall(r"[^.\[\]]+", full_key or ""):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return None
    return node


def to_plain(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The job's config (``hydra`` left out) as plain values, every interpolation resolved.  A
    value that cannot be resolved is refused here, naming its key."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    out: dict[str, Any] = {}
    for key in cfg.keys():
        if key == "hydra":
            continue
        try:
            value = cfg[key]
            out[str(key)] = (OmegaConf.to_container(value, resolve=True)
                             if isinstance(value, (DictConfig, ListConfig)) else value)
        except OmegaConfBaseException as err:
            raise _unresolved(cfg, err, str(key)) from None
    return out


def _unresolved(cfg: DictConfig, err: OmegaConfBaseException, top: str) -> ConfigError:
    key = getattr(err, "full_key", None) or top
    raw = _raw(cfg, key)
    if isinstance(err, MissingMandatoryValue):
        return ConfigError(f"{key} = ??? is not set: a value is required.", key=key, value="???",
                           allowed="a value")
    if key.startswith("model.") and isinstance(raw, str) and "dataset.shape" in raw:
        shape = _raw(cfg, "dataset.shape")
        name, data = _raw(cfg, "model.name"), _raw(cfg, "dataset.name")
        allowed = f"an image data set (dataset={IMAGE_SET_NAMES}) or a fully connected model"
        return ConfigError(
            f"model/data mismatch: {key} = {raw} is not allowed: model {name!r} takes images "
            f"[channels, height, width], but data set {data!r} has samples of shape "
            f"{S.show(shape)}; {allowed} is expected.", key=key, value=raw, allowed=allowed)
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ConfigError(f"{key} = {S.show(raw)} cannot be resolved ({reason}): a value or an "
                       "interpolation of an existing key is expected.", key=key, value=raw,
                       allowed="an interpolation of an existing key")


# ---- the groups ----------------------------------------------------------------------------
def check_sections(job: dict[str, Any]) -> None:
    S.check(S.Job, job, "")
    init = job["init"]
    name = init.get("name")
    if name not in S.INIT_SCHEMAS:
        raise S.refusal("init.name", name, "one of " + ", ".join(map(repr, S.INIT_FAMILIES)))
    S.check(S.INIT_SCHEMAS[name], init, "init", label=f"init {name!r}")
    S.check(S.model_schema(job["model"]), job["model"], "model")
    S.check(S.Optimizer, job["optimizer"], "optimizer")
    dataset = S.check(S.Dataset, job["dataset"], "dataset")
    S.check(S.DATASET_OPTIONS[dataset.name], job["dataset"].get("options") or {},
            "dataset.options", label=f"dataset.options of {dataset.name!r}")
    S.check(S.Trainer, job["trainer"], "trainer")
    S.check(S.Tracking, job["tracking"], "tracking")
    if job.get("scheduler"):
        S.check(S.Scheduler, job["scheduler"], "scheduler")
    for cb_name, node in (job.get("callbacks") or {}).items():
        if node is None or node == {}:
            continue  # switched off
        if not isinstance(node, Mapping):
            raise S.refusal(f"callbacks.{cb_name}", node, "a callback node (_target_: ...) or null")
        schema = S.Diagnostics if cb_name == "diagnostics" else S.CallbackNode
        S.check(schema, node, f"callbacks.{cb_name}")
    if job.get("propagation") is not None:
        S.check(S.Propagation, job["propagation"], "propagation")


# ---- combinations --------------------------------------------------------------------------
def _sample_shape(dataset: Mapping[str, Any]) -> tuple[list[int], int, int | None, bool]:
    """(shape, classes, pool or None, whether test_size is cut from the pool) the loader gives."""
    name, options = dataset["name"], dataset.get("options") or {}
    if name in IMAGE_SETS:
        shape, classes, pool, cuts_test = IMAGE_SETS[name]
        return shape, classes, pool, cuts_test
    if name == "gaussian":
        return ([options.get("dim", 100)], options.get("num_classes", 10), options.get("n", 1000),
                True)
    return [2], 2, None, False  # circles, moons: their own val and test sets


def _wanted_outputs(classes: int) -> str:
    return "1 (one sigmoid output) or 2" if classes == 2 else str(classes)


def _fits_outputs(outputs: int, classes: int) -> bool:
    return outputs in (1, 2) if classes == 2 else outputs == classes


def check_data(job: dict[str, Any]) -> None:
    """The data set's config against what its loader gives, and its splits."""
    d = job["dataset"]
    name, shape = d["name"], list(d["shape"])
    given_shape, classes, pool, cuts_test = _sample_shape(d)
    if shape != list(given_shape):
        raise S.refusal("dataset.shape", shape,
                        f"{S.show(list(given_shape))} (the shape of data set {name!r})")
    features = math.prod(shape)
    if d.get("in_features") is not None and d["in_features"] != features:
        raise S.refusal("dataset.in_features", d["in_features"],
                        f"{features} (the product of dataset.shape = {S.show(shape)})")
    if d["num_classes"] != classes:
        raise S.refusal("dataset.num_classes", d["num_classes"],
                        f"{classes} (the classes of data set {name!r})")
    if d.get("num_outputs") is not None and not _fits_outputs(d["num_outputs"], classes):
        raise S.refusal("dataset.num_outputs", d["num_outputs"], _wanted_outputs(classes))
    if pool is None:
        return
    test = d.get("test_size", 0) if cuts_test else 0
    if cuts_test and not 1 <= test <= pool - 2:
        raise S.refusal("dataset.test_size", test,
                        f"an integer in [1, {pool - 2}] (data set {name!r} has {pool} samples)")
    val = d.get("val_size", 0)
    if not 0 <= val <= pool - test - 1:
        raise S.refusal("dataset.val_size", val,
                        f"an integer in [0, {pool - test - 1}] (data set {name!r} has {pool} "
                        f"samples, {test} for the test set)")
    train = pool - test - val
    batch = d.get("batch_size")
    if d.get("drop_last") and batch is not None and batch > train and not d.get("replacement"):
        raise S.refusal("dataset.batch_size", batch,
                        f"at most {train} (the training split) with dataset.drop_last = true, "
                        "or drop_last false")


def check_model_fits_data(job: dict[str, Any]) -> None:
    """The net's input and outputs against the data (``check_fits_data``'s rule)."""
    m, d = job["model"], job["dataset"]
    shape, classes, data = list(d["shape"]), d["num_classes"], d["name"]
    if S.model_schema(m) is S.ConvModel:
        side = m["image_size"]
        wanted = [m["in_channels"], side, side]
        if shape != wanted:
            key, value = (("model.in_channels", m["in_channels"]) if shape[1:] == [side, side]
                          else ("model.image_size", side))
            raise ConfigError(
                f"model/data mismatch: {key} = {S.show(value)} is not allowed: model "
                f"{m['name']!r} expects images of shape {S.show(wanted)}, but data set {data!r} "
                f"gives samples of shape {S.show(shape)}; in_channels and image_size from "
                f"dataset.shape (the defaults, ${{dataset.shape.0}} and ${{dataset.shape.1}}) "
                f"with square images are expected.", key=key, value=value,
                allowed=f"dataset.shape {S.show(wanted)}")
    else:
        features = math.prod(shape)
        if m["in_features"] != features:
            raise ConfigError(
                f"model/data mismatch: model.in_features = {m['in_features']} is not allowed: "
                f"data set {data!r} gives samples of shape {S.show(shape)} ({features} features); "
                f"{features} is expected (leave model.in_features at its default, "
                f"${{dataset.in_features}}).", key="model.in_features", value=m["in_features"],
                allowed=str(features))
    if not _fits_outputs(m["num_outputs"], classes):
        raise ConfigError(
            f"model/data mismatch: model.num_outputs = {m['num_outputs']} is not allowed: data "
            f"set {data!r} has {classes} classes; {_wanted_outputs(classes)} is expected.",
            key="model.num_outputs", value=m["num_outputs"], allowed=_wanted_outputs(classes))


def _val_split(d: Mapping[str, Any]) -> int:
    if d["name"] in ("circles", "moons"):
        return (d.get("options") or {}).get("n_val", 100)
    return d.get("val_size", 0)


def _check_metric(key: str, metric: Any, job: dict[str, Any]) -> None:
    if metric not in S.METRICS:
        allowed = "one of " + ", ".join(sorted(S.METRICS))
        raise ConfigError(f"{key} = {S.show(metric)} is not allowed: a training run never logged "
                          f"it; {allowed} is expected.", key=key, value=metric, allowed=allowed)
    if metric.startswith("val/") and _val_split(job["dataset"]) == 0:
        split_key = ("dataset.options.n_val" if job["dataset"]["name"] in ("circles", "moons")
                     else "dataset.val_size")
        allowed = f"a metric the run logs without a validation split (train/... or test/...), " \
                  f"or {split_key} > 0"
        raise ConfigError(f"{key} = {S.show(metric)} is not allowed with {split_key} = 0: the "
                          f"run has no validation split and never logs it; {allowed} is "
                          "expected.", key=key, value=metric, allowed=allowed)


def check_objective(job: dict[str, Any]) -> None:
    """``optimized_metric`` (and every callback's ``monitor``) names a number the run logs."""
    metric = job.get("optimized_metric")
    if job.get("task", "train") == "propagation":
        if metric is not None and not str(metric).startswith("diag/"):
            raise S.refusal("optimized_metric", metric,
                            "null or a diag/... metric (task=propagation does not train)")
        return
    if metric is not None:
        _check_metric("optimized_metric", metric, job)
    for cb_name, node in (job.get("callbacks") or {}).items():
        if isinstance(node, Mapping) and node.get("monitor") is not None:
            _check_metric(f"callbacks.{cb_name}.monitor", node["monitor"], job)


def check_run_length(job: dict[str, Any]) -> None:
    """The run ends, and trains at least one step."""
    if job.get("task", "train") != "train":
        return
    t = job["trainer"]
    epochs, steps = t.get("max_epochs"), t.get("max_steps", -1)
    if epochs == 0:
        raise S.refusal("trainer.max_epochs", 0, "an integer >= 1", why="0 epochs train nothing")
    if steps == 0:
        raise S.refusal("trainer.max_steps", 0, "an integer >= 1 or -1 (no limit)",
                        why="0 steps train nothing")
    if steps == -1 and epochs in (-1, None):
        allowed = "a positive trainer.max_epochs or trainer.max_steps (the run must end)"
        raise ConfigError(
            f"trainer.max_epochs = {S.show(epochs)} is not allowed with trainer.max_steps = -1: "
            f"the run would never end; {allowed} is expected.", key="trainer.max_epochs",
            value=epochs, allowed=allowed)


def check_optimizer(job: dict[str, Any]) -> None:
    o = job["optimizer"]
    taken = optimizer_keys(o.get("_target_"))
    for key, value in o.items():  # e.g. a preset's SGD momentum left under optimizer=adam
        if taken is not None and not key.startswith("_") and key != "name" and key not in taken:
            raise S.refusal(f"optimizer.{key}", value, f"one of the keys {o['_target_']} takes "
                            f"({', '.join(sorted(taken))})", why=f"{o['_target_']} has no {key}")
    if o.get("nesterov") and (o.get("momentum", 0) <= 0 or o.get("dampening", 0) != 0):
        raise S.refusal("optimizer.nesterov", True,
                        "false, or optimizer.momentum > 0 with optimizer.dampening = 0")


def optimizer_keys(target: Any) -> set[str] | None:
    """The keyword arguments a ``torch.optim`` optimizer takes (None for other targets)."""
    if not isinstance(target, str) or not target.startswith("torch.optim."):
        return None
    import inspect

    import torch.optim

    cls = getattr(torch.optim, target.rsplit(".", 1)[1], None)
    return None if cls is None else set(inspect.signature(cls).parameters) - {"params"}


def check_diagnostics(job: dict[str, Any]) -> None:
    for prefix, node in (("callbacks.diagnostics", (job.get("callbacks") or {}).get("diagnostics")),
                         ("propagation", job.get("propagation"))):
        if isinstance(node, Mapping) and node.get("vanishing_below") is not None \
                and node.get("exploding_above") is not None \
                and node["vanishing_below"] >= node["exploding_above"]:
            raise S.refusal(f"{prefix}.vanishing_below", node["vanishing_below"],
                            f"a number below {prefix}.exploding_above = "
                            f"{S.show(node['exploding_above'])}")


def check_device(job: dict[str, Any]) -> None:
    """The accelerator asked for is on this machine (imports torch only when one is asked)."""
    if job.get("task", "train") != "train":
        return
    t = job["trainer"]
    accelerator = t.get("accelerator", "auto")
    devices = t.get("devices", "auto")
    if accelerator in ("gpu", "cuda"):
        import torch

        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0:
            raise S.refusal("trainer.accelerator", accelerator, "'cpu' (trainer=cpu) or 'auto'",
                            why="this machine has no CUDA device")
        wanted = (len(devices) if isinstance(devices, list)
                  else devices if isinstance(devices, int) and devices > 0 else None)
        if isinstance(devices, list) and any(i >= available for i in devices):
            raise S.refusal("trainer.devices", devices, f"device indices below {available}",
                            why=f"this machine has {available} CUDA device(s)")
        if wanted is not None and wanted > available:
            raise S.refusal("trainer.devices", devices, f"at most {available}, or -1 (all)",
                            why=f"this machine has {available} CUDA device(s)")
    elif accelerator == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise S.refusal("trainer.accelerator", accelerator, "'cpu' or 'auto'",
                            why="this machine has no MPS device")
    elif accelerator == "tpu":
        import importlib.util

        if importlib.util.find_spec("torch_xla") is None:
            raise S.refusal("trainer.accelerator", accelerator, "'cpu' or 'auto'",
                            why="torch_xla (TPU support) is not installed")
    if accelerator == "cpu" and str(t.get("precision")) in ("16-mixed", "16"):
        raise S.refusal("trainer.precision", t["precision"], "'32-true', '64-true' or 'bf16-mixed'",
                        why="fp16 mixed precision does not run on a CPU")


def check_combinations(job: dict[str, Any], *, devices: bool = True) -> None:
    check_data(job)
    check_model_fits_data(job)
    check_objective(job)
    check_run_length(job)
    check_optimizer(job)
    check_diagnostics(job)
    if devices:
        check_device(job)


def check_job(cfg: DictConfig | Mapping[str, Any], *, sweep: bool = False,
              devices: bool = True) -> dict[str, Any]:
    """Everything about one job's config; returns it as plain values.  ``sweep``: the job is a
    trial of a search, which needs an objective; ``devices``: check the accelerator is here."""
    job = to_plain(cfg)
    check_sections(job)
    if sweep and not job.get("optimized_metric"):
        raise S.refusal("optimized_metric", job.get("optimized_metric"),
                        "a metric name (the number the search optimizes), e.g. 'val/acc'")
    check_combinations(job, devices=devices)
    return job
