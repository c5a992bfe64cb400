"""The backward and Jacobian diagnostics records of several runs, redrawn side by side (what
``python -m initlab.compare`` adds when the runs have them):

- ``backward.png``: E[(dl/dh)^2] and chi_1 through depth at init, one colour per init, measured
  (solid: mean over seeds, band: min-max) and mean-field predicted (dashed);
- ``spectra.png``: the input-output Jacobian's singular values at init (histograms of log10 s,
  the first seed of each init), overlaid.

Each function returns the file it wrote, or None when no run has the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from initlab.report.curves import pyplot

CAPTIONS = {
    "backward": "Backward signal at initialization: E[(dl/dh)^2] and chi_1 per layer, measured "
                "(solid; band = min-max over seeds) and mean-field predicted (dashed).",
    "spectra": "Singular values of the input-output Jacobian at initialization (log10 s, "
               "first seed of each init), overlaid.",
    "phase": "Final accuracy over sigma_w^2 x depth, with 6 xi_c from mean-field theory "
             "(Schoenholz et al. 2017, Fig. 5).",
}
Records = Mapping[str, Sequence[dict | None]]


def _colors(names: Sequence[str]) -> dict[str, object]:
    cmap = pyplot().get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _per_layer(records: Sequence[dict], stat: str, where: str = "stats") -> np.ndarray | None:
    """(runs, layers) of ``stat`` (NaN where a layer lacks it); None when no layer has it."""
    rows = [[(layer.get(where) or {}).get(stat, np.nan) for layer in r["layers"]]
            for r in records]
    width = max((len(row) for row in rows), default=0)
    arr = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        arr[i, :len(row)] = row
    return None if not np.isfinite(arr).any() else arr


def plot_backward_across(by_label: Records, path: Path) -> Path | None:
    panels = (("grad_preact_var", "E[(dl/dh)$^2$] at init", "log"),
              ("chi1", "$\\chi_1$ per layer at init", "linear"))
    data = {label: [r for r in recs if r and r.get("layers")] for label, recs in by_label.items()}
    data = {k: v for k, v in data.items() if v and _per_layer(v, "grad_preact_var") is not None}
    if not data:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    colors = _colors(list(data))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, (stat, title, scale) in zip(axes, panels):
        for label, recs in data.items():
            measured = _per_layer(recs, stat)
            if measured is None:
                continue
            x = np.arange(1, measured.shape[1] + 1)
            with warnings.catch_warnings():  # a layer without the stat (chi_1 of the output)
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = (np.nanmean(measured, 0), np.nanmin(measured, 0),
                                np.nanmax(measured, 0))
            ax.plot(x, mean, "-o", ms=3, color=colors[label], label=label)
            if len(recs) > 1:
                ax.fill_between(x, lo, hi, color=colors[label], alpha=0.2)
            pred = _per_layer(recs[:1], stat, "pred")
            if pred is not None:
                ax.plot(x, pred[0], "--", color=colors[label], lw=1)
        if stat == "chi1":
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set(title=title, xlabel="layer", yscale=scale)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    fig.suptitle("backward signal at init: measured (solid) and mean-field (dashed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectra_across(by_label: Records, path: Path) -> Path | None:
    jacs = {label: next((r["jacobian"] for r in recs if r and r.get("jacobian")), None)
            for label, recs in by_label.items()}
    jacs = {k: v for k, v in jacs.items() if v}
    if not jacs:
        return None
    plt = pyplot()
    colors = _colors(list(jacs))
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for label, jac in jacs.items():
        hist, stats = jac["hist"], jac["stats"]
        counts = np.asarray(hist["counts"], float) / max(hist["total"], 1)
        ax.stairs(counts, hist["log10_edges"], color=colors[label], fill=True, alpha=0.35,
                  label=f"{label} (depth {jac['depth']}; s in [{stats['s_min']:.3g}, "
                        f"{stats['s_max']:.3g}]"
                        + (f"; {hist['zeros']} zeros" if hist.get("zeros") else "") + ")")
    ax.set(title="input-output Jacobian singular values at init", xlabel="log$_{10}$ s",
           ylabel="fraction of singular values")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(by_label: Records, out: Path) -> dict[str, Path | None]:
    return {"backward": plot_backward_across(by_label, out / "backward.png"),
            "spectra": plot_spectra_across(by_label, out / "spectra.png")}


def append_summary(summary: Path, figures: Mapping[str, Path | None]) -> None:
    """Add the drawn figures, with their captions, to the comparison's summary.md."""
    lines = [f"## {name}\n\n{CAPTIONS.get(name, '')}\n\n![{name}]({fig.name})\n"
             for name, fig in figures.items() if fig is not None]
    if lines:
        with summary.open("a") as f:
            f.write("\n" + "\n".join(lines))
