"""The loss/accuracy curve figure that every run stores as ``curves.png``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

History = Mapping[str, Sequence[tuple[int, float]]]  # metric -> [(step, value), ...]


def metric_history(client, run_id: str, keys: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """Read metric curves back from the MLflow store (what the UI will show)."""
    out = {}
    for key in keys:
        points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        if points:
            out[key] = [(m.step, m.value) for m in points]
    return out


def plot_curves(history: History, title: str, path: Path) -> Path:
    """Loss (left) and accuracy (right) against training step, train and val."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, ax in (("loss", ax_loss), ("acc", ax_acc)):
        for split, style in (("train", "-"), ("val", "--")):
            points = history.get(f"{split}/{key}")
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, marker="o", markersize=3, label=split)
        ax.set_xlabel("training step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if "train/loss_step" in history:
        steps, values = zip(*history["train/loss_step"])
        ax_loss.plot(steps, values, alpha=0.35, linewidth=0.8, label="train (steps)")
        ax_loss.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
