"""The sweeper's configuration, registered in Hydra's ConfigStore.

The keys are those of the official ``hydra-optuna-sweeper`` 1.3 (``sampler``, ``direction``,
``storage``, ``study_name``, ``n_trials``, ``n_jobs``, ``max_failure_rate``, ``params``,
``custom_search_space``) plus ``pruner`` and the keys below them that the official plugin lacks.
Samplers and pruners are ``_target_`` nodes, chosen from the groups ``hydra/sweeper/sampler``
and ``hydra/sweeper/pruner`` or written out in full.

This module is imported by Hydra's plugin scan at every start, so it imports nothing heavy.
"""


from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "initlab_optuna_sweeper"


# ---- samplers (hydra/sweeper/sampler) ------------------------------------------------------
@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    constant_liar: bool = True      # parallel trials do not all sample the same point


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: Optional[int] = None
    sigma0: Optional[float] = None
    consider_pruned_trials: bool = False


@dataclass
class NSGAIISamplerConf:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50


@dataclass
class GPSamplerConf:
    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: Optional[int] = None
    qmc_type: str = "sobol"


@dataclass
class GridSamplerConf:
    # The grid is filled in from ``params`` at sweep time (every axis must be discrete).
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: Optional[int] = None


# ---- pruners (hydra/sweeper/pruner) --------------------------------------------------------
@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5       # trials that are never pruned (the baseline)
    n_warmup_steps: int = 0         # epochs reported before pruning is considered
    interval_steps: int = 1


@dataclass
class PercentilePrunerConf:
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


# ---- the sweeper ---------------------------------------------------------------------------
@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.initlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "nop"}])

    # ``_target_`` node of an Optuna sampler (hydra/sweeper/sampler=tpe|random|cmaes|grid|...).
    sampler: Any = MISSING
    # minimize | maximize, or a list of them for a multi-objective study.
    direction: Any = "minimize"
    # Where the study lives.  ``auto``: SQLite beside the MLflow store (``optuna.db`` next to
    # ``mlflow.db``; ``sqlite:///mlruns/optuna.db`` when MLflow is a server or off).  Any
    # SQLAlchemy URL, a ``_target_`` node (e.g. optuna.storages.JournalStorage), or null for a
    # throw-away in-memory study (no resume, no pruning across processes).
    storage: Optional[Any] = "auto"
    # null: derived from the command line, so re-running the same command resumes its study.
    study_name: Optional[str] = None
    # The study's total number of finished trials (a re-run completes the rest; raising it
    # extends a finished study).
    n_trials: int = 20
    # Trials run at the same time (through the launcher: hydra/launcher=joblib).
    n_jobs: int = 1
    # Stop launching trials once more than this fraction of this run's trials failed.
    max_failure_rate: float = 1.0
    # Deprecated in the official plugin; accepted there, refused here with a hint.
    search_space: Optional[Dict[str, Any]] = None
    # name -> sweep expression: choice(...), range(...), interval(...), tag(log, interval(...)).
    params: Optional[Dict[str, str]] = None
    # Dotpath to ``fn(cfg, trial)`` that suggests further parameters.
    custom_search_space: Optional[str] = None

    # ---- not in the official plugin ----
    # ``_target_`` node of an Optuna pruner (hydra/sweeper/pruner=nop|median|hyperband|...).
    pruner: Any = MISSING
    # The sweeper stamps each running trial every ``heartbeat_interval`` seconds; a RUNNING
    # trial not stamped for ``grace_period`` seconds belongs to a dead process: it is marked
    # FAIL and its parameters are queued again.
    heartbeat_interval: int = 20
    grace_period: int = 90
    # Dotpath to ``fn(cfg)`` run on composed trial configs before the first trial (raise to
    # reject the search), or null.
    check_trial_config: Optional[str] = "initlab.search.checks.check_trial_config"
    # Write Optuna's plots (PNG) into the sweep dir and the MLflow parent run at the end.
    plots: bool = True


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="initlab_optuna", node=OptunaSweeperConf, provider=PROVIDER)
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf, "cmaes": CmaEsSamplerConf,
                     "nsgaii": NSGAIISamplerConf, "gp": GPSamplerConf, "qmc": QMCSamplerConf,
                     "grid": GridSamplerConf}.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider=PROVIDER)
for _name, _node in {"nop": NopPrunerConf, "median": MedianPrunerConf,
                     "percentile": PercentilePrunerConf,
                     "successive_halving": SuccessiveHalvingPrunerConf,
                     "hyperband": HyperbandPrunerConf}.items():
    _STORE.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider=PROVIDER)
