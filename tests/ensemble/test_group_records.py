"""What keeps a group's record-keeping off its training thread: figures drawn by a helper
process (or here, for a small group or if the helper dies), fewer store writes for large groups,
the job configs composed once, and no reaping of runs that this process owns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import HydraContext
from omegaconf import OmegaConf

from initlab.config.sweep import ReusingLoader, check_basic_sweep, take_composed
from initlab.ensemble.figures import HELPER_FROM_MEMBERS, FigureWriter
from initlab.ensemble.members import group_interval_s
from initlab.tracking.sweep import jobs_in_worker_processes


def write_pid(path: Path) -> Path:
    """A drawing function: the file says which process drew it."""
    path.write_text(str(os.getpid()))
    return path


def niceness() -> int:
    return os.nice(0)


def die_unless(parent_pid: int, path: Path) -> Path:
    """Kills the helper process that runs it; draws normally in the test's own process."""
    if os.getpid() != parent_pid:
        os._exit(1)
    return write_pid(path)


def test_a_large_group_draws_in_a_helper_process_a_small_one_here(tmp_path):
    with FigureWriter(HELPER_FROM_MEMBERS) as large, FigureWriter(2) as small:
        assert large.in_helper == ((os.cpu_count() or 1) > 1) and not small.in_helper
    with FigureWriter(2, helper=True) as writer:
        drawn = writer.submit(write_pid, tmp_path / "a.txt", folder="diagnostics")
        assert drawn.path() == tmp_path / "a.txt" and drawn.folder == "diagnostics"
        assert writer.submit(niceness).path() == 19  # the training threads' cores come first
    assert int((tmp_path / "a.txt").read_text()) != os.getpid()
    with FigureWriter(2, helper=False) as writer:
        writer.submit(write_pid, tmp_path / "b.txt").path()
    assert int((tmp_path / "b.txt").read_text()) == os.getpid()


def test_a_figure_the_dead_helper_did_not_draw_is_drawn_here(tmp_path):
    with FigureWriter(2, helper=True) as writer:
        drawing = writer.submit(die_unless, os.getpid(), tmp_path / "c.txt")
        assert drawing.path() == tmp_path / "c.txt"
    assert int((tmp_path / "c.txt").read_text()) == os.getpid()


@pytest.mark.parametrize("members,seconds", [(1, 3.0), (10, 3.0), (11, 6.0), (60, 18.0),
                                             (500, 30.0)])
def test_large_groups_write_less_often_at_most_every_30_s(members, seconds):
    assert group_interval_s(3.0, members) == seconds
    assert group_interval_s(45.0, members) == 45.0  # a longer heartbeat_s stays as it is


@pytest.mark.parametrize("launcher,in_workers", [
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, False),
    ({"_target_": "hydra_plugins.initlab_ensemble_launcher.launcher.EnsembleLauncher",
      "submitit": None}, True),  # its CPU worker processes
    ({"_target_": "hydra_plugins.initlab_ensemble_launcher.launcher.EnsembleLauncher",
      "submitit": "local"}, True),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}, True),
])
def test_only_runs_of_worker_processes_are_reaped(launcher, in_workers):
    assert jobs_in_worker_processes(OmegaConf.create({"hydra": {"launcher": launcher}})) \
        == in_workers


def test_each_checked_job_config_is_handed_to_the_launcher_once():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("train", overrides=["trainer.max_epochs=1",
                                              "hydra.sweep.dir=multirun/${now:%H-%M-%S-%f}"],
                         return_hydra_config=True)
        check_basic_sweep(config, ["seed=0,1", "trainer.max_epochs=1"])
        jobs = [[f"seed={s}", "trainer.max_epochs=1"] for s in (0, 1)]  # as BasicSweeper
        taken = [take_composed(job) for job in jobs]
        assert [cfg.seed for cfg in taken] == [0, 1]
        # ${now} as the sweep resolves it: its jobs find its folder (and its parent run there)
        assert {cfg.hydra.sweep.dir for cfg in taken} == {config.hydra.sweep.dir}
        assert all(take_composed(job) is None for job in jobs)  # once only


class CountingLoader:
    """Hydra's config loader, counting its compositions."""

    def __init__(self, loader) -> None:
        self.loader, self.composed = loader, []

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed.append(list(sweep_overrides))
        return self.loader.load_sweep_config(master_config, sweep_overrides)


def test_the_basic_sweeper_does_not_compose_the_checked_jobs_again():
    """Hydra's BasicSweeper checks that each job of a batch composes (validate_batch_is_legal)
    before the launcher composes it: with the ensemble launcher, it gets the sweep check's
    composition instead (one per job, not two); a job the check did not see is composed."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("train", overrides=["hydra/launcher=ensemble", "callbacks=none",
                                              "trainer.max_epochs=1"],
                         return_hydra_config=True)
        jobs = [[f"seed={s}", "callbacks=none"] for s in (0, 1)]
        check_basic_sweep(config, ["seed=0,1", "callbacks=none"])
        counting = CountingLoader(GlobalHydra.instance().config_loader())
        context = HydraContext(config_loader=counting, callbacks=None)  # none used here
        sweeper = Plugins.instance().instantiate_sweeper(  # the basic one, as the config says
            config=config, hydra_context=context, task_function=lambda cfg: None)
        assert isinstance(context.config_loader, ReusingLoader)  # the launcher's set-up
        sweeper.validate_batch_is_legal(jobs)
        assert counting.composed == []
        sweeper.validate_batch_is_legal([["seed=7", "callbacks=none"]])
        assert counting.composed == [["seed=7", "callbacks=none"]]
        for job in jobs:
            take_composed(job)
