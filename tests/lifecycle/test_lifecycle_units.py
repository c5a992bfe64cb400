"""The lifecycle's parts in one process: the repair command on a store and a study built by hand,
the run logger's timed flushes, signals and thread failures across threads."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from initlab.search.trial import ATTR_FAILED, ATTR_HEARTBEAT, ATTR_RETRY_OF
from initlab.tracking import interrupts
from initlab.tracking.heartbeat import TAG_HEARTBEAT, TAG_HEARTBEAT_S, Heartbeat
from initlab.tracking.logger import RunLogger
from initlab.tracking.repair import TAG_REPAIRED, repair


@pytest.fixture
def client(tmp_path, store):
    client = MlflowClient(store)
    client.create_experiment("initlab", artifact_location=(tmp_path / "artifacts").as_uri())
    return client


def _run(client, beat: float | None, **tags) -> str:
    exp = client.get_experiment_by_name("initlab").experiment_id
    tags = {"host": "elsewhere", "initlab.pid": "1", TAG_HEARTBEAT_S: "3", **tags}
    if beat is not None:
        tags[TAG_HEARTBEAT] = f"{beat:.3f}"
    return client.create_run(exp, tags=tags, start_time=int((time.time() - 3600) * 1000)
                             ).info.run_id


def test_repair_fails_dead_runs_and_their_trials_and_leaves_the_living(tmp_path, store,
                                                                       client, capsys):
    now = time.time()
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url)
    trials = [study.ask() for _ in range(3)]
    for trial in trials:
        trial.suggest_float("x", 0, 1)
    trials[1].set_user_attr(ATTR_HEARTBEAT, now - 600)  # its sweeper died: no run yet
    trials[2].set_user_attr(ATTR_HEARTBEAT, now)        # its sweeper lives
    dead = _run(client, now - 600, **{"optuna.study_name": "s", "optuna.trial_number": "0"})
    living = _run(client, now - 5)
    old = _run(client, None)  # from before heartbeats: counts from its start, an hour ago
    deleted = _run(client, now - 600)
    client.delete_run(deleted)

    before = repair(store, older_than=60, optuna_storage=url, dry_run=True)
    assert (before.runs, before.trials) == (3, 2)
    assert client.get_run(dead).info.status == "RUNNING"  # a dry run changes nothing

    report = repair(store, older_than=60, optuna_storage=url)
    out = capsys.readouterr().out
    assert (report.runs, report.trials, report.alive) == (3, 2, 1)
    for run_id in (dead, old, deleted):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and TAG_REPAIRED in run.data.tags
        assert f"run {run_id}" in out
    assert client.get_run(deleted).info.lifecycle_stage == "deleted"
    assert abs(client.get_run(dead).info.end_time - (now - 600) * 1000) <= 1  # its last beat
    assert client.get_run(living).info.status == "RUNNING"
    states = {t.number: t for t in study.get_trials()}
    assert states[0].state == states[1].state == TrialState.FAIL
    assert states[0].user_attrs[ATTR_FAILED] == "stale"
    assert states[2].state == TrialState.RUNNING
    queued = [t for t in states.values() if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs[ATTR_RETRY_OF] for t in queued) == [0, 1]
    assert "trial 0 of study 's': RUNNING -> FAIL" in out

    again = repair(store, older_than=60, optuna_storage=url)
    assert (again.runs, again.trials) == (0, 0)


def test_repair_waits_three_heartbeat_intervals_whatever_older_than_says(store, client):
    run_id = _run(client, time.time() - 20, **{TAG_HEARTBEAT_S: "10"})
    assert repair(store, older_than=5).runs == 0
    assert client.get_run(run_id).info.status == "RUNNING"


def test_the_heartbeat_stamps_the_run_until_stopped(store, client):
    run_id = _run(client, None)
    beat = Heartbeat(client, run_id, interval_s=0.2).start()
    time.sleep(1.0)
    first = float(client.get_run(run_id).data.tags[TAG_HEARTBEAT])
    beat.stop()
    assert time.time() - first < 1.0
    time.sleep(0.5)
    assert float(client.get_run(run_id).data.tags[TAG_HEARTBEAT]) == first


def test_the_run_logger_flushes_by_itself_and_when_closed(store, client):
    run_id = _run(client, None)
    logger = RunLogger(tracking_uri=store, run_id=run_id, flush_every_s=0.3)
    logger.log_metrics({"a": 1.0}, step=1)
    time.sleep(1.5)  # no further logging: the background flush writes it
    assert client.get_metric_history(run_id, "a")[0].value == 1.0
    logger.log_metrics({"b": 2.0}, step=2)
    logger.close()
    assert client.get_metric_history(run_id, "b")[0].value == 2.0
    copy = pickle.loads(pickle.dumps(logger))  # DDP spawn pickles the logger
    assert copy.flush_every_s == 0.3 and copy._pending == []


def test_signals_and_store_writes_in_other_threads():
    """A store write in another thread neither defers the main thread's signal nor raises it in
    that thread; the recorded signal is visible to a job's check in any thread."""
    seen = []

    def write_elsewhere():
        with interrupts.store_write():
            time.sleep(0.5)
        seen.append(interrupts.pending())

    with pytest.raises(KeyboardInterrupt), interrupts.handling():
        thread = threading.Thread(target=write_elsewhere)
        thread.start()
        time.sleep(0.1)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        finally:
            thread.join()
    assert seen == [signal.SIGINT]


def test_an_exception_in_another_thread_is_recorded_while_watching():
    def die():
        raise ValueError("boom")

    with interrupts.watching_threads() as failure:
        assert failure() is None
        thread = threading.Thread(target=die, name="dies")
        thread.start()
        thread.join()
        assert "ValueError: boom" in failure() and "'dies'" in failure()
        assert interrupts.thread_failure() == failure()
    assert interrupts.thread_failure() is None
    assert threading.excepthook is not interrupts._excepthook


def test_nested_handling_puts_the_outer_handler_back():
    with interrupts.handling():
        outer = signal.getsignal(signal.SIGINT)
        with interrupts.handling():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # as Lightning does on Ctrl-C
        assert signal.getsignal(signal.SIGINT) is outer
