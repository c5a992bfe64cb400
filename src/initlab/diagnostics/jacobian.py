"""Jacobians on the probe batch: each layer's chi_1 and the input-output Jacobian's spectrum.

* **chi_1 of layer l**: the mean squared singular value of the layer's Jacobian J_l = D_l W_l
  (D_l = diag phi'(h_l)), ||J_l||_F^2 / N_l averaged over the probe inputs.  For a Linear layer
  it is exact, sum_i phi'(h_i)^2 ||W_i,:||^2 / N_l; otherwise (convolutions) a Hutchinson
  estimate E_v ||J_l^T v||^2 / N_l with one Gaussian v per probe input, drawn from a fixed seed
  (the global RNG, and so training, is untouched).  Mean-field: chi_1 = sigma_w^2 E[phi'(h)^2].
* **input-output Jacobian** J = dx_last / dx_first from the first hidden layer's activation to
  the last one's, J = D_{L-1} W_{L-1} ... D_2 W_2 (square when the hidden widths are equal, as in
  Pennington et al. 2017), exact (one backward pass over the inputs repeated per output unit)
  on a few probe inputs, and its singular values s: mean and variance of s^2 (pooled over the inputs), the
  extreme values, the median condition number s_max / s_min over the inputs, and the fraction
  of numerically zero singular values (``zero_frac``: dead ReLU units make J rank-deficient).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from initlab.diagnostics import meanfield
from initlab.diagnostics.layerstats import Layer

SEED = 1234  # Hutchinson probes: a private generator, never the global RNG
STATS = ("s2_mean", "s2_var", "s_max", "s_min", "cond")


def layer_chi1(layers: list[Layer], pre: dict[str, torch.Tensor], act: dict[str, torch.Tensor],
               inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """chi_1 per layer with an activation (a 0-d tensor each), from a forward pass whose graph is
    kept (``pre``/``act``: outputs of the weight layers and their activations; ``inputs``: the
    weight layers' inputs, which must be part of the graph for non-Linear layers)."""
    out = {}
    gen = None
    for layer in layers:
        if layer.activation is None:
            continue
        h, a = pre[layer.name], act[layer.name]
        width = a[0].numel()
        if isinstance(layer.weight, nn.Linear):
            (dphi,) = torch.autograd.grad(a.sum(), h, retain_graph=True)
            rows = layer.weight.weight.detach().pow(2).sum(dim=1)
            out[layer.name] = (dphi.detach().pow(2) * rows).sum(dim=1).mean() / width
            continue
        if gen is None:
            gen = torch.Generator(device=a.device).manual_seed(SEED)
        v = torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)
        (g,) = torch.autograd.grad(a, inputs[layer.name], v, retain_graph=True)
        out[layer.name] = g.detach().pow(2).flatten(1).sum(dim=1).mean() / width
    return out


def io_jacobian(model: nn.Module, x: torch.Tensor, layers: list[Layer],
                max_rows: int = 4096) -> torch.Tensor | None:
    """(n, N_out, N_in): per input, d(last hidden activation) / d(first hidden activation), at
    the point the input reaches; None without two hidden layers.  The first hidden activation
    is repeated once per output unit (in chunks of ``max_rows`` rows) on its way on, so one plain
    backward pass per chunk gives the Jacobian's rows (no vmap; sequential nets)."""
    hidden = [layer for layer in layers if layer.activation is not None]
    if len(hidden) < 2:
        return None
    seen: dict[str, Any] = {"repeat": 1}

    def start(module, inputs, output):
        seen["z"] = output.detach().repeat_interleave(seen["repeat"], dim=0).requires_grad_(True)
        return seen["z"]

    handles = [hidden[0].activation.register_forward_hook(start),
               hidden[-1].activation.register_forward_hook(
                   lambda m, i, o: seen.__setitem__("out", o))]
    was_training = model.training
    model.eval()
    n, rows = x.shape[0], []
    try:
        with torch.no_grad():
            model(x[:1])
        k = seen["out"][0].numel()
        chunk = max(1, max_rows // n)
        with torch.enable_grad():
            for lo in range(0, k, chunk):
                units = torch.arange(lo, min(lo + chunk, k), device=x.device)
                seen["repeat"] = len(units)
                model(x)
                out = seen["out"].flatten(1)
                picks = torch.zeros_like(out)
                picks[torch.arange(len(out), device=x.device), units.repeat(n)] = 1.0
                (g,) = torch.autograd.grad(out, seen["z"], picks)
                rows.append(g.detach().reshape(n, len(units), -1))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return torch.cat(rows, dim=1)  # (n, N_out, N_in)


def chain_depth(layers: list[Layer]) -> int:
    """Weight layers inside the input-output Jacobian."""
    hidden = [i for i, layer in enumerate(layers) if layer.activation is not None]
    return hidden[-1] - hidden[0] if len(hidden) >= 2 else 0


def singular_values(jac: torch.Tensor) -> torch.Tensor:
    """(n, min(N_out, N_in)) singular values, in float64 on the CPU, on one thread (LAPACK's
    threads spin on a busy machine: 50 ms become seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.svdvals(jac.detach().to("cpu", torch.float64))
    finally:
        torch.set_num_threads(threads)


def zeros(s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Which singular values are numerically zero (rank deficiency, e.g. dead ReLU units): below
    s_max x max(shape) x eps of the dtype the Jacobian was computed in, per input."""
    size = max(s.shape[1], 1)
    return s <= s.max(dim=1, keepdim=True).values * size * torch.finfo(dtype).eps


def spectrum_stats(s: torch.Tensor, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    s2 = s.pow(2)
    per_input = s.max(dim=1).values / s.min(dim=1).values
    return {"s2_mean": float(s2.mean()), "s2_var": float(s2.var(unbiased=False)),
            "s_max": float(s.max()), "s_min": float(s.min()),
            "cond": float(per_input.median()),
            "zero_frac": float(zeros(s, dtype).double().mean())}


def spectrum_histogram(s: torch.Tensor, dtype: torch.dtype = torch.float64,
                       bins: int = 40) -> dict[str, list]:
    """Counts of log10 s over shared bins (at least one decade wide), numerical zeros apart."""
    zero = zeros(s, dtype)
    logs = s[~zero].log10()
    lo, hi = (float(logs.min()), float(logs.max())) if logs.numel() else (0.0, 0.0)
    mid = 0.5 * (lo + hi)
    lo, hi = min(lo, mid - 0.5), max(hi, mid + 0.5)
    counts = torch.histc(logs, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return {"log10_edges": edges.tolist(), "counts": [int(c) for c in counts.tolist()],
            "zeros": int(zero.sum()), "total": int(s.numel())}


def prediction(layers: list[Layer], preact_var: list[float]) -> dict[str, float] | None:
    """Free-probability prediction of the mean and variance of s^2 from the actual weights (each
    chain layer's tau(W W^T) and the normalised variance of W W^T's spectrum) and the mean-field
    pre-activation variances; None unless every chain layer is square and Linear."""
    hidden = [i for i, layer in enumerate(layers) if layer.activation is not None]
    if len(hidden) < 2:
        return None
    chain = list(range(hidden[0] + 1, hidden[-1] + 1))
    sw2, wv = [], []
    for i in chain:
        w = layers[i].weight.weight.detach().double()
        if not isinstance(layers[i].weight, nn.Linear) or w.shape[0] != w.shape[1]:
            return None
        a = float(w.pow(2).sum()) / w.shape[0]
        b = float((w @ w.T).pow(2).sum()) / w.shape[0]
        sw2.append(a)
        wv.append(b / a**2 - 1.0 if a > 0 else math.nan)
    return meanfield.jacobian_predict(sw2, wv, [layers[i].kind for i in chain],
                                      [preact_var[i] for i in chain])


def measure_jacobian(model: nn.Module, x: torch.Tensor, layers: list[Layer],
                     preact_var: list[float] | None = None, bins: int = 40) -> dict | None:
    """Everything the diagnostics record about the input-output Jacobian on the inputs ``x``:
    ``{"depth", "stats", "pred" (or None), "hist"}``; None without two hidden layers."""
    jac = io_jacobian(model, x, layers)
    if jac is None:
        return None
    s = singular_values(jac)
    pred = prediction(layers, preact_var) if preact_var is not None else None
    return {"depth": chain_depth(layers), "inputs": int(jac.shape[0]),
            "shape": list(jac.shape[1:]), "stats": spectrum_stats(s, jac.dtype), "pred": pred,
            "hist": spectrum_histogram(s, jac.dtype, bins)}


def flat_metrics(result: dict | None, prefix: str) -> dict[str, float]:
    """``{"<prefix>/jacobian/s2_mean": ..., ".../s2_mean_pred": ...}``"""
    if result is None:
        return {}
    out = {f"{prefix}/jacobian/{k}": v for k, v in result["stats"].items()}
    out.update({f"{prefix}/jacobian/{k}_pred": v for k, v in (result["pred"] or {}).items()})
    return out
