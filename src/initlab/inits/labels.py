"""Short, readable names for an init config (figure legends, run names, tables)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from initlab.inits.apply import family_options
from initlab.inits.families import INIT_FAMILIES
from initlab.inits.variance import SUPERSEDED_BY_SIGMA_W2


def plain_value(text: Any) -> Any:
    """An MLflow param (a string) back to a number / bool / None where it is one."""
    if not isinstance(text, str):
        return text
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def init_label(init: Mapping[str, Any], with_scale: bool = True) -> str:
    """``he``, ``normal(std=1)``, ``xavier(distribution=normal) x2``: the family, the options
    that differ from its defaults (a normal's std always), and the scale when not 1.  On the
    sigma_w^2 axis: ``normal(sigma_w2=2)``, ``xavier(distribution=normal, sigma_w2=0.5)``: the
    options sigma_w2 replaces (std, bound, gain, factor, He's mode) are left out."""
    name = str(init.get("name", "?"))
    defaults = family_options(name) if name in INIT_FAMILIES else {}
    sigma_w2 = plain_value(init.get("sigma_w2"))
    hidden = {"name", "scale", "bias", "sigma_w2"}
    if sigma_w2 is not None:
        hidden |= set(SUPERSEDED_BY_SIGMA_W2.get(name, ()))
    shown = []
    for key, raw in init.items():
        value = plain_value(raw)
        if key in hidden or isinstance(value, Mapping):
            continue
        if key == "std" or (key in defaults and defaults[key] != value):
            shown.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    if isinstance(sigma_w2, (int, float)):
        shown.append(f"sigma_w2={sigma_w2:g}")
    label = f"{name}({', '.join(shown)})" if shown else name
    scale = plain_value(init.get("scale", 1.0))
    if with_scale and isinstance(scale, (int, float)) and scale != 1:
        label += f" x{scale:g}"
    return label


# The effective weight variance as a figure writes it (matplotlib mathtext).
SIGMA_W2 = r"$\sigma_w^2$"

# Where a family's name here differs from the seed studies' or the literature's, or hides the
# scale it draws: one line each, for figure footnotes (``naming_notes``).
NAMING_NOTES = {
    "lecun": "lecun = N(0, 1/fan_in), LeCun et al. (1998): what the seed studies call \"Xavier\" "
             "(S1's sigmoid_xavier, relu_xavier)",
    "xavier": "xavier = Glorot & Bengio (2010), Var(W) = 2/(fan_in + fan_out)",
    "random": "random = N(0, 1) x factor (S4's large random init; factor 10 unless shown)",
}


def naming_notes(labels: Iterable[str]) -> list[str]:
    """The ``NAMING_NOTES`` of the families that ``labels`` name (as a whole word), in the
    notes' order: a legend that says ``lecun`` says too that it is S1's "Xavier"."""
    words = set()
    for label in labels:
        words |= set(re.findall(r"[a-z_]+", str(label)))
    return [note for name, note in NAMING_NOTES.items() if name in words]
