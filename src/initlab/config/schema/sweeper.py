"""The initlab Optuna sweeper's settings (``hydra.sweeper``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import PlainValidator

from initlab.config.schema.names import SEED_MAX
from initlab.config.schema.base import OpenSection
from initlab.config.schema.values import (
    _checked,
    _refuse,
    boolean,
    integer,
    mapping,
    number,
    one_of,
    positive,
    text,
)


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


