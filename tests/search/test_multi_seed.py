"""``objective_seeds: k``: a job trains k seeds, each its own MLflow run, and its objective is
their mean; an Optuna trial records the mean, its standard error and the values.  Real Hydra
(``train.py`` as a subprocess), real Optuna in SQLite, real MLflow in tmp_path, tiny trainings."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import ROOT, all_runs, run_cli, seed_store
from initlab.config import validate
from initlab.errors import ConfigError
from initlab.jobs import train_seeds

TINY = ["dataset=digits", "model.hidden=[16]", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "optimizer.lr=0.01"]


def by_group(runs) -> dict[str, list]:
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(run.data.tags.get("initlab.seed_group"), []).append(run)
    return groups


def search(tmp: Path, *overrides: str, check: bool = True,
           preset: str = "init_sigma_w2") -> subprocess.CompletedProcess:
    """A search preset (the real ``init_sigma_w2``), 2 trials one at a time, on the tiny setup."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hparams_search={preset}", *TINY,
           "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1", "hydra.sweeper.plots=false",
           "hydra.sweeper.study_name=s", f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db",
           f"tracking.tracking_uri={seed_store(tmp / 'mlflow.db')}",
           f"tracking.artifact_root={tmp}/artifacts", f"hydra.sweep.dir={tmp}/sweep", *overrides]
    path = os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", "PYTHONPATH": path}
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"search failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def test_one_job_trains_k_seeds_each_its_own_run(make_cfg, store: str, capsys) -> None:
    metrics = train_seeds(make_cfg(*TINY, "seed=3", "objective_seeds=2", "diagnostics=off",
                                   "trainer.limit_train_batches=3"))
    runs = sorted(all_runs(store), key=lambda r: r.data.params["seed"])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert [r.data.params["seed"] for r in runs] == ["3", "4"]
    (group, members), = by_group(runs).items()
    assert group and sorted(r.data.tags["initlab.seed_index"] for r in members) == ["0", "1"]
    values = [r.data.metrics["val/acc"] for r in runs]
    assert metrics["val/acc"] == statistics.fmean(values)  # what main hands the sweeper
    for run in runs:
        assert run.data.metrics["objective/mean"] == pytest.approx(statistics.fmean(values))
        assert run.data.metrics["objective/se"] == pytest.approx(abs(values[0] - values[1]) / 2)
        assert run.data.metrics["objective/n"] == 2
        assert run.data.tags["initlab.objective_seeds"] == "2"
    assert "objective val/acc over 2 seeds (3..4)" in capsys.readouterr().out
    # each seed keeps its own checkpoints (resuming from a seed's run id finds its last.ckpt)
    client = MlflowClient(store)
    for run in runs:
        assert "checkpoints/last.ckpt" in {a.path for a in client.list_artifacts(
            run.info.run_id, "checkpoints")}


@pytest.mark.parametrize("bad", [0, 101, 2.5, "many", None])
def test_the_schema_refuses_a_bad_objective_seeds(make_cfg, bad) -> None:
    cfg = make_cfg(*TINY, f"objective_seeds={'null' if bad is None else bad}")
    with pytest.raises(ConfigError, match="objective_seeds") as err:
        validate(cfg)
    assert "1" in str(err.value) and "100" in str(err.value)


def test_a_search_with_bad_objective_seeds_leaves_nothing(tmp_path: Path) -> None:
    proc = search(tmp_path, "objective_seeds=0", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "objective_seeds" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "optuna.db").exists() or not optuna.get_all_study_summaries(
        f"sqlite:///{tmp_path}/optuna.db")
    assert all_runs(f"sqlite:///{tmp_path}/mlflow.db") == []


@pytest.mark.slow  # two trials of two seeds (~1 min on 2 cores)
def test_a_search_trial_is_the_mean_of_its_seeds(tmp_path: Path) -> None:
    proc = search(tmp_path, "objective_seeds=2")
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    children = [r for r in all_runs(f"sqlite:///{tmp_path}/mlflow.db")
                if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    groups = by_group(children)
    assert len(groups) == 2 and all(len(members) == 2 for members in groups.values())
    for trial in trials:
        attrs = trial.user_attrs
        members = sorted(groups[attrs["objective_seed_group"]],
                         key=lambda r: int(r.data.params["seed"]))
        assert sorted(attrs["objective_runs"]) == sorted(r.info.run_id for r in members)
        assert attrs["objective_seeds"] == [0, 1]
        assert [r.data.params["seed"] for r in members] == ["0", "1"]
        values = [r.data.metrics["val/acc"] for r in members]
        assert attrs["objective_values"] == values
        assert trial.value == statistics.fmean(values)  # exactly the mean of the runs' metric
        assert attrs["objective_mean"] == trial.value
        assert attrs["objective_se"] == pytest.approx(statistics.stdev(values) / math.sqrt(2))
        for run in members:
            assert run.data.tags["optuna.trial_number"] == str(trial.number)
            assert run.data.tags["optuna.state"] == "COMPLETE"
            assert run.data.metrics["optuna.value"] == trial.value
            assert run.data.metrics["objective/mean"] == pytest.approx(trial.value)
        assert len(trial.intermediate_values) == 1  # seed 0 alone reports to the pruner
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = study.best_trial
    assert results["best_value_se"] == best.user_attrs["objective_se"]
    assert results["best_value_seeds"] == 2
    logs = "".join(p.read_text() for p in (tmp_path / "sweep").glob("*/train.log"))
    assert "(standard error over 2 seeds)" in proc.stdout + proc.stderr + logs
    table = (tmp_path / "sweep" / "optuna_trials.csv").read_text().splitlines()[0]
    assert "user_attrs_objective_mean" in table and "user_attrs_objective_se" in table
    parent = client.get_run(children[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"


@pytest.mark.slow  # a basic multirun of two jobs of two seeds
def test_a_basic_multirun_with_several_seeds_per_job(tmp_path: Path, store: str) -> None:
    run_cli(tmp_path, store, "-m", *TINY, "seed=0,10", "objective_seeds=2")
    runs = all_runs(store)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(int(r.data.params["seed"]) for r in children) == [0, 1, 10, 11]
    groups = by_group(children)
    assert sorted(sorted(int(r.data.params["seed"]) for r in members)
                  for members in groups.values()) == [[0, 1], [10, 11]]
    assert {r.info.status for r in runs} == {"FINISHED"}


PRUNED_SEARCH = """\
# @package _global_
defaults:
  - override /hydra/sweeper: initlab_optuna
  - override /hydra/sweeper/sampler: grid
  - override /hydra/sweeper/pruner: nop
optimized_metric: val/acc
callbacks:
  optuna_pruning:
    _target_: initlab.search.pruning.OptunaPruning
    _recursive_: false
    monitor: ${optimized_metric}
    trial: ${oc.select:optuna,null}
hydra:
  sweeper:
    direction: maximize
    n_trials: 2
    plots: false
    params:
      init: choice(zeros, he)
"""


@pytest.mark.slow  # two trials, three runs of 3 epochs
def test_a_pruned_first_seed_ends_the_trial_pruned(tmp_path: Path) -> None:
    # zeros never learns (val/acc ~0.1): the threshold pruner stops its seed 0 after epoch 0,
    # and its seed 1 is never trained; he learns and trains both seeds.
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "t.yaml").write_text(PRUNED_SEARCH)
    search(tmp_path, f"hydra.searchpath=[file://{tmp_path}/conf]", "trainer.max_epochs=3",
           "objective_seeds=2", "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
           "+hydra.sweeper.pruner.lower=0.3", preset="t")
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    by_init = {t.params["init"]: t for t in study.get_trials()}
    zeros, he = by_init["zeros"], by_init["he"]
    assert zeros.state == TrialState.PRUNED and list(zeros.intermediate_values) == [0]
    assert he.state == TrialState.COMPLETE and len(he.user_attrs["objective_values"]) == 2
    assert "objective_mean" not in zeros.user_attrs and zeros.user_attrs["objective_seeds"] == [0]
    runs = [r for r in all_runs(f"sqlite:///{tmp_path}/mlflow.db")
            if "mlflow.parentRunId" in r.data.tags]
    pruned = [r for r in runs if r.data.tags["optuna.trial_number"] == str(zeros.number)]
    assert len(pruned) == 1 and pruned[0].info.status == "FINISHED"
    assert pruned[0].data.params["seed"] == "0"
    assert pruned[0].data.tags["optuna.state"] == "PRUNED"
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}


SECOND_SEED = textwrap.dedent("""\
    import lightning.pytorch as L

    class SecondSeed(L.Callback):
        \"\"\"On the job's second seed: raise, or make the weights NaN (the loss diverges).\"\"\"

        def __init__(self, kind, seed, first):
            self.kind, self.hit = kind, seed == first + 1

        def on_train_epoch_start(self, trainer, pl_module):
            if self.hit and self.kind == "raise":
                raise RuntimeError("boom: the second seed fails")
            if self.hit:
                for p in pl_module.parameters():
                    p.data.fill_(float("nan"))
    """)


@pytest.mark.slow  # two trials, four runs
def test_a_failing_or_diverging_later_seed_ends_its_trial_with_every_run_ended(
        tmp_path: Path) -> None:
    (tmp_path / "second_seed.py").write_text(SECOND_SEED)
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "t.yaml").write_text(PRUNED_SEARCH.replace(
        "init: choice(zeros, he)", "+callbacks.boom.kind: choice(raise, poison)"))
    search(tmp_path, f"hydra.searchpath=[file://{tmp_path}/conf]", "objective_seeds=3",
           "+callbacks.boom._target_=second_seed.SecondSeed", "+callbacks.boom.seed=${seed}",
           "+callbacks.boom.first=0", preset="t")
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    by_mode = {t.params["+callbacks.boom.kind"]: t for t in study.get_trials()}
    runs = {r.info.run_id: r for r in all_runs(f"sqlite:///{tmp_path}/mlflow.db")
            if "mlflow.parentRunId" in r.data.tags}
    assert len(runs) == 4  # seeds 0 and 1 of each trial; seed 2 never starts

    failed = by_mode["raise"]
    assert failed.state == TrialState.FAIL and "boom" in failed.user_attrs["fail_reason"]
    members = [runs[i] for i in failed.user_attrs["objective_runs"]]
    assert [(r.data.params["seed"], r.info.status) for r in members] == [
        ("0", "FINISHED"), ("1", "FAILED")]
    assert {r.data.tags["optuna.state"] for r in members} == {"FAIL"}

    diverged = by_mode["poison"]
    assert diverged.state == TrialState.PRUNED
    assert "initlab.diverged_at_step" in diverged.user_attrs
    members = [runs[i] for i in diverged.user_attrs["objective_runs"]]
    assert [(r.data.params["seed"], r.info.status) for r in members] == [
        ("0", "FINISHED"), ("1", "FINISHED")]
    assert members[1].data.tags["initlab.diverged"] == "true"
    assert {r.data.tags["optuna.state"] for r in members} == {"PRUNED"}
