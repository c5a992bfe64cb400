"""compare's redrawing of the backward / Jacobian records across runs, from records made by the
diagnostics on real nets (the same document a run stores as ``diagnostics/init_stats.json``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from initlab.diagnostics import backward, jacobian
from initlab.diagnostics.layerstats import layers_of, measure
from initlab.diagnostics.records import init_record, predictions
from initlab.nets import MLP
from initlab.report import diagnostics_figures


def _record(sigma_w2: float, seed: int) -> dict:
    """A ReLU net's init record with the backward statistics and the Jacobian, JSON round-trip."""
    torch.manual_seed(seed)
    net = MLP(32, 10, depth=4, width=32)
    for layer in net:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=math.sqrt(sigma_w2 / layer.in_features))
            nn.init.zeros_(layer.bias)
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    layers = layers_of(net)
    m = measure(net, x, layers=layers)
    preds = predictions(m, net)
    back = backward.measure_backward(net, x, lambda out: nn.functional.cross_entropy(out, y),
                                     layers)
    for name, row in back.items():
        m.stats[name].update(row)
    for row, extra in zip(preds, backward.predictions(back, layers, preds)):
        row.update(extra)
    jac = jacobian.measure_jacobian(net, x[:4], layers, [r["preact_var"] for r in preds])
    return json.loads(json.dumps(init_record(m, preds, [], jacobian=jac)))


def test_backward_and_spectra_are_redrawn_per_init(tmp_path: Path):
    by_label = {"he": [_record(2.0, 0), _record(2.0, 1)], "lecun": [_record(1.0, 0), None]}
    made = diagnostics_figures.draw(by_label, tmp_path)
    assert made["backward"].stat().st_size > 5000 and made["spectra"].stat().st_size > 5000
    summary = tmp_path / "summary.md"
    summary.write_text("# comparison\n")
    diagnostics_figures.append_summary(summary, made)
    text = summary.read_text()
    assert "![backward](backward.png)" in text and "![spectra](spectra.png)" in text


def test_runs_without_the_records_draw_nothing(tmp_path: Path):
    plain = {"layers": [{"name": "layer1", "kind": "relu", "stats": {"act_std": 1.0},
                         "pred": None}], "histograms": []}
    made = diagnostics_figures.draw({"he": [plain], "zeros": [None]}, tmp_path)
    assert made == {"backward": None, "spectra": None}
    assert not list(tmp_path.iterdir())
