"""The Optuna sweeper end to end: real Optuna studies in SQLite, real Hydra (``train.py -m`` as a
subprocess), tiny real trainings (8x8 digits, a 16-unit MLP, 2 epochs), MLflow in tmp_path."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import default_sigint, seed_store

ROOT = Path(__file__).resolve().parents[1]

# A test search: random sampler, no pruner, digits, tiny MLP; tests add their own files.
BASE_SEARCH = """\
# @package _global_
defaults:
  - override /hydra/sweeper: initlab_optuna
  - override /hydra/sweeper/sampler: random
  - override /hydra/sweeper/pruner: {pruner}
  - override /dataset: digits
optimized_metric: val/acc
model: {{hidden: [16]}}
trainer: {{max_epochs: {epochs}, enable_progress_bar: false, log_every_n_steps: 50}}
callbacks:
  optuna_pruning:
    _target_: initlab.search.pruning.OptunaPruning
    _recursive_: false
    monitor: ${{optimized_metric}}
    trial: ${{oc.select:optuna,null}}
hydra:
  sweeper:
    direction: maximize
    n_trials: 3
    sampler: {{seed: 0}}
    heartbeat_interval: 1
    grace_period: 4
    plots: false
    params:
{params}
"""
PARAMS = {"init": "choice(he, xavier, lecun)", "init.scale": "tag(log, interval(0.5, 2))"}


def write_search(tmp: Path, name: str = "t", params: dict[str, str] | None = None,
                 pruner: str = "nop", epochs: int = 2, extra: str = "") -> None:
    lines = "\n".join(f"      {k}: {v}" for k, v in (params or PARAMS).items())
    folder = tmp / "conf" / "hparams_search"
    folder.mkdir(parents=True, exist_ok=True)
    text = BASE_SEARCH.format(pruner=pruner, epochs=epochs, params=lines)
    (folder / f"{name}.yaml").write_text(text + textwrap.dedent(extra))


def command(tmp: Path, *overrides: str, search: str = "t", sweep: str = "sweep",
            study: str = "s") -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", f"hparams_search={search}",
            f"hydra.searchpath=[file://{tmp}/conf]",
            f"tracking.tracking_uri={seed_store(tmp / 'mlflow.db')}",
            f"tracking.artifact_root={tmp}/artifacts",
            f"hydra.sweep.dir={tmp}/{sweep}",
            f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db",
            f"hydra.sweeper.study_name={study}", *overrides]


def env(tmp: Path) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "src"), str(tmp), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HYDRA_FULL_ERROR": "0",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(tmp: Path, *overrides: str, ok: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(tmp, *overrides, **kw), cwd=tmp, env=env(tmp),
                          capture_output=True, text=True, timeout=300)
    if ok and proc.returncode != 0:
        raise AssertionError(f"search failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def study(tmp: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/optuna.db")


def count(db: Path, sql: str) -> int:
    """A count read with sqlite3 while a sweep runs: ``optuna.load_study`` would create the
    schema itself if the sweep had not finished doing so, and the two creations collide
    (IntegrityError on ``alembic_version`` in the sweep)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1)) as con:
            return con.execute(sql).fetchone()[0]
    except sqlite3.Error:  # no table yet, or locked
        return 0


def states(s: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in s.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def child_runs(tmp: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


# ---- a search end to end ---------------------------------------------------------------------
@pytest.mark.slow  # a whole search
def test_search_end_to_end(tmp_path: Path) -> None:
    write_search(tmp_path)
    proc = run(tmp_path, "hydra.sweeper.plots=true")
    assert (tmp_path / "optuna.db").exists()
    s = study(tmp_path)
    assert states(s) == {"COMPLETE": 3}
    assert {t.params["init"] for t in s.trials} <= {"he", "xavier", "lecun"}
    assert all(0.5 <= t.params["init.scale"] <= 2 for t in s.trials)
    assert all(len(t.intermediate_values) == 2 for t in s.trials)  # one report per epoch

    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(s.best_value)
    assert results["best_params"] == s.best_params and results["trials_done"] == 3
    assert f"Best trial {s.best_trial.number}" in proc.stdout + proc.stderr

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    children = child_runs(tmp_path)
    assert len(children) == 3
    parent_id = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(parent_id) == 1
    parent = client.get_run(parent_id.pop())
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(s.best_value)
    assert parent.data.params["best.init"] == s.best_params["init"]
    assert parent.data.tags["optuna.study_name"] == "s"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert "optuna/optimization_results.yaml" in artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna/plots")}
    assert "optuna/plots/optimization_history.png" in plots
    assert "optuna/plots/contour.png" not in plots  # one continuous parameter: no contour
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert sorted(by_number) == [0, 1, 2]
    for number, r in by_number.items():
        assert r.data.tags["optuna.state"] == "COMPLETE"
        assert r.data.metrics["optuna.value"] == pytest.approx(s.trials[number].value)
        assert r.data.params["init.name"] == s.trials[number].params["init"]  # group switched


# ---- resume and extend -----------------------------------------------------------------------
@pytest.mark.slow  # a whole search of several trials
def test_interrupted_study_resumes_to_exactly_n_trials_and_extends(tmp_path: Path) -> None:
    write_search(tmp_path, epochs=3)
    proc = subprocess.Popen(command(tmp_path, "hydra.sweeper.n_trials=4"), cwd=tmp_path,
                            env=env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "optuna.db"
    deadline = time.time() + 400  # generous: a loaded 2-core machine is slow to start
    try:
        while time.time() < deadline:  # kill -9 once two trials are done: a crashed machine
            if count(db, "SELECT count(*) FROM trials WHERE state = 'COMPLETE'") >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the first sweep did not complete two trials in time")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = study(tmp_path).trials
    assert 2 <= sum(t.state == TrialState.COMPLETE for t in before) < 4

    run(tmp_path, "hydra.sweeper.n_trials=4", sweep="resume")
    s = study(tmp_path)
    complete = [t for t in s.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4                              # exactly n_trials, none repeated
    for t in before:                                       # finished trials were not re-run
        if t.state == TrialState.COMPLETE:
            assert sum(c.params == t.params for c in complete) == 1
    left = [t for t in s.trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["initlab.failed"] == "stale" for t in left)  # the killed trial
    for t in left:  # ... was run again with its parameters (if it had drawn them: the kill
        if t.params:  # can land between the trial's creation and its first suggest)
            assert any(c.user_attrs.get("initlab.retry_of") == t.number for c in complete)

    run(tmp_path, "hydra.sweeper.n_trials=6", sweep="extend")
    assert states(study(tmp_path)).get("COMPLETE") == 6
    again = run(tmp_path, "hydra.sweeper.n_trials=6", sweep="again")
    assert states(study(tmp_path)).get("COMPLETE") == 6        # a finished study runs nothing
    assert "6 of 6 trials done" in again.stdout + again.stderr


# ---- pruning ---------------------------------------------------------------------------------
def test_pruner_prunes_a_trial_reporting_a_poor_metric(tmp_path: Path) -> None:
    # zeros never learns (val/acc ~0.1); the threshold pruner stops it after its first epoch.
    write_search(tmp_path, params={"init": "choice(zeros, he)"}, epochs=3)
    run(tmp_path, "hydra/sweeper/sampler=grid", "optimizer.lr=0.01",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "+hydra.sweeper.pruner.lower=0.3")
    s = study(tmp_path)
    by_init = {t.params["init"]: t for t in s.trials}
    assert by_init["zeros"].state == TrialState.PRUNED
    assert list(by_init["zeros"].intermediate_values) == [0]
    assert by_init["he"].state == TrialState.COMPLETE and len(by_init["he"].intermediate_values) == 3
    runs = {r.data.tags["optuna.trial_number"]: r for r in child_runs(tmp_path)}
    pruned = runs[str(by_init["zeros"].number)]
    assert pruned.data.tags["optuna.state"] == "PRUNED"
    assert pruned.info.run_name.endswith("[PRUNED]")
    assert pruned.data.metrics["val/acc"] < 0.3


# ---- failures --------------------------------------------------------------------------------
@pytest.mark.slow  # a whole search of several trials
def test_failing_and_diverging_trials_do_not_stop_the_study(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text(textwrap.dedent("""\
        import lightning.pytorch as L

        class Boom(L.Callback):
            def __init__(self, when):
                self.when = when

            def on_train_epoch_end(self, trainer, pl_module):
                if self.when == "raise":
                    raise RuntimeError("boom: this trial fails")
        """))
    write_search(tmp_path, params={"+callbacks.boom._target_": "boom.Boom",
                                   "+callbacks.boom.when": "choice(ok, raise)",
                                   "optimizer.lr": "choice(0.001, 1e12)"})
    run(tmp_path, "optimizer=sgd", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=4")
    s = study(tmp_path)
    assert len(s.trials) == 4
    for t in s.trials:
        when, lr = t.params["+callbacks.boom.when"], t.params["optimizer.lr"]
        if when == "raise" and lr > 1:  # whichever comes first: the error or the divergence
            assert t.state in (TrialState.FAIL, TrialState.PRUNED)
        elif when == "raise":
            assert t.state == TrialState.FAIL and "boom" in t.user_attrs["fail_reason"]
        elif lr > 1:
            assert t.state == TrialState.PRUNED and "initlab.diverged_at_step" in t.user_attrs
        else:
            assert t.state == TrialState.COMPLETE
    runs = child_runs(tmp_path)
    assert {r.data.tags["optuna.state"] for r in runs} == {"COMPLETE", "FAIL", "PRUNED"}


# ---- several processes on one storage --------------------------------------------------------
@pytest.mark.slow  # a whole search of several trials
def test_two_workers_on_one_storage_run_exactly_n_trials(tmp_path: Path) -> None:
    write_search(tmp_path)
    procs = [subprocess.Popen(command(tmp_path, "hydra.sweeper.n_trials=5", sweep=f"w{i}"),
                              cwd=tmp_path, env=env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    s = study(tmp_path)
    failed = [(t.number, t.user_attrs) for t in s.trials if t.state.name == "FAIL"]
    assert states(s) == {"COMPLETE": 5}, (failed, outputs)  # none lost, none twice, no surplus
    assert sorted(t.number for t in s.trials) == list(range(5))
    ran = [sum(1 for _ in (tmp_path / f"w{i}").glob("[0-9]*")) for i in range(2)]
    assert sum(ran) == 5
    assert len(child_runs(tmp_path)) == 5


@pytest.mark.slow  # a whole search of several trials
def test_parallel_jobs_through_joblib(tmp_path: Path) -> None:
    write_search(tmp_path)
    run(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4")
    s = study(tmp_path)
    assert states(s) == {"COMPLETE": 4}
    assert len(child_runs(tmp_path)) == 4


# ---- bad input -------------------------------------------------------------------------------
BAD = {
    "unknown parameter": (["nosuch.key=choice(1,2)"], "nosuch"),
    "unknown init family": (["init=choice(he,nosuch_family)"], "nosuch_family"),
    "empty choice": (["init.scale=choice()"], "empty choice"),
    "interval low >= high": (["init.scale=interval(2.0,0.5)"], "low must be < high"),
    "log interval at 0": (["init.scale=tag(log,interval(0,1))"], "low > 0"),
    "metric never logged": (["optimized_metric=val/nosuch"], "never logged"),
}


def test_bad_search_spaces_fail_before_the_first_trial(tmp_path: Path) -> None:
    write_search(tmp_path)
    procs = {}
    for case, (overrides, _) in BAD.items():
        folder = tmp_path / case.replace(" ", "_").replace(">=", "ge")
        folder.mkdir()
        (folder / "conf").symlink_to(tmp_path / "conf")
        procs[case] = (folder, subprocess.Popen(command(folder, *overrides), cwd=folder,
                                                env=env(folder), stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True))
    for case, (folder, proc) in procs.items():
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode != 0, case
        assert BAD[case][1] in out, (case, out[-2000:])
        assert "Traceback" not in out, (case, out[-2000:])
        if (folder / "optuna.db").exists():
            assert not study(folder).trials, case
        assert not list((folder / "sweep").glob("[0-9]*")), case  # no job ran
        if (folder / "mlflow.db").exists():
            assert not child_runs(folder), case


@pytest.mark.slow  # a whole search of several trials
def test_ctrl_c_marks_running_trials_interrupted_and_requeues_them(tmp_path: Path) -> None:
    write_search(tmp_path, epochs=30)  # long trials: Ctrl-C lands inside one
    proc = subprocess.Popen(command(tmp_path, "hydra.sweeper.n_trials=2"), cwd=tmp_path,
                            env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=default_sigint)
    db, deadline = tmp_path / "optuna.db", time.time() + 120
    while time.time() < deadline:  # wait for the first epoch report of trial 0
        if count(db, "SELECT count(*) FROM trial_intermediate_values"):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    assert "re-run the same command" in out, out[-6000:]
    trials = study(tmp_path).trials
    assert [t.user_attrs.get("initlab.failed") for t in trials if t.state == TrialState.FAIL] \
        == ["interrupted"]
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].user_attrs["initlab.retry_of"] == 0
    runs = child_runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
