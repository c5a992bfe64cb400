"""The schema of a job's config, one pydantic model per config group.

Every value is checked for its type, its range and finiteness; keys a group does not have are
refused (except in ``trainer``, ``tracking``, ``scheduler``, the ``callbacks`` nodes and at the
top level, which take keys this schema does not know).  ``_target_``-style keys are never
looked at: they say where the code lives, not what the config means.

The first problem found becomes a ``ConfigError`` whose message names the key, the value given
and what is allowed, e.g. ``optimizer.lr = nan is not allowed: a finite number > 0 is
expected.``  Imports nothing heavy (no torch): the sweep check runs in Hydra's main process.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from initlab.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range

# ---- what the code offers (kept in step with the registries by tests/config) ----------------
INIT_FAMILIES = ("zeros", "constant", "normal", "truncated_normal", "uniform", "xavier", "he",
                 "lecun", "orthogonal", "default", "random", "lsuv")
BIAS_KINDS = ("default", "zeros", "constant", "normal")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "leaky_relu", "elu", "selu", "gelu")
GAIN_NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                       "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu",
                       "leaky_relu", "selu")
DATASETS = ("mnist5k", "digits", "circles", "moons", "gaussian", "mnist", "fashion_mnist",
            "cifar10")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed",
              "bf16-true", "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16", 64, 32, 16)
# Every metric a training run ends with (what ``optimized_metric`` or a callback's ``monitor``
# may name): ``ClassifierModule.METRICS``.
METRICS = frozenset({f"{split}/{stat}" for split in ("train", "val", "test")
                     for stat in ("loss", "acc")} | {"train/loss_step", "lr", "diverged"})


# ---- showing a value -----------------------------------------------------------------------
_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")


def mask(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***", text)


def show(value: Any) -> str:
    """A value as the user wrote it (Hydra's spelling): ``nan``, ``null``, ``true``, ``'abc'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(mask(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


# ---- value types: each refuses with the phrase of what it expects ----------------------------
def _refuse(expected: str) -> PydanticCustomError:
    return PydanticCustomError("initlab", "{expected}", {"expected": expected})


def _checked(expected: str, ok: Callable[[Any], bool], nullable: bool, note: str = "") -> Any:
    phrase = (f"{expected} or null" if nullable else expected) + note

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not ok(value):
            raise _refuse(phrase)
        return value

    return Annotated[Any, PlainValidator(check)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{fmt(lo)}, {fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {fmt(lo)}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {fmt(hi)}"
    return ""


def _in_range(v: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return not (hi is not None and (v >= hi if hi_open else v > hi))


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, nullable: bool = False) -> Any:
    """A finite int or float (not a bool, not a string) within the bounds."""
    text = "a finite number" + _range_text(lo, hi, lo_open, hi_open)
    return _checked(text, lambda v: _is_number(v) and math.isfinite(v)
                    and _in_range(v, lo, hi, lo_open, hi_open), nullable)


def positive(nullable: bool = False) -> Any:
    return number(0, lo_open=True, nullable=nullable)


def non_negative(nullable: bool = False) -> Any:
    return number(0, nullable=nullable)


def integer(lo: int | None = None, hi: int | None = None, *, nullable: bool = False,
            note: str = "") -> Any:
    """An int (not a bool, not 2.5, not '3') within the bounds."""
    text = "an integer" + _range_text(lo, hi, False, False)
    return _checked(text, lambda v: isinstance(v, int) and not isinstance(v, bool)
                    and _in_range(v, lo, hi, False, False), nullable, note)


def boolean(nullable: bool = False) -> Any:
    return _checked("true or false", lambda v: isinstance(v, bool), nullable)


def one_of(*choices: Any, nullable: bool = False) -> Any:
    text = "one of " + ", ".join(show(c) for c in choices)
    return _checked(text, lambda v: not isinstance(v, bool) and v in choices
                    and type(v) in {type(c) for c in choices if c == v}, nullable)


def text(nullable: bool = False) -> Any:
    return _checked("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "",
                    nullable)


def int_list(lo: int = 1, *, length: int | None = None, nullable: bool = False) -> Any:
    what = f"a list of {length} integers" if length else "a list of integers"
    return _checked(f"{what} >= {lo}",
                    lambda v: isinstance(v, (list, tuple))
                    and (length is None or len(v) == length)
                    and all(isinstance(x, int) and not isinstance(x, bool) and x >= lo for x in v),
                    nullable)


def number_list(lo: float, hi: float, *, length: int, hi_open: bool = False) -> Any:
    return _checked(f"a list of {length} finite numbers{_range_text(lo, hi, False, hi_open)}",
                    lambda v: isinstance(v, (list, tuple)) and len(v) == length
                    and all(_is_number(x) and math.isfinite(x)
                            and _in_range(x, lo, hi, False, hi_open) for x in v), False)


def mapping(nullable: bool = False) -> Any:
    return _checked("a mapping of keys to values", lambda v: isinstance(v, Mapping), nullable)


def anything() -> Any:
    return Annotated[Any, PlainValidator(lambda v: v)]


_DEVICE_LIST = re.compile(r"-1|\d+|(\d+\s*,\s*)*\d+\s*,?")


def devices_value(value: Any) -> Any:
    ok = (isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)) \
        or value == "auto" \
        or (isinstance(value, str) and _DEVICE_LIST.fullmatch(value.strip())) \
        or (isinstance(value, (list, tuple)) and value
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value))
    if not ok:
        raise _refuse("an integer >= 1, -1 (all), 'auto', or a list of device indices")
    return value


# ---- sections ------------------------------------------------------------------------------
class Section(BaseModel):
    """A config group: its keys are known, others are refused (``_open`` sections take more)."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)
    open_keys: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise _refuse("a mapping of keys to values")
        data = {k: v for k, v in data.items() if not str(k).startswith("_")}  # _target_ & co.
        if not cls.open_keys:
            known = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    raise PydanticCustomError(
                        "initlab_unknown_key", "{key} is not a key of this group",
                        {"key": str(key), "known": ", ".join(known)})
        return data


class OpenSection(Section):
    open_keys: ClassVar[bool] = True


# init: one model per family ------------------------------------------------------------------
class Bias(Section):
    name: one_of(*BIAS_KINDS) = "default"
    value: number() = 0.0
    std: non_negative() = 1.0


class InitBase(Section):
    name: one_of(*INIT_FAMILIES)
    scale: non_negative() = 1.0
    bias: Bias | None = None


DISTRIBUTION = one_of("normal", "uniform")


class ConstantInit(InitBase):
    value: number() = 0.1


class NormalInit(InitBase):
    std: non_negative() = 0.01


class TruncatedNormalInit(InitBase):
    std: non_negative() = 0.1
    cutoff: positive() = 2.0


class UniformInit(InitBase):
    bound: non_negative() = 0.05


class XavierInit(InitBase):
    distribution: DISTRIBUTION = "uniform"
    gain: non_negative() = 1.0


class HeInit(InitBase):
    distribution: DISTRIBUTION = "normal"
    mode: one_of("fan_in", "fan_out") = "fan_in"
    nonlinearity: one_of(*GAIN_NONLINEARITIES) = "relu"
    negative_slope: number() = 0.0


class LecunInit(InitBase):
    distribution: DISTRIBUTION = "normal"


class OrthogonalInit(InitBase):
    gain: non_negative() = 1.0


class RandomInit(InitBase):
    factor: non_negative() = 10.0


class LsuvInit(InitBase):
    scale: positive() = 1.0  # the target std of every layer's output


INIT_SCHEMAS: dict[str, type[InitBase]] = {
    "zeros": InitBase, "constant": ConstantInit, "normal": NormalInit,
    "truncated_normal": TruncatedNormalInit, "uniform": UniformInit, "xavier": XavierInit,
    "he": HeInit, "lecun": LecunInit, "orthogonal": OrthogonalInit, "default": InitBase,
    "random": RandomInit, "lsuv": LsuvInit,
}


# model ---------------------------------------------------------------------------------------
class MLPModel(Section):
    name: text()
    in_features: integer(1)
    num_outputs: integer(1)
    hidden: int_list(1) = [256, 256]
    activation: one_of(*ACTIVATIONS) = "relu"
    bias: boolean() = True


class ConvModel(Section):  # LeNet: conv5-pool-conv5-pool needs at least 12x12 pixels
    name: text()
    in_channels: integer(1)
    image_size: integer(12, note=" (pixels: LeNet's two conv-pool blocks need 12)")
    num_outputs: integer(1)
    activation: one_of(*ACTIVATIONS) = "relu"
    channels: int_list(1, length=2) = [6, 16]


def model_schema(node: Mapping[str, Any]) -> type[Section]:
    """Which kind of net a model node describes, by its keys (not its ``_target_``)."""
    return ConvModel if ("image_size" in node or "in_channels" in node) else MLPModel


# optimizer -----------------------------------------------------------------------------------
class Optimizer(Section):
    name: text()
    lr: positive()
    momentum: number(0, 1, hi_open=True) = 0.0
    dampening: number(0, 1) = 0.0
    nesterov: boolean() = False
    weight_decay: non_negative() = 0.0
    betas: number_list(0, 1, length=2, hi_open=True) = [0.9, 0.999]
    eps: positive() = 1e-8
    amsgrad: boolean() = False
    alpha: number(0, 1) = 0.99
    centered: boolean() = False
    rho: number(0, 1) = 0.9
    lr_decay: non_negative() = 0.0
    initial_accumulator_value: non_negative() = 0.0
    momentum_decay: non_negative() = 0.004
    decoupled_weight_decay: boolean() = False
    fused: boolean(nullable=True) = None
    foreach: boolean(nullable=True) = None
    maximize: boolean() = False
    capturable: boolean() = False
    differentiable: boolean() = False


class Scheduler(OpenSection):
    name: text()
    T_max: integer(1) = None
    T_0: integer(1) = None
    T_mult: integer(1) = None
    eta_min: non_negative() = 0.0
    step_size: integer(1) = None
    gamma: positive() = 0.1
    milestones: int_list(1) = None
    total_iters: integer(1) = None
    last_epoch: integer(-1) = -1


# dataset -------------------------------------------------------------------------------------
class NoOptions(Section):
    pass


class TwoDOptions(Section):
    n_train: integer(1) = 300
    n_val: integer(0) = 100
    n_test: integer(1) = 100
    noise: non_negative() = 0.05
    seeds: _checked(f"a list of 3 integers in [0, {SEED_MAX}]",
                    lambda v: isinstance(v, (list, tuple)) and len(v) == 3
                    and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= SEED_MAX
                            for x in v), False) = [1, 3, 2]


class CirclesOptions(TwoDOptions):
    factor: number(0, 1, hi_open=True) = 0.8


class GaussianOptions(Section):
    n: integer(3) = 1000
    dim: integer(1) = 100
    num_classes: integer(2) = 10
    seed: integer(0, SEED_MAX) = 0


class TorchvisionOptions(Section):
    root: text() = "data"
    download: boolean() = True


class FashionOptions(TorchvisionOptions):
    system_dir: text() = "/usr/share/datasets/fashion-mnist"


DATASET_OPTIONS: dict[str, type[Section]] = {
    "mnist5k": NoOptions, "digits": NoOptions, "circles": CirclesOptions,
    "moons": TwoDOptions, "gaussian": GaussianOptions, "mnist": TorchvisionOptions,
    "fashion_mnist": FashionOptions, "cifar10": TorchvisionOptions,
}


class Dataset(Section):
    name: one_of(*DATASETS)
    shape: int_list(1)
    in_features: integer(1) = None
    num_classes: integer(2)
    num_outputs: integer(1) = None
    batch_size: integer(1, nullable=True, note=" (null: the full set)") = 100
    val_size: integer(0) = 0
    test_size: integer(0) = 0
    split_seed: integer(0, SEED_MAX) = 0
    shuffle_seed: integer(0, SEED_MAX) = 0
    drop_last: boolean() = False
    replacement: boolean() = False
    steps_per_epoch: integer(1, nullable=True, note=" (null: one pass)") = None
    eval_batch_size: integer(1, nullable=True) = 1000
    options: mapping(nullable=True) = None
    # Being removed from the configs; accepted (and ignored) while they remain.
    steps_per_block: integer(1, nullable=True) = None
    device_resident: boolean(nullable=True) = None


# trainer (Lightning Trainer keyword arguments: unknown ones pass) ----------------------------
class Trainer(OpenSection):
    name: text(nullable=True) = None
    accelerator: one_of(*ACCELERATORS) = "auto"
    devices: Annotated[Any, PlainValidator(devices_value)] = "auto"
    num_nodes: integer(1) = 1
    strategy: anything() = "auto"
    precision: one_of(*PRECISIONS, nullable=True) = None
    max_epochs: integer(-1, nullable=True, note=" (-1: no limit)") = None
    max_steps: integer(-1, note=" (-1: no limit)") = -1
    min_epochs: integer(0, nullable=True) = None
    min_steps: integer(0, nullable=True) = None
    deterministic: _checked("true, false or 'warn'",
                            lambda v: isinstance(v, bool) or v == "warn", True) = None
    log_every_n_steps: integer(1, nullable=True) = None
    num_sanity_val_steps: integer(-1, nullable=True) = None
    check_val_every_n_epoch: integer(1, nullable=True) = 1
    val_check_interval: number(0, lo_open=True, nullable=True) = None
    limit_train_batches: number(0, nullable=True) = None
    limit_val_batches: number(0, nullable=True) = None
    limit_test_batches: number(0, nullable=True) = None
    gradient_clip_val: non_negative(nullable=True) = None
    gradient_clip_algorithm: one_of("norm", "value", nullable=True) = None
    accumulate_grad_batches: integer(1) = 1
    enable_progress_bar: boolean(nullable=True) = None
    enable_model_summary: boolean(nullable=True) = None
    benchmark: boolean(nullable=True) = None
    inference_mode: boolean() = True
    detect_anomaly: boolean() = False
    use_distributed_sampler: boolean() = True
    sync_batchnorm: boolean() = False
    barebones: boolean() = False
    default_root_dir: text(nullable=True) = None
    reload_dataloaders_every_n_epochs: integer(0) = 0


class Tracking(OpenSection):
    enabled: boolean() = True
    tracking_uri: text()
    artifact_root: text(nullable=True) = None
    experiment: text()


# callbacks -----------------------------------------------------------------------------------
class Diagnostics(Section):
    probe_size: integer(1) = 256
    every_n_epochs: integer(1) = 1
    every_n_steps: integer(1, nullable=True) = None
    saturation_threshold: number(0, 0.5, hi_open=True) = 0.01
    vanishing_below: positive() = 0.1
    exploding_above: positive() = 10.0
    histogram_bins: integer(1) = 30
    plot: boolean() = True
    train_stats: boolean() = True


class CallbackNode(OpenSection):
    """Any Lightning callback: the keys most of them share are typed, others pass."""

    monitor: text(nullable=True) = None
    mode: one_of("min", "max") = "min"
    patience: integer(0) = 3
    min_delta: number() = 0.0
    save_top_k: integer(-1) = 1
    every_n_epochs: integer(0, nullable=True) = None
    every_n_train_steps: integer(0, nullable=True) = None
    refresh_rate: integer(0) = 1
    logging_interval: one_of("step", "epoch", nullable=True) = None
    decay: number(0, 1, lo_open=True, hi_open=True) = 0.999


class Propagation(Section):
    probe_size: integer(1) = 1000
    histogram_bins: integer(1) = 30
    saturation_threshold: number(0, 0.5, hi_open=True) = 0.01
    vanishing_below: positive() = 0.1
    exploding_above: positive() = 10.0


class Job(OpenSection):
    """The top level; the groups are checked one by one (``check_sections``)."""

    seed: integer(0, SEED_MAX)
    task: one_of("train", "propagation") = "train"
    optimized_metric: text(nullable=True) = None
    divergence_check_every: integer(1) = 1
    progress_refresh_rate: integer(0) = 1
    callbacks: mapping(nullable=True) = None
    ckpt_path: text(nullable=True) = None
    init: mapping()
    model: mapping()
    optimizer: mapping()
    dataset: mapping()
    trainer: mapping()
    tracking: mapping()
    scheduler: mapping(nullable=True) = None
    propagation: mapping(nullable=True) = None


# ---- the sweeper (hydra.sweeper of the initlab Optuna sweeper) ------------------------------
def direction_value(value: Any) -> Any:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    names = [getattr(v, "name", v) for v in items]
    if not names or not all(isinstance(n, str) and n.lower() in ("minimize", "maximize")
                            for n in names):
        raise _refuse("'minimize' or 'maximize'")
    if len(names) > 1:
        raise _refuse("one direction ('minimize' or 'maximize'): a job returns one number, "
                      "optimized_metric")
    return value


def storage_value(value: Any) -> Any:
    if value is None or (isinstance(value, Mapping) and "_target_" in value):
        return value
    if isinstance(value, str) and (value in ("auto", "memory", "inmemory")
                                   or re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", value)):
        return value
    raise _refuse("'auto', a database URL (sqlite:///path, postgresql://...), a _target_ node "
                  "or null")


class Sampler(OpenSection):
    seed: integer(0, SEED_MAX, nullable=True) = None
    n_startup_trials: integer(0) = 10
    n_ei_candidates: integer(1) = 24
    multivariate: boolean() = False
    constant_liar: boolean() = False
    sigma0: positive(nullable=True) = None
    consider_pruned_trials: boolean() = False
    population_size: integer(2) = 50
    qmc_type: one_of("sobol", "halton") = "sobol"


class Pruner(OpenSection):
    n_startup_trials: integer(0) = 5
    n_warmup_steps: integer(0) = 0
    interval_steps: integer(1) = 1
    percentile: number(0, 100) = 25.0
    min_resource: _checked("'auto' or an integer >= 1",
                           lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool)
                                                     and v >= 1), False) = "auto"
    max_resource: _checked("'auto' or an integer >= 1",
                           lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool)
                                                     and v >= 1), False) = "auto"
    reduction_factor: integer(2) = 3
    min_early_stopping_rate: integer(0) = 0


class OptunaSweeper(OpenSection):
    sampler: Sampler | None = None
    pruner: Pruner | None = None
    direction: Annotated[Any, PlainValidator(direction_value)] = "minimize"
    storage: Annotated[Any, PlainValidator(storage_value)] = "auto"
    study_name: text(nullable=True) = None
    n_trials: integer(1) = 20
    n_jobs: integer(1) = 1
    max_failure_rate: number(0, 1) = 1.0
    search_space: _checked("null (the deprecated form: write hydra.sweeper.params)",
                           lambda v: False, True) = None
    params: mapping(nullable=True) = None
    custom_search_space: text(nullable=True) = None
    heartbeat_interval: positive() = 20
    grace_period: positive() = 90
    check_trial_config: text(nullable=True) = None
    plots: boolean() = True


# ---- from pydantic's errors to one paragraph -------------------------------------------------
def _lookup(data: Any, loc: Sequence[Any]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _key(prefix: str, loc: Sequence[Any]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def refusal(key: str, value: Any, allowed: str, why: str | None = None) -> ConfigError:
    """The one paragraph: ``<key> = <value> is not allowed: [<why>; ]<allowed> is expected.``"""
    because = f"{why}; " if why else ""
    return ConfigError(f"{key} = {show(value)} is not allowed: {because}{allowed} is expected.",
                       key=key, value=value, allowed=allowed)


def check(schema: type[BaseModel], data: Any, prefix: str, label: str | None = None) -> BaseModel:
    """Validate ``data`` (the node at ``prefix``) against ``schema``; raise the first problem as
    a ``ConfigError``.  ``label`` names the node in messages about unknown keys."""
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise _to_config_error(err, data, prefix, label) from None


def _to_config_error(err: ValidationError, data: Any, prefix: str,
                     label: str | None) -> ConfigError:
    first = err.errors(include_url=False)[0]
    loc, ctx, kind = tuple(first["loc"]), first.get("ctx") or {}, first["type"]
    if kind == "initlab_unknown_key":
        loc = (*loc, ctx["key"])
        key = _key(prefix, loc)
        value = _lookup(data, loc)
        group = (label if label and len(loc) == 1 else _key(prefix, loc[:-1])) or "the config"
        return ConfigError(
            f"{key} = {show(value)} is not allowed: {group} has no key {ctx['key']!r}; one of "
            f"its keys ({ctx['known']}) is expected.", key=key, value=value,
            allowed=f"one of the keys {ctx['known']}")
    key = _key(prefix, loc)
    if kind == "missing":
        return ConfigError(f"{key} is missing: a value is required.", key=key,
                           allowed="a value")
    value = first.get("input", _lookup(data, loc))
    allowed = ctx.get("expected") if kind == "initlab" else first["msg"]
    return refusal(key, value, allowed)
