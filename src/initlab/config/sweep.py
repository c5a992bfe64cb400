"""``SweepCheck``, a Hydra callback (``hydra.callbacks.config_check``, listed before the MLflow
parent run's callback): the whole command is checked before anything exists.

* A single run: its config and its store, before Hydra creates the output directory.
* A multirun with the basic sweeper: every job's config, composed as the launcher will compose
  it, and the store, before the sweep directory or the MLflow parent run exists.
* A search with the initlab Optuna sweeper: the sweeper's settings, every search axis (a grid
  sampler needs discrete ones), a few trial configs that use every choice and both ends of
  every range, the MLflow store and the study storage, before any study or parent run exists.

A problem is refused with one paragraph on stderr and exit code 2 (``initlab.config.refuse``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from initlab.config import check_store, check_trial_config, refuse, validate
from initlab.config import schema as S
from initlab.errors import ConfigError


class SweepCheck(Callback):
    """Refuses a run or a whole sweep whose config or store cannot work (exit code 2)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guarded(check_run, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guarded(check_sweep, config)


def _guarded(fn: Any, config: DictConfig) -> None:
    try:
        fn(config)
    except ConfigError as err:
        refuse(err)


def check_run(config: DictConfig) -> None:
    validate(config)
    check_store(config)


# ---- multirun ------------------------------------------------------------------------------
def _loader() -> Any:
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader()


# The job configs this check composed, for the launcher to take instead of composing each
# again (``take_composed``; a composition is about 0.13 s on 2 cores).  Bounded: a larger sweep
# keeps the first ones only.
_COMPOSED: dict[tuple[str, ...], DictConfig] = {}
_COMPOSED_MAX = 2048


def take_composed(overrides: list[str]) -> DictConfig | None:
    """The job config of ``overrides`` this check composed (``load_sweep_config``), handed over
    once; None if it has not (then compose it)."""
    return _COMPOSED.pop(tuple(overrides), None)


class ReusingLoader:
    """Hydra's config loader, except that ``load_sweep_config`` of a job this check composed
    returns a copy of that composition (6 ms against 0.12 s).  The ensemble launcher puts it in
    the ``HydraContext`` it shares with the sweeper (its public ``config_loader`` field), so
    that the basic sweeper's ``validate_batch_is_legal``, which composes every job again only
    to see that it can, does not: one composition per job, not two."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "loader":  # pickling: no delegation loop
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]
                          ) -> DictConfig:
        cfg = _COMPOSED.get(tuple(sweep_overrides))
        if cfg is not None:
            return copy.deepcopy(cfg)
        return self.loader.load_sweep_config(master_config, list(sweep_overrides))


def _compose(config: DictConfig, overrides: list[str], label: str) -> DictConfig:
    try:
        return _loader().load_sweep_config(config, list(overrides))
    except Exception as err:  # noqa: BLE001 - Hydra's composition errors say what is wrong
        raise ConfigError(f"{label} cannot be composed: {_reason(err)}") from None


def _check_job(config: DictConfig, overrides: list[str], label: str, check: Any) -> DictConfig:
    """Compose one job of the sweep and ``check`` it; a refusal names the job."""
    cfg = _compose(config, overrides, label)
    try:
        check(cfg)
    except ConfigError as err:
        raise ConfigError(f"in {label}: {err}", key=err.key, value=err.value,
                          allowed=err.allowed) from None
    return cfg


def check_sweep(config: DictConfig) -> None:
    sweeper = config.hydra.sweeper
    task = [str(o) for o in config.hydra.overrides.task]
    target = str(sweeper.get("_target_", ""))
    if "n_trials" in sweeper and "sampler" in sweeper:  # the initlab Optuna sweeper
        check_search(config, task)
    elif target.endswith("BasicSweeper"):
        check_basic_sweep(config, task)
    else:  # another sweeper plugin: its jobs are its business; the base config is ours
        validate(config)
    check_store(config)


def _reason(err: BaseException) -> str:
    """Hydra's message on one line, without its search-path listing."""
    return " ".join(str(err).split("Config search path:")[0].split()) or type(err).__name__


def _key_of(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def sweep_jobs(config: DictConfig, task: list[str]) -> tuple[list[list[str]], set[str]]:
    """The overrides of every job of a basic-sweeper multirun, as BasicSweeper expands them,
    and the keys that vary between jobs."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.to_container(config.hydra.sweeper, resolve=False).get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + task
    try:
        overrides = OverridesParser.create(config_loader=_loader()).parse_overrides(lines)
        batches = BasicSweeper.split_arguments(overrides, None)
    except Exception as err:  # noqa: BLE001 - a sweep the basic sweeper cannot run
        raise ConfigError(f"the sweep {' '.join(lines)} cannot be expanded: {_reason(err)}") \
            from None
    swept = {o.get_key_element() for o in overrides if o.is_sweep_override()}
    return [list(job) for batch in batches for job in batch], swept


def _with_launcher_check(config: DictConfig, check: Any) -> Any:
    """``check``, then the launcher's own check of a job config when the launcher names one
    (``hydra.launcher.config_check``, a function's dotted path: the ensemble launcher refuses
    what its engine cannot train exactly)."""
    target = OmegaConf.select(config, "hydra.launcher.config_check")
    if not target:
        return check
    from hydra.utils import get_method

    launcher_check = get_method(str(target))

    def both(cfg: DictConfig) -> None:
        check(cfg)
        launcher_check(cfg)

    return both


def warm_up_launcher(config: DictConfig, jobs: int) -> None:
    """The launcher's ``hydra.launcher.warm_up`` hook, if it names one (a function's dotted
    path), told how many jobs one launch will get, before they are composed: the ensemble
    launcher starts its worker processes then."""
    target = OmegaConf.select(config, "hydra.launcher.warm_up")
    if target:
        from hydra.utils import get_method

        get_method(str(target))(config, jobs)


def check_basic_sweep(config: DictConfig, task: list[str]) -> None:
    jobs, swept = sweep_jobs(config, task)
    batch = OmegaConf.select(config, "hydra.sweeper.max_batch_size")
    warm_up_launcher(config, min(len(jobs), int(batch)) if batch else len(jobs))
    _COMPOSED.clear()
    # ${now:...} in the sweep's folders resolved here, into the master config's resolver cache,
    # which each job's composition copies: the jobs handed to the launcher then name the folder
    # the sweep's parent run is recorded in, not one a few microseconds later.
    OmegaConf.select(config, "hydra.sweep.dir")
    OmegaConf.select(config, "hydra.run.dir")
    for number, job in enumerate(jobs):
        varying = " ".join(o for o in job if _key_of(o) in swept)
        label = f"job {number} of {len(jobs)}" + (f" ({varying})" if varying else "")
        cfg = _check_job(config, job, label, _with_launcher_check(config, validate))
        if len(_COMPOSED) < _COMPOSED_MAX:
            _COMPOSED[tuple(job)] = cfg


# ---- the Optuna search ---------------------------------------------------------------------
def _axis_lines(config: DictConfig, task: list[str]) -> list[tuple[str, str, str]]:
    """(key, expression, override line) of ``hydra.sweeper.params`` then the command line."""
    params = OmegaConf.to_container(config.hydra.sweeper, resolve=False).get("params") or {}
    out = [(str(k), str(v), f"{k}={v}") for k, v in params.items()]
    for line in task:
        key, _, value = line.partition("=")
        out.append((key.lstrip("+~"), value, line))
    return out


def _axis_error(key: str, expr: str, why: str) -> ConfigError:
    allowed = ("choice(a, b, ...), range(start, stop[, step]), interval(low, high) or "
               "tag(log, interval(low, high)) with finite bounds, or a plain value")
    why = why[len(key) + 2:] if why.startswith(f"{key}: ") else why
    return ConfigError(f"{key} = {expr} is not allowed as a search axis: {why}; {allowed} is "
                       "expected.", key=key, value=expr, allowed=allowed)


def check_search(config: DictConfig, task: list[str]) -> None:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    from initlab.config.search_space import parse

    try:
        settings = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"hydra.sweeper cannot be resolved: {err}") from None
    S.check(S.OptunaSweeper, settings, "hydra.sweeper")
    if settings.get("grace_period", 90) <= settings.get("heartbeat_interval", 20):
        raise S.refusal("hydra.sweeper.grace_period", settings["grace_period"],
                        f"a number of seconds above hydra.sweeper.heartbeat_interval = "
                        f"{S.show(settings['heartbeat_interval'])}")
    warm_up_launcher(config, int(settings.get("n_jobs") or 1))  # one batch of trials

    lines = _axis_lines(config, task)
    for key, expr, line in lines:  # each axis alone, so that a problem names its key
        try:
            space = parse(None, [line])
        except Exception as err:  # noqa: BLE001 - SearchSpaceError, or Optuna's ValueError
            raise _axis_error(key, expr, " ".join(str(err).split())) from None
        for dist in space.distributions.values():
            bounds = [getattr(dist, "low", 0), getattr(dist, "high", 0)]
            if not all(math.isfinite(b) for b in bounds):
                raise _axis_error(key, expr, "its bounds must be finite")
    space = parse(settings.get("params"), task)
    if not space.distributions and not settings.get("custom_search_space"):
        allowed = "at least one axis (choice/range/interval) in hydra.sweeper.params or on the " \
                  "command line"
        raise ConfigError(f"hydra.sweeper.params = {S.show(settings.get('params'))} is not "
                          f"allowed: the search has nothing to search; {allowed} is expected.",
                          key="hydra.sweeper.params", value=settings.get("params"),
                          allowed=allowed)
    sampler = settings.get("sampler") or {}
    if str(sampler.get("_target_", "")).endswith("GridSampler"):
        exprs = {key: expr for key, expr, _ in lines}
        for key, dist in space.distributions.items():
            discrete = isinstance(dist, CategoricalDistribution) or (
                isinstance(dist, IntDistribution) and not dist.log) or (
                isinstance(dist, FloatDistribution) and dist.step is not None)
            if not discrete:
                allowed = ("a discrete axis (choice(...) or range(...)), or another sampler "
                           "(hydra/sweeper/sampler=tpe)")
                raise ConfigError(
                    f"{key} = {exprs.get(key, dist)} is not allowed with the grid sampler "
                    f"(hydra/sweeper/sampler=grid): it is a continuous range; {allowed} is "
                    "expected.", key=key, value=exprs.get(key), allowed=allowed)

    for probe in space.probes() or [{}]:
        overrides = [f"{k}={v}" for k, v in probe.items()] + list(space.fixed.values())
        label = "a trial" + (f" with {' '.join(f'{k}={v}' for k, v in probe.items())}"
                             if probe else "")
        _check_job(config, overrides, label, _with_launcher_check(config, check_trial_config))
