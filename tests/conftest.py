"""Shared fixtures: real Hydra composition, a temporary MLflow store, the CLI as a subprocess."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
sys.path.insert(0, str(Path(__file__).parent))  # test-only callbacks (tests/failing.py)

# With -n N the xdist workers already keep the cores busy, and two OpenMP threads per job then
# make small training loops several times slower (barriers waiting on a busy core;
# docs/performance.md, "Threads"): one thread for every job the workers start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# A tiny, fast training setup: the 8x8 digits, a small MLP, a few steps.
FAST = ["dataset=digits", "model.hidden=[32,32]", "trainer.max_epochs=2", "optimizer.lr=0.01",
        "trainer.enable_progress_bar=false"]

# Tests that share an expensive module- or session-scoped fixture (a server, a run they all look
# at): with ``-n 2`` each group goes to one worker, so its fixture is set up once, not once per
# worker.  Node id prefix -> group.  (``--dist loadgroup`` would do this from ``xdist_group``
# marks, but pytest-xdist 3.8 cannot rename pytest 9.2's node ids and so ignores the marks.)
SHARED_FIXTURES = {
    "tests/ui/test_mlflow_ui.py::": "browser, mlflow ui and the jobs it shows",
    "tests/stores/": "PostgreSQL, mlflow server and the jobs into them",
    "tests/test_cli.py::test_ddp_": "ddp_run",
    "tests/test_cli.py::test_bad_input_stops_before_training": "recorded_store",
    "tests/lifecycle/test_run_lifecycle.py::test_an_exception_in_a_thread_of_the_multirun":
        "multirun_thread_failure",
}


def pytest_xdist_make_scheduler(config, log):
    """``-n N`` (``--dist load``): one test at a time to whichever worker is free, except that
    each group of ``SHARED_FIXTURES`` goes to a single worker; the groups start first."""
    if config.getvalue("dist") != "load":
        return None  # an explicit --dist: xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((group for prefix, group in SHARED_FIXTURES.items()
                         if nodeid.startswith(prefix)), nodeid)

    return SharedFixtureScheduling(config, log)


@functools.cache
def _store_template() -> Path:
    """An empty MLflow SQLite store with its schema, made by MLflow once per test process."""
    folder = Path(tempfile.mkdtemp(prefix="initlab-test-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


def seed_store(db: Path) -> str:
    """A store at ``db`` as MLflow creates it (a copy of one made once per process): MLflow's
    schema migrations take 1 to 4 s on 2 cores, which every test would pay again.  A store
    already at ``db`` is kept."""
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_store_template(), db)
    return f"sqlite:///{db}"


@pytest.fixture
def store(tmp_path: Path) -> str:
    """The test's MLflow store, ``tmp_path/mlruns/mlflow.db``: empty, schema made."""
    return seed_store(tmp_path / "mlruns" / "mlflow.db")


@pytest.fixture
def unborn_store(tmp_path: Path) -> str:
    """The same store's URI with nothing there yet, for tests that check nothing is created."""
    return f"sqlite:///{tmp_path}/mlruns/mlflow.db"


@pytest.fixture
def make_cfg(tmp_path: Path, store: str):
    """Compose ``conf/train.yaml`` with overrides, tracking into the temporary store."""

    def make(*overrides: str, tracking: bool = True):
        extra = ([f"tracking.tracking_uri={store}",
                  f"tracking.artifact_root={tmp_path}/mlruns/artifacts"]
                 if tracking else ["tracking=none"])
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", overrides=[*overrides, *extra])

    return make


def default_sigint() -> None:
    """``preexec_fn`` for children that a test Ctrl-Cs: a test run started in the background
    inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(tmp_path: Path, store: str, *args: str, timeout: float = 300,
            check: bool = True, sweep_dir: str | None = None) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` as a user runs it, with outputs and the store in tmp_path
    (``sweep_dir``: another ``hydra.sweep.dir``, e.g. with ``${now:...}`` as by default)."""
    cmd = [sys.executable, str(ROOT / "train.py"), *args,
           f"tracking.tracking_uri={store}",
           f"tracking.artifact_root={tmp_path}/mlruns/artifacts",
           f"hydra.run.dir={tmp_path}/outputs/run",
           f"hydra.sweep.dir={sweep_dir or f'{tmp_path}/multirun'}"]
    # Test-only callbacks (tests/hooks.py, tests/failing.py) importable by the child.
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def all_runs(store: str, experiment: str = "initlab"):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])
