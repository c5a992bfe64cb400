"""Confidence intervals over seeds, against values computed by hand from Student's t tables, and
the comparison table's cells that carry them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from initlab.report.aggregate import mean_ci
from initlab.report.intervals import interval, standard_error, t_quantile
from initlab.report.table import metrics_table


@pytest.mark.parametrize("dof, quantile", [(1, 12.7062), (2, 4.3027), (4, 2.7764),
                                           (9, 2.2622), (29, 2.0452)])
def test_t_quantiles_match_the_printed_table(dof: int, quantile: float) -> None:
    assert t_quantile(dof) == pytest.approx(quantile, abs=1e-4)


def test_interval_of_known_values() -> None:
    # 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), SE sqrt(0.5), t_{4, 0.975} 2.776445
    ci = interval([1, 2, 3, 4, 5])
    assert ci.mean == 3 and ci.n == 5
    assert ci.se == pytest.approx(math.sqrt(0.5))
    assert ci.half_width == pytest.approx(2.7764451 * math.sqrt(0.5), rel=1e-6)
    assert ci.text() == "3 ± 2"
    # two seeds: 0.80 and 0.84 -> SE 0.02, half-width 12.706 x 0.02
    two = interval([0.80, 0.84])
    assert two.se == pytest.approx(0.02) and two.half_width == pytest.approx(0.254124, rel=1e-5)
    assert two.text() == "0.82 ± 0.25"


def test_one_value_has_no_interval() -> None:
    one = interval([0.8123])
    assert one.se is None and one.half_width is None and one.text() == "0.8123"
    assert standard_error([0.5]) is None
    with pytest.raises(ValueError):
        interval([])


def test_table_cells_show_mean_and_ci_and_the_count_when_a_run_lacks_the_metric() -> None:
    assert mean_ci([0.80, 0.84, None], runs=3) == "0.82 ± 0.25 (n=2)"
    assert mean_ci([0.80, 0.84], runs=2) == "0.82 ± 0.25"
    assert mean_ci([float("nan")], runs=1) == ""

    def run(seed: str, acc: float, init: str = "he") -> SimpleNamespace:
        return SimpleNamespace(info=SimpleNamespace(run_id=f"{init}{seed}"),
                               data=SimpleNamespace(params={"init.name": init, "seed": seed},
                                                    metrics={"test/acc": acc}, tags={}))

    runs = [run("0", 0.80), run("1", 0.84), run("2", 0.82), run("0", 0.5, "xavier")]
    header, rows = metrics_table(runs, {})
    acc = header.index("test/acc")
    by_init = {row[0]: row for row in rows}
    he = by_init[next(k for k in by_init if k.startswith("he"))]
    ci = interval([0.80, 0.84, 0.82])
    assert he[header.index("runs")] == "3" and he[acc] == f"{0.82:.4g} ± {ci.half_width:.2g}"
    xavier = by_init[next(k for k in by_init if k.startswith("xavier"))]
    assert xavier[acc] == "0.5"  # one seed: no interval
