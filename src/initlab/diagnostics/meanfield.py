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


# ---- backward signal and Jacobians (Schoenholz et al. 2017; Pennington et al. 2017) ---------
def _dphi(kind: str, h: np.ndarray) -> np.ndarray:
    z = torch.from_numpy(np.asarray(h, dtype=np.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(make_activation(kind)(z).sum(), z)
    return grad.numpy()


def dphi_moments(kind: str | None, q: float) -> tuple[float, float]:
    """(mu_1, mu_2) = (E[phi'(h)^2], E[phi'(h)^4]) for h ~ N(0, q); (1, 1) for no activation."""
    if kind in (None, "linear"):
        return 1.0, 1.0
    if kind == "relu":
        return 0.5, 0.5
    d2 = _dphi(kind, math.sqrt(max(q, 0.0)) * _NODES) ** 2
    return float(_WEIGHTS @ d2), float(_WEIGHTS @ d2**2)


def chi1(kind: str | None, sigma_w2: float, q: float) -> float:
    """chi_1 = sigma_w^2 E[phi'(h)^2], h ~ N(0, q): the mean squared singular value of a layer's
    Jacobian D W; above 1 perturbations grow with depth (chaos), below 1 they die (order)."""
    return sigma_w2 * dphi_moments(kind, q)[0]


def fixed_point(kind: str, sigma_w2: float, sigma_b2: float) -> float:
    """q* of q <- sigma_w^2 E[phi(h)^2] + sigma_b^2 (the deep layers of a uniform net): the
    root of g(q) = sigma_w^2 E[phi(h)^2] + sigma_b^2 - q, by bisection in log q on
    [1e-12, 1e6]; 0 if g < 0 already at 1e-12 (the signal dies), inf if g > 0 at 1e6."""
    def g(q: float) -> float:
        return sigma_w2 * act_moments(kind, q)[1] + sigma_b2 - q

    lo, hi = math.log(1e-12), math.log(1e6)
    if g(math.exp(lo)) <= 0:
        return 0.0
    if g(math.exp(hi)) >= 0:
        return math.inf
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(math.exp(mid)) > 0 else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def critical_sigma_w2(kind: str, sigma_b2: float, lo: float = 0.1, hi: float = 10.0) -> float:
    """The sigma_w^2 where chi_1 at the fixed point crosses 1 (the edge of chaos), by bisection;
    for tanh it is 1 at sigma_b^2 = 0 and grows with sigma_b^2."""
    def excess(sw2: float) -> float:
        return chi1(kind, sw2, fixed_point(kind, sw2, sigma_b2)) - 1.0

    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def backward_predict(sigma_w2: Sequence[float], kinds: Sequence[str | None],
                     widths: Sequence[int], preact_var: Sequence[float],
                     output_grad_m2: float) -> list[float]:
    """Per layer, the predicted E[(dl/dh_l)^2] of one example's loss: back from the measured
    output value by dl/dh_l = D_l W_{l+1}^T dl/dh_{l+1}, i.e. (gradient independence)
    E[(dl/dh_l)^2] = E[phi'(h_l)^2] sigma_w,l+1^2 (N_{l+1} / N_l) E[(dl/dh_{l+1})^2],
    with h_l ~ N(0, q_l) from the forward prediction ``preact_var``."""
    out = [output_grad_m2]
    for i in range(len(kinds) - 2, -1, -1):
        mu1 = dphi_moments(kinds[i], preact_var[i])[0]
        out.append(out[-1] * mu1 * sigma_w2[i + 1] * widths[i + 1] / widths[i])
    return out[::-1]


def jacobian_predict(sigma_w2: Sequence[float], weight_v: Sequence[float],
                     kinds: Sequence[str | None],
                     preact_var: Sequence[float]) -> dict[str, float]:
    """Mean and variance of the squared singular values s^2 of J = D_L W_L ... D_1 W_1 (square
    layers), free probability (Pennington et al. 2017): the mean is the product of the layers'
    sigma_w^2 mu_1, and the normalised variance var/mean^2 is the sum over layers of
    ``weight_v`` (that of W W^T's spectrum: 1 Gaussian, 0 orthogonal) + mu_2 / mu_1^2 - 1."""
    mean, v = 1.0, 0.0
    for sw2, wv, kind, q in zip(sigma_w2, weight_v, kinds, preact_var):
        mu1, mu2 = dphi_moments(kind, q)
        mean *= sw2 * mu1
        v += wv + mu2 / mu1**2 - 1.0
    return {"s2_mean": mean, "s2_var": mean**2 * v}


# ---- depth scales (Schoenholz et al. 2017, eq. 9 and Fig. 5) -------------------------------
_N2, _W2 = np.polynomial.hermite_e.hermegauss(61)  # a 61 x 61 rule for the 2-D integrals
_Z1, _Z2 = np.meshgrid(_N2, _N2, indexing="ij")
_W2 = np.outer(_W2, _W2) / (2.0 * math.pi)


def _pair(kind: str, q: float, c: float, fn) -> float:
    """E[fn(u1) fn(u2)], (u1, u2) centred Gaussian with variances q and correlation c."""
    s = math.sqrt(max(q, 0.0))
    c = min(max(c, -1.0), 1.0)
    u1, u2 = s * _Z1, s * (c * _Z1 + math.sqrt(max(1.0 - c * c, 0.0)) * _Z2)
    return float(np.sum(_W2 * fn(kind, u1) * fn(kind, u2)))


def correlation_fixed_point(kind: str, sigma_w2: float, sigma_b2: float) -> float:
    """c*: the stable fixed point of the correlation map c <- (sigma_w^2 E[phi(u1) phi(u2)] +
    sigma_b^2) / q* of two inputs' pre-activations at the length fixed point q*.  1 in the
    ordered phase (chi_1 <= 1: inputs converge); in the chaotic phase (c = 1 unstable) the root
    of map(c) - c below 1, by Brent's method on [0, 1) (0 when the map holds 0, e.g. odd phi, no
    bias)."""
    q = fixed_point(kind, sigma_w2, sigma_b2)
    if not 0.0 < q < math.inf or chi1(kind, sigma_w2, q) <= 1.0:
        return 1.0

    def excess(c: float) -> float:
        return (sigma_w2 * _pair(kind, q, c, _phi) + sigma_b2) / q - c

    from scipy.optimize import brentq  # scikit-learn's dependency

    lo, hi = 0.0, 1.0 - 1e-9
    if excess(lo) <= 1e-15:
        return 0.0
    if excess(hi) >= 0:  # the root is within 1e-9 of 1 (on the critical line)
        return hi
    return float(brentq(excess, lo, hi, xtol=1e-13))


def chi_c(kind: str, sigma_w2: float, sigma_b2: float) -> float:
    """chi_c = sigma_w^2 E[phi'(u1) phi'(u2)] at (q*, c*): how fast a correlation approaches its
    fixed point.  In the ordered phase (c* = 1) it equals chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2];
    in the chaotic phase it is below 1 while chi_1 is above."""
    q = fixed_point(kind, sigma_w2, sigma_b2)
    if q == 0.0:
        return chi1(kind, sigma_w2, 0.0)
    c = correlation_fixed_point(kind, sigma_w2, sigma_b2)
    if c >= 1.0:
        return chi1(kind, sigma_w2, q)
    return sigma_w2 * _pair(kind, q, c, _dphi)


def depth_scale(kind: str, sigma_w2: float, sigma_b2: float) -> float:
    """xi_c = -1 / ln chi_c (Schoenholz et al. 2017, eq. 9): the depth over which information
    about two inputs' correlation survives.  Infinite at the edge of chaos (chi_c = 1), finite on
    both sides; the paper finds nets trainable up to about 6 xi_c (Fig. 5)."""
    chi = chi_c(kind, sigma_w2, sigma_b2)
    if chi >= 1.0 or abs(chi - 1.0) < 1e-12:
        return math.inf
    return -1.0 / math.log(chi) if chi > 0 else 0.0
