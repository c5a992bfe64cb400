"""Mean-field prediction of the signal through a fully connected net at initialization.

For weights with variance sigma_w^2 / fan_in and biases with variance sigma_b^2, the
pre-activation h_l of layer l is, over the draw of the weights, close to N(0, q_l) with

    q_1 = sigma_w1^2 E[x^2] + sigma_b1^2,
    q_l = sigma_wl^2 E_{h ~ N(0, q_{l-1})}[phi(h)^2] + sigma_bl^2

(Poole et al. 2016; Schoenholz et al. 2017).  For ReLU E[phi(h)^2] = q / 2, so
q_l = sigma_w^2 q_{l-1} / 2 + sigma_b^2: He's sigma_w^2 = 2 keeps q constant, LeCun's
("Xavier" of S1) sigma_w^2 = 1 halves it at every layer.  For linear units E = q; for tanh,
sigmoid and the other smooth activations the expectation is taken by Gauss-Hermite quadrature.

q_l is a second moment about zero (mean of h^2), which is what ``layerstats`` measures as
``preact_var``.  It is an average over networks: one finite-width network scatters around it
(at width 100 the last/first ratio of one He draw ranges about 0.4-1.8, Hanin & Rolnick 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from initlab.nets import make_activation

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(101)  # weight exp(-z^2 / 2)
_WEIGHTS = _WEIGHTS / math.sqrt(2.0 * math.pi)  # sum = 1: an expectation over z ~ N(0, 1)
# Activations whose pre-activation law the theory covers (elementwise, no parameters).
SUPPORTED = ("relu", "linear", "tanh", "sigmoid", "elu", "selu", "gelu", "leaky_relu")


def _phi(kind: str, h: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return make_activation(kind)(torch.from_numpy(h)).numpy()


def act_moments(kind: str, q: float) -> tuple[float, float]:
    """(E[phi(h)], E[phi(h)^2]) for h ~ N(0, q)."""
    if kind == "linear":
        return 0.0, q
    if kind == "relu":
        return math.sqrt(q / (2.0 * math.pi)), q / 2.0
    values = _phi(kind, math.sqrt(max(q, 0.0)) * _NODES)
    return float(_WEIGHTS @ values), float(_WEIGHTS @ values**2)


def predict(sigma_w2: Sequence[float], sigma_b2: Sequence[float],
            kinds: Sequence[str | None], input_m2: float = 1.0) -> list[dict[str, float]]:
    """Per layer, the predicted pre-activation second moment ``preact_var`` (q_l) and, for
    layers with an activation, the predicted activation std ``act_std`` over the ensemble.

    ``kinds[l]`` is layer l's activation (None for the output layer); ``input_m2`` is E[x^2]
    of the inputs."""
    out, incoming = [], input_m2
    for sw2, sb2, kind in zip(sigma_w2, sigma_b2, kinds):
        q = sw2 * incoming + sb2
        row = {"preact_var": q}
        if kind is not None:
            mean, m2 = act_moments(kind, q)
            row["act_std"] = math.sqrt(max(m2 - mean**2, 0.0))
            incoming = m2
        out.append(row)
    return out


def applies_to(model: torch.nn.Module) -> bool:
    """The theory is for plain fully connected nets: Linear layers and elementwise activations
    (a Flatten at the input is fine), nothing else."""
    from initlab.diagnostics.layerstats import layers_of

    layers = layers_of(model)
    leaves = [m for m in model.modules() if not list(m.children())]
    covered = {id(layer.weight) for layer in layers} | {
        id(layer.activation) for layer in layers if layer.activation is not None}
    return bool(layers) and all(
        isinstance(layer.weight, torch.nn.Linear) and (layer.kind in (None, *SUPPORTED))
        for layer in layers
    ) and all(id(m) in covered or isinstance(m, torch.nn.Flatten) for m in leaves)
