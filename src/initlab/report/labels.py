"""Names for runs in legends and tables: the init label (``initlab.inits.labels.init_label``),
with the activation when the compared runs differ in it, and runs grouped by label."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from initlab.inits.labels import init_label


def init_params(run) -> dict[str, Any]:
    """The run's ``init.*`` params (its bias init left out), as recorded (strings)."""
    return {k[len("init."):]: v for k, v in run.data.params.items()
            if k.startswith("init.") and not k.startswith("init.bias.")}


def activations(runs: Sequence) -> set[str | None]:
    return {r.data.params.get("model.activation") for r in runs}


def labels_for(runs: Sequence) -> dict[str, str]:
    """run id -> label; the activation is added when the runs differ in it."""
    several = len(activations(runs)) > 1
    out = {}
    for run in runs:
        label = init_label(init_params(run))
        if several:
            label = f"{run.data.params.get('model.activation')} {label}"
        out[run.info.run_id] = label
    return out


def grouped(runs: Sequence, labels: Mapping[str, str]) -> OrderedDict[str, list]:
    """label -> its runs, in the order labels first appear."""
    groups: OrderedDict[str, list] = OrderedDict()
    for run in runs:
        groups.setdefault(labels[run.info.run_id], []).append(run)
    return groups
