"""compare over a real multirun: every figure and the table, logged as a comparison run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initlab.inits.labels import init_label
from initlab.report.compare import main

from conftest import run_cli

FIGURES = {"curves.png", "histograms.png", "depth.png", "boundaries.png",
           "backward.png", "spectra.png"}  # the last two: the diagnostics records redrawn


def test_init_labels():
    assert init_label({"name": "he", "scale": "1.0", "distribution": "normal"}) == "he"
    assert init_label({"name": "normal", "std": "1.0", "scale": "1.0"}) == "normal(std=1)"
    assert init_label({"name": "xavier", "distribution": "normal", "scale": "2.0"}) == \
        "xavier(distribution=normal) x2"


@pytest.mark.slow  # a multirun, then compare
def test_compare_a_multirun_draws_every_figure_and_the_table(tmp_path: Path, store: str):
    # Two inits x two seeds on S4's 2-D circles (so decision boundaries apply), a few steps.
    run_cli(tmp_path, store, "-m", "dataset=circles", "model=mlp_s4", "init=he,random",
            "seed=0,1", "trainer.max_epochs=2", "dataset.steps_per_epoch=20",
            "trainer.enable_progress_bar=false", "optimizer=sgd", "optimizer.lr=0.1")
    parent = json.loads((tmp_path / "multirun/mlflow_parent_run.json").read_text())
    out = tmp_path / "cmp"
    made = main(["--sweep-id", parent["sweep_id"], "--tracking-uri", store, "--out", str(out)])
    assert {p.name for p in made.values()} == FIGURES | {"metrics.csv", "summary.md"}
    assert all(p.stat().st_size > 1000 for p in made.values() if p.suffix == ".png")
    summary = (out / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("| he ")
             or line.startswith("| random")]
    assert len(table) == 2 and all("±" in line and "| 2 | 0,1 |" in line for line in table)
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (comparison,) = [r for r in runs if r.data.tags.get("initlab.kind") == "comparison"]
    assert comparison.info.status == "FINISHED"
    assert len(comparison.data.tags["initlab.compared_runs"].split(",")) == 4
    logged = {a.path for a in client.list_artifacts(comparison.info.run_id)}
    assert FIGURES | {"metrics.csv", "summary.md"} <= logged
