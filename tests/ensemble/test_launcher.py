"""``hydra/launcher=ensemble`` end to end, through ``python train.py -m``: member runs that
look like ordinary runs, refusal before anything exists, ordinary jobs for what does not
stack, and an Optuna search whose trial values are the member runs' metrics."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import all_runs, run_cli
from mlflow.tracking import MlflowClient

S4 = ["experiment=s4_circles", "trainer.max_epochs=2", "dataset.steps_per_epoch=10",
      "trainer.log_every_n_steps=3", "callbacks=none", "diagnostics=off",
      "trainer.enable_progress_bar=false"]
ENSEMBLE = "hydra/launcher=ensemble"


def history(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_a_lightning_only_callback_is_refused_before_anything_exists(tmp_path, unborn_store):
    proc = run_cli(tmp_path, unborn_store, "-m", ENSEMBLE, "experiment=s4_circles", "seed=0,1",
                   "diagnostics=off", check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "callbacks.model_checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_members_are_ordinary_runs_with_the_ordinary_metrics(tmp_path, store):
    # A sweep dir with ${now:...} as by default (to the microsecond here): the members' runs,
    # created after the launch, still find the sweep's folder and its parent run.
    proc = run_cli(tmp_path, store, "-m", ENSEMBLE, *S4, "init=he,random", "seed=0,1",
                   timeout=600, sweep_dir=f"{tmp_path}/multirun/${{now:%H-%M-%S-%f}}")
    client = MlflowClient(store)
    runs = all_runs(store, "s4_circles")
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    members = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and len(members) == 4
    # Each member's summary is printed once, as an ordinary job's (its log record goes to the
    # job's log file, not to the launcher's console as well).
    for r in members:
        assert proc.stdout.count(f"MLflow run {r.info.run_id} ") == 1, proc.stdout[-3000:]
    assert not [line for line in proc.stdout.splitlines()
                if "[HYDRA]" in line and "test accuracy" in line], proc.stdout[-3000:]
    for r in members:
        assert r.info.status == "FINISHED" and r.data.tags["initlab.engine"] == "ensemble"
        assert r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        out = Path(r.data.tags["initlab.output_dir"])
        assert {"config.yaml", "hydra.yaml", "overrides.yaml"} <= {
            p.name for p in (out / ".hydra").iterdir()}
    member = next(r for r in members if r.data.params["init.name"] == "he"
                  and r.data.params["seed"] == "0")
    # The same job with the ordinary launcher.
    run_cli(tmp_path, store, "-m", *S4, "init=he", "seed=0", "hydra.sweep.dir=ordinary",
            timeout=600)
    ordinary = next(r for r in all_runs(store, "s4_circles")
                    if r.info.run_id not in {x.info.run_id for x in runs}
                    and "mlflow.parentRunId" in r.data.tags)
    assert member.data.params == ordinary.data.params
    assert set(member.data.metrics) == set(ordinary.data.metrics)
    assert set(member.data.tags) - set(ordinary.data.tags) == {"initlab.engine"}
    for key in member.data.metrics:
        mine, theirs = history(client, member.info.run_id, key), \
            history(client, ordinary.info.run_id, key)
        if key != "epoch":  # Lightning logs the epoch twice at an epoch's last step
            assert [s for s, _ in mine] == [s for s, _ in theirs], key
            assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], rel=1e-5), key
    artifacts = lambda r: {a.path for a in client.list_artifacts(r.info.run_id)}  # noqa: E731
    assert artifacts(member) == artifacts(ordinary)


@pytest.mark.slow
def test_jobs_that_do_not_stack_run_as_ordinary_jobs(tmp_path, store):
    run_cli(tmp_path, store, "-m", ENSEMBLE, *S4, "init=he", "seed=0", "optimizer.lr=0.01,0.02",
            timeout=600)
    members = [r for r in all_runs(store, "s4_circles") if "mlflow.parentRunId" in r.data.tags]
    assert len(members) == 2
    assert all("initlab.engine" not in r.data.tags and r.info.status == "FINISHED"
               for r in members)


@pytest.mark.slow
def test_an_optuna_search_trains_its_trials_stacked(tmp_path, store):
    run_cli(tmp_path, store, "-m", ENSEMBLE, "hparams_search=init_sigma_w2", *S4,
            "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=4",
            "hydra/sweeper/pruner=nop", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
            "hydra.sweeper.study_name=s", timeout=600)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 4
    runs = {r.info.run_id: r for r in all_runs(store, "s4_circles")}
    stacked = [r for r in runs.values() if r.data.tags.get("initlab.engine") == "ensemble"]
    assert len(stacked) >= 2  # the workers' trials arrived together and were stacked
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert t.value == pytest.approx(run.data.metrics["val/acc"], abs=1e-7)


@pytest.mark.slow
def test_a_diverging_member_is_tagged_and_the_other_finishes(tmp_path, store):
    run_cli(tmp_path, store, "-m", ENSEMBLE, *S4, "init=random", "seed=0",
            "init.scale=1,1e30", timeout=600)
    runs = {r.data.params["init.scale"]: r for r in all_runs(store, "s4_circles")
            if "mlflow.parentRunId" in r.data.tags}
    ok, bad = (runs[k] for k in sorted(runs, key=float))
    assert ok.data.tags["initlab.engine"] == bad.data.tags["initlab.engine"] == "ensemble"
    assert bad.info.status == "FINISHED" and bad.data.tags["initlab.diverged"] == "true"
    assert bad.data.metrics["diverged"] == 1.0 and "test/acc" in bad.data.metrics
    assert ok.info.status == "FINISHED" and "initlab.diverged" not in ok.data.tags
    assert ok.data.metrics["diverged"] == 0.0
