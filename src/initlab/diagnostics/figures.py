"""Figures of the backward and Jacobian diagnostics (matplotlib is imported when one is drawn):
the backward signal and chi_1 through depth, measured beside the mean-field prediction, and the
histogram of the input-output Jacobian's singular values; ``layout`` (a footnote under the axes)
and ``layer_ticks`` (layer numbers that say which is the output) serve every figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from initlab.inits.labels import naming_notes


# An axes title at a fixed height: matplotlib otherwise places it clear of top ticks (there are
# none here) by measuring the x axis first, 40 % of drawing a small figure.
TITLE_Y = 1.0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def layout(fig, note: str | None = None) -> None:
    """``tight_layout``, with ``note`` in small print under the axes (the figure grows by its
    lines, so the axes keep their size)."""
    if not note:
        fig.tight_layout()
        return
    width, height = fig.get_size_inches()
    extra = 0.15 * (note.count("\n") + 1) + 0.1
    fig.set_size_inches(width, height + extra)
    fig.text(0.01, 0.02 / (height + extra), note, fontsize=7, color="0.3", ha="left",
             va="bottom")
    fig.tight_layout(rect=(0, extra / (height + extra), 1, 1))


def fixed_layout(fig, note: str | None = None, *, left: float = 0.8, right: float = 0.2,
                 bottom: float = 0.6, gap: float = 0.9) -> None:
    """Margins in inches (``left`` of the first axes, ``gap`` between panels, ...) instead of
    ``tight_layout``, which measures every text to place the axes: 40 % of a run's figure
    time.  Room on top for the suptitle and the axes' titles, by their lines; ``note`` as in
    ``layout``."""
    width, height = fig.get_size_inches()
    extra = 0.0
    if note:
        extra = 0.15 * (note.count("\n") + 1) + 0.1
        fig.set_size_inches(width, height + extra)
        fig.text(0.01, 0.02 / (height + extra), note, fontsize=7, color="0.3", ha="left",
                 va="bottom")
    total = height + extra
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    title_lines = max((ax.get_title().count("\n") + 1 for ax in axes if ax.get_title()),
                      default=0)
    top = 0.15 + (0.4 if fig.get_suptitle() else 0.0) + 0.17 * title_lines
    columns = max((ax.get_subplotspec().get_gridspec().ncols for ax in axes
                   if ax.get_subplotspec() is not None), default=1)
    panel = max((width - left - right - gap * (columns - 1)) / columns, 0.5)
    fig.subplots_adjust(left=left / width, right=1 - right / width,
                        bottom=(bottom + extra) / total, top=1 - top / total,
                        wspace=gap / panel)


def layer_ticks(ax, layers: Sequence[int], output: int | None = None) -> None:
    """x ticks at ``layers`` (1-based weight layers), the ``output`` one marked as such, and
    an axis label that says what the numbers count."""
    ax.set_xticks(list(layers))
    ax.set_xticklabels([f"{n}\n(output)" if n == output else str(n) for n in layers])
    ax.set_xlabel("layer (1 = first hidden layer)" if output not in layers
                  else "layer (1 = first hidden layer, last = output layer)")


def plot_backward(names: Sequence[str], stats: dict[str, dict[str, float]],
                  preds: Sequence[dict[str, float]] | None, title: str, path: Path) -> Path:
    """Left: E[(dl/dh)^2] per layer (log scale); right: chi_1 per hidden layer, a line at 1."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    depth = list(range(1, len(names) + 1))
    for ax, key, label in ((left, "grad_preact_var", "E[(dl/dh)^2]"), (right, "chi1", "chi_1")):
        xs = [d for d, n in zip(depth, names) if key in stats[n]]
        ax.plot(xs, [stats[n][key] for n in names if key in stats[n]], "o-", label="measured")
        if preds is not None:
            ax.plot(xs, [p[key] for p in preds if key in p], "k--", label="mean-field")
        layer_ticks(ax, xs, output=len(names))
        ax.set_title(label, fontsize=10, y=TITLE_Y)
        ax.legend(fontsize=8)
    left.set_yscale("log")
    right.axhline(1.0, color="grey", lw=0.8)
    low, high = right.get_ylim()
    right.set_ylim(min(low, 0.9), max(high, 1.1))  # a scale to read the distance from 1 by
    fig.suptitle(title, fontsize=10)
    notes = naming_notes([title])
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, color="0.3", va="bottom")
    fig.set_size_inches(9, 3.4 + 0.15 * len(notes))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2 + 0.05 * len(notes), top=0.84,
                        wspace=0.25)
    fig.savefig(path, dpi=90)  # fixed margins: tight_layout would draw the figure twice
    plt.close(fig)
    return path


def plot_spectrum(result: dict[str, Any], title: str, path: Path) -> Path:
    """Histogram of log10 s over the probe inputs (numerical zeros counted apart), with s = 1 and
    the predicted sqrt(E[s^2])."""
    plt = _pyplot()
    hist = result["hist"]
    edges, counts = hist["log10_edges"], hist["counts"]
    total = max(hist.get("total", sum(counts)), 1)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.stairs([c / total for c in counts], edges, fill=True, color="tab:blue")  # one outline
    ax.axvline(0.0, color="grey", lw=0.8, label="s = 1")
    stats, pred = result["stats"], result["pred"]
    if pred and pred["s2_mean"] > 0:
        import math

        ax.axvline(0.5 * math.log10(pred["s2_mean"]), color="k", ls="--",
                   label="predicted sqrt(E[s^2])")
    zeros = hist.get("zeros", 0)
    ax.set_xlabel("log10 singular value" + (f" ({zeros / total:.0%} numerically zero, not shown)"
                                             if zeros else ""))
    ax.set_ylabel("fraction")
    ax.set_title(f"{title}\ndepth {result['depth']}, E[s^2] {stats['s2_mean']:.3g}, "
                 f"var {stats['s2_var']:.3g}, s_max {stats['s_max']:.3g}", fontsize=9,
                 y=TITLE_Y)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.15, top=0.83)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
