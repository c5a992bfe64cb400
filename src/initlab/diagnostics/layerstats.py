"""What a network does to a probe batch, layer by layer: the numbers behind the diagnostics.

A *layer* is a weight layer (Linear or Conv, in the order ``inits.weight_layers`` gives) together
with the activation module that follows it, if any: ``layer1`` is the first weight layer, the
output layer is the last and has no activation.  A layer's pre-activation is its weight layer's
output, its activation the output of its activation module.

``measure`` runs the probe batch once (with forward hooks, removed afterwards) and returns, per
layer, plain floats: pre-activation mean, std and second moment, activation mean and std, the
fraction of saturated entries (sigmoid/tanh within ``threshold`` of a limit), the fraction of
dead units (ReLU output 0 for every probe input), the weight std, and optionally the gradient
norm of the loss on the probe batch.  Every statistic is kept as a tensor until one transfer at
the end, so a GPU run pays one host sync per measurement, not one per number.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from initlab.inits import fans
from initlab.nets import ACTIVATIONS

_KIND_OF = {cls: name for name, cls in ACTIVATIONS.items()}
# Activations with limits, and the limits (a saturated entry is within `threshold` of one).
_LIMITS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
# Statistics of every layer, in this order; NaN where one does not apply (dead: ReLU only).
STAT_NAMES = ("preact_mean", "preact_std", "preact_var", "act_mean", "act_std",
              "saturated", "dead", "weight_std")


@dataclass
class Layer:
    name: str
    weight: nn.Module
    activation: nn.Module | None = None
    kind: str | None = None  # 'relu', 'sigmoid', ... ; None for the output layer


def layers_of(model: nn.Module) -> list[Layer]:
    """The model's layers, input to output (leaf modules in definition order)."""
    out: list[Layer] = []
    for module in model.modules():
        if list(module.children()):
            continue
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            out.append(Layer(f"layer{len(out) + 1}", module))
        elif out and out[-1].activation is None and type(module) in _KIND_OF:
            out[-1].activation, out[-1].kind = module, _KIND_OF[type(module)]
    return out


@dataclass
class Captured:
    pre: dict[str, torch.Tensor] = field(default_factory=dict)
    act: dict[str, torch.Tensor] = field(default_factory=dict)


@contextlib.contextmanager
def capture(layers: list[Layer]) -> Iterator[Captured]:
    """Record each layer's pre-activation and activation during the forward passes inside."""
    seen = Captured()
    handles = []

    def keep(store: dict[str, torch.Tensor], name: str) -> Callable:
        return lambda module, inputs, output: store.__setitem__(name, output)

    for layer in layers:
        handles.append(layer.weight.register_forward_hook(keep(seen.pre, layer.name)))
        if layer.activation is not None:
            handles.append(layer.activation.register_forward_hook(keep(seen.act, layer.name)))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _layer_stats(layer: Layer, pre: torch.Tensor, act: torch.Tensor | None,
                 threshold: float) -> torch.Tensor:
    pre = pre.detach().float()
    a = pre if act is None else act.detach().float()
    nan = pre.new_tensor(float("nan"))
    saturated = dead = nan
    if layer.kind in _LIMITS:
        low, high = _LIMITS[layer.kind]
        saturated = ((a <= low + threshold) | (a >= high - threshold)).float().mean()
    elif layer.kind == "relu":
        dead = (a.flatten(1) == 0).all(dim=0).float().mean()
    return torch.stack([
        pre.mean(), pre.std(), pre.pow(2).mean(), a.mean(), a.std(), saturated, dead,
        layer.weight.weight.detach().float().std(),
    ])


@dataclass
class Measurement:
    """One probe pass: ``stats[layer][stat]`` plus the raw outputs (for histograms)."""

    layers: list[Layer]
    stats: dict[str, dict[str, float]]
    captured: Captured
    input_m2: float  # mean squared input entry, E[x^2] (what the first layer sees)


def measure(model: nn.Module, x: torch.Tensor, *, threshold: float = 0.01,
            loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
            layers: list[Layer] | None = None) -> Measurement:
    """Forward ``x`` through ``model`` (and, with ``loss_fn`` on its output, backward to get
    each layer's weight-gradient norm ``grad_norm``, without touching ``.grad``)."""
    layers = layers if layers is not None else layers_of(model)
    was_training = model.training
    model.eval()  # dropout/batch-norm, if any, as at test time
    try:
        with capture(layers) as seen, torch.set_grad_enabled(loss_fn is not None):
            out = model(x)
            rows = [_layer_stats(layer, seen.pre[layer.name], seen.act.get(layer.name), threshold)
                    for layer in layers]
            extra = [x.detach().float().pow(2).mean()]
            if loss_fn is not None:
                weights = [layer.weight.weight for layer in layers]
                grads = torch.autograd.grad(loss_fn(out), weights, allow_unused=True)
                extra += [g.norm() if g is not None else x.new_tensor(0.0) for g in grads]
    finally:
        model.train(was_training)
    values = torch.stack(rows).tolist()
    extras = torch.stack([e.detach().float() for e in extra]).tolist()
    stats = {layer.name: dict(zip(STAT_NAMES, row)) for layer, row in zip(layers, values)}
    if loss_fn is not None:
        for layer, norm in zip(layers, extras[1:]):
            stats[layer.name]["grad_norm"] = norm
    for layer in layers:
        if layer.kind != "relu":
            stats[layer.name].pop("dead")
        if layer.kind not in _LIMITS:
            stats[layer.name].pop("saturated")
    return Measurement(layers, stats, seen, extras[0])


def signal_ratio(measurement: Measurement) -> float | None:
    """Activation std of the last hidden layer over that of the first (None without two
    hidden layers): far below 1, the signal vanishes with depth; far above, it explodes."""
    hidden = [layer.name for layer in measurement.layers if layer.activation is not None]
    if len(hidden) < 2:
        return None
    first = measurement.stats[hidden[0]]["act_std"]
    last = measurement.stats[hidden[-1]]["act_std"]
    return last / first if first > 0 else float("inf") if last > 0 else float("nan")


def weight_variances(layers: list[Layer]) -> tuple[list[float], list[float]]:
    """Per layer, the mean-field weight variance sigma_w^2 = (weight std)^2 x fan_in and bias
    variance sigma_b^2 = mean(b^2), read from the actual weights."""
    sw2, sb2 = [], []
    for layer in layers:
        w = layer.weight.weight.detach().float()
        sw2.append(float(w.var(unbiased=False)) * fans(w)[0])
        b = layer.weight.bias
        sb2.append(float(b.detach().float().pow(2).mean()) if b is not None else 0.0)
    return sw2, sb2
