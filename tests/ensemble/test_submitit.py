"""``hydra.launcher.submitit=local``: each group of the ensemble launcher one submitit job (a
fresh process through submitit's local executor), its members ordinary runs under the sweep's
parent run, and the launcher's ``JobReturn``s carrying their objectives back to the sweeper."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import CONF, all_runs, run_cli
from hydra import compose, initialize_config_dir

from initlab.ensemble.submit import Outcome, job_return, executor_parameters

S4 = ["experiment=s4_circles", "init=he", "trainer.max_epochs=1", "dataset.steps_per_epoch=5",
      "model=mlp_s4", "callbacks=none", "diagnostics=off", "trainer.enable_progress_bar=false",
      "hydra/launcher=ensemble", "hydra.launcher.submitit=local", "hydra.launcher.records=fast"]


def test_executor_parameters_follow_the_slurm_launcher_keys():
    params = {"submitit_folder": "/x/%j", "timeout_min": 60, "cpus_per_task": 2, "mem_gb": 8,
              "gpus_per_node": 0, "partition": "gpu", "setup": ["module load cuda"],
              "slurm_qos": "high", "nodes": None}
    assert executor_parameters("slurm", params) == ("/x/%j", {
        "timeout_min": 60, "cpus_per_task": 2, "mem_gb": 8, "gpus_per_node": 0,
        "slurm_partition": "gpu", "slurm_setup": ["module load cuda"], "slurm_qos": "high"})
    assert executor_parameters("local", params) == ("/x/%j", {
        "timeout_min": 60, "cpus_per_task": 2, "mem_gb": 8, "gpus_per_node": 0})


def test_a_bad_submitit_setting_is_refused_before_anything_exists(tmp_path, unborn_store):
    proc = run_cli(tmp_path, unborn_store, "-m", *S4, "seed=0,1", "hydra.launcher.submitit=pbs",
                   check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hydra.launcher.submitit" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_each_group_is_one_local_submitit_job(tmp_path, store):
    run_cli(tmp_path, store, "-m", *S4, "seed=0,1", "optimizer.lr=0.1,0.05", timeout=600)
    runs = all_runs(store, "s4_circles")
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    members = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and len(members) == 4
    assert {(r.data.params["optimizer.lr"], r.data.params["seed"]) for r in members} == {
        ("0.1", "0"), ("0.1", "1"), ("0.05", "0"), ("0.05", "1")}
    for r in members:
        assert r.info.status == "FINISHED" and r.data.tags["initlab.engine"] == "ensemble"
        assert r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert "val/acc" in r.data.metrics and "test/acc" in r.data.metrics
    jobs = [p for p in (tmp_path / "multirun" / ".submitit").iterdir() if p.name != "%j"]
    assert len(jobs) == 2  # one submitit job per learning rate's group
    assert all(list(p.glob("*_result.pkl")) for p in jobs)


@pytest.mark.slow
def test_the_sweeper_gets_each_members_objective_back(tmp_path, store):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    run_cli(tmp_path, store, "-m", "hparams_search=init_sigma_w2", *S4,
            "hydra.launcher.submitit=local", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=4", "hydra/sweeper/pruner=nop",
            f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=s", timeout=600)
    study = optuna.load_study(study_name="s", storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 4
    runs = {r.info.run_id: r for r in all_runs(store, "s4_circles")}
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert t.value == pytest.approx(run.data.metrics["val/acc"], abs=1e-7)


def test_a_failed_member_comes_back_failed_with_its_error():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["seed=3"], return_hydra_config=True)
    ok = job_return(cfg, Outcome("COMPLETED", 0.75, None, "/out/0"))
    assert ok.return_value == 0.75 and ok.working_dir == "/out/0" and ok.overrides == ["seed=3"]
    bad = job_return(cfg, Outcome("FAILED", None, "ValueError: boom", "/out/1"))
    with pytest.raises(RuntimeError, match="ValueError: boom"):
        bad.return_value  # noqa: B018 - JobReturn raises a failed job's error
    assert Path(bad.working_dir) == Path("/out/1")
