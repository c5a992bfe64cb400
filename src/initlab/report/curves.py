"""Loss and accuracy against training step: the one drawing function (``draw_curves``) behind
both the figure every run stores as ``curves.png`` (``plot_curves``) and the comparison's
curves per init (``initlab.report.figures.plot_curves_per_init``).

The loss axis is logarithmic when the plotted losses span more than ``LOG_DECADES`` decades (a
x10 init starting near 100 beside runs near ln 2 would flatten them on a linear one); the
chance line is ``ln K`` of the runs' own K classes (a binary task with one sigmoid output: ln 2)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initlab.diagnostics.figures import fixed_layout, layout
from initlab.inits.labels import naming_notes
from initlab.report.query import metric_history

__all__ = ["LOG_DECADES", "Line", "chance_loss", "draw_curves", "layout", "log_axis",
           "metric_history", "plot_curves", "pyplot"]

History = Mapping[str, Sequence[tuple[int, float]]]  # metric -> [(step, value), ...]
PANELS = ("loss", "acc")
LOG_DECADES = 1.5  # a loss axis spanning more decades than this is drawn log-scaled


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_axis(values: Iterable[float], decades: float = LOG_DECADES) -> bool:
    """Whether the finite positive ``values`` span more than ``decades`` powers of ten."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return bool(positive) and math.log10(max(positive) / min(positive)) > decades


def chance_loss(num_classes: int | None) -> dict[str, float]:
    """``{"chance: ln K = ...": ln K}``, the cross-entropy of a uniform guess over K classes
    (K = 2 for a binary task, one sigmoid output or two logits); empty without a K > 1."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        return {}
    return {f"chance: ln {num_classes} = {math.log(num_classes):.3g}": math.log(num_classes)}


def flat_axis(ax: Any, min_span: float = 0.02) -> None:
    """A curve that does not move (a zero init stuck at ln 2) is shown as what it is: plain
    tick values (no "1e-6 + 6.9314e-1" offset) on a range of at least ``min_span`` around it,
    not its float noise blown up to fill the panel."""
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    low, high = ax.get_ylim()
    if high - low < min_span:
        middle = (low + high) / 2
        ax.set_ylim(middle - min_span / 2, middle + min_span / 2)


@dataclass
class Line:
    """One curve: which panel (``loss`` or ``acc``), its points and how it looks."""

    panel: str
    points: Sequence[tuple[int, float]]
    label: str | None = None
    color: Any = None
    style: str = "-"
    width: float = 1.5
    alpha: float = 1.0
    marker: str | None = None


def draw_curves(lines: Sequence[Line], path: Path, title: str | None = None,
                ylabels: tuple[str, str] = ("loss", "acc"),
                loss_levels: Mapping[str, float] | None = None,
                note: str | None = None) -> Path | None:
    """Loss (left) and accuracy (right) against training step; ``loss_levels`` adds dotted
    reference lines (e.g. the chance-level loss ``ln K``), ``note`` a footnote.  The loss axis
    is log-scaled when its values span more than ``LOG_DECADES``.  None when no line has
    points."""
    lines = [line for line in lines if line.points]
    if not lines:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4))
    panels = dict(zip(PANELS, axes))
    for line in lines:
        steps, values = zip(*line.points)
        panels[line.panel].plot(steps, values, line.style, color=line.color, lw=line.width,
                                alpha=line.alpha, markersize=3,
                                marker=line.marker or ("o" if len(steps) == 1 else None),
                                label=line.label)
    for name, level in (loss_levels or {}).items():
        panels["loss"].axhline(level, color="grey", ls=":", lw=1, label=name)
    losses = [v for line in lines if line.panel == "loss" for _, v in line.points]
    if log_axis([*losses, *(loss_levels or {}).values()]):
        panels["loss"].set_yscale("log")
        ylabels = (f"{ylabels[0]} (log scale)", ylabels[1])
    for ax, ylabel in zip(axes, ylabels):
        ax.set(xlabel="training step", ylabel=ylabel)
        if ax.get_yscale() == "linear":
            flat_axis(ax)
        ax.grid(alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fixed_layout(fig, note, left=0.8, gap=0.9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(history: History, title: str, path: Path,
                num_classes: int | None = None) -> Path | None:
    """One run: loss (left) and accuracy (right) against training step, train (solid) and val
    (dashed) per epoch, and the per-step training loss (thin); with ``num_classes`` the chance
    line ln K.  None for an empty history."""
    lines = [Line(key, history.get(f"{split}/{key}") or (), label=split, color=f"C{i}",
                  style=style, marker="o")
             for key in PANELS for i, (split, style) in enumerate((("train", "-"), ("val", "--")))]
    lines.append(Line("loss", history.get("train/loss_step") or (), label="train (steps)",
                      color="C0", width=0.8, alpha=0.35))
    return draw_curves(lines, path, title, loss_levels=chance_loss(num_classes),
                       note="\n".join(naming_notes([title])))
