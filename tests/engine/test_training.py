"""Real short trainings: every init family, reproducibility, what MLflow records, statuses."""

import math
import os

import pytest
from mlflow.tracking import MlflowClient

from conftest import FAST, all_runs
from initlab import inits
from initlab.errors import ConfigError
from initlab.jobs import train


@pytest.mark.parametrize("family", sorted(inits.INIT_FAMILIES))
def test_every_init_family_trains(make_cfg, family):
    metrics = train(make_cfg(f"init={family}", *FAST, "trainer.max_epochs=4", tracking=False))
    assert 0.0 <= metrics["test/acc"] <= 1.0 and math.isfinite(metrics["test/loss"])
    if family in ("he", "xavier", "lecun", "orthogonal", "default", "lsuv"):
        assert metrics["test/acc"] > 0.4, family  # 10 classes: chance is 0.1


def test_same_config_and_seed_give_identical_metrics(make_cfg):
    first = train(make_cfg("init=he", *FAST, tracking=False))
    second = train(make_cfg("init=he", *FAST, tracking=False))
    assert first == second
    third = train(make_cfg("init=he", "seed=1", *FAST, tracking=False))
    assert third["test/loss"] != first["test/loss"]


def test_a_run_records_params_metrics_and_artifacts(make_cfg, store):
    metrics = train(make_cfg("init=he", "init.scale=2", *FAST, "trainer.log_every_n_steps=10"))
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "he-x2-seed0-mlp-digits"
    params = run.data.params
    assert params["init.name"] == "he" and params["init.scale"] == "2"
    assert params["model.hidden"] == "[32, 32]" and params["optimizer.lr"] == "0.01"
    assert params["dataset.name"] == "digits" and params["seed"] == "0"
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    # He x2: sigma_w2 = 2 x 2^2 = 8 per layer, as drawn (step 0), sampling error a few percent
    assert run.data.metrics["init/sigma_w2"] == pytest.approx(8.0, rel=0.15)
    assert run.data.metrics["init/sigma_w2/layer1"] == pytest.approx(8.0, rel=0.15)
    client = MlflowClient(store)
    for key in ("train/loss", "val/loss", "train/acc", "val/acc", "lr"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key  # per epoch
    assert client.get_metric_history(run.info.run_id, "train/loss_step")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "curves.png", "overrides.txt", "weights"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "weights")} == {
        "weights/initial_weights.safetensors", "weights/final_weights.safetensors"}
    tags = run.data.tags
    assert tags["device"].startswith("cpu") and tags["versions.torch"]


def test_a_diverging_run_stops_early_and_is_tagged(make_cfg, store):
    metrics = train(make_cfg(*FAST, "optimizer=sgd", "optimizer.lr=1e6"))
    (run,) = all_runs(store)
    assert metrics["diverged"] == 1.0
    assert run.info.status == "FINISHED" and run.data.tags["initlab.diverged"] == "true"
    history = MlflowClient(store).get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == 1  # stopped in the first epoch, not after max_epochs=2


def test_an_exception_marks_the_run_failed_with_its_traceback(make_cfg, store, tmp_path):
    cfg = make_cfg(*FAST, "+callbacks.boom._target_=failing.RaiseAtStep")
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg)
    (run,) = all_runs(store)
    assert run.info.status == "FAILED"
    client = MlflowClient(store)
    path = client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path))
    assert "RuntimeError: boom" in open(path).read()


def test_ctrl_c_marks_the_run_killed(make_cfg, store):
    cfg = make_cfg(*FAST, "+callbacks.boom._target_=failing.RaiseAtStep",
                   "+callbacks.boom.exception=KeyboardInterrupt")
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    (run,) = all_runs(store)
    assert run.info.status == "KILLED"


@pytest.mark.parametrize("overrides,message", [
    (["init=normal", "init.std=-1"], "init.std = -1 is not allowed: a finite number >= 0"),
    (["init.scale=-0.5"], "init.scale = -0.5 is not allowed: a finite number >= 0"),
    (["model.in_features=100"], "model/data mismatch: model.in_features = 100 is not allowed"),
    (["optimizer.lr=0"], "optimizer.lr = 0 is not allowed: a finite number > 0"),
    (["dataset=mnist", "dataset.options.download=false", "dataset.options.root=/nonexistent"],
     "offline alternatives: dataset=mnist5k"),
])
def test_bad_input_fails_before_any_run_is_created(make_cfg, store, overrides, message):
    train(make_cfg(*FAST))  # something already recorded must survive
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(*FAST, *overrides))
    runs = all_runs(store)
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_max_steps_shorter_than_an_epoch_still_reports_validation(make_cfg):
    metrics = train(make_cfg(*FAST, "trainer.max_epochs=-1", "trainer.max_steps=5",
                             tracking=False))
    assert 0.0 <= metrics["val/acc"] <= 1.0


def test_an_optimized_metric_that_is_never_logged_is_rejected_up_front(make_cfg, store):
    with pytest.raises(ConfigError, match="optimized_metric = 'val/accuracy' is not allowed: a training run never logged it"):
        train(make_cfg(*FAST, "optimized_metric=val/accuracy"))
    assert all_runs(store) == []


def test_a_scheduler_steps_once_per_epoch(make_cfg, store):
    train(make_cfg(*FAST, "trainer.max_epochs=3", "scheduler=step", "scheduler.step_size=1",
                   "scheduler.gamma=0.5"))
    (run,) = all_runs(store)
    history = MlflowClient(store).get_metric_history(run.info.run_id, "lr")
    assert [round(m.value, 6) for m in sorted(history, key=lambda m: m.step)] == [0.01, 0.005, 0.0025]


def test_the_nvml_probe_is_dropped_only_where_nvml_cannot_be_loaded(monkeypatch):
    import ctypes

    from initlab.engine.build import skip_nvml_probe_without_driver

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        loadable = True
    except OSError:
        loadable = False
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    skip_nvml_probe_without_driver()
    assert ("PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ) == loadable
