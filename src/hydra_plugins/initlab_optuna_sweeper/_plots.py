"""Optuna's plots of a finished single-objective study, as PNGs, on
``optuna.visualization.matplotlib``'s public functions: labelled with the objective's metric
(the sweep's ``optimized_metric``, e.g. ``val/acc``, through their ``target_name`` argument and
the axes they return) rather than "Objective Value", and the contour drawn only over continuous
(float or int) parameters: a contour across a categorical one (the init family) would
interpolate between families that have nothing between them.  Optuna's ggplot style is kept
inside each plot (``rc_context``), not left on the process.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

log = logging.getLogger(__name__)
MAX_CONTOUR_PARAMS = 4  # a grid of n x n panels beyond two
FIGSIZE = (9.0, 6.0)


def continuous_params(study: optuna.Study) -> list[str]:
    """The params every complete trial drew from a float or int distribution, in the best
    trial's order."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    names = None
    for trial in complete:
        mine = {name for name, dist in trial.distributions.items()
                if isinstance(dist, (FloatDistribution, IntDistribution))}
        names = mine if names is None else names & mine
    return [name for name in complete[0].params if name in names]


def _figure(axes: Any):
    return axes.flat[0].figure if hasattr(axes, "flat") else axes.figure


def _each(axes: Any) -> list:
    return list(axes.flat) if hasattr(axes, "flat") else [axes]


def _relabel(name: str, axes: Any, metric: str, direction: str) -> None:
    """Titles and axis labels that say what was optimized."""
    import matplotlib.ticker as ticker

    fig = _figure(axes)
    first = _each(axes)[0]
    if name == "optimization_history":
        first.set_title(f"Optimization history: {metric} ({direction})")
        first.set_xlabel("trial number")
    elif name == "param_importances":
        first.set_title(f"Hyperparameter importances for {metric}", loc="left")
    elif name == "slice":
        fig.suptitle(f"{metric} against each searched parameter (colour: trial number)")
    elif name == "contour":
        (first.set_title if len(_each(axes)) == 1 else fig.suptitle)(
            f"{metric} over the continuous parameters (interpolated between trials)")
    elif name == "intermediate_values":
        first.set_title(f"{metric} reported to the pruner, per trial")
        first.set_xlabel("epoch (0 = the first)")
        first.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        first.set_ylabel(metric)
    plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    for ax in _each(axes):  # log axes: 1-2-5 ticks, not overprinted minor labels
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(plain)
                axis.set_minor_formatter(ticker.NullFormatter())
        if name == "slice" and ax.get_xscale() != "log":  # category names side by side
            ax.tick_params(axis="x", labelrotation=25)


def drawings(study: optuna.Study, metric: str) -> dict[str, Callable[[], Any]]:
    """name -> a function drawing that plot (None where it has nothing to draw)."""
    from optuna.visualization import matplotlib as vis

    continuous = continuous_params(study)[:MAX_CONTOUR_PARAMS]
    return {
        "optimization_history": lambda: vis.plot_optimization_history(study, target_name=metric),
        "param_importances": lambda: vis.plot_param_importances(study, target_name=metric),
        "slice": lambda: vis.plot_slice(study, target_name=metric),
        "contour": lambda: (vis.plot_contour(study, params=continuous, target_name=metric)
                            if len(continuous) >= 2 else None),
        "intermediate_values": lambda: vis.plot_intermediate_values(study),
        "timeline": lambda: vis.plot_timeline(study),
    }


def write_plots(study: optuna.Study, folder: Path, metric: str | None) -> list[Path]:
    """Every plot the study has data for, as ``folder/<name>.png``; ``metric`` names the
    objective (None: "objective value")."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metric = metric or "objective value"
    direction = study.direction.name.lower()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in drawings(study, metric).items():
        try:
            with warnings.catch_warnings(), plt.rc_context({"figure.figsize": FIGSIZE}):
                warnings.simplefilter("ignore")
                axes = draw()
                if axes is None:
                    log.info("no %s plot: fewer than two continuous parameters", name)
                    continue
                _relabel(name, axes, metric, direction)
                path = folder / f"{name}.png"
                _figure(axes).savefig(path, dpi=100, bbox_inches="tight")
                plt.close(_figure(axes))
                written.append(path)
        except Exception as err:  # noqa: BLE001 - a plot that needs more trials, etc.
            log.info("no %s plot: %s", name, err)
    plt.close("all")
    return written
