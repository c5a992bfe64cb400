"""Each ensemble member's diagnostics against the Trainer path's ``InitDiagnostics`` on the same
config: the same ``diag/*`` metric keys at the same steps with equal values, and (end to end)
the same artifacts, records and tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import all_runs, run_cli
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from initlab.engine.build import prepare
from initlab.engine.fit import fit_and_test, make_trainer
from initlab.ensemble.engine import GroupTrainer
from recording import members

S4 = ["experiment=s4_circles", "trainer.max_epochs=2", "dataset.steps_per_epoch=10",
      "trainer.log_every_n_steps=3", "callbacks=none", "diagnostics=default",
      "callbacks.diagnostics.plot=false", "callbacks.diagnostics.jacobian_every_n_steps=5",
      "trainer.enable_progress_bar=false"]
# After training steps: float32 rounding of the stacked (batched) steps against the single
# net's (measured: at most 2.1e-7 relative over 20 steps of S4); at init: exactly equal.
RTOL, ATOL = 1e-5, 1e-7


def trainer_diag(make_cfg, store, tmp_path, overrides) -> dict[str, dict[int, float]]:
    """The Trainer path's ``diag/*`` metrics, through a real MLflow logger."""
    cfg = make_cfg(*overrides, tracking=False)
    logger = MLFlowLogger(experiment_name="trainer", tracking_uri=store)
    fit_and_test(make_trainer(cfg, tmp_path, logger), prepare(cfg))
    client = MlflowClient(store)
    keys = [k for k in client.get_run(logger.run_id).data.metrics if k.startswith("diag/")]
    return {k: {m.step: m.value for m in client.get_metric_history(logger.run_id, k)}
            for k in keys}


def member_diag(make_cfg, base, variants) -> list[dict[str, dict[int, float]]]:
    group = members(make_cfg, base, variants)
    GroupTrainer(group).run()
    return [{k: v for k, v in m.logger.metrics.items() if k.startswith("diag/")} for m in group]


@pytest.mark.parametrize("schedule,seeds", [
    ([], [0, 1]),
    (["callbacks.diagnostics.every_n_steps=4"], [0, 1]),
    (["callbacks.diagnostics.every_n_steps=4"], [1]),  # a member alone trains its own module
])
def test_a_members_diagnostics_metrics_equal_the_trainer_paths(make_cfg, store, tmp_path,
                                                               schedule, seeds):
    base = [*S4, *schedule]
    theirs = trainer_diag(make_cfg, store, tmp_path, [*base, "init=he", "seed=1"])
    mine = member_diag(make_cfg, base, [["init=he", f"seed={s}"] for s in seeds])[-1]
    assert set(mine) == set(theirs)
    assert len(mine) >= 40
    assert any(k.endswith("/update_ratio") for k in mine)
    assert {s for s in mine["diag/jacobian/s2_mean"]} == {0, 5, 10, 15, 20}
    for key in theirs:
        assert sorted(mine[key]) == sorted(theirs[key]), key
        for step, value in theirs[key].items():
            assert mine[key][step] == pytest.approx(value, rel=RTOL, abs=ATOL), (key, step)
        if 0 in theirs[key]:  # at init: the same weights, the same numbers
            assert mine[key][0] == theirs[key][0], key


@pytest.mark.slow
def test_a_member_run_has_the_ordinary_runs_diagnostics_artifacts_and_tags(tmp_path, store):
    base = [*S4, "callbacks.diagnostics.plot=true", "init=he"]
    # The figures drawn by the helper process (by default only for groups of 32 or more).
    run_cli(tmp_path, store, "-m", "hydra/launcher=ensemble", "hydra.launcher.figure_helper=true",
            *base, "seed=0,1", timeout=600)
    members = {r.info.run_id for r in all_runs(store, "s4_circles")}
    run_cli(tmp_path, store, *base, "seed=0", timeout=600)
    runs = all_runs(store, "s4_circles")
    ordinary = next(r for r in runs if r.info.run_id not in members)
    member = next(r for r in runs if r.info.run_id in members and r.data.params.get("seed") == "0"
                  and "mlflow.parentRunId" in r.data.tags)
    client = MlflowClient(store)

    def files(run, folder):
        return {Path(a.path).name for a in client.list_artifacts(run.info.run_id, folder)}

    for folder in ("diagnostics", "weights", None):
        assert files(member, folder) == files(ordinary, folder), folder
    assert "curves.png" in files(member, None)
    assert "jacobian_spectrum_step20.png" in files(member, "diagnostics")
    for tag in ("initlab.diag.signal", "initlab.diag.signal_ratio"):
        assert member.data.tags[tag] == ordinary.data.tags[tag]

    def local(run, path):
        return client.download_artifacts(run.info.run_id, path, str(tmp_path / run.info.run_id))

    w0, w1 = (load_file(local(r, "weights/initial_weights.safetensors"))
              for r in (member, ordinary))
    assert all(torch.equal(w0[k], w1[k]) for k in w1) and set(w0) == set(w1)
    r0, r1 = (json.loads(Path(local(r, "diagnostics/init_stats.json")).read_text())
              for r in (member, ordinary))
    assert _close(r0, r1)


def _close(a, b) -> bool:
    """Nested records equal, floats to 1e-6 relative (the same weights at init)."""
    if isinstance(b, dict):
        return set(a) == set(b) and all(_close(a[k], b[k]) for k in b)
    if isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9, nan_ok=True)
    return a == b
