"""The diagnostics' measurements as plain functions of (net, probe batch, loss fn): what
``InitDiagnostics`` (the Trainer path) and the ensemble engine's per-member diagnostics
(``initlab.ensemble.diagnostics``) both call, so each statistic, record and figure has one
definition.  Nothing here logs: the callers write the metrics, artifacts and tags to their run."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from initlab.diagnostics import backward as backward_stats
from initlab.diagnostics import figures, jacobian as jacobian_stats
from initlab.diagnostics.histograms import histogram_data, plot_row
from initlab.diagnostics.layerstats import Layer, Measurement, measure, signal_ratio
from initlab.diagnostics.records import (HIST_FILE, PREFIX, STATS_FILE, classify_signal,
                                         flat_metrics, init_record, predictions)

log = logging.getLogger(__name__)

TAG_SIGNAL = "initlab.diag.signal"
TAG_RATIO = "initlab.diag.signal_ratio"
BACKWARD_FILE = "backward.png"
SPECTRUM_FILE = "jacobian_spectrum.png"  # at init; jacobian_spectrum_step<N>.png at the last


@dataclass
class Settings:
    """What to measure (the keys of ``conf/diagnostics/default.yaml`` that shape a number)."""

    threshold: float = 0.01
    backward: bool = True
    jacobian: bool = True
    jacobian_inputs: int = 8
    bins: int = 30
    plot: bool = True


def add_backward(net, x: torch.Tensor, loss_fn, layers: list[Layer], m: Measurement,
                 preds: list[dict[str, float]] | None) -> list[dict[str, float]] | None:
    """Backward statistics into ``m.stats`` and their predictions into ``preds``."""
    back = backward_stats.measure_backward(net, x, loss_fn, layers)
    for name, row in back.items():
        m.stats[name].update(row)
    if preds is None:
        return None
    back_preds = backward_stats.predictions(back, layers, preds)
    for row, extra in zip(preds, back_preds):
        row.update(extra)
    return back_preds


def jacobian_of(net, x: torch.Tensor, layers: list[Layer], s: Settings,
                preds: list[dict[str, float]] | None) -> dict | None:
    if not s.jacobian:
        return None
    q = [row["preact_var"] for row in preds] if preds is not None else None
    return jacobian_stats.measure_jacobian(net, x[: s.jacobian_inputs], layers, q)


@dataclass
class AtInit:
    """The measurement before the first step: step-0 metrics, the record and figure inputs."""

    m: Measurement
    preds: list[dict[str, float]] | None
    back_preds: list[dict[str, float]] | None
    jac: dict | None
    metrics: dict[str, float]
    ratio: float | None


def measure_at_init(net, x: torch.Tensor, loss_fn, layers: list[Layer], s: Settings) -> AtInit:
    m = measure(net, x, threshold=s.threshold, loss_fn=loss_fn, layers=layers)
    preds = predictions(m, net)
    back_preds = add_backward(net, x, loss_fn, layers, m, preds) if s.backward else None
    jac = jacobian_of(net, x, layers, s, preds)
    metrics = {**flat_metrics(m, preds), **jacobian_stats.flat_metrics(jac, PREFIX)}
    return AtInit(m, preds, back_preds, jac, metrics, signal_ratio(m))


Drawing = tuple[Callable[..., Path], tuple]  # (a module-level figure function, its arguments)


def init_outputs(r: AtInit, probe_size: int, s: Settings, title: str,
                 folder: Path) -> tuple[Path, list[Drawing]]:
    """``init_stats.json`` written into ``folder``, and the init figures still to draw there
    (``fn(*args)`` writes one and returns its path; plain data only, so another process can
    draw it: ``initlab.ensemble.figures``)."""
    hists = histogram_data(r.m, s.bins)
    record = init_record(r.m, r.preds, hists, probe_size=probe_size, threshold=s.threshold,
                         jacobian=r.jac)
    path = folder / STATS_FILE
    path.write_text(json.dumps(record))
    drawings: list[Drawing] = []
    if s.plot and hists:
        drawings.append((plot_row, (hists, f"activations at init ({title})", folder / HIST_FILE)))
    if s.plot and s.backward:
        drawings.append((figures.plot_backward, (
            [layer.name for layer in r.m.layers], dict(r.m.stats), r.back_preds,
            f"backward signal at init ({title})", folder / BACKWARD_FILE)))
    if s.plot and r.jac is not None:
        drawings.append((figures.plot_spectrum, (r.jac, f"Jacobian at init ({title})",
                                                 folder / SPECTRUM_FILE)))
    return path, drawings


def init_files(r: AtInit, probe_size: int, s: Settings, title: str, folder: Path) -> list[Path]:
    """``init_stats.json`` and the init figures written into ``folder``, to log as artifacts
    under ``diagnostics/``."""
    record, drawings = init_outputs(r, probe_size, s, title, folder)
    return [record, *(fn(*args) for fn, args in drawings)]


def release(m: Measurement) -> None:
    m.captured.pre.clear()
    m.captured.act.clear()


def update_stats(layers: list[Layer], before: list[torch.Tensor], after: list[torch.Tensor],
                 grad_norms: list[torch.Tensor | None]) -> dict[str, dict[str, float]]:
    """Per layer the gradient norm and update/weight ratio of one optimizer step."""
    rows = []
    for w0, w1, grad in zip(before, after, grad_norms):
        ratio = (w1 - w0).norm() / w0.norm().clamp_min(1e-12)
        rows.append(torch.stack([grad if grad is not None else ratio.new_tensor(float("nan")),
                                 ratio]))
    values = torch.stack(rows).tolist()
    return {layer.name: {"grad_norm": g, "update_ratio": r}
            for layer, (g, r) in zip(layers, values)}


def measure_during(net, x: torch.Tensor, loss_fn, layers: list[Layer], s: Settings,
                   step_stats: dict[str, dict[str, float]]) -> tuple[dict[str, float],
                                                                      float | None]:
    """The training-time metrics (activations, backward, the step's update stats) and the
    signal ratio."""
    m = measure(net, x, threshold=s.threshold, layers=layers)
    if s.backward:
        add_backward(net, x, loss_fn, layers, m, None)
    return flat_metrics(m, extra=step_stats), signal_ratio(m)


def spectrum_drawing(jac: dict, step: int, title: str, folder: Path) -> Drawing:
    """The Jacobian histogram at the last sampled step (``jacobian_spectrum_step<N>.png``)."""
    name = SPECTRUM_FILE.replace(".png", f"_step{step}.png")
    return figures.plot_spectrum, (jac, f"Jacobian at step {step} ({title})", folder / name)


def spectrum_file(jac: dict, step: int, title: str, folder: Path) -> Path:
    fn, args = spectrum_drawing(jac, step, title, folder)
    return fn(*args)


def signal_change(previous: str | None, ratio: float | None, vanishing_below: float,
                  exploding_above: float, set_tag: Callable[[str, str], None] | None,
                  when: str, logger: logging.Logger = log) -> str:
    """The signal class; tags a change (``initlab.diag.signal``) and warns (to ``logger``) on
    vanishing / exploding.  Returns the new class."""
    signal = classify_signal(ratio, vanishing_below, exploding_above)
    if signal == previous:
        return signal
    if set_tag is not None and (previous is None or signal != "ok"):
        set_tag(TAG_SIGNAL, signal)
        set_tag(TAG_RATIO, "n/a" if ratio is None else f"{ratio:.4g}")
    if signal in ("vanishing", "exploding"):
        logger.warning(
            "%s signal %s: last/first hidden-layer activation std = %.3g (thresholds %g / %g); "
            "the init may not suit this depth and activation", when, signal, ratio,
            vanishing_below, exploding_above)
    return signal
