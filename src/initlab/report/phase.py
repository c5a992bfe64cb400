"""The trainable-depth phase diagram of a tanh net (Schoenholz et al. 2017, Fig. 5): final
accuracy over sigma_w^2 x depth as a heatmap, with 6 xi_c(sigma_w^2) from mean-field theory
drawn over it and the critical line sigma_w^2 where chi_1 = 1.

The paper trains nets of every (sigma_w^2, depth) and finds them trainable up to about 6 xi_c:
deep nets train only near the critical line, where xi_c diverges.  ``phase_points`` reads a
sweep's runs (params ``init.sigma_w2``, ``model.depth``, ``init.bias.sigma_b2``, the final
metric), ``phase_figure`` draws them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from initlab.diagnostics import meanfield
from initlab.report.curves import pyplot
from initlab.report.query import param_value

PHASE_FILE = "phase_diagram.png"
METRICS = ("train/acc", "val/acc", "test/acc")  # the first a run has is drawn
TRAINABLE_DEPTH_FACTOR = 6.0  # Schoenholz et al.: nets train up to about 6 xi_c


def _param(run, *keys: str) -> Any:
    for key in keys:
        if key in run.data.params:
            return param_value(run.data.params[key])
    return None


def phase_points(runs: Sequence, metric: str | None = None) -> tuple[list[dict], str | None]:
    """``[{"sigma_w2", "depth", "sigma_b2", "value"}]`` for the runs that record sigma_w^2, a
    depth and the metric (the first of ``METRICS`` they have, unless given), and its name."""
    metric = metric or next((m for m in METRICS if any(m in r.data.metrics for r in runs)), None)
    points = []
    for run in runs:
        sw2, depth = _param(run, "init.sigma_w2"), _param(run, "model.depth")
        value = run.data.metrics.get(metric) if metric else None
        if isinstance(sw2, (int, float)) and isinstance(depth, int) and value is not None:
            sb2 = _param(run, "init.bias.sigma_b2")
            points.append({"sigma_w2": float(sw2), "depth": depth, "value": float(value),
                           "sigma_b2": float(sb2) if isinstance(sb2, (int, float)) else 0.0})
    return points, metric


def varies_sigma_w2_and_depth(points: Sequence[dict]) -> bool:
    return (len({p["sigma_w2"] for p in points}) > 1 and len({p["depth"] for p in points}) > 1)


def _edges(values: Sequence[float]) -> np.ndarray:
    """Cell edges around sorted centres: midpoints, the outer cells as wide as their neighbour."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def grid(points: Sequence[dict]) -> tuple[list[float], list[int], np.ndarray]:
    """(sigma_w2 values, depths, mean value per cell [depth, sigma_w2]; NaN where no run)."""
    cells: dict[tuple[float, int], list[float]] = defaultdict(list)
    for p in points:
        cells[(p["sigma_w2"], p["depth"])].append(p["value"])
    sws = sorted({k[0] for k in cells})
    depths = sorted({k[1] for k in cells})
    values = np.full((len(depths), len(sws)), np.nan)
    for (sw2, depth), vals in cells.items():
        values[depths.index(depth), sws.index(sw2)] = float(np.mean(vals))
    return sws, depths, values


def depth_scale_curve(kind: str, sigma_b2: float, lo: float, hi: float,
                      n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """sigma_w^2 on [lo, hi] and xi_c there (infinite on the critical line)."""
    sws = np.linspace(lo, hi, n)
    return sws, np.array([meanfield.depth_scale(kind, float(s), sigma_b2) for s in sws])


def phase_figure(points: Sequence[dict], metric: str = "train/acc", kind: str = "tanh",
                 title: str | None = None, curve_points: int = 60):
    """The heatmap of ``metric`` over sigma_w^2 x depth, 6 xi_c (white line, from
    ``curve_points`` values of sigma_w^2: ~0.1 s each) and the critical sigma_w^2 (dashed): a
    matplotlib Figure."""
    plt = pyplot()
    sws, depths, values = grid(points)
    sb2s = sorted({p["sigma_b2"] for p in points})
    sigma_b2 = sb2s[0]
    fig, ax = plt.subplots(figsize=(7.5, 5.2), constrained_layout=True)
    x_edges, y_edges = _edges(sws), _edges(depths)
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(values), cmap="viridis",
                         vmin=0.0, vmax=1.0 if "acc" in metric else None, shading="flat")
    fig.colorbar(mesh, ax=ax, label=f"final {metric}")
    xs, xi = depth_scale_curve(kind, sigma_b2, x_edges[0], x_edges[-1], curve_points)
    top = y_edges[-1]
    shown = np.where(np.isfinite(xi), np.minimum(TRAINABLE_DEPTH_FACTOR * xi, 10 * top), 10 * top)
    ax.plot(xs, shown, color="white", lw=2.2,
            label=f"{TRAINABLE_DEPTH_FACTOR:g} $\\xi_c$ (mean-field, $\\sigma_b^2$={sigma_b2:g})")
    critical = meanfield.critical_sigma_w2(kind, sigma_b2)
    if x_edges[0] <= critical <= x_edges[-1]:
        ax.axvline(critical, color="white", ls="--", lw=1,
                   label=f"critical $\\sigma_w^2$ = {critical:.3f} ($\\chi_1$ = 1)")
    ax.set(xlim=(x_edges[0], x_edges[-1]), ylim=(y_edges[0], top), xlabel="$\\sigma_w^2$",
           ylabel="depth (hidden layers)",
           title=title or f"trainable depth of a {kind} net (Schoenholz et al. 2017, Fig. 5)")
    ax.set_xticks(sws, [f"{s:g}" for s in sws])
    ax.set_yticks(depths)
    for i, depth in enumerate(depths):  # the numbers in the cells
        for j, sw2 in enumerate(sws):
            if math.isfinite(values[i, j]):
                ax.text(sw2, depth, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if values[i, j] > 0.6 else "white")
    if len(sb2s) > 1:
        ax.text(0.01, 0.01, f"runs differ in sigma_b2 {sb2s}: the curve uses {sigma_b2:g}",
                transform=ax.transAxes, fontsize=7, color="white")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.6)
    return fig


def plot_phase(runs: Sequence, path: Path, kind: str = "tanh") -> Path | None:
    """``phase_figure`` of the runs, saved; None unless they vary sigma_w^2 and depth."""
    points, metric = phase_points(runs)
    if not varies_sigma_w2_and_depth(points):
        return None
    kinds = {_param(r, "model.activation") for r in runs}
    kind = kinds.pop() if len(kinds) == 1 and None not in kinds else kind
    if kind not in meanfield.SUPPORTED:
        return None
    fig = phase_figure(points, metric, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
