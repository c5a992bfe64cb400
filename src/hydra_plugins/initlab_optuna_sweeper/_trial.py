"""One trial as a Hydra job: its parameters suggested from the search space, the overrides that
launch it (its parameters, the fixed values, and the ``optuna`` node that links the job to its
trial), and how the job's return becomes the trial's state and values."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.trial import FrozenTrial, Trial, TrialState

from initlab.tracking.secrets import mask
from initlab.search.trial import ATTR_DIVERGED, ATTR_PRUNED

from initlab.config.search_space import SearchSpace


def hydra_value(value: Any) -> str:
    """A Python value written in Hydra's override grammar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def suggest(trial: Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial.suggest_*`` for a distribution of the search space (a queued trial gets its
    queued value)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"{name}: no suggest method for {dist!r}")


def job_overrides(trial: Trial, space: SearchSpace, config: DictConfig,
                  custom: Callable[[DictConfig, Trial], Any] | None, study_name: str,
                  storage_for_jobs: Any) -> list[str]:
    """Suggest the trial's parameters; return the overrides of its job."""
    for name, dist in space.distributions.items():
        suggest(trial, name, dist)
    if custom is not None:
        custom(config, trial)
    overrides = [f"{name}={value}" for name, value in trial.params.items()]
    overrides += list(space.fixed.values())
    overrides += [f"++optuna.study={hydra_value(study_name)}", f"++optuna.trial={trial.number}"]
    if storage_for_jobs is not None:
        overrides.append(f"++optuna.storage={hydra_value(storage_for_jobs)}")
    trial.set_user_attr("overrides", [mask(o) for o in overrides[:len(trial.params) + len(space.fixed)]])
    return overrides


def job_error(ret: JobReturn | None) -> BaseException | None:
    """The exception a failed job raised, through Hydra's public ``JobReturn.return_value``
    (which re-raises it, and notes the job's overrides on stderr as Hydra's sweepers do)."""
    if ret is None or ret.status != JobStatus.FAILED:
        return None
    try:
        ret.return_value
    except Exception as err:  # noqa: BLE001 - whatever the task raised
        return err
    return None


def outcome(frozen: FrozenTrial, ret: JobReturn | None, error: BaseException | None,
            objectives: int) -> tuple[TrialState, list[float] | None, str]:
    """The trial's state, its values (COMPLETE only), and why it is not COMPLETE."""
    error = error if error is not None else job_error(ret)
    if isinstance(error, optuna.TrialPruned) or ATTR_PRUNED in frozen.user_attrs:
        return TrialState.PRUNED, None, f"pruned at step {frozen.user_attrs.get(ATTR_PRUNED)}"
    if ATTR_DIVERGED in frozen.user_attrs:
        return TrialState.PRUNED, None, f"diverged at step {frozen.user_attrs[ATTR_DIVERGED]}"
    if error is not None:
        return TrialState.FAIL, None, f"{type(error).__name__}: {error}"
    value = ret.return_value if ret is not None else None
    try:
        values = [float(v) for v in value] if objectives > 1 else [float(value)]
    except (TypeError, ValueError):
        return TrialState.FAIL, None, f"the job returned {value!r}, not a number"
    if len(values) != objectives:
        return TrialState.FAIL, None, f"the job returned {len(values)} values for " \
                                      f"{objectives} objectives"
    if not all(math.isfinite(v) for v in values):
        return TrialState.FAIL, None, f"the job returned a non-finite value {values}"
    return TrialState.COMPLETE, values, ""
