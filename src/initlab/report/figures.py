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

from initlab.diagnostics.histograms import plot_grid
from initlab.report.aggregate import mean_curve, through_depth
from initlab.report.curves import Line, draw_curves, pyplot
from initlab.report.labels import grouped
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
    if len(classes) == 1 and isinstance(k := classes.pop(), int) and k > 1:
        return {f"ln {k} (chance)": math.log(k)}
    return {}


def plot_curves_per_init(client, runs: Sequence, labels: Mapping[str, str],
                         path: Path) -> Path | None:
    """Training loss (per logged step) and validation accuracy, one colour per init; every
    seed is drawn (thin), the mean over seeds thick."""
    groups = grouped(runs, labels)
    palette = colors(list(groups))
    lines = []
    for label, members in groups.items():
        for panel, keys in (("loss", LOSS_KEYS), ("acc", ACC_KEYS)):
            curves = [c for c in (first_history(client, r.info.run_id, keys) for r in members) if c]
            lines += [Line(panel, c, color=palette[label], width=0.8, alpha=0.3) for c in curves]
            if curves:
                mean = mean_curve(curves)
                lines.append(Line(panel, mean, color=palette[label], width=2,
                                  marker="o" if len(mean) < 30 else None,
                                  label=f"{label} (n={len(curves)})" if len(curves) > 1 else label))
    return draw_curves(lines, path, ylabels=("training loss", "validation accuracy"),
                       loss_levels=_chance_loss(runs))


def plot_histograms(records: Mapping[str, dict], path: Path) -> Path | None:
    """label -> a diagnostics record; one row per label that has histograms."""
    rows = [(label, rec["histograms"]) for label, rec in records.items() if rec.get("histograms")]
    return plot_grid(rows, path) if rows else None


def plot_depth(series: Mapping[str, Sequence[dict]], path: Path) -> Path | None:
    """Per init (a list of records, one per seed): pre-activation RMS sqrt(E[h^2]) and
    activation std per layer, measured (solid, mean with the seeds' min-max as error bars)
    and mean-field predicted (dashed)."""
    series = {label: [r for r in records if r] for label, records in series.items()}
    series = {label: records for label, records in series.items() if records}
    if not series:
        return None
    plt = pyplot()
    palette = colors(list(series))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, records in series.items():
        for ax, stat, transform, hidden_only in ((axes[0], "preact_var", math.sqrt, False),
                                                 (axes[1], "act_std", lambda v: v, True)):
            depth = through_depth(records, stat, transform, hidden_only)
            n = f" (n={depth.seeds})" if depth.seeds > 1 else ""
            ax.errorbar(depth.layers, depth.mean, color=palette[label], marker="o", ms=4, lw=1.5,
                        yerr=[depth.low, depth.high] if depth.seeds > 1 else None,
                        label=f"{label} measured{n}")
            if depth.predicted is not None:
                ax.plot(depth.layers, depth.predicted, color=palette[label], ls="--", lw=1.2,
                        label=f"{label} mean-field")
    axes[0].set(title="pre-activation RMS, sqrt(E[h^2])", xlabel="layer", yscale="log")
    axes[1].set(title="activation std (hidden layers)", xlabel="layer", yscale="log")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
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
        ax.set_title(f"{labels[run.info.run_id]} seed {run.data.params.get('seed')}"
                     + (f"\ntest acc {acc:.2f}" if acc is not None else ""), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
