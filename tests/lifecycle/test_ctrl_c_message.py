"""Ctrl-C and SIGTERM end a job with one line on stderr saying what was kept (the run ended
KILLED, the epochs of metrics, the last checkpoint), the shell's exit code, and no traceback."""

from __future__ import annotations

import os
import re
import signal

import pytest

from conftest import all_runs
from procs import FOREVER, Child, wait_gone


@pytest.fixture
def child(tmp_path):
    started: list[Child] = []

    def start(*args: str) -> Child:
        started.append(Child(tmp_path, *args))
        return started[-1]

    yield start
    for c in started:
        c.close()


def interrupted_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("Interrupted (")]


def ensemble_with_a_worker(child) -> tuple[Child, dict[str, str]]:
    """A 4-seed ensemble over train.py and one worker process (hydra.launcher.devices=2), once
    its 4 member runs train: the job and each run's process id."""
    job = child("-m", "seed=range(4)", *FOREVER, "hydra/launcher=ensemble", "callbacks=none",
                "hydra.launcher.devices=2")
    pid_of = {r: job.tag(r, "initlab.pid") for r in job.wait_training(runs=4)}
    assert len(set(pid_of.values())) == 2 and str(job.pid) in pid_of.values(), pid_of
    return job, pid_of


def test_ctrl_c_to_a_run_prints_one_line_of_what_was_kept_and_exits_130(child, tmp_path):
    job = child(*FOREVER, "trainer.log_every_n_steps=1")
    job.wait_until(lambda: (tmp_path / "outputs/run/checkpoints/last.ckpt").exists(),
                   what="a first checkpoint")
    job.ctrl_c()
    assert job.wait() == 130
    out = job.output()
    (run,) = all_runs(job.store)
    assert run.info.status == "KILLED", out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    (line,) = interrupted_lines(out)
    match = re.fullmatch(r"Interrupted \(Ctrl-C\): run (\w+) ended KILLED; kept: (\d+) epochs? "
                         r"\((\d+) steps\) of metrics, last checkpoint (\S+)", line)
    assert match, line
    assert match[1] == run.info.run_id and int(match[2]) >= 1 and int(match[3]) > 0
    assert match[4].endswith("last.ckpt") and os.path.isfile(match[4])


@pytest.mark.slow  # ~20 s, like the Ctrl-C test above: the default run keeps one
def test_sigterm_without_tracking_names_the_csv_metrics_and_exits_143(child, tmp_path):
    job = child(*FOREVER, "tracking=none")
    metrics = tmp_path / "outputs/run/csv/version_0/metrics.csv"
    job.wait_until(lambda: metrics.exists(), what="the CSV metrics")
    os.kill(job.pid, signal.SIGTERM)
    assert job.wait() == 143
    out = job.output()
    assert "Traceback" not in out, out[-3000:]
    (line,) = interrupted_lines(out)
    assert line.startswith("Interrupted (SIGTERM): no MLflow run (tracking off); kept: "), line
    assert f"of metrics ({metrics})" in line, line
    assert not all_runs(job.store)


@pytest.mark.slow
def test_ctrl_c_to_a_basic_multirun_prints_one_line_and_exits_130(child):
    job = child("-m", "seed=0,1,2", *FOREVER)
    (run_id,) = job.wait_training()
    job.ctrl_c()
    assert job.wait() == 130
    out = job.output()
    assert "Traceback" not in out, out[-3000:]
    (line,) = interrupted_lines(out)
    assert line.startswith("Interrupted (Ctrl-C): multirun stopped, no further job started; "
                           "the job in progress [seed=0"), line
    assert f"run {run_id} ended KILLED" in line, line
    statuses = sorted(r.info.status for r in all_runs(job.store))
    assert statuses == ["KILLED", "KILLED"], out[-3000:]  # the sweep's parent and the job


@pytest.mark.slow
def test_ctrl_c_to_an_ensemble_group_with_its_figure_helper_ends_every_run_killed(child):
    """Ctrl-C reaches the whole process group, the figure helper process included: it keeps
    quiet, the launcher ends every member run KILLED, and no process is left behind."""
    job = child("-m", "seed=range(8)", *FOREVER, "hydra/launcher=ensemble", "callbacks=none",
                "hydra.launcher.figure_helper=true", "diagnostics=default")
    job.wait_training(runs=8)
    helpers = job.group()
    assert len(helpers) >= 2, helpers  # train.py and its figure helper
    job.ctrl_c()
    assert job.wait() == 130
    out = job.output()
    assert "Traceback" not in out, out[-3000:]
    assert len(interrupted_lines(out)) == 1, out[-3000:]
    statuses = [r.info.status for r in all_runs(job.store)]
    assert statuses == ["KILLED"] * 9, out[-3000:]  # the sweep's parent and the 8 members
    assert not wait_gone(helpers), "a process of the sweep outlived it"


@pytest.mark.slow
@pytest.mark.parametrize("to_group", [True, False], ids=["ctrl-c", "sigterm-to-main"])
def test_an_interrupted_ensemble_with_a_worker_process_ends_every_run_killed(child, to_group):
    """Half of the group trains in a worker process (hydra.launcher.devices=2).  Ctrl-C reaches
    every process; SIGTERM to train.py alone is passed on by the sweep's callback.  Either way
    every member run, in both processes, ends KILLED: one line, no traceback, no process left."""
    job, _ = ensemble_with_a_worker(child)
    processes = job.group()
    if to_group:
        job.ctrl_c()
    else:
        os.kill(job.pid, signal.SIGTERM)
    assert job.wait() == (130 if to_group else 143)
    out = job.output()
    assert "Traceback" not in out, out[-3000:]
    assert len(interrupted_lines(out)) == 1, out[-3000:]
    statuses = [r.info.status for r in all_runs(job.store)]
    assert statuses == ["KILLED"] * 5, out[-3000:]  # the sweep's parent and the 4 members
    assert not wait_gone(processes), "a process of the sweep outlived it"


@pytest.mark.slow
def test_a_killed_worker_process_fails_its_members_and_the_others_go_on(child):
    """kill -9 of the worker process: its members' runs end FAILED (the sweep's callback reaps
    them); the members training in train.py go on (then Ctrl-C ends them KILLED)."""
    job, pid_of = ensemble_with_a_worker(child)
    worker = int(next(p for p in pid_of.values() if p != str(job.pid)))
    os.kill(worker, signal.SIGKILL)
    theirs = [r for r, p in pid_of.items() if p == str(worker)]
    ours = [r for r in pid_of if r not in theirs]

    def status(run_id: str) -> str:
        rows = job.query("SELECT status FROM runs WHERE run_uuid = ?", run_id)
        return rows[0][0] if rows else ""

    job.wait_until(lambda: all(status(r) == "FAILED" for r in theirs), timeout=60,
                   what="the killed worker's runs ended FAILED")
    steps = {r: job.query("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", r)[0][0]
             for r in ours}
    job.wait_until(lambda: all(job.query("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?",
                                         r)[0][0] > steps[r] for r in ours),
                   timeout=60, what="the other members still training")
    assert all(status(r) == "RUNNING" for r in ours)
    job.ctrl_c()
    assert job.wait() == 130
    assert all(status(r) == "KILLED" for r in ours), job.output()[-3000:]
    assert all(status(r) == "FAILED" for r in theirs)
