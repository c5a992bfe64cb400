"""Several seeds of one init summed up: mean ± 95% confidence interval of a final metric
(``report.intervals``), the mean curve over the steps every seed logged, and per-layer
statistics through depth (mean with the seeds' min-max)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from initlab.report.intervals import interval

Curve = Sequence[tuple[int, float]]  # [(step, value), ...]


def finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def mean_ci(values: Sequence[float | None], runs: int | None = None) -> str:
    """``0.8123 ± 0.012`` over the finite values: the mean ± the half-width of its 95% CI
    (Student's t, n-1 dof); one value alone, without an interval; ``''`` for none.  When fewer
    than ``runs`` values are finite, the count says so: ``0.8123 ± 0.012 (n=2)``."""
    values = finite(values)
    if not values:
        return ""
    text = interval(values).text()
    return text if runs is None or len(values) == runs else f"{text} (n={len(values)})"


def mean_curve(curves: Sequence[Curve]) -> list[tuple[int, float]]:
    """The mean over curves at the steps all of them have."""
    tables = [dict(c) for c in curves if c]
    if not tables:
        return []
    common = sorted(set.intersection(*(set(t) for t in tables)))
    return [(step, statistics.fmean(t[step] for t in tables)) for step in common]


@dataclass
class DepthSeries:
    """One statistic of one init through depth: layer numbers (1-based), mean over seeds,
    distance down to the seeds' min and up to their max, and the mean-field prediction."""

    layers: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    seeds: int
    predicted: list[float] | None


def through_depth(records: Sequence[Mapping[str, Any]], stat: str,
                  transform: Callable[[float], float] = lambda v: v,
                  hidden_only: bool = False) -> DepthSeries:
    """``stat`` (``preact_var``, ``act_std``…) of every layer of every seed's diagnostics
    record; ``hidden_only`` keeps the layers that have an activation (not the output layer)."""
    layers = records[0]["layers"]
    keep = [i for i, layer in enumerate(layers) if layer.get("kind") or not hidden_only]
    per_seed = [[transform(max(r["layers"][i]["stats"][stat], 0.0)) for i in keep]
                for r in records]
    columns = list(zip(*per_seed))
    mean = [statistics.fmean(col) for col in columns]
    predicted = None
    if all(layers[i].get("pred") and stat in layers[i]["pred"] for i in keep):
        predicted = [transform(layers[i]["pred"][stat]) for i in keep]
    return DepthSeries(layers=[i + 1 for i in keep], mean=mean,
                       low=[m - min(col) for m, col in zip(mean, columns)],
                       high=[max(col) - m for m, col in zip(mean, columns)],
                       seeds=len(per_seed), predicted=predicted)
