"""Activation histograms per layer, in the style of S1's figures: the counts (kept as JSON, so
``compare`` can redraw them from MLflow) and the figures (one row per network, one panel per
hidden layer).

Bins are shared by all layers of one network, so a signal that shrinks or grows with depth is
seen as it is: sigmoid on [0, 1], tanh on [-1, 1], others on [0, hi] (ReLU) or [-hi, hi] with
hi the largest 99.5th percentile of |activation| over the layers.  For ReLU only the positive
outputs are binned; the fraction of exact zeros is kept beside the counts (``zeros``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from initlab.diagnostics.figures import TITLE_Y, fixed_layout, layout  # noqa: E402
from initlab.diagnostics.layerstats import Measurement  # noqa: E402
from initlab.inits.labels import naming_notes  # noqa: E402

_FIXED = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
_MAX_QUANTILE_INPUT = 1 << 20


def _robust_max(values: torch.Tensor) -> float:
    flat = values.detach().float().abs().flatten()
    if flat.numel() > _MAX_QUANTILE_INPUT:
        flat = flat[:: flat.numel() // _MAX_QUANTILE_INPUT + 1]
    return float(torch.quantile(flat, 0.995)) if flat.numel() else 0.0


def histogram_data(measurement: Measurement, bins: int = 30) -> list[dict[str, Any]]:
    """Per hidden layer: ``{"layer", "kind", "edges", "counts", "zeros", "total"}``."""
    hidden = [layer for layer in measurement.layers if layer.activation is not None]
    acts = {layer.name: measurement.captured.act[layer.name].detach().float() for layer in hidden}
    if not hidden:
        return []
    kind = hidden[0].kind
    if kind in _FIXED:
        low, high = _FIXED[kind]
    else:
        high = max(_robust_max(a) for a in acts.values()) or 1.0
        low = 0.0 if kind == "relu" else -high
    out = []
    for layer in hidden:
        a = acts[layer.name].flatten()
        zeros = int((a == 0).sum()) if layer.kind == "relu" else 0
        if layer.kind == "relu":
            a = a[a > 0]
        counts = torch.histc(a, bins=bins, min=low, max=high) if a.numel() else torch.zeros(bins)
        edges = torch.linspace(low, high, bins + 1)
        out.append({"layer": layer.name, "kind": layer.kind, "edges": edges.tolist(),
                    "counts": [int(c) for c in counts.tolist()], "zeros": zeros,
                    "total": int(acts[layer.name].numel())})
    return out


def _draw_row(axes: Sequence, hists: Sequence[dict[str, Any]], label: str | None) -> None:
    for i, ax in enumerate(axes):
        if i >= len(hists):
            ax.axis("off")
            continue
        h = hists[i]
        edges, counts = h["edges"], h["counts"]
        total = max(h["total"], 1)
        # one filled outline, not a bar per bin (a third of the figure's drawing time)
        ax.stairs([c / total for c in counts], edges, fill=True, color="tab:blue")
        title = f"hidden layer {i + 1} ({h['kind']} output)"
        if h["kind"] == "relu":
            title += f"\n{h['zeros'] / total:.0%} exact zeros, not binned"
        ax.set_title(title, fontsize=8, y=TITLE_Y)
        ax.tick_params(labelsize=7)
        if i == 0 and label:
            ax.set_ylabel(label, fontsize=8)


def plot_row(hists: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    """One network's activation histograms, one panel per hidden layer (S1's figure); a
    footnote where the title names a family the seed studies call otherwise (lecun)."""
    n = max(len(hists), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), sharey=True, squeeze=False)
    _draw_row(axes[0], hists, "fraction of entries")
    fig.suptitle(title, fontsize=10)
    fixed_layout(fig, "\n".join(naming_notes([title])), left=0.6, right=0.15, bottom=0.45,
                 gap=0.25)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_grid(rows: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: Path,
              title: str = "Activation histograms at initialization (layer x init)",
              note: str | None = None) -> Path:
    """Several networks: one row per (label, histograms), one column per hidden layer; the
    footnote ``note`` (default: the naming notes of the families the labels name)."""
    ncols = max((len(h) for _, h in rows), default=1) or 1
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.4 * ncols, 2.2 * len(rows) + 0.6),
                             squeeze=False)
    for axes_row, (label, hists) in zip(axes, rows):
        _draw_row(axes_row, hists, label + "\nfraction of entries")
    fig.suptitle(title, fontsize=11)
    layout(fig, "\n".join(naming_notes(label for label, _ in rows)) if note is None else note)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
