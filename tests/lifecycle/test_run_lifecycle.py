"""Every run ends with a true status, whatever ends it: real signals to real ``train.py``
processes (a single run, the main process of a multirun with the basic and the joblib launcher,
a joblib worker), an interrupt during run creation, an exception in a thread, and ``kill -9``
followed by ``python -m initlab.repair``.  Nothing is left RUNNING, and no worker process
outlives its multirun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import all_runs
from procs import FOREVER, HERE, Child, wait_gone

SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
FAST_ONE = [*FOREVER[:-1], "trainer.max_epochs=1"]


@pytest.fixture
def child(tmp_path):
    started: list[Child] = []

    def start(*args: str, **kwargs) -> Child:
        started.append(Child(tmp_path, *args, **kwargs))
        return started[-1]

    yield start
    for c in started:
        c.close()


def statuses(store: str) -> dict[str, list[str]]:
    """{'parent': [status], 'children': [statuses]} of the store's runs."""
    runs = all_runs(store)
    return {"parent": [r.info.status for r in runs if r.data.tags.get("initlab.kind") == "sweep"],
            "children": sorted(r.info.status for r in runs
                               if r.data.tags.get("initlab.kind") != "sweep")}


def worker_pids(store: str) -> set[int]:
    return {int(r.data.tags["initlab.pid"]) for r in all_runs(store)
            if r.data.tags.get("initlab.kind") != "sweep"}


# ---- a single run -----------------------------------------------------------------------------
@pytest.mark.parametrize("sig", SIGNALS)
def test_a_signal_to_a_single_run_ends_it_killed_with_its_metrics(child, sig):
    job = child(*FOREVER, "trainer.log_every_n_steps=1")
    job.wait_training()
    os.kill(job.pid, sig)
    assert job.wait() != 0
    (run,) = all_runs(job.store)
    assert run.info.status == "KILLED", job.output()[-3000:]
    assert "train/loss_step" in run.data.metrics  # flushed on the way out
    assert not job.group()


def test_a_ctrl_c_during_run_creation_ends_the_run_killed(child):
    job = child(*FAST_ONE, wrapper=[str(HERE / "signal_in_create_run.py"), "SIGINT"])
    assert job.wait() != 0
    out = job.output()
    assert "created: sending SIGINT" in out
    (run,) = all_runs(job.store)
    assert run.info.status == "KILLED", out[-3000:]


def test_an_exception_in_a_thread_fails_the_run_and_the_process(child):
    job = child(*FOREVER, "+callbacks.faulty._target_=faults.ThreadDiesAtStep",
                "+callbacks.faulty.step=3")
    assert job.wait(timeout=300) != 0
    (run,) = all_runs(job.store)
    out = job.output()
    assert run.info.status == "FAILED", out[-3000:]
    assert "ThreadFailed" in out and "faulty-helper" in out


# ---- multiruns --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
def test_a_signal_to_a_basic_multirun_ends_parent_and_job_killed(child, sig):
    job = child("-m", "seed=0,1,2", *FOREVER)
    job.wait_training()
    os.kill(job.pid, sig)
    assert job.wait() != 0
    runs = statuses(job.store)
    assert runs == {"parent": ["KILLED"], "children": ["KILLED"]}, job.output()[-3000:]
    assert not job.group()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_to_a_joblib_multirun_ends_every_run_and_every_worker(child, how):
    """Ctrl-C reaches the whole process group; SIGTERM (a killed job) only the main process."""
    job = child("-m", *JOBLIB, "seed=0,1,2", *FOREVER)
    job.wait_training(runs=2)
    processes = job.group()
    assert len(processes) >= 3  # main and two workers (and loky's resource tracker)
    if how == "ctrl-c":
        job.ctrl_c()
    else:
        os.kill(job.pid, signal.SIGTERM)
    assert job.wait() != 0
    runs = statuses(job.store)
    out = job.output()
    assert runs["parent"] == ["KILLED"], out[-3000:]
    assert len(runs["children"]) == 2 and set(runs["children"]) <= {"KILLED", "FINISHED"}, runs
    assert not wait_gone(worker_pids(job.store) | set(processes), timeout=10), job.group()
    assert not job.group()


@pytest.mark.slow
def test_sigterm_to_a_joblib_worker_ends_its_run_and_the_multirun(child):
    job = child("-m", *JOBLIB, "seed=0,1,2", *FOREVER)
    first, *_ = job.wait_training(runs=2)
    victim = int(job.tag(first, "initlab.pid"))
    assert victim != job.pid
    os.kill(victim, signal.SIGTERM)
    assert job.wait() != 0
    runs = {r.info.run_id: r.info.status for r in all_runs(job.store)}
    out = job.output()
    assert runs.pop(first) == "KILLED", out[-3000:]
    parent = [r.info.status for r in all_runs(job.store) if r.data.tags.get("initlab.kind")]
    assert parent == ["KILLED"], out[-3000:]
    # The other job's worker was killed by joblib's pool when this job's exception reached it:
    # its run ends KILLED with the multirun (FAILED if the sweep saw its process dead first).
    assert set(runs.values()) <= {"KILLED", "FAILED"}, (runs, out[-3000:])
    assert not wait_gone(worker_pids(job.store), timeout=10)
    assert not job.group()


@pytest.fixture(scope="module")
def multirun_thread_failure(tmp_path_factory):
    """A multirun (one job) whose main process loses a thread before the job: (exit code, parent
    and child statuses, output)."""
    job = Child(tmp_path_factory.mktemp("thread"), "-m", "seed=0", *FAST_ONE,
                "+hydra.callbacks.faulty._target_=faults.ThreadDiesInMultirun")
    try:
        code = job.wait(timeout=300)
        return code, statuses(job.store), job.output()
    finally:
        job.close()


@pytest.mark.slow
def test_an_exception_in_a_thread_of_the_multirun_fails_its_parent(multirun_thread_failure):
    _, runs, out = multirun_thread_failure
    assert runs == {"parent": ["FAILED"], "children": ["FINISHED"]}, out[-3000:]
    assert "faulty-sweep-helper" in out and "parent run ended FAILED" in out


@pytest.mark.slow
def test_an_exception_in_a_thread_of_the_multirun_exits_non_zero(multirun_thread_failure):
    code, _, _ = multirun_thread_failure
    assert code != 0


# ---- an Optuna search with joblib workers ------------------------------------------------------
SEARCH = """\
# @package _global_
defaults:
  - override /hydra/sweeper: initlab_optuna
  - override /hydra/sweeper/sampler: random
  - override /hydra/sweeper/pruner: nop
  - override /dataset: digits
optimized_metric: val/acc
model: {hidden: [16]}
trainer: {max_epochs: 100000, enable_progress_bar: false}
callbacks:
  optuna_pruning:
    _target_: initlab.search.pruning.OptunaPruning
    _recursive_: false
    monitor: ${optimized_metric}
    trial: ${oc.select:optuna,null}
hydra:
  sweeper:
    direction: maximize
    n_trials: 4
    n_jobs: 2
    sampler: {seed: 0}
    plots: false
    params:
      init.scale: tag(log, interval(0.5, 2))
"""


def search(child, tmp_path) -> Child:
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "lifecycle.yaml").write_text(SEARCH)
    return child("-m", "hparams_search=lifecycle", f"hydra.searchpath=[file://{tmp_path}/conf]",
                 f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db", *JOBLIB)


def trial_states(tmp_path) -> list[tuple[str, str | None]]:
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/optuna.db")
    return sorted((t.state.name, t.user_attrs.get("initlab.failed")) for t in study.trials)


@pytest.mark.slow
def test_signals_to_an_optuna_search_and_its_workers_leave_nothing_running(child, tmp_path):
    """SIGTERM to one joblib worker of a search: its run ends KILLED, and the sibling job that
    joblib's pool killed with it does not stay RUNNING; then SIGTERM to the search's main
    process: every run ends, every worker exits, running trials are FAIL (interrupted)."""
    job = search(child, tmp_path)
    first, second = job.wait_training(runs=2)
    victim = int(job.tag(first, "initlab.pid"))
    os.kill(victim, signal.SIGTERM)
    ended = lambda run_id: job.query("SELECT status FROM runs WHERE run_uuid = ?",  # noqa: E731
                                     run_id)[0][0] != "RUNNING"
    job.wait_until(lambda: ended(first) and ended(second), timeout=60, what="both runs ending")
    assert job.query("SELECT status FROM runs WHERE run_uuid = ?", first) == [("KILLED",)]
    job.wait_training(runs=3)  # the search goes on with new trials
    os.kill(job.pid, signal.SIGTERM)
    assert job.wait() != 0
    runs = statuses(job.store)
    out = job.output()
    assert runs["parent"] == ["KILLED"], out[-3000:]
    assert "RUNNING" not in runs["children"], (runs, out[-3000:])
    assert not wait_gone(worker_pids(job.store), timeout=10)
    assert not job.group()
    assert ("RUNNING", None) not in trial_states(tmp_path)


# ---- kill -9 ----------------------------------------------------------------------------------
def repair(store: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "initlab.repair", "--tracking-uri", store,
                           *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_kill_9_loses_at_most_a_heartbeat_of_metrics_and_repair_fails_the_run(child):
    job = child(*FOREVER, "trainer.log_every_n_steps=1", "tracking.heartbeat_s=1")
    (run_id,) = job.wait_training()
    time.sleep(3)  # a few heartbeats and flushes
    killed_at = time.time()
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    newest = job.query("SELECT MAX(timestamp) FROM metrics WHERE run_uuid = ?", run_id)[0][0]
    assert killed_at - newest / 1000 < 1 + 3, "more than a heartbeat of metrics was lost"
    assert [r.info.status for r in all_runs(job.store)] == ["RUNNING"]

    fresh = repair(job.store, "--older-than", "60")  # its heartbeat is too recent yet
    assert fresh.returncode == 0 and "0 run(s) marked FAILED" in fresh.stdout, fresh
    assert [r.info.status for r in all_runs(job.store)] == ["RUNNING"]

    time.sleep(4)  # three heartbeat intervals (and --older-than) after the last beat
    done = repair(job.store, "--older-than", "2")
    assert done.returncode == 0, done.stderr
    assert f"run {run_id}" in done.stdout and "RUNNING -> FAILED" in done.stdout
    assert "1 run(s) marked FAILED" in done.stdout
    (run,) = all_runs(job.store)
    assert run.info.status == "FAILED" and "initlab.repaired" in run.data.tags
    assert run.info.end_time <= killed_at * 1000  # it ended at its last heartbeat
    again = repair(job.store, "--older-than", "2")
    assert "0 run(s) marked FAILED" in again.stdout


@pytest.mark.slow
def test_kill_9_of_a_joblib_multirun_stops_its_workers_and_repair_fails_the_parent(child):
    job = child("-m", *JOBLIB, "seed=0,1", *FOREVER, "tracking.heartbeat_s=1")
    job.wait_training(runs=2)
    workers = worker_pids(job.store)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert not wait_gone(workers, timeout=60), "workers outlived their multirun"
    assert statuses(job.store) == {"parent": ["RUNNING"], "children": ["KILLED", "KILLED"]}
    time.sleep(3)
    done = repair(job.store, "--older-than", "1")
    assert "1 run(s) marked FAILED" in done.stdout, done
    assert statuses(job.store) == {"parent": ["FAILED"], "children": ["KILLED", "KILLED"]}
    assert not job.group()
