"""Names for runs in legends and tables: the init label (``initlab.inits.labels.init_label``),
with the activation when the compared runs differ in it, and runs grouped by label; for
figures, the label with the effective sigma_w^2 the runs recorded (``legend_labels``) and a
footnote saying what that number is and where a family's name differs from the seed studies'
(``footnote``)."""

from __future__ import annotations

import math
import statistics
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from initlab.inits.labels import SIGMA_W2, init_label, naming_notes

SIGMA_W2_METRIC = "init/sigma_w2"  # recorded at step 0: fan_in x Var(W), geometric mean of layers
SIGMA_W2_NOTE = (f"{SIGMA_W2} = fan_in x Var(W) of the weights as drawn (metric {SIGMA_W2_METRIC}: "
                 "geometric mean over layers; a group's: mean over its seeds)")


def init_params(run) -> dict[str, Any]:
    """The run's ``init.*`` params (its bias init left out), as recorded (strings)."""
    return {k[len("init."):]: v for k, v in run.data.params.items()
            if k.startswith("init.") and not k.startswith("init.bias.")}


def activations(runs: Sequence) -> set[str | None]:
    return {r.data.params.get("model.activation") for r in runs}


def _hidden(text: str | None) -> str:
    """``[256, 256]`` -> ``hidden 256x2``; ``[10, 5]`` -> ``hidden 10-5``."""
    widths = [w.strip() for w in str(text).strip("[]").split(",") if w.strip()]
    if widths and len(set(widths)) == 1:
        return f"hidden {widths[0]}x{len(widths)}"
    return f"hidden {'-'.join(widths)}" if widths else "no hidden layer"


def model_label(runs: Sequence) -> Callable[[Any], str]:
    """run -> what tells its network apart from the other runs': its hidden widths when they
    differ, else its model name when that does, else nothing (one network for all)."""
    def differ(key: str) -> bool:
        return len({r.data.params.get(key) for r in runs}) > 1

    if differ("model.hidden"):
        return lambda run: _hidden(run.data.params.get("model.hidden"))
    if differ("model.name"):
        return lambda run: str(run.data.params.get("model.name"))
    return lambda run: ""


def labels_for(runs: Sequence) -> dict[str, str]:
    """run id -> label; the activation is added when the runs differ in it, and the network
    (``model_label``) when they differ in it: runs of different depths never share a line."""
    several = len(activations(runs)) > 1
    network = model_label(runs)
    out = {}
    for run in runs:
        label = init_label(init_params(run))
        if several:
            label = f"{run.data.params.get('model.activation')} {label}"
        if network(run):
            label = f"{label}, {network(run)}"
        out[run.info.run_id] = label
    return out


def grouped(runs: Sequence, labels: Mapping[str, str]) -> OrderedDict[str, list]:
    """label -> its runs, in the order labels first appear."""
    groups: OrderedDict[str, list] = OrderedDict()
    for run in runs:
        groups.setdefault(labels[run.info.run_id], []).append(run)
    return groups


def recorded_sigma_w2(runs: Sequence) -> float | None:
    """The mean over ``runs`` of their recorded effective sigma_w^2 (None when none has it)."""
    values = [r.data.metrics.get(SIGMA_W2_METRIC) for r in runs]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def legend_labels(groups: Mapping[str, Sequence]) -> dict[str, str]:
    """label -> its legend text: ``he [σ_w²=2.01]``, the sigma_w^2 its runs recorded (a
    normal(std=0.01) x 460 then reads as the sigma_w^2 it drew, not as std 0.01)."""
    out = {}
    for label, runs in groups.items():
        value = recorded_sigma_w2(runs)
        out[label] = label if value is None else f"{label} [{SIGMA_W2}={value:.3g}]"
    return out


def footnote(labels: Iterable[str]) -> str:
    """What a figure's legend texts need said: sigma_w^2's meaning (when one is shown) and the
    naming notes of the families they name."""
    labels = list(labels)
    notes = [SIGMA_W2_NOTE] if any(SIGMA_W2 in label for label in labels) else []
    return "\n".join(notes + naming_notes(labels))
