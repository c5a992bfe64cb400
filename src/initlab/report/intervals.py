"""How sure a mean over seeds is: the standard error, and the 95% confidence interval from
Student's t with n-1 degrees of freedom (a handful of seeds is far from the normal
approximation: with 3 seeds the interval is 4.3 standard errors wide on each side, not 1.96).

Used by the comparison's table (``report.table``) and by the multi-seed objective
(``jobs.seeds``), so a number for a group of seeds always comes with how far it can be trusted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


def t_quantile(dof: int, level: float = LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom
    (``scipy.stats.t.ppf((1 + level) / 2, dof)``; scipy comes with scikit-learn)."""
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, dof))


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values, its standard error and the half-width of its confidence
    interval (both None for one value: one seed says nothing about the spread)."""

    mean: float
    n: int
    se: float | None
    half_width: float | None

    def text(self) -> str:
        """``0.8123 ± 0.012`` (mean ± half-width of the 95% CI); one value alone: ``0.8123``."""
        if self.half_width is None:
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.half_width:.2g}"


def standard_error(values: Sequence[float]) -> float | None:
    """sd / sqrt(n), with the sample standard deviation (n-1); None below two values."""
    if len(values) < 2:
        return None
    return statistics.stdev(values) / math.sqrt(len(values))


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean ± t_{n-1} x SE of ``values`` (at least one)."""
    if not values:
        raise ValueError("no values")
    values = [float(v) for v in values]
    se = standard_error(values)
    half = None if se is None else t_quantile(len(values) - 1, level) * se
    return Interval(statistics.fmean(values), len(values), se, half)
