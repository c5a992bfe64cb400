"""Every option of every config group, and every preset, composes into a valid job config."""

import pytest
from omegaconf import OmegaConf

from conftest import CONF
from initlab import inits
from initlab.config import validate

GROUPS = ["init", "model", "optimizer", "dataset", "trainer", "tracking", "scheduler", "callbacks",
          "debug"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if group == "init":
        assert cfg.init.name == option
    if group in ("model", "optimizer", "scheduler") and cfg.get(group):
        assert cfg[group].name  # run names and params need it
    validate(cfg, devices=False)  # trainer=gpu/ddp compose on machines without CUDA


def test_every_init_family_has_a_config_file():
    assert {p.stem for p in (CONF / "init").glob("*.yaml")} == set(inits.INIT_FAMILIES)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_study_preset_composes(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}")
    OmegaConf.to_container(cfg, resolve=True)
    validate(cfg, devices=False)  # trainer=gpu/ddp compose on machines without CUDA
    assert cfg.tracking.experiment != "initlab"  # presets record into their own experiment


def test_presets_reproduce_the_studies_setups(make_cfg):
    s0 = make_cfg("experiment=s0_truncnormal")
    assert (s0.seed, s0.init.name, s0.init.std, s0.init.cutoff) == (777, "truncated_normal", 0.1, 2.0)
    assert s0.init.bias.name == "normal" and s0.init.bias.sigma_b2 == 1.0
    s1 = make_cfg("experiment=s1_mnist")
    assert list(s1.model.hidden) == [100] * 4 and s1.model.activation == "relu"
    assert s1.dataset.replacement and s1.dataset.batch_size == 128 and s1.trainer.max_steps == 2000
    s3 = make_cfg("experiment=s3_xavier_deep")
    assert list(s3.model.hidden) == [512] * 4 and s3.dataset.drop_last
    s4 = make_cfg("experiment=s4_circles")
    assert list(s4.model.hidden) == [10, 5] and s4.model.num_outputs == 1
    assert s4.dataset.batch_size is None
    assert s4.dataset.steps_per_epoch * s4.trainer.max_epochs == 15_000  # optimizer steps


