"""`python train.py` end to end, as a user runs it: multirun, DDP, Ctrl-C, bad input."""

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, ROOT, all_runs, default_sigint, run_cli, seed_store


def test_multirun_records_two_comparable_child_runs(tmp_path, store):
    proc = run_cli(tmp_path, store, "-m", "init=xavier,he", *FAST)
    assert (tmp_path / "multirun" / "0").is_dir() and (tmp_path / "multirun" / "1").is_dir()
    runs = all_runs(store)
    parents = [r for r in runs if r.data.tags.get("initlab.kind") == "sweep"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1 and len(children) == 2
    assert sorted(r.info.run_name for r in children) == [
        "he-seed0-mlp-digits", "xavier-seed0-mlp-digits"]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["initlab.sweep_id"] == parent.data.tags["initlab.sweep_id"]
        assert run.data.params["init.name"] in run.info.run_name
        assert run.data.params["model.hidden"] == "[32, 32]"
        assert 0.3 < run.data.metrics["test/acc"] <= 1.0
    assert "MLflow run" in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout
    assert "Compare them: mlflow ui --backend-store-uri" in proc.stdout  # the sweep's view


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One single DDP run on CPU, for both DDP tests: (its store, the prefix of the files where
    each rank recorded the samples it saw and the addresses it listened on)."""
    tmp = tmp_path_factory.mktemp("ddp")
    store = seed_store(tmp / "mlruns" / "mlflow.db")
    prefix = tmp / "rank"
    run_cli(tmp, store, "trainer=ddp_cpu", *FAST,
            "+callbacks.seen._target_=hooks.SeenSamples", f"+callbacks.seen.prefix={prefix}",
            "+callbacks.ports._target_=hooks.ListeningSockets", f"+callbacks.ports.prefix={prefix}-ports")
    return store, prefix


@pytest.mark.slow  # spawns several train.py processes
def test_ddp_on_cpu_records_one_run_in_a_single_run_and_in_a_multirun(ddp_run, tmp_path, store):
    # A multirun job's two ranks make one run too (one job: each DDP job costs about 30 s here).
    run_cli(tmp_path, store, "-m", "trainer=ddp_cpu", "seed=1", *FAST)
    single = all_runs(ddp_run[0])
    multirun = [r for r in all_runs(store) if r.data.tags.get("initlab.kind") != "sweep"]
    assert len(single) == 1 and len(multirun) == 1
    runs = [*single, *multirun]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
        assert run.data.tags["device"] == "cpu x2"
        assert 0.3 < run.data.metrics["test/acc"] <= 1.0 and run.data.metrics["train/loss"] < 2.3


def _logged(db: Path, key: str) -> bool:
    """Whether the store holds a value of metric ``key``, read with sqlite3: an MLflow client
    would create the schema itself if it were not there yet, racing the job doing the same."""
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1)) as con:
            row = con.execute("SELECT 1 FROM metrics WHERE key = ? LIMIT 1", (key,)).fetchone()
    except sqlite3.Error:  # no table yet, or locked
        return False
    return row is not None


@pytest.mark.slow  # the default run has tests/lifecycle's signal tests and the one-line message test
def test_ctrl_c_ends_the_run_killed(tmp_path, store):
    cmd = [sys.executable, str(ROOT / "train.py"), *FAST, "trainer.max_epochs=100000",
           f"tracking.tracking_uri={store}", f"hydra.run.dir={tmp_path}/out"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it is training, i.e. the run logged an epoch
        time.sleep(1)
        if _logged(tmp_path / "mlruns" / "mlflow.db", "train/loss"):
            break
    proc.send_signal(signal.SIGINT)
    try:
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        proc.kill()  # never leave a 100,000-epoch run behind
    (run,) = all_runs(store)
    assert run.info.status == "KILLED", out[-5000:]
    assert proc.returncode != 0


@pytest.fixture(scope="module")
def recorded_store(tmp_path_factory) -> Path:
    """An ``mlruns`` folder whose SQLite store holds one finished run (its artifacts inside)."""
    tmp = tmp_path_factory.mktemp("recorded")
    run_cli(tmp, seed_store(tmp / "mlruns" / "mlflow.db"), *FAST, "trainer.max_epochs=1")
    return tmp / "mlruns"


@pytest.mark.slow  # 4 CLI start-ups; the default run refuses the same inputs in-process
@pytest.mark.parametrize("args,message", [
    (["init=bogus"], "Available options in 'init'"),
    (["init=normal", "init.std=-0.01"], "init.std = -0.01 is not allowed"),
    (["model.in_features=100"], "model/data mismatch"),
    (["dataset=mnist", "dataset.options.download=false", "dataset.options.root=nowhere"],
     "offline alternatives"),
])
def test_bad_input_stops_before_training_and_loses_nothing(recorded_store, tmp_path, store, args,
                                                           message):
    shutil.copytree(recorded_store, tmp_path / "mlruns", dirs_exist_ok=True)  # a run before
    proc = run_cli(tmp_path, store, *FAST, *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert [r.info.status for r in all_runs(store)] == ["FINISHED"]


@pytest.mark.slow  # spawns several train.py processes
def test_parallel_jobs_on_a_fresh_store_do_not_race(tmp_path, unborn_store):
    """joblib starts the jobs together: the store and experiment must already exist."""
    run_cli(tmp_path, unborn_store, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "seed=0,1", *FAST)
    runs = [r for r in all_runs(unborn_store) if r.data.tags.get("initlab.kind") != "sweep"]
    assert sorted(r.info.run_name for r in runs) == ["xavier-seed0-mlp-digits",
                                                     "xavier-seed1-mlp-digits"]
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow  # spawns several train.py processes
def test_ddp_ranks_train_on_disjoint_shares_whose_union_is_the_training_set(ddp_run):
    """Two CPU processes (gloo): each rank sees its own share of every epoch, sized as a
    DistributedSampler would make it, and together they see every training sample; and no
    process listens on anything but loopback."""
    import json
    import math

    from hooks import digest
    from initlab.engine.datamodule import TensorDataModule

    _, prefix = ddp_run
    ranks = [json.loads(Path(f"{prefix}{r}.json").read_text()) for r in (0, 1)]
    dm = TensorDataModule("digits", 64, shape=[1, 8, 8], num_classes=10, val_size=200,
                          test_size=300)
    dm.setup()
    train_set = {digest(row) for row in dm.splits["train"][0]}
    n = len(dm.splits["train"][0])  # 1,297
    per_rank = math.ceil(n / 2)  # DistributedSampler: 649, one sample padded
    assert [len(r["seen"]) for r in ranks] == [per_rank, per_rank]
    assert set(ranks[0]["seen"]) | set(ranks[1]["seen"]) == train_set
    assert len(set(ranks[0]["seen"]) & set(ranks[1]["seen"])) <= per_rank * 2 - n
    epochs = 2  # FAST's trainer.max_epochs
    assert [r["global_step"] for r in ranks] == [epochs * math.ceil(per_rank / 64)] * 2  # 11 an epoch
    for rank in (0, 1):
        listening = json.loads(Path(f"{prefix}-ports{rank}.json").read_text())
        assert all(a.startswith(("127.", "::1:")) for a in listening), listening
