"""The progress bar counts optimizer steps and shows the loss and accuracies by short names."""

import math

from lightning.pytorch.callbacks import TQDMProgressBar

from conftest import FAST
from initlab.engine.build import prepare
from initlab.engine.fit import make_trainer
from initlab.engine.progress import StepProgressBar

SHOWN = {"loss", "acc", "val_loss", "val_acc"}


def fit_with_bar(make_cfg, tmp_path, *overrides):
    cfg = make_cfg(*FAST, "trainer.enable_progress_bar=true", "progress_refresh_rate=1",
                   "trainer.max_epochs=1", "diagnostics=off", *overrides, tracking=False)
    job = prepare(cfg)
    trainer = make_trainer(cfg, tmp_path, None)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, StepProgressBar)
    trainer.fit(job.module, datamodule=job.datamodule)
    return trainer, bar


def test_with_gradient_accumulation_the_bar_counts_optimizer_steps(make_cfg, tmp_path, capsys):
    trainer, bar = fit_with_bar(make_cfg, tmp_path, "trainer.accumulate_grad_batches=4")
    batches = trainer.num_training_batches  # 1,297 digits / 64: 21 batches
    steps = math.ceil(batches / 4)
    assert trainer.global_step == steps == 6
    assert bar.train_progress_bar.total == steps and bar.train_progress_bar.n == steps
    line = capsys.readouterr().out.replace("\r", "\n").splitlines()
    last = [x for x in line if x.startswith("Epoch 0")][-1]
    assert f"{steps}/{steps}" in last and "step/s" in last, last
    assert "v_num" not in last and "train/loss_step" not in last and "loss=" in last, last


def test_the_bar_shows_loss_and_accuracies_only(make_cfg, tmp_path):
    trainer, bar = fit_with_bar(make_cfg, tmp_path, "logger=csv")  # a logger: Lightning adds v_num
    everything = TQDMProgressBar.get_metrics(bar, trainer, trainer.lightning_module)
    assert "v_num" in everything and "val/acc" in everything  # what Lightning's bar shows
    shown = bar.get_metrics(trainer, trainer.lightning_module)
    assert set(shown) == SHOWN, shown
    assert shown["loss"] == everything["train/loss"]  # no step loss now: the epoch's mean
    assert 0.0 <= shown["val_acc"] <= 1.0
    assert bar.train_progress_bar.total == trainer.num_training_batches  # no accumulation
