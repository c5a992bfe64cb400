"""The search space: Hydra sweep overrides -> Optuna distributions, checked before any trial.

``choice(a, b)`` -> categorical; ``range(start, stop[, step])`` -> int (or float) with a step,
``stop`` excluded as in Python; ``interval(low, high)`` -> float, ``tag(log, interval(...))`` on
a log scale; anything else is a fixed value passed to every trial (the official plugin's rules).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


class SearchSpaceError(ValueError):
    """The search cannot start: a parameter, its range or the objective is wrong."""


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)   # key -> the override as written

    def grid(self) -> dict[str, list[Any]]:
        """Every axis as a list of values, for Optuna's GridSampler."""
        out = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                out[name] = list(dist.choices)
            elif isinstance(dist, IntDistribution) and not dist.log:
                out[name] = list(range(dist.low, dist.high + 1, dist.step))
            elif isinstance(dist, FloatDistribution) and dist.step is not None:
                n = int(round((dist.high - dist.low) / dist.step))
                out[name] = [dist.low + i * dist.step for i in range(n + 1)]
            else:
                raise SearchSpaceError(f"the grid sampler needs discrete axes; {name!r} is {dist}")
        return out

    def probes(self) -> list[dict[str, Any]]:
        """A few assignments that together use every choice and both ends of every range:
        composing them finds unknown keys and config-group options before any trial runs."""
        width = max([2] + [len(d.choices) for d in self.distributions.values()
                           if isinstance(d, CategoricalDistribution)])
        probes = []
        for i in range(width):
            probe = {}
            for name, dist in self.distributions.items():
                if isinstance(dist, CategoricalDistribution):
                    probe[name] = dist.choices[i % len(dist.choices)]
                else:
                    probe[name] = dist.low if i % 2 == 0 else dist.high
            probes.append(probe)
        return probes


def _distribution(override: Override) -> BaseDistribution:
    key, value = override.get_key_element(), override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        if not choices:
            raise SearchSpaceError(f"{key}: empty choice")
        for choice in choices:
            if not isinstance(choice, (str, int, float, bool, type(None))):
                raise SearchSpaceError(f"{key}: a choice must be a str, int, float, bool or null, "
                                       f"not {choice!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise SearchSpaceError(f"{key}: repeated choices in {choices}")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if step is None or step <= 0:
            raise SearchSpaceError(f"{key}: range step must be positive, got {step}")
        if start >= stop:
            raise SearchSpaceError(f"{key}: empty range({start}, {stop}): start must be < stop")
        if all(isinstance(v, int) for v in (start, stop, step)):
            last = start + ((stop - 1 - start) // step) * step   # Python's range excludes stop
            return IntDistribution(start, last, step=step)
        n = math.floor((stop - start) / step - 1e-9)
        return FloatDistribution(float(start), float(start + n * step), step=float(step))
    if isinstance(value, IntervalSweep):
        low, high, log = value.start, value.end, "log" in value.tags
        if low is None or high is None or not low < high:
            raise SearchSpaceError(f"{key}: interval({low}, {high}) is empty: low must be < high")
        if log and low <= 0:
            raise SearchSpaceError(f"{key}: a log-scale interval needs low > 0, got {low}")
        return FloatDistribution(float(low), float(high), log=log)
    raise SearchSpaceError(f"{key}: sweep {override.input_line!r} is not supported by the Optuna "
                           "sweeper (use choice, range, interval or tag(log, interval))")


def parse(params: Mapping[str, Any] | None, arguments: Iterable[str]) -> SearchSpace:
    """``hydra.sweeper.params`` then the command line (which wins): the official plugin's order."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except Exception as err:  # Hydra's message says which override and why
        raise SearchSpaceError(str(err)) from None
    space = SearchSpace()
    for override in overrides:
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if override.is_sweep_override():
            space.distributions[key] = _distribution(override)
        else:
            space.fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return space
