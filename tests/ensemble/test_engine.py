"""The stacked engine in-process against the Trainer path: same initial weights bit for bit,
the same per-step losses, the same final metrics; masking of diverged and pruned members."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch import nn

from initlab.engine.build import prepare
from initlab.engine.fit import fit_and_test, make_trainer
from initlab.ensemble.engine import GroupTrainer
from initlab.ensemble.stacked import StackedModel, layered_plan
from initlab.nets.activations import ACTIVATIONS
from initlab.nets.lenet import LeNet
from initlab.nets.mlp import MLP
from recording import Recorder, members

# S4's net and data, 20 full-batch steps, a loss at every step.
S4 = ["experiment=s4_circles", "trainer.max_epochs=2", "dataset.steps_per_epoch=10",
      "trainer.log_every_n_steps=1", "callbacks=none", "diagnostics=off",
      "trainer.enable_progress_bar=false"]
# Mini-batches drawn in each seed's own order, Adam.
DIGITS = ["dataset=digits", "model.hidden=[16]", "dataset.batch_size=64", "optimizer=adam",
          "optimizer.lr=0.01", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
          "callbacks=none", "diagnostics=off", "trainer.enable_progress_bar=false"]
FIRST_RTOL = 1e-6  # per-step losses, first 5 steps: float32 rounding of batched vs single matmuls
LOSS_RTOL = 1e-4   # ... first 20 steps: S4's N(0,1)x10 init (loss ~300) amplifies that rounding
FINAL_ATOL = 1e-3  # final losses after 20-50 steps; accuracies must agree exactly


class TrainerRecorder(Logger):
    """A Lightning logger keeping what the Trainer path logs, by (key, step)."""

    def __init__(self) -> None:
        super().__init__()
        self.rec = Recorder()

    name = "recorder"
    version = 0

    def log_metrics(self, metrics, step=None):
        self.rec.log_metrics(metrics, step)

    def log_hyperparams(self, *args, **kwargs):
        pass


def trainer_history(make_cfg, tmp_path, overrides):
    """The Trainer path (``prepare`` + ``make_trainer`` + ``fit_and_test``) on one config."""
    cfg = make_cfg(*overrides, tracking=False)
    logger = TrainerRecorder()
    metrics = fit_and_test(make_trainer(cfg, tmp_path, logger), prepare(cfg))
    return metrics, logger.rec.metrics["train/loss_step"]


def test_initial_weights_are_bit_identical_to_the_trainer_paths(make_cfg):
    variants = [["init=he", "seed=0"], ["init=he", "seed=1"], ["init=random", "seed=0"],
                ["init=orthogonal", "seed=3"]]
    group = members(make_cfg, S4, variants)
    stacked = StackedModel([m.job.module.model for m in group], True, torch.device("cpu"),
                           torch.float32)
    for i, extra in enumerate(variants):
        alone = prepare(make_cfg(*S4, *extra, tracking=False)).module.model.state_dict()
        for key, value in alone.items():
            assert torch.equal(stacked.member_state(i)[key], value), (extra, key)


@pytest.mark.parametrize("base,variants", [
    (S4, [["init=he", "seed=0"], ["init=random", "seed=1"]]),
    (DIGITS, [["init=he", "seed=0"], ["init=xavier", "seed=1"]]),
    ([*S4, "trainer.precision=64-true", "optimizer.momentum=0.9", "scheduler=step",
      "scheduler.step_size=1"], [["init=he", "seed=0"], ["init=lecun", "seed=1"]]),
    (DIGITS, [["init=xavier", "seed=2"]]),   # a chunk of one: called without vmap
], ids=["s4-sgd-full-batch", "digits-adam-minibatch", "s4-float64-momentum-steplr",
        "digits-one-member"])
def test_losses_and_metrics_match_the_trainer_path(make_cfg, tmp_path, base, variants):
    group = members(make_cfg, base, variants)
    GroupTrainer(group).run()
    for m, extra in zip(group, variants):
        metrics, steps = trainer_history(make_cfg, tmp_path, [*base, *extra])
        mine = m.logger.metrics["train/loss_step"]
        assert sorted(mine) == sorted(steps)  # the same steps
        drift = [abs(mine[k] - steps[k]) / abs(steps[k]) for k in sorted(steps)]
        print(extra, "relative loss differences per step:", [f"{d:.1e}" for d in drift])
        assert max(drift[:5]) <= FIRST_RTOL and max(drift[:20]) <= LOSS_RTOL, (extra, drift)
        for key in ("train/acc", "val/acc", "test/acc"):
            assert m.metrics[key] == pytest.approx(metrics[key], abs=1e-9), key
        for key in ("train/loss", "val/loss", "test/loss"):
            assert m.metrics[key] == pytest.approx(metrics[key], abs=FINAL_ATOL), key
        assert m.metrics["diverged"] == metrics["diverged"] == 0.0


def test_a_diverging_member_is_masked_and_the_others_are_unaffected(make_cfg):
    ok, bad = ["init=he", "seed=0"], ["init=random", "init.scale=1e30", "seed=0"]
    pair = members(make_cfg, S4, [ok, bad])
    GroupTrainer(pair).run()
    (alone,) = members(make_cfg, S4, [ok])
    GroupTrainer([alone]).run()
    assert pair[1].diverged_at is not None and pair[1].metrics["diverged"] == 1.0
    assert pair[1].done and len(pair[1].logger.metrics["train/loss"]) == 1  # stopped in epoch 0
    assert pair[0].diverged_at is None and pair[0].metrics["diverged"] == 0.0
    for key, value in alone.metrics.items():
        assert pair[0].metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


class PruneAt:
    """A stand-in Optuna trial that prunes at ``epoch`` (None: never)."""

    def __init__(self, epoch, number):
        self.epoch, self.number, self.reports, self.attrs = epoch, number, [], {}

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.epoch is not None and self.reports[-1][0] >= self.epoch

    def set_user_attr(self, key, value):
        self.attrs[key] = value


def test_a_pruned_member_stops_and_the_others_go_on(make_cfg):
    group = members(make_cfg, S4, [["init=he", "seed=0"], ["init=he", "seed=1"]])
    for m, epoch in zip(group, (None, 0)):
        m.trial, m.monitor = PruneAt(epoch, m.index), "val/acc"
    GroupTrainer(group).run()
    kept, pruned = group
    assert pruned.pruned_at == 0 and pruned.trial.attrs == {"initlab.pruned_at_step": 0}
    assert [s for s, _ in pruned.trial.reports] == [0] and "test/acc" in pruned.metrics
    assert [s for s, _ in kept.trial.reports] == [0, 1] and kept.pruned_at is None


def test_an_exception_fails_only_the_members_not_yet_finished(make_cfg):
    group = members(make_cfg, S4, [["init=he", "seed=0"], ["init=he", "seed=1"]])

    def finish(m):
        if m.index == 1:
            raise RuntimeError("recording failed")

    with pytest.raises(RuntimeError):
        GroupTrainer(group, finish=finish).run()
    assert group[0].done and group[0].error is None and "test/acc" in group[0].metrics
    assert group[1].done and isinstance(group[1].error, RuntimeError)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "softmax"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_the_layered_forward_computes_what_vmap_computes(activation, binary):
    """An MLP group's stacked forward written out layer by layer (``layered_plan``) gives the
    losses, counts and gradients of ``vmap`` over ``functional_call`` of the same net, on a
    shared batch and on each member's own."""
    torch.manual_seed(0)
    outputs = 1 if binary else 10
    nets = [MLP(12, outputs, hidden=[7, 5], activation=activation) for _ in range(4)]
    layered, vmapped = (StackedModel(nets, binary, torch.device("cpu"), torch.float32)
                        for _ in range(2))
    assert layered.plan is not None
    vmapped.plan = None  # the general path
    x, y = torch.randn(9, 3, 4), torch.randint(0, 2 if binary else 10, (9,))
    pick = torch.randint(0, 9, (4, 6))
    for xs, ys, per_member in ((x, y, False), (x[pick], y[pick], True)):
        (loss, right), (loss_v, right_v) = (model.losses(xs, ys, per_member)
                                            for model in (layered, vmapped))
        assert loss.shape == (4,) and torch.allclose(loss, loss_v, rtol=1e-6, atol=1e-7)
        assert torch.equal(right, right_v)
        loss.sum().backward()
        loss_v.sum().backward()
        for name in layered.params:
            assert torch.allclose(layered.grad(name), vmapped.grad(name), rtol=1e-5, atol=1e-7)
            layered.params[name].grad = vmapped.params[name].grad = None


def test_other_nets_take_vmap():
    assert layered_plan(LeNet(in_channels=1, image_size=28, num_outputs=10)) is None
    assert layered_plan(nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=-1))) is None
