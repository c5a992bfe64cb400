"""Every Trainer option a Lightning user knows does what Lightning documents, through the
config, on real short trainings (digits: 1,297 training images in batches of 64 = 21 optimizer
steps per epoch; validation 200 images in batches of 1,000 = 1 batch)."""

import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import FAST, all_runs
from hooks import read
from initlab.jobs import train

STEPS_PER_EPOCH = 21


@pytest.fixture
def counted(make_cfg, tmp_path):
    """Train with a counting callback; return (metrics, what it counted)."""
    path = tmp_path / "hooks.json"

    def run(*overrides, tracking=False):
        cfg = make_cfg(*FAST, "diagnostics=off", "callbacks=none",
                       "+callbacks.counter._target_=hooks.CountingHooks",
                       f"+callbacks.counter.path={path}", *overrides, tracking=tracking)
        metrics = train(cfg)
        return metrics, read(path)

    return run


def steps_of(store, key):
    (run,) = [r for r in all_runs(store)]
    return sorted(m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, key))


def test_every_per_step_hook_fires_once_per_optimizer_step(counted):
    _, seen = counted()
    steps = 2 * STEPS_PER_EPOCH
    assert seen["global_step"] == steps
    for hook in ("on_train_batch_start", "on_train_batch_end", "on_before_backward",
                 "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad"):
        assert seen["counts"][hook] == steps, hook
    assert seen["steps"] == list(range(1, steps + 1))  # global_step after each batch
    assert seen["counts"]["on_train_epoch_start"] == seen["counts"]["on_train_epoch_end"] == 2
    assert seen["counts"]["on_validation_epoch_end"] == 2
    assert seen["counts"]["on_test_batch_end"] == 1


def test_max_steps_stops_at_that_step_with_one_logged_point_per_step(counted, store):
    metrics, seen = counted("trainer.max_epochs=-1", "trainer.max_steps=7",
                            "trainer.log_every_n_steps=1", tracking=True)
    assert seen["global_step"] == 7 and seen["counts"]["on_train_batch_end"] == 7
    assert len(steps_of(store, "train/loss_step")) == 7
    assert 0.0 <= metrics["val/acc"] <= 1.0  # the final model is validated


def test_max_epochs_and_limit_train_batches(counted):
    _, seen = counted("trainer.max_epochs=3", "trainer.limit_train_batches=3")
    assert seen["global_step"] == 9 and seen["counts"]["on_train_epoch_end"] == 3


def test_limit_val_and_test_batches(counted, make_cfg):
    _, seen = counted("trainer.limit_val_batches=0")
    assert seen["counts"].get("on_validation_epoch_end", 0) == 0
    _, seen = counted("dataset.eval_batch_size=50", "trainer.limit_val_batches=2",
                      "trainer.limit_test_batches=3")
    assert seen["counts"]["on_validation_batch_end"] == 2 * 2  # 2 batches, 2 epochs
    assert seen["counts"]["on_test_batch_end"] == 3


def test_val_check_interval_and_check_val_every_n_epoch(counted):
    _, seen = counted("trainer.val_check_interval=5")
    assert seen["val_steps"] == [5, 10, 15, 20, 26, 31, 36, 41]  # every 5 batches of each epoch
    _, seen = counted("trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2")
    assert seen["val_steps"] == [2 * STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH]


def test_log_every_n_steps_sets_the_step_logging(counted, store):
    counted("trainer.log_every_n_steps=5", tracking=True)
    assert steps_of(store, "train/loss_step") == [4, 9, 14, 19, 24, 29, 34, 39]
    assert steps_of(store, "train/loss") == steps_of(store, "val/acc") == [20, 41]


@pytest.mark.parametrize("algorithm", ["value", "norm"])
def test_gradient_clipping_bounds_every_update(make_cfg, tmp_path, algorithm):
    """SGD without momentum at lr 0.1 with gradients clipped to 1e-6: no weight moves by more
    than 42 steps x 0.1 x 1e-6 (plus float32 rounding; unclipped, they move by ~1e-3)."""
    from initlab.engine.build import prepare
    from initlab.engine.fit import fit_and_test, make_trainer

    cfg = make_cfg(*FAST, "diagnostics=off", "callbacks=none", "optimizer=sgd",
                   "optimizer.lr=0.1", "optimizer.momentum=0", "trainer.gradient_clip_val=1e-6",
                   f"trainer.gradient_clip_algorithm={algorithm}", tracking=False)
    job = prepare(cfg)
    before = [p.detach().clone() for p in job.module.parameters()]
    fit_and_test(make_trainer(cfg, tmp_path, None), job)
    moved = max((p.detach() - b).abs().max().item() for p, b in zip(job.module.parameters(), before))
    assert 0 < moved <= 42 * 0.1 * 1e-6 * 1.1


def test_accumulate_grad_batches_steps_once_per_k_batches(counted):
    _, seen = counted("trainer.accumulate_grad_batches=3")
    assert seen["counts"]["on_train_batch_end"] == 42
    assert seen["counts"]["on_before_optimizer_step"] == seen["global_step"] == 14


def test_float64_training_end_to_end_with_diagnostics(make_cfg, tmp_path, store):
    path = tmp_path / "hooks.json"
    metrics = train(make_cfg(*FAST, "trainer.precision=64-true",
                             "+callbacks.counter._target_=hooks.CountingHooks",
                             f"+callbacks.counter.path={path}"))
    seen = read(path)
    assert seen["param_dtypes"] == ["torch.float64"] and seen["dtypes"] == ["torch.float64"]
    assert math.isfinite(metrics["test/loss"]) and metrics["test/acc"] > 0.5
    assert steps_of(store, "diag/layer1/act_std")  # diagnostics ran in float64


def test_deterministic_runs_repeat_exactly(counted):
    first, _ = counted("trainer.deterministic=true")
    again, _ = counted("trainer.deterministic=true")
    assert first == again


def test_fast_dev_run_runs_one_batch_of_each(counted):
    _, seen = counted("trainer.fast_dev_run=true")
    assert seen["counts"]["on_train_batch_end"] == 1
    assert seen["counts"]["on_validation_batch_end"] == 1 and seen["counts"]["on_test_batch_end"] == 1


def test_overfit_batches_trains_on_the_same_few_batches(counted):
    _, seen = counted("trainer.overfit_batches=2", "trainer.max_epochs=3")
    assert seen["counts"]["on_train_batch_end"] == 6 and seen["global_step"] == 6


@pytest.mark.parametrize("interval,expected", [
    ("epoch", [0.01] * 21 + [0.005] * 21),
    ("step", [0.01 * 0.5 ** i for i in range(42)]),
])
def test_schedulers_step_at_their_interval(counted, store, interval, expected):
    counted("scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5",
            f"scheduler.interval={interval}", "+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor",
            "+callbacks.lr.logging_interval=step", "trainer.log_every_n_steps=1", tracking=True)
    (run,) = all_runs(store)
    history = sorted(MlflowClient(store).get_metric_history(run.info.run_id, "lr-Adam"),
                     key=lambda m: m.step)
    assert [m.value for m in history] == pytest.approx(expected, rel=1e-6)


def test_a_constant_init_stays_exactly_symmetric_through_float64_training(make_cfg, tmp_path):
    """Every hidden unit of a layer starts equal and gets the same gradient: in float64 they
    are still identical after training (S1's point about symmetry), to the last bits that the
    CPU's float64 matrix kernels round differently per row (measured: 2e-17 of weights ~0.1)."""
    from initlab.engine.build import prepare
    from initlab.engine.fit import fit_and_test, make_trainer

    cfg = make_cfg(*FAST, "init=constant", "init.bias.name=zeros", "trainer.precision=64-true",
                   "optimizer=sgd", "optimizer.lr=0.1", "callbacks=none", tracking=False)
    job = prepare(cfg)
    hidden = [m for m in job.module.model if isinstance(m, torch.nn.Linear)][:-1]
    assert hidden[0].weight.dtype == torch.float64  # drawn in float64, not cast up
    initial = [layer.weight.detach().clone() for layer in hidden]
    fit_and_test(make_trainer(cfg, tmp_path, None), job)
    for layer, w0 in zip(hidden, initial):
        w = layer.weight.detach()
        assert not torch.equal(w, w0)  # it trained ...
        assert (w - w[:1]).abs().max() <= 1e-14 * w.abs().max()  # ... and every unit is the same


@pytest.mark.parametrize("preset,batches", [("fdr", 1), ("limit", 10), ("overfit", 6)])
def test_debug_presets(make_cfg, store, tmp_path, preset, batches):
    """debug=fdr / limit / overfit: the training batches Lightning documents (FAST sets
    trainer.max_epochs=2 on the command line, which wins over the presets), nothing recorded."""
    path = tmp_path / "hooks.json"
    train(make_cfg(*FAST, f"debug={preset}", "+callbacks.counter._target_=hooks.CountingHooks",
                   f"+callbacks.counter.path={path}"))
    assert read(path)["counts"]["on_train_batch_end"] == batches
    assert all_runs(store) == []
