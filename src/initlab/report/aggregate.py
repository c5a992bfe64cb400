"""Several seeds of one init summed up: mean ± std of a final metric, the mean curve over the
steps every seed logged, and per-layer statistics through depth (mean with the seeds'
min-max)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Curve = Sequence[tuple[int, float]]  # [(step, value), ...]


def finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def mean_std(values: Sequence[float | None]) -> str:
    """``0.8123 ± 0.012`` over the finite values; one value alone; ``''`` for none."""
    values = finite(values)
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


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
