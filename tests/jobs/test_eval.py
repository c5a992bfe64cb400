"""`python eval.py`: a run id or a checkpoint file, rebuilt from tensors and plain values,
evaluated on a split with a Lightning Trainer, recorded as a run linked to its source; bad input
refused with exit code 2 before any run exists.  One tiny real training (S4's circles, one
epoch) in a SQLite store; its checkpoints and config.yaml laid out as its job folder holds them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from conftest import CONF, ROOT, seed_store
from initlab.errors import ConfigError
from initlab.jobs import train
from initlab.jobs.evaluate import TAG_EVALUATES, TAG_EVALUATES_MODEL, evaluate
from initlab.tracking.models import FINAL_MODEL

TINY = ["dataset=circles", "dataset.steps_per_epoch=20", "model=mlp_s4", "trainer.max_epochs=1",
        "diagnostics=off", "trainer.enable_progress_bar=false"]


def runs(store):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("initlab")
    return [] if exp is None else client.search_runs([exp.experiment_id])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained run, and its job folder as a user has it: config.yaml and checkpoints/."""
    tmp = tmp_path_factory.mktemp("eval")
    store = seed_store(tmp / "mlruns" / "mlflow.db")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"tracking.tracking_uri={store}",
                                          f"tracking.artifact_root={tmp}/mlruns/artifacts"])
    metrics = train(cfg)
    (run,) = runs(store)
    client = MlflowClient(store)
    job = tmp / "job"
    (job / "checkpoints").mkdir(parents=True)
    client.download_artifacts(run.info.run_id, "config.yaml", str(job))
    client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(job / "checkpoints"))
    return store, run, metrics, job / "checkpoints" / "last.ckpt"


def eval_cfg(store, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("eval", overrides=[*overrides, f"tracking.tracking_uri={store}"])


def new_run(store, before):
    (run,) = [r for r in runs(store) if r.info.run_id not in before]
    return MlflowClient(store).get_run(run.info.run_id)


def test_eval_of_a_run_id_gives_its_test_accuracy_and_links_its_model(source):
    store, run, metrics, _ = source
    before = {r.info.run_id for r in runs(store)}
    result = evaluate(eval_cfg(store, f"ckpt_path={run.info.run_id}"))
    assert result["test/acc"] == metrics["test/acc"]
    assert result["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    evaluation = new_run(store, before)
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.tags[TAG_EVALUATES] == run.info.run_id
    assert evaluation.data.tags["mlflow.source.name"] == "eval.py"
    assert evaluation.data.metrics["test/acc"] == run.data.metrics["test/acc"]
    client = MlflowClient(store)
    (model,) = [client.get_logged_model(m.model_id) for m in evaluation.inputs.model_inputs]
    assert model.name == FINAL_MODEL and model.source_run_id == run.info.run_id
    assert evaluation.data.tags[TAG_EVALUATES_MODEL] == model.model_id
    (data,) = evaluation.inputs.dataset_inputs  # the same test split as the source's
    trained_on = {i.tags[0].value: i.dataset.digest
                  for i in client.get_run(run.info.run_id).inputs.dataset_inputs}
    assert data.tags[0].value == "test" and data.dataset.digest == trained_on["test"]


def test_eval_of_a_checkpoint_file_gives_the_same_accuracy(source):
    store, run, metrics, ckpt = source
    before = {r.info.run_id for r in runs(store)}
    result = evaluate(eval_cfg(store, f"ckpt_path={ckpt}"))
    assert result["test/acc"] == metrics["test/acc"]
    evaluation = new_run(store, before)
    assert evaluation.data.tags[TAG_EVALUATES] == str(ckpt.resolve())
    assert evaluation.info.status == "FINISHED"


def test_eval_on_another_split(source):
    store, run, metrics, _ = source
    result = evaluate(eval_cfg(store, f"ckpt_path={run.info.run_id}", "split=val"))
    assert result["val/acc"] == metrics["val/acc"]
    train_split = evaluate(eval_cfg(store, f"ckpt_path={run.info.run_id}", "split=train"))
    assert 0 <= train_split["train/acc"] <= 1 and set(train_split) == {"train/acc", "train/loss"}


@pytest.mark.parametrize("overrides, says", [
    ((), "ckpt_path is missing"),
    (("ckpt_path=0123456789abcdef0123456789abcdef",), "is not a run of the MLflow store"),
    (("ckpt_path=not-a-run",), "neither a checkpoint file nor an MLflow run id"),
    (("ckpt_path={config}",), "is not a Lightning checkpoint"),
    (("ckpt_path={run}", "split=holdout"), "is not a split"),
    (("ckpt_path={run}", "dataset.options.n_val=0", "dataset=circles", "split=val"),
     "has no val samples"),
])
def test_bad_input_is_refused_before_any_run(source, overrides, says):
    store, run, _, ckpt = source
    names = {"config": ckpt.parent.parent / "config.yaml", "run": run.info.run_id}
    before = {r.info.run_id for r in runs(store)}
    with pytest.raises(ConfigError, match=says):
        evaluate(eval_cfg(store, *(o.format(**names) for o in overrides)))
    assert {r.info.run_id for r in runs(store)} == before


def test_the_cli_refuses_with_exit_2_and_one_paragraph(source, tmp_path):
    store, *_ = source
    before = {r.info.run_id for r in runs(store)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), "ckpt_path=0123456789abcdef0123456789abcdef",
         f"tracking.tracking_uri={store}", f"hydra.run.dir={tmp_path}/out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not a run of the MLflow store" in lines[0]
    assert "Traceback" not in proc.stderr
    assert {r.info.run_id for r in runs(store)} == before


@pytest.mark.slow
def test_the_cli_evaluates_a_checkpoint_file(source, tmp_path):
    store, run, metrics, ckpt = source
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"ckpt_path={ckpt}",
         f"tracking.tracking_uri={store}", f"hydra.run.dir={tmp_path}/out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"test accuracy {metrics['test/acc']:.4f}" in proc.stdout
