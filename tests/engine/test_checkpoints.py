"""The callbacks group, checkpoints in the record, and resuming: from a file or an MLflow run
id, to the same metrics as a run that was never interrupted."""

import pickle

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import FAST, all_runs
from initlab.jobs import train

BASE = [*FAST, "diagnostics=off"]


def test_default_callbacks_log_best_and_last_checkpoints_readable_as_tensors(make_cfg, store,
                                                                            tmp_path):
    train(make_cfg(*BASE))
    (run,) = all_runs(store)
    client = MlflowClient(store)
    names = sorted(a.path for a in client.list_artifacts(run.info.run_id, "checkpoints"))
    assert names == ["checkpoints/best-epoch1-step42.ckpt", "checkpoints/last.ckpt"]
    local = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(tmp_path))
    checkpoint = torch.load(local, weights_only=True)  # no pickled objects in it
    assert checkpoint["global_step"] == 42 and "state_dict" in checkpoint


def test_resuming_from_a_run_id_ends_as_the_uninterrupted_run(make_cfg, store):
    whole = train(make_cfg(*BASE, "trainer.max_epochs=4", tracking=False))
    train(make_cfg(*BASE, "trainer.max_epochs=2"))
    (first,) = all_runs(store)
    resumed = train(make_cfg(*BASE, "trainer.max_epochs=4", f"ckpt_path={first.info.run_id}"))
    assert resumed["test/acc"] == whole["test/acc"] and resumed["test/loss"] == whole["test/loss"]
    second = next(r for r in all_runs(store) if r.info.run_id != first.info.run_id)
    assert second.data.tags["initlab.resumed_from"] == first.info.run_id
    steps = [m.step for m in MlflowClient(store).get_metric_history(second.info.run_id, "train/loss")]
    assert sorted(steps) == [62, 83]  # epochs 3 and 4 of 21 steps: the x-axis continues


def test_resuming_mid_epoch_from_a_file_ends_as_the_uninterrupted_run(make_cfg, tmp_path):
    every_10 = ["callbacks.model_checkpoint.every_n_train_steps=10",
                "callbacks.model_checkpoint.every_n_epochs=null",
                f"callbacks.model_checkpoint.dirpath={tmp_path}/ckpt"]
    whole = train(make_cfg(*BASE, "trainer.max_epochs=-1", "trainer.max_steps=42", tracking=False))
    train(make_cfg(*BASE, *every_10, "trainer.max_epochs=-1", "trainer.max_steps=30",
                   tracking=False))
    last = tmp_path / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 30  # 9 steps into epoch 2
    resumed = train(make_cfg(*BASE, "trainer.max_epochs=-1", "trainer.max_steps=42",
                             f"ckpt_path={last}", tracking=False))
    assert resumed["test/loss"] == whole["test/loss"] and resumed["val/acc"] == whole["val/acc"]


class _Planted:
    """Unpickling this runs a shell-free side effect: it creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_pickle_in_a_checkpoint_is_never_run(make_cfg, tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": _Planted(str(marker))}, f)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        train(make_cfg(*BASE, f"ckpt_path={bad}", tracking=False))
    assert not marker.exists()


def test_callbacks_compose_and_train_together(make_cfg, store):
    metrics = train(make_cfg(*BASE, "callbacks=[model_checkpoint,early_stopping,lr_monitor,ema,rich_progress_bar]",
                             "callbacks.early_stopping.patience=0", "callbacks.ema.decay=0.9",
                             "trainer.max_epochs=6",
                             "trainer.enable_progress_bar=true"))
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED" and metrics["test/acc"] > 0.5
    client = MlflowClient(store)
    assert client.get_metric_history(run.info.run_id, "lr-Adam")
    epochs = client.get_metric_history(run.info.run_id, "train/loss")
    assert 1 <= len(epochs) <= 6
