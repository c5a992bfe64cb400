"""One pydantic model per config group of a job (the init group: ``schema.inits``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import PlainValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from initlab.config.schema.names import (
    ACCELERATORS,
    ACTIVATIONS,
    DATASETS,
    PRECISIONS,
    SEED_MAX,
)
from initlab.config.schema.values import (
    _checked,
    _refuse,
    anything,
    boolean,
    devices_value,
    int_list,
    integer,
    mapping,
    non_negative,
    number,
    number_list,
    one_of,
    positive,
    text,
)


# ---- sections ------------------------------------------------------------------------------
from initlab.config.schema.base import OpenSection, Section


class MLPModel(Section):
    name: text()
    in_features: integer(1)
    num_outputs: integer(1)
    hidden: int_list(1) = [256, 256]
    activation: one_of(*ACTIVATIONS) = "relu"
    bias: boolean() = True
    depth: integer(0, nullable=True) = None  # with width: depth x [width] replaces hidden
    width: integer(1, nullable=True) = None
    dtype: one_of("float32", "float64", nullable=True) = None  # float64: init drawn in float64


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
# Keys that belong to the data set itself, not to its loader's options.
DATASET_KEYS_NOT_OPTIONS = {"standardize": "dataset.standardize"}


class LoaderOptions(Section):
    """A data set's ``options``: the keyword arguments its loader takes, nothing else (the
    loader refuses the rest too, ``initlab.data.loaders.load``)."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise _refuse("a mapping of keys to values")
        data = {k: v for k, v in data.items() if not str(k).startswith("_")}
        for key in data:
            if key not in cls.model_fields:
                known = ", ".join(cls.model_fields) or "none: its loader takes no options"
                if key in DATASET_KEYS_NOT_OPTIONS:
                    known += f"; {key} is the key {DATASET_KEYS_NOT_OPTIONS[key]}"
                raise PydanticCustomError("initlab_unknown_key", "{key} is not a key of this group",
                                          {"key": str(key), "known": known})
        return data


class NoOptions(LoaderOptions):
    pass


class TwoDOptions(LoaderOptions):
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


class GaussianOptions(LoaderOptions):
    n: integer(3) = 1000
    dim: integer(1) = 100
    num_classes: integer(2) = 10
    seed: integer(0, SEED_MAX) = 0


class TorchvisionOptions(LoaderOptions):
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
    standardize: boolean() = False  # per feature, with the training split's mean and std
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
    heartbeat_s: positive() = 3
    system_metrics: boolean() = False


# logger (conf/logger/: which Lightning loggers get the metrics) -----------------------------
class LoggerNode(Section):
    """One logger: ``mlflow`` (the tracked run's own, no ``_target_``) or a Lightning logger
    class by ``_target_`` with the keys CSVLogger / TensorBoardLogger take."""

    save_dir: text(nullable=True) = None  # null: the job's output dir
    name: text(nullable=True) = None
    version: anything() = None
    prefix: text() = ""
    flush_logs_every_n_steps: integer(1) = 100
    log_graph: boolean() = False
    default_hp_metric: boolean() = True


LOGGER_CHOICES = "logger=mlflow, csv, tensorboard or many_loggers"


def checked_loggers(value: Any, info: Any) -> Any:
    """``logger``: each node names a class (but ``mlflow``); a run to record needs a logger;
    TensorBoard needs its package (a clear refusal, not an ImportError mid-run)."""
    import importlib.util

    if not isinstance(value, Mapping):
        return value  # null, or the type check's refusal
    for name, node in value.items():
        if not isinstance(node, Mapping):
            continue
        if name != "mlflow" and not node.get("_target_"):
            raise _refuse(f"a _target_ for logger {name!r} (a Lightning logger class); only "
                          "'mlflow' (the tracked run's logger) has none")
        if str(node.get("_target_", "")).endswith("TensorBoardLogger") \
                and not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
            raise _refuse('logger=tensorboard with its package installed (pip install -e '
                          '".[tensorboard]"), or ' + LOGGER_CHOICES.replace(", tensorboard", ""))
    tracking = info.data.get("tracking") or {}
    if not any(n is not None for n in value.values()) and tracking.get("enabled", True):
        raise _refuse(f"a logger while tracking.enabled = true (the MLflow run would record no "
                      f"metrics): {LOGGER_CHOICES}, or logger=none with tracking=none")
    return value


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
    backward: boolean() = True
    jacobian: boolean() = True
    jacobian_every_n_steps: integer(1, nullable=True) = None
    jacobian_inputs: integer(1) = 8
    initial_weights: boolean() = True


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
    objective_seeds: integer(1, 100) = 1  # seeds per job, objective = their mean (jobs.seeds)
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
    logger: dict[str, LoggerNode | None] | None = None  # conf/logger/
    scheduler: mapping(nullable=True) = None
    propagation: mapping(nullable=True) = None

    @field_validator("logger", mode="before")
    @classmethod
    def _logger_nodes(cls, value: Any, info: Any) -> Any:
        return checked_loggers(value, info)


