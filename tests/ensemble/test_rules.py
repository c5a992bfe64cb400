"""The grouping rule, the refusals, the memory rule, and pruning through a real Optuna trial."""

from __future__ import annotations

import optuna
import pytest

from initlab.engine.build import prepare
from initlab.ensemble.checks import check_ensemble
from initlab.ensemble.engine import GroupTrainer
from initlab.ensemble.grouping import group_jobs
from initlab.ensemble.members import Member
from initlab.ensemble.memory import member_bytes, members_per_chunk
from initlab.errors import ConfigError
from initlab.search.trial import ATTR_PRUNED, load_trial

S4 = ["experiment=s4_circles", "trainer.max_epochs=2", "dataset.steps_per_epoch=5",
      "callbacks=none", "diagnostics=off", "trainer.enable_progress_bar=false"]


def test_jobs_group_by_everything_but_init_and_seed(make_cfg):
    cfgs = [make_cfg(*S4, *extra, tracking=False) for extra in (
        ["init=he", "seed=0"], ["init=random", "init.scale=3", "seed=5"],
        ["init=he", "seed=0", "optimizer.lr=0.1"], ["init=xavier", "seed=1", "optimizer.lr=0.1"],
        ["init=he", "seed=0", "model.hidden=[4]"])]
    assert group_jobs(cfgs) == [[0, 1], [2, 3], [4]]
    assert group_jobs(cfgs[:2] * 3, max_members=4) == [[0, 1, 2, 3], [4, 5]]


@pytest.mark.parametrize("override,key", [
    ("trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val"),
    ("trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches"),
    ("trainer=ddp_cpu", "trainer.devices"),
    ("callbacks=early_stopping", "callbacks.early_stopping"),
    ("callbacks=default", "callbacks.model_checkpoint"),
    ("optimizer._target_=torch.optim.LBFGS", "optimizer._target_"),
    ("model=lenet dataset=mnist5k", "model._target_"),
])
def test_what_cannot_be_exact_is_refused_with_its_key(make_cfg, override, key):
    with pytest.raises(ConfigError) as err:
        check_ensemble(make_cfg(*S4, *override.split()))
    assert err.value.key == key and "hydra/launcher=ensemble" in str(err.value)


def test_the_stackable_s4_config_passes(make_cfg):
    check_ensemble(make_cfg(*S4, "optimizer=adamw", "scheduler=cosine"))


def test_the_memory_rule_splits_a_group_into_chunks(make_cfg):
    job = prepare(make_cfg(*S4, tracking=False))
    per = member_bytes(job.module.model, 300, 2, __import__("torch").float32)
    # 2-10-5-1: 91 parameters x4, 300 x (10+5+1) activations x4, 300 x 2 inputs; 4 bytes each.
    assert per == 4 * (4 * 91 + 4 * 300 * 16 + 300 * 2)
    assert members_per_chunk(per, budget_mb=1) == 2**20 // per
    assert members_per_chunk(per, budget_mb=1, cap=3) == 3
    assert members_per_chunk(10**12, budget_mb=1) == 1


def test_pruning_goes_through_the_members_real_optuna_trial(make_cfg, tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    numbers = [study.ask().number for _ in range(2)]
    group = []
    for number, pruner in zip(numbers, (optuna.pruners.NopPruner(),
                                        optuna.pruners.ThresholdPruner(lower=1.1))):
        cfg = make_cfg(*S4, f"seed={number}", tracking=False)
        m = Member(index=number, cfg=cfg, job=prepare(cfg), name=str(number))
        m.trial = load_trial({"study": "s", "trial": number, "storage": storage}, pruner)
        m.monitor = "val/acc"
        group.append(m)
    GroupTrainer(group).run()
    kept, pruned = (study.trials[n] for n in numbers)
    assert pruned.user_attrs[ATTR_PRUNED] == 0 and list(pruned.intermediate_values) == [0]
    assert ATTR_PRUNED not in kept.user_attrs and list(kept.intermediate_values) == [0, 1]
    assert group[1].pruned_at == 0 and group[0].pruned_at is None
