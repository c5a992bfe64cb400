"""Ensemble members without MLflow: each member's logger records every metric by (key, step),
so tests compare a member's metrics with the Trainer path's."""

from __future__ import annotations

from initlab.engine.build import prepare
from initlab.ensemble.members import Member


class Recorder:
    """Stands in for a member's MLflow logger: every metric by (key, step)."""

    def __init__(self) -> None:
        self.metrics: dict[str, dict[int, float]] = {}

    def log_metrics(self, metrics, step):
        for k, v in metrics.items():
            self.metrics.setdefault(k, {})[step] = float(v)


def members(make_cfg, base, variants) -> list[Member]:
    """One member per variant (overrides after ``base``), tracking off, each recorded."""
    out = []
    for i, extra in enumerate(variants):
        cfg = make_cfg(*base, *extra, tracking=False)
        m = Member(index=i, cfg=cfg, job=prepare(cfg), name=" ".join(extra))
        m.logger = Recorder()
        out.append(m)
    return out
