"""The backward pass on the probe batch, per layer, beside its mean-field prediction.

``measure_backward`` runs one forward and backward pass of the training loss on the probe batch
(hooks removed afterwards, ``.grad`` untouched, eval mode) and returns per layer:

* ``grad_preact_var``: E[(dl/dh)^2], the second moment of one example's loss gradient with
  respect to the layer's pre-activation h (the batch-mean loss's gradient times the batch size);
* ``grad_weight_var``: the variance of the entries of dL/dW for the batch-mean loss;
* ``chi1`` (layers with an activation): the mean squared singular value of the layer Jacobian
  D W (``jacobian.layer_chi1``).

``predictions`` gives, for fully connected nets, ``grad_preact_var`` back from the measured
output value (``meanfield.backward_predict``) and chi_1 = sigma_w^2 E[phi'(h)^2] at the
mean-field q_l, both from the actual weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from initlab.diagnostics import meanfield
from initlab.diagnostics.jacobian import layer_chi1
from initlab.diagnostics.layerstats import Layer, capture, weight_variances


def measure_backward(model: nn.Module, x: torch.Tensor,
                     loss_fn: Callable[[torch.Tensor], torch.Tensor],
                     layers: list[Layer]) -> dict[str, dict[str, float]]:
    if not layers:
        return {}
    inputs: dict[str, torch.Tensor] = {}
    handles = [layer.weight.register_forward_pre_hook(
        lambda module, args, name=layer.name: inputs.__setitem__(name, args[0]))
        for layer in layers]
    was_training = model.training
    model.eval()
    try:
        with capture(layers) as seen, torch.enable_grad():
            x = x.detach().requires_grad_(True)  # layer 1's input in the graph (Hutchinson)
            loss = loss_fn(model(x))
            pres = [seen.pre[layer.name] for layer in layers]
            weights = [layer.weight.weight for layer in layers]
            grads = torch.autograd.grad(loss, pres + weights, retain_graph=True,
                                        allow_unused=True)
            chi1 = layer_chi1(layers, seen.pre, seen.act, inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    batch = x.shape[0]
    nan = x.new_tensor(float("nan"))
    rows = []
    for i, layer in enumerate(layers):
        gh, gw = grads[i], grads[len(layers) + i]
        rows.append(torch.stack([
            (gh.detach() * batch).pow(2).mean() if gh is not None else nan,
            gw.detach().var(unbiased=False) if gw is not None else nan,
            chi1.get(layer.name, nan),
        ]).float())
    values = torch.stack(rows).tolist()  # one host transfer
    out = {}
    for layer, (gh, gw, c) in zip(layers, values):
        out[layer.name] = {"grad_preact_var": gh, "grad_weight_var": gw}
        if layer.name in chi1:
            out[layer.name]["chi1"] = c
    return out


def widths(layers: list[Layer]) -> list[int]:
    return [layer.weight.weight.shape[0] for layer in layers]


def predictions(stats: dict[str, dict[str, float]], layers: list[Layer],
                forward: list[dict[str, float]]) -> list[dict[str, float]]:
    """Per layer ``{"grad_preact_var": ..., "chi1": ...}`` predicted (fully connected nets: the
    caller checks ``meanfield.applies_to``); ``forward`` is ``meanfield.predict``'s output."""
    sw2, _ = weight_variances(layers)
    kinds = [layer.kind for layer in layers]
    q = [row["preact_var"] for row in forward]
    grad = meanfield.backward_predict(sw2, kinds, widths(layers), q,
                                      stats[layers[-1].name]["grad_preact_var"])
    out = []
    for i, layer in enumerate(layers):
        row = {"grad_preact_var": grad[i]}
        if layer.activation is not None:
            row["chi1"] = meanfield.chi1(layer.kind, sw2[i], q[i])
        out.append(row)
    return out
