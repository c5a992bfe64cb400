"""What a job knows about its Hydra launch: overrides, output and sweep directories."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class HydraContext:
    """What a job knows about its Hydra launch (all empty outside a Hydra app)."""

    overrides: list[str] = field(default_factory=list)
    output_dir: Path | None = None
    sweep_dir: Path | None = None
    cwd: str = field(default_factory=os.getcwd)

    @classmethod
    def current(cls) -> HydraContext:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls(
            overrides=list(hc.overrides.task),
            output_dir=Path(hc.runtime.output_dir) if hc.runtime.output_dir else None,
            sweep_dir=Path(hc.sweep.dir).resolve() if multirun else None,
            cwd=hc.runtime.cwd,
        )
