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
