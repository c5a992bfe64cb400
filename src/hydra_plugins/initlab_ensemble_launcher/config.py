"""The launcher's settings (``hydra.launcher.*``), registered as ``hydra/launcher=ensemble``."""


from dataclasses import dataclass
from typing import Optional

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
    # Checked on every job's config before the sweep starts (initlab.config.sweep.SweepCheck).
    config_check: str = "initlab.ensemble.checks.check_ensemble"


ConfigStore.instance().store(group="hydra/launcher", name="ensemble_settings", node=EnsembleLauncherConf,
                             provider="initlab")
