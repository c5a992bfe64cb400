"""Loss and accuracy against training step: the one drawing function (``draw_curves``) behind
both the figure every run stores as ``curves.png`` (``plot_curves``) and the comparison's
curves per init (``initlab.report.figures.plot_curves_per_init``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initlab.report.query import metric_history

__all__ = ["Line", "draw_curves", "metric_history", "plot_curves", "pyplot"]

History = Mapping[str, Sequence[tuple[int, float]]]  # metric -> [(step, value), ...]
PANELS = ("loss", "acc")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
                loss_levels: Mapping[str, float] | None = None) -> Path | None:
    """Loss (left) and accuracy (right) against training step; ``loss_levels`` adds dotted
    reference lines (e.g. the chance-level loss ``ln K``).  None when no line has points."""
    lines = [line for line in lines if line.points]
    if not lines:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4))
    panels = dict(zip(PANELS, axes))
    for line in lines:
        steps, values = zip(*line.points)
        panels[line.panel].plot(steps, values, line.style, color=line.color, lw=line.width,
                                alpha=line.alpha, marker=line.marker, markersize=3,
                                label=line.label)
    for name, level in (loss_levels or {}).items():
        panels["loss"].axhline(level, color="grey", ls=":", lw=1, label=name)
    for ax, ylabel in zip(axes, ylabels):
        ax.set(xlabel="training step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(history: History, title: str, path: Path) -> Path | None:
    """One run: loss (left) and accuracy (right) against training step, train (solid) and val
    (dashed) per epoch, and the per-step training loss (thin).  None for an empty history."""
    lines = [Line(key, history.get(f"{split}/{key}") or (), label=split, color=f"C{i}",
                  style=style, marker="o")
             for key in PANELS for i, (split, style) in enumerate((("train", "-"), ("val", "--")))]
    lines.append(Line("loss", history.get("train/loss_step") or (), label="train (steps)",
                      color="C0", width=0.8, alpha=0.35))
    return draw_curves(lines, path, title)
