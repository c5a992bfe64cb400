"""Dynamical isometry (Saxe et al. 2014; Pennington et al. 2017): orthogonal vs Gaussian
weights in a deep linear and a critical tanh net.  One figure: the singular values s of each
run's input-output Jacobian at init (histograms of log10 s, overlaid; the diagnostics record's
``jacobian``), and the training loss against optimizer steps (learning speed), one column per
activation.

Orthogonal weights at sigma_w^2 = 1 make a linear net's Jacobian an orthogonal matrix: every
s is 1, at any depth.  Gaussian weights spread the spectrum (Var(s^2) grows linearly with
depth); a critical tanh net adds its D's spread, small where q* is small.  The well-conditioned
nets learn faster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from initlab.report.curves import pyplot
from initlab.report.query import first_history, load_record, param_value

ISOMETRY_FILE = "isometry.png"
LOSS_KEYS = ("train/loss_step", "train/loss")
STYLE = {"orthogonal": ("tab:blue", "orthogonal"), "normal": ("tab:orange", "Gaussian")}


def isometry_data(client, runs: Sequence) -> dict[str, dict[str, list[dict]]]:
    """activation -> init name -> [{"jacobian": record's jacobian or None, "loss": [(step, v)],
    "sigma_w2": float | None}], one entry per run."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        params = run.data.params
        act = str(param_value(params.get("model.activation", "?")))
        init = str(param_value(params.get("init.name", "?")))
        record = load_record(client, run.info.run_id) or {}
        out[act][init].append({
            "jacobian": record.get("jacobian"),
            "loss": first_history(client, run.info.run_id, LOSS_KEYS),
            "sigma_w2": param_value(params.get("init.sigma_w2")),
        })
    return {a: dict(v) for a, v in out.items()}


def isometry_figure(data: dict[str, dict[str, list[dict]]], title: str | None = None):
    """Row 1: log10 s at init, one histogram per init (first run of each), per activation;
    row 2: training loss vs step (thin: each run).  A matplotlib Figure."""
    plt = pyplot()
    acts = sorted(data, key=lambda a: (a != "linear", a))
    fig, axes = plt.subplots(2, max(len(acts), 1), figsize=(6.0 * max(len(acts), 1), 7.2),
                             squeeze=False, constrained_layout=True)
    for col, act in enumerate(acts):
        spec, loss = axes[0, col], axes[1, col]
        for init, entries in sorted(data[act].items()):
            color, name = STYLE.get(init, (None, init))
            jac = next((e["jacobian"] for e in entries if e["jacobian"]), None)
            sw2 = entries[0]["sigma_w2"]
            if jac:
                hist, stats = jac["hist"], jac["stats"]
                counts = np.asarray(hist["counts"], float) / max(hist["total"], 1)
                label = f"{name}: s in [{stats['s_min']:.3g}, {stats['s_max']:.3g}]" + (
                    f", {hist['zeros']} numerically 0" if hist.get("zeros") else "")
                if 0 < stats["s_min"] and stats["s_max"] / stats["s_min"] < 1.01:  # a spike
                    mid = 0.5 * (stats["s_max"] + stats["s_min"])
                    label = (f"{name}: all s = {mid:.4g} within "
                             f"{max(stats['s_max'] - mid, mid - stats['s_min'], 1e-16):.0e}")
                    spec.axvline(np.log10(stats["s_max"]), color=color, lw=3, label=label)
                else:
                    spec.stairs(counts, hist["log10_edges"], color=color, fill=True, alpha=0.45,
                                label=label)
                depth = jac["depth"]
            for i, entry in enumerate(entries):
                if entry["loss"]:
                    steps, values = zip(*entry["loss"])
                    loss.plot(steps, values, color=color, lw=1.4,
                              label=name if i == 0 else None)
        depth = next((e["jacobian"]["depth"] for es in data[act].values() for e in es
                      if e["jacobian"]), None)
        spec.set(title=f"{act}: Jacobian spectrum at init"
                       + (f" (depth {depth}, $\\sigma_w^2$={sw2:.4g})" if depth and sw2 else ""),
                 xlabel="log$_{10}$ s", ylabel="fraction of singular values")
        spec.legend(fontsize=8)
        loss.set(title=f"{act}: learning speed", xlabel="optimizer step",
                 ylabel="training loss", yscale="log")
        if loss.lines:
            loss.legend(fontsize=8)
    fig.suptitle(title or "dynamical isometry: orthogonal vs Gaussian "
                          "(Saxe et al. 2014; Pennington et al. 2017)")
    return fig


def plot_isometry(client, runs: Sequence, path: Path) -> Path | None:
    """``isometry_figure`` of the runs, saved; None when no run has a Jacobian record."""
    data = isometry_data(client, runs)
    if not any(e["jacobian"] for inits in data.values() for es in inits.values() for e in es):
        return None
    fig = isometry_figure(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
