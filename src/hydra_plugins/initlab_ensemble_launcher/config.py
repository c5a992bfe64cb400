"""The launcher's settings (``hydra.launcher.*``), registered as ``hydra/launcher=ensemble``."""


from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class EnsembleLauncherConf:
    _target_: str = "hydra_plugins.initlab_ensemble_launcher.launcher.EnsembleLauncher"
    # Members trained at once: at most this many (null: as many as memory_budget_mb allows).
    max_members: Optional[int] = None
    # Memory for one chunk's parameters, optimizer state and activations (docs/scale-out.md).
    memory_budget_mb: float = 2048.0
    # With the Optuna sweeper's n_jobs workers, each hands over one trial: wait this long after
    # the last one arrived for the rest of the batch before training what has come.
    batch_window_s: float = 1.0
    # full: every member run holds what an ordinary run holds; fast: without curves.png and the
    # MLflow logged model / dataset inputs (about 1.4 s a run on 2 cores; for large S4 sweeps).
    records: str = "full"
    # Checked on every job's config before the sweep starts (initlab.config.sweep.SweepCheck):
    # the engine's rules (initlab.ensemble.checks), then devices / submitit below.
    config_check: str = "hydra_plugins.initlab_ensemble_launcher.launcher.check_job"
    # Called by the sweep's check with the number of jobs one launch gets, before it composes
    # them: starts the CPU worker processes early (initlab.ensemble.workers).
    warm_up: str = "hydra_plugins.initlab_ensemble_launcher.launcher.warm_up"
    # Draw the members' figures in a helper process while the group trains (null: for groups
    # of 32 or more on a machine with two cores or more; initlab.ensemble.figures).
    figure_helper: Optional[bool] = None
    # Where chunks train (initlab.ensemble.placement): null (cpu, or cuda:0 with trainer=gpu),
    # a count N (N CUDA devices with trainer=gpu, else N CPU worker processes) or a list of
    # names.  null on the CPU: a worker process per core, at most one per 8 stacked members.
    devices: Any = None
    # null: train here; local or slurm: each group one submitit job (initlab.ensemble.submit).
    submitit: Optional[str] = None
    # The submitit executor's parameters (the keys of hydra/launcher=slurm; submitit_folder).
    submitit_params: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/launcher", name="ensemble_settings", node=EnsembleLauncherConf,
                             provider="initlab")
