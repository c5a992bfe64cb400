"""The comparison's figures, one function each; each returns the file it wrote, or None when
no run has the data for it.

- ``plot_curves_per_init``: training loss and validation accuracy, one colour per init (thin:
  each seed, thick: the mean), S1's MNIST figure;
- ``plot_histograms``: activation histograms at init, layer x init (S1);
- ``plot_depth``: pre-activation RMS and activation std through depth, measured and mean-field
  predicted;
- ``plot_boundaries``: decision regions of the final models on 2-D data (S4).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.diagnostics.figures import layer_ticks
from initlab.diagnostics.histograms import plot_grid
from initlab.report.aggregate import mean_curve, through_depth
from initlab.report.curves import Line, chance_loss, draw_curves, layout, log_axis, pyplot
from initlab.inits.labels import SIGMA_W2
from initlab.report.labels import footnote, grouped, legend_labels, recorded_sigma_w2
from initlab.report.query import first_history, load_run_weights, param_value
from initlab.report.rebuild import Unusable, build_model, load_points

log = logging.getLogger(__name__)
LOSS_KEYS = ("train/loss_step", "train/loss")  # per step when logged, else per epoch
ACC_KEYS = ("val/acc",)


def colors(names: Sequence[str]) -> dict[str, Any]:
    cmap = pyplot().get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _chance_loss(runs: Sequence) -> dict[str, float]:
    """``ln K``, the loss of a uniform guess, when the runs agree on their ``K`` classes."""
    classes = {param_value(r.data.params.get("dataset.num_classes")) for r in runs}
    return chance_loss(classes.pop()) if len(classes) == 1 else {}


def plot_curves_per_init(client, runs: Sequence, labels: Mapping[str, str],
                         path: Path) -> Path | None:
    """Training loss (per logged step) and validation accuracy, one colour per init (named with
    the sigma_w^2 its runs recorded); every seed is drawn (thin), the mean over seeds thick."""
    groups = grouped(runs, labels)
    legend = legend_labels(groups)
    palette = colors(list(groups))
    lines = []
    for label, members in groups.items():
        for panel, keys in (("loss", LOSS_KEYS), ("acc", ACC_KEYS)):
            curves = [c for c in (first_history(client, r.info.run_id, keys) for r in members) if c]
            lines += [Line(panel, c, color=palette[label], width=0.8, alpha=0.3) for c in curves]
            if curves:
                mean = mean_curve(curves)
                n = f" (n={len(curves)})" if len(curves) > 1 else ""
                lines.append(Line(panel, mean, color=palette[label], width=2,
                                  marker="o" if len(mean) < 30 else None,
                                  label=legend[label] + n))
    return draw_curves(lines, path, ylabels=("training loss", "validation accuracy"),
                       loss_levels=_chance_loss(runs), note=footnote(legend.values()))


def plot_histograms(records: Mapping[str, dict], path: Path,
                    legend: Mapping[str, str] | None = None) -> Path | None:
    """label -> a diagnostics record; one row per label that has histograms, named by
    ``legend`` (e.g. ``legend_labels``: with the recorded sigma_w^2) where given."""
    legend = legend or {}
    rows = [(legend.get(label, label), rec["histograms"]) for label, rec in records.items()
            if rec.get("histograms")]
    return plot_grid(rows, path, note=footnote(label for label, _ in rows)) if rows else None


def plot_depth(series: Mapping[str, Sequence[dict]], path: Path,
               legend: Mapping[str, str] | None = None) -> Path | None:
    """Per init (a list of records, one per seed): pre-activation RMS sqrt(E[h^2]) and
    activation std per layer, measured (solid, mean with the seeds' min-max as error bars)
    and mean-field predicted (dashed).  One legend entry per init (``legend`` names it), one
    per line style; each axis log-scaled when its values span more than 1.5 decades, and an
    init whose values are all 0 (zeros) said so in its legend entry rather than lost off a
    log axis."""
    series = {label: [r for r in records if r] for label, records in series.items()}
    series = {label: records for label, records in series.items() if records}
    if not series:
        return None
    legend = {label: (legend or {}).get(label, label) for label in series}
    plt = pyplot()
    from matplotlib.lines import Line2D

    palette = colors(list(series))
    fig, (*axes, key) = plt.subplots(1, 3, figsize=(13, 4), width_ratios=(1, 1, 0.6))
    key.axis("off")
    panels = ((axes[0], "preact_var", math.sqrt, False), (axes[1], "act_std", lambda v: v, True))
    values: dict[int, list[float]] = {0: [], 1: []}
    zero = set()
    seeds = 1
    for label, records in series.items():
        for i, (ax, stat, transform, hidden_only) in enumerate(panels):
            depth = through_depth(records, stat, transform, hidden_only)
            seeds = max(seeds, depth.seeds)
            if not any(v > 0 for v in depth.mean):
                zero.add(label)
            ax.errorbar(depth.layers, depth.mean, color=palette[label], marker="o", ms=4, lw=1.5,
                        yerr=[depth.low, depth.high] if depth.seeds > 1 else None)
            values[i] += [*depth.mean, *(depth.predicted or [])]
            if depth.predicted is not None:
                ax.plot(depth.layers, depth.predicted, color=palette[label], ls="--", lw=1.2)
    depths = {len(records[0]["layers"]) for records in series.values()}
    layers = max(depths)
    hidden = sorted({i + 1 for records in series.values()
                     for i, layer in enumerate(records[0]["layers"]) if layer.get("kind")})
    if len(depths) > 1:  # networks of several depths: each one's output layer as a square
        for label, records in series.items():
            last = through_depth(records, "preact_var", math.sqrt)
            axes[0].plot(last.layers[-1:], last.mean[-1:], "s", ms=8, mfc="none",
                         color=palette[label])
    axes[0].set_title("pre-activation RMS, sqrt(E[h^2]), every layer", fontsize=10)
    axes[1].set_title("activation std, hidden layers", fontsize=10)
    for i, ax in enumerate(axes):
        if log_axis(values[i]):
            ax.set_yscale("log")
        ax.set_ylabel(("sqrt(E[h^2])", "std")[i]
                      + (" (log scale)" if ax.get_yscale() == "log" else ""))
        layer_ticks(ax, range(1, layers + 1) if i == 0 else hidden,
                    output=layers if len(depths) == 1 else None)
        ax.grid(alpha=0.3, which="both")
    if len(depths) > 1:
        axes[0].set_xlabel("layer (1 = first hidden layer; square: a network's output layer)")
    bars = f", bars: min-max over {seeds} seeds" if seeds > 1 else ""
    handles = [Line2D([], [], color=palette[label], lw=2,
                      label=legend[label] + (" (all 0: not on a log axis)"
                                             if label in zero and "log" in
                                             (axes[0].get_yscale(), axes[1].get_yscale())
                                             else ""))
               for label in series]
    handles += [Line2D([], [], color="k", marker="o", ms=4, lw=1.5, label=f"measured{bars}"),
                Line2D([], [], color="k", ls="--", lw=1.2, label="mean-field prediction")]
    key.legend(handles=handles, loc="center left", fontsize=7, frameon=False)
    layout(fig, footnote(legend.values()))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _panel(client, run) -> tuple | None:
    """(run, model, x, y) for one run on 2-D data, or None (said why, in one line)."""
    weights = load_run_weights(client, run.info.run_id)
    if weights is None:
        return None
    try:
        model = build_model(run, weights)
        x, y = load_points(run)
    except Unusable as exc:
        log.warning("compare: run %s skipped for decision boundaries: %s", run.info.run_id, exc)
        return None
    return run, model, x, y


def plot_boundaries(client, runs: Sequence, labels: Mapping[str, str], path: Path,
                    max_panels: int = 12) -> Path | None:
    """Decision regions of each run's final model on 2-D data, with its training points.

    The model is rebuilt from the project's nets and the run's recorded params, and given its
    safetensors weights (``initlab.report.rebuild``); nothing in the store is executed."""
    import torch

    two_d = [r for r in runs if param_value(r.data.params.get("dataset.in_features")) == 2]
    panels = [p for p in (_panel(client, r) for r in two_d[:max_panels]) if p]
    if not panels:
        return None
    plt = pyplot()
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    titles = []
    for ax, (run, model, x, y) in zip(axes.flat, panels):
        lo, hi = x.min(0).values - 0.3, x.max(0).values + 0.3
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200),
                                torch.linspace(lo[1], hi[1], 200), indexing="xy")
        with torch.no_grad():
            out = model(torch.stack([gx.flatten(), gy.flatten()], 1))
        pred = (out.squeeze(-1) > 0).float() if out.shape[-1] == 1 else out.argmax(-1).float()
        ax.contourf(gx.numpy(), gy.numpy(), pred.reshape(gx.shape).numpy(), alpha=0.35,
                    cmap="coolwarm")
        ax.scatter(x[:, 0], x[:, 1], c=y, s=6, cmap="coolwarm", edgecolors="k", linewidths=0.2)
        acc = run.data.metrics.get("test/acc")
        sigma_w2 = recorded_sigma_w2([run])
        below = [f"{SIGMA_W2}={sigma_w2:.3g}" if sigma_w2 is not None else "",
                 f"test acc {acc:.2f}" if acc is not None else ""]
        ax.set_title(f"{labels[run.info.run_id]} seed {run.data.params.get('seed')}\n"
                     + ", ".join(b for b in below if b), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        titles.append(ax.get_title())
    layout(fig, footnote(titles))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
