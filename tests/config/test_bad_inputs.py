"""Bad input is refused before anything exists: one paragraph naming the key, the value given
and what is allowed; exit code 2; no traceback; no MLflow run, no Optuna study, no output dir.

One table, every config group, the sweepers and the stores.  Every row is checked in-process
(composed as Hydra composes it, then ``initlab.config``); a representative set also goes
through the real command line, and ``-m slow`` runs every row that way.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.types import RunMode

from conftest import CONF, ROOT
from initlab.config import check_store, check_trial_config, message, validate
from initlab.config import store as config_store
from initlab.config.sweep import check_sweep
from initlab.errors import ConfigError

DIGITS = ("dataset=digits", "model.hidden=[8]")   # a small valid job to break one key of
SEARCH = ("hparams_search=init_scale",)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


# ---- stores the rows point at --------------------------------------------------------------
@dataclass
class Store:
    """A store for one row: its URL, and what must hold while the row runs."""

    uri: Callable[[Path], str]
    hold: Callable[[Path], contextlib.AbstractContextManager] = lambda tmp: contextlib.nullcontext()


def _default_uri(tmp: Path) -> str:
    return f"sqlite:///{tmp}/mlruns/mlflow.db"


@contextlib.contextmanager
def _locked(tmp: Path) -> Iterator[None]:
    """Another process's write lock on an existing store (here: this test's connection)."""
    db = tmp / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextlib.contextmanager
def _read_only(tmp: Path) -> Iterator[None]:
    folder = tmp / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)


@contextlib.contextmanager
def _not_a_database(tmp: Path) -> Iterator[None]:
    db = tmp / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is no database\n" * 10)
    yield


@contextlib.contextmanager
def _a_file(tmp: Path) -> Iterator[None]:
    (tmp / "afile").write_text("x")
    yield


STORES = {
    "postgres_closed": Store(lambda tmp: "postgresql+psycopg2://u@127.0.0.1:1/x"),
    "postgres_password": Store(lambda tmp: "postgresql://u:hunter2@127.0.0.1:1/x"),
    "mysql_closed": Store(lambda tmp: "mysql+pymysql://u@127.0.0.1:1/x"),
    "http_closed": Store(lambda tmp: "http://127.0.0.1:1"),
    "locked": Store(_default_uri, _locked),
    "read_only": Store(_default_uri, _read_only),
    "not_a_database": Store(_default_uri, _not_a_database),
    "under_a_file": Store(lambda tmp: f"sqlite:///{tmp}/afile/mlflow.db", _a_file),
    "beside_a_file": Store(_default_uri, _a_file),
    "no_file": Store(lambda tmp: "sqlite:///"),
}


# ---- the table -----------------------------------------------------------------------------
@dataclass
class Row:
    id: str
    args: tuple[str, ...]
    key: str | None          # the key the message names (None: Hydra's own refusal)
    shown: str               # text the message must contain (key and value)
    kind: str = "job"        # job | store | sweep | hydra
    store: str | None = None
    cli: bool = False        # in the representative command-line set
    marks: list = field(default_factory=list)


def R(id: str, args: str | tuple[str, ...], key: str | None, value: str | None = None, *,
      shown: str | None = None, **kw) -> Row:
    args = tuple(args.split()) if isinstance(args, str) else args
    return Row(id, args, key, shown or f"{key} = {value}", **kw)


ROWS = [
    # top level
    R("seed_negative", "seed=-1", "seed", "-1", cli=True),
    R("seed_string", "seed=abc", "seed", "'abc'"),
    R("seed_float", "seed=1.5", "seed", "1.5"),
    R("seed_too_big", "seed=4294967296", "seed", "4294967296"),
    R("task_unknown", "task=predict", "task", "'predict'"),
    R("divergence_check_zero", "divergence_check_every=0", "divergence_check_every", "0"),
    R("refresh_rate_negative", "progress_refresh_rate=-1", "progress_refresh_rate", "-1"),
    R("metric_never_logged", "optimized_metric=val/nosuch", "optimized_metric", "'val/nosuch'"),
    R("metric_without_val_split", "dataset.val_size=0", "optimized_metric", "'val/acc'",
      cli=True),
    R("propagation_metric", "experiment=s1_histograms optimized_metric=val/acc",
      "optimized_metric", "'val/acc'"),
    # init
    R("init_scale_nan", "init.scale=nan", "init.scale", "nan", cli=True),
    R("init_scale_inf", "init.scale=inf", "init.scale", "inf"),
    R("init_scale_negative", "init.scale=-1", "init.scale", "-1"),
    R("init_scale_string", "init.scale=big", "init.scale", "'big'"),
    R("init_std_negative", "init=normal init.std=-0.01", "init.std", "-0.01"),
    R("init_unknown_option", "+init.std=0.1", "init.std", "0.1", cli=True),
    R("init_distribution", "init.distribution=cauchy", "init.distribution", "'cauchy'"),
    R("init_he_mode", "init=he init.mode=fan_avg", "init.mode", "'fan_avg'"),
    R("init_he_nonlinearity", "init=he init.nonlinearity=swish", "init.nonlinearity",
      "'swish'"),
    R("init_gain_negative", "init=orthogonal init.gain=-1", "init.gain", "-1"),
    R("init_bias_kind", "init.bias.name=ones", "init.bias.name", "'ones'"),
    R("init_bias_std_is_gone", "init=truncated_normal init.bias.name=normal "
      "init.bias.sigma_b2=1 +init.bias.std=-1", "init.bias.std", "-1"),
    R("init_bias_sigma_b2_negative", "init.bias.name=normal init.bias.sigma_b2=-1",
      "init.bias.sigma_b2", "-1"),
    R("init_bias_sigma_b2_nan", "init.bias.name=normal init.bias.sigma_b2=nan",
      "init.bias.sigma_b2", "nan"),
    R("init_bias_normal_without_sigma_b2", "init.bias.name=normal", "init.bias.sigma_b2",
      "null", cli=True),
    R("init_bias_zeros_with_variance", "init.bias.sigma_b2=0.5", "init.bias.sigma_b2", "0.5"),
    R("init_bias_constant_with_variance", "init.bias.name=constant init.bias.sigma_b2=0.1",
      "init.bias.sigma_b2", "0.1"),
    R("init_bias_value_not_constant", "+init.bias.value=0.5", "init.bias.value", "0.5"),
    R("init_sigma_w2_with_scale", "init=he init.scale=2 init.sigma_w2=2", "init.sigma_w2", "2",
      cli=True),
    R("init_sigma_w2_zero", "init=normal init.sigma_w2=0", "init.sigma_w2", "0"),
    R("init_sigma_w2_negative", "init=orthogonal init.sigma_w2=-2", "init.sigma_w2", "-2"),
    R("init_sigma_w2_nan", "init=truncated_normal init.sigma_w2=nan", "init.sigma_w2", "nan"),
    R("init_sigma_w2_string", "init=uniform init.sigma_w2=he", "init.sigma_w2", "'he'"),
    R("init_sigma_w2_lsuv", "init=lsuv +init.sigma_w2=1", "init.sigma_w2", "1"),
    R("init_sigma_w2_zeros", "init=zeros +init.sigma_w2=1", "init.sigma_w2", "1"),
    R("init_lsuv_scale_zero", "init=lsuv init.scale=0", "init.scale", "0"),
    R("init_cutoff_zero", "init=truncated_normal init.cutoff=0", "init.cutoff", "0"),
    # model
    R("lenet_on_circles", "model=lenet dataset=circles", "model.image_size",
      "${dataset.shape.1}", cli=True),
    R("lenet_on_8x8", "model=lenet dataset=digits", "model.image_size", "8"),
    R("mlp_in_features", "model.in_features=100", "model.in_features", "100"),
    R("mlp_outputs", "model.num_outputs=3", "model.num_outputs", "3"),
    R("mlp_hidden_zero", "model.hidden=[32,0]", "model.hidden", "[32, 0]"),
    R("mlp_hidden_float", "model.hidden=[32.5]", "model.hidden", "[32.5]"),
    R("activation_unknown", "model.activation=swish", "model.activation", "'swish'"),
    R("model_bias_string", "+model.bias=maybe", "model.bias", "'maybe'"),
    # optimizer
    R("lr_nan", "optimizer.lr=nan", "optimizer.lr", "nan", cli=True),
    R("lr_inf", "optimizer.lr=inf", "optimizer.lr", "inf"),
    R("lr_zero", "optimizer.lr=0", "optimizer.lr", "0"),
    R("lr_string", "optimizer.lr=fast", "optimizer.lr", "'fast'"),
    R("momentum_negative", "optimizer=sgd optimizer.momentum=-1", "optimizer.momentum", "-1",
      cli=True),
    R("momentum_one", "optimizer=rmsprop optimizer.momentum=1.0", "optimizer.momentum", "1.0"),
    R("weight_decay_negative", "optimizer.weight_decay=-0.1", "optimizer.weight_decay", "-0.1"),
    R("betas_wrong", "optimizer.betas=[0.9]", "optimizer.betas", "[0.9]"),
    R("nesterov_without_momentum", "optimizer=sgd optimizer.nesterov=true",
      "optimizer.nesterov", "true"),
    R("optimizer_unknown_key", "+optimizer.lrr=0.1", "optimizer.lrr", "0.1"),
    # dataset
    R("batch_size_float", "dataset.batch_size=2.5", "dataset.batch_size", "2.5", cli=True),
    R("batch_size_zero", "dataset.batch_size=0", "dataset.batch_size", "0"),
    R("steps_per_epoch_negative", "dataset.steps_per_epoch=-3", "dataset.steps_per_epoch", "-3",
      cli=True),
    R("val_size_negative", "dataset.val_size=-1", "dataset.val_size", "-1"),
    R("val_size_too_big", "dataset=digits dataset.val_size=1600", "dataset.val_size", "1600"),
    R("test_size_zero", "dataset=digits dataset.test_size=0", "dataset.test_size", "0"),
    R("shape_wrong", "dataset.shape=[1,28,27]", "dataset.shape", "[1, 28, 27]"),
    R("num_classes_wrong", "dataset.num_classes=7", "dataset.num_classes", "7"),
    R("drop_last_string", "dataset.drop_last=sometimes", "dataset.drop_last", "'sometimes'"),
    R("circles_noise_negative", "dataset=circles dataset.options.noise=-0.1",
      "dataset.options.noise", "-0.1"),
    R("circles_factor_one", "dataset=circles dataset.options.factor=1.0",
      "dataset.options.factor", "1.0"),
    R("dataset_options_unknown", "+dataset.options.root=/data", "dataset.options.root",
      "'/data'"),
    R("standardize_string", "dataset.standardize=maybe", "dataset.standardize", "'maybe'"),
    R("digits_option_standardize", "dataset=digits +dataset.options.standardize=true",
      "dataset.options.standardize", "true", cli=True),
    R("mnist5k_option_unsupported", "+dataset.options.noise=0.1", "dataset.options.noise",
      "0.1"),
    R("gaussian_option_unsupported", "dataset=gaussian +dataset.options.factor=0.5",
      "dataset.options.factor", "0.5"),
    R("moons_option_factor", "dataset=moons +dataset.options.factor=0.5",
      "dataset.options.factor", "0.5"),
    R("split_seed_negative", "dataset.split_seed=-2", "dataset.split_seed", "-2"),
    R("drop_last_empty_epoch", "dataset=digits dataset.drop_last=true dataset.batch_size=5000",
      "dataset.batch_size", "5000"),
    # trainer
    R("max_epochs_string", "trainer.max_epochs=abc", "trainer.max_epochs", "'abc'", cli=True),
    R("max_epochs_negative", "trainer.max_epochs=-5", "trainer.max_epochs", "-5"),
    R("max_steps_negative", "trainer.max_steps=-2", "trainer.max_steps", "-2"),
    R("unbounded_run", "trainer.max_epochs=-1", "trainer.max_epochs", "-1", cli=True),
    R("zero_epochs", "trainer.max_epochs=0", "trainer.max_epochs", "0"),
    R("gpu_without_cuda", "trainer=gpu", "trainer.accelerator", "'gpu'", cli=True,
      marks=[pytest.mark.skipif(_cuda(), reason="this machine has CUDA")]),
    R("accelerator_unknown", "trainer.accelerator=quantum", "trainer.accelerator", "'quantum'"),
    R("devices_zero", "trainer.devices=0", "trainer.devices", "0"),
    R("precision_unknown", "trainer.precision=8-true", "trainer.precision", "'8-true'"),
    R("fp16_on_cpu", "trainer.precision=16-mixed", "trainer.precision", "'16-mixed'"),
    R("log_every_zero", "trainer.log_every_n_steps=0", "trainer.log_every_n_steps", "0"),
    R("deterministic_string", "trainer.deterministic=always", "trainer.deterministic",
      "'always'"),
    # scheduler
    R("cosine_unbounded_epochs", "scheduler=cosine trainer.max_epochs=-1 trainer.max_steps=100",
      "scheduler.T_max", "-1"),
    R("step_gamma_negative", "scheduler=step scheduler.gamma=-0.5", "scheduler.gamma", "-0.5"),
    # callbacks and diagnostics
    R("diagnostics_probe_zero", "callbacks.diagnostics.probe_size=0",
      "callbacks.diagnostics.probe_size", "0"),
    R("diagnostics_thresholds", "callbacks.diagnostics.vanishing_below=20",
      "callbacks.diagnostics.vanishing_below", "20"),
    R("diagnostics_unknown_key", "+callbacks.diagnostics.bins=3",
      "callbacks.diagnostics.bins", "3"),
    R("checkpoint_monitor_unknown", "callbacks.model_checkpoint.monitor=val/f1",
      "callbacks.model_checkpoint.monitor", "'val/f1'"),
    R("early_stopping_mode", "callbacks=[early_stopping] callbacks.early_stopping.mode=up",
      "callbacks.early_stopping.mode", "'up'"),
    # tracking
    R("tracking_enabled_string", "tracking.enabled=perhaps", "tracking.enabled", "'perhaps'"),
    R("experiment_empty", "tracking.experiment=''", "tracking.experiment", "''"),
    # stores
    R("store_postgres_unreachable", DIGITS, "tracking.tracking_uri",
      "'postgresql+psycopg2://u@127.0.0.1:1/x'", kind="store", store="postgres_closed",
      cli=True),
    R("store_password_masked", DIGITS, "tracking.tracking_uri",
      "'postgresql://u:***@127.0.0.1:1/x'", kind="store", store="postgres_password"),
    R("store_mysql_unreachable", DIGITS, "tracking.tracking_uri",
      "'mysql+pymysql://u@127.0.0.1:1/x'", kind="store", store="mysql_closed"),
    R("store_http_unreachable", DIGITS, "tracking.tracking_uri", "'http://127.0.0.1:1'",
      kind="store", store="http_closed", cli=True),
    R("store_locked", DIGITS, "tracking.tracking_uri", None, shown="is locked",
      kind="store", store="locked", cli=True),
    R("store_read_only", DIGITS, "tracking.tracking_uri", None, shown="read-only",
      kind="store", store="read_only",
      marks=[pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")]),
    R("store_not_a_database", DIGITS, "tracking.tracking_uri", None,
      shown="is not a SQLite database", kind="store", store="not_a_database"),
    R("store_under_a_file", DIGITS, "tracking.tracking_uri", None, shown="not a folder",
      kind="store", store="under_a_file"),
    R("store_no_file", DIGITS, "tracking.tracking_uri", "'sqlite:///'", kind="store",
      store="no_file"),
    R("artifact_root_under_a_file", (*DIGITS, "tracking.artifact_root=afile/artifacts"),
      "tracking.artifact_root", "'afile/artifacts'", kind="store", store="beside_a_file"),
    # the basic sweeper: every job is checked before the first runs
    R("sweep_one_bad_job", "seed=0,1 optimizer.lr=0.1,nan", "optimizer.lr", None,
      shown="(seed=0 optimizer.lr=nan): optimizer.lr = nan", kind="sweep", cli=True),
    R("sweep_bad_seed", "seed=0,-1", "seed", "-1", kind="sweep"),
    R("sweep_bad_option", "seed=0,1 init=he,bogus", None, shown="init/bogus", kind="sweep"),
    R("sweep_interval", "init.scale=interval(0.5,2)", None, shown="init.scale",
      kind="sweep"),
    # the Optuna sweeper
    R("optuna_grid_over_interval", (*SEARCH, "hydra/sweeper/sampler=grid"), "init.scale",
      "tag(log, interval(0.1, 10))", kind="sweep", cli=True),
    R("optuna_infinite_interval", (*SEARCH, "init.scale=interval(1,inf)"), "init.scale",
      "interval(1,inf)", kind="sweep"),
    R("optuna_low_ge_high", (*SEARCH, "init.scale=interval(2.0,0.5)"), "init.scale",
      "interval(2.0,0.5)", kind="sweep"),
    R("optuna_log_at_zero", (*SEARCH, "init.scale=tag(log,interval(0,1))"), "init.scale",
      "tag(log,interval(0,1))", kind="sweep"),
    R("optuna_sigma_w2_with_scale", ("hparams_search=init_sigma_w2", "init.scale=2"),
      "init.sigma_w2", None, shown="null while init.scale = 2", kind="sweep"),
    R("optuna_sigma_w2_log_at_zero", ("hparams_search=init_sigma_w2",
                                      "init.sigma_w2=tag(log,interval(0,1))"), "init.sigma_w2",
      "tag(log,interval(0,1))", kind="sweep"),
    R("optuna_n_trials_zero", (*SEARCH, "hydra.sweeper.n_trials=0"), "hydra.sweeper.n_trials",
      "0", kind="sweep"),
    R("optuna_n_jobs_zero", (*SEARCH, "hydra.sweeper.n_jobs=0"), "hydra.sweeper.n_jobs", "0",
      kind="sweep"),
    R("optuna_direction", (*SEARCH, "hydra.sweeper.direction=up"), "hydra.sweeper.direction",
      "'up'", kind="sweep"),
    R("optuna_two_directions", (*SEARCH, "hydra.sweeper.direction=[maximize,minimize]"),
      "hydra.sweeper.direction", "['maximize', 'minimize']", kind="sweep"),
    R("optuna_failure_rate", (*SEARCH, "hydra.sweeper.max_failure_rate=2.0"),
      "hydra.sweeper.max_failure_rate", "2.0", kind="sweep"),
    R("optuna_storage_word", (*SEARCH, "hydra.sweeper.storage=somewhere"),
      "hydra.sweeper.storage", "'somewhere'", kind="sweep"),
    R("optuna_storage_unreachable",
      (*SEARCH, "hydra.sweeper.storage=postgresql://u@127.0.0.1:1/optuna"),
      "hydra.sweeper.storage", "'postgresql://u@127.0.0.1:1/optuna'", kind="sweep"),
    R("optuna_sampler_seed", (*SEARCH, "hydra.sweeper.sampler.seed=-1"),
      "hydra.sweeper.sampler.seed", "-1", kind="sweep"),
    R("optuna_pruner_percentile", (*SEARCH, "hydra/sweeper/pruner=percentile",
                                   "hydra.sweeper.pruner.percentile=101"),
      "hydra.sweeper.pruner.percentile", "101.0", kind="sweep"),
    R("optuna_grace_period", (*SEARCH, "hydra.sweeper.grace_period=5"),
      "hydra.sweeper.grace_period", "5", kind="sweep"),
    R("optuna_nothing_to_search", (*SEARCH, "hydra.sweeper.params=null"),
      "hydra.sweeper.params", "null", kind="sweep"),
    R("optuna_no_objective", (*SEARCH, "optimized_metric=null"), "optimized_metric", "null",
      kind="sweep"),
    R("optuna_metric_without_val", (*SEARCH, "dataset.val_size=0"), "optimized_metric",
      "'val/acc'", kind="sweep"),
    R("optuna_bad_family", (*SEARCH, "init=choice(he,nosuch_family)"), None,
      shown="init/nosuch_family", kind="sweep"),
    R("optuna_trial_value", (*SEARCH, "init=normal", "init.std=choice(0.1,-1.0)"), "init.std",
      "-1.0", kind="sweep"),
    # refused by Hydra itself (exit code 2 all the same)
    R("hydra_unknown_option", "init=bogus", None, shown="init/bogus", kind="hydra", cli=True),
    R("hydra_unknown_key", "nosuch=1", None, shown="nosuch", kind="hydra"),
    R("hydra_bad_type", (*SEARCH, "hydra.sweeper.n_trials=abc"), None, shown="n_trials",
      kind="hydra"),
]
assert len(ROWS) >= 60 and len({r.id for r in ROWS}) == len(ROWS)


def params(rows: list[Row]) -> list:
    return [pytest.param(r, id=r.id, marks=r.marks) for r in rows]


# ---- in-process: every row -----------------------------------------------------------------
def _overrides(row: Row, tmp: Path) -> list[str]:
    """The row's overrides, with the store in tmp unless the row names its own."""
    given = {a.partition("=")[0] for a in row.args}
    defaults = {"tracking.tracking_uri": STORES[row.store].uri(tmp) if row.store
                else _default_uri(tmp),
                "tracking.artifact_root": f"{tmp}/mlruns/artifacts"}
    return [*row.args, *(f"{k}={v}" for k, v in defaults.items() if k not in given)]


def _refusal(row: Row, tmp: Path) -> BaseException:
    overrides = _overrides(row, tmp)
    hold = STORES[row.store].hold(tmp) if row.store else contextlib.nullcontext()
    with hold, initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        try:
            if row.kind == "sweep":
                cfg = GlobalHydra.instance().hydra.compose_config(
                    "train", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
                check_sweep(cfg)
            else:
                cfg = compose("train", overrides=overrides)
                validate(cfg)
                check_store(cfg)
        except (ConfigError, HydraException) as err:
            return err
    raise AssertionError(f"{row.id}: {row.args} was accepted")


@pytest.mark.parametrize("row", params(ROWS))
def test_refused_in_process(row: Row, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config_store, "LOCK_TIMEOUT_S", 0.5)
    err = _refusal(row, tmp_path)
    if row.kind == "hydra":
        assert isinstance(err, HydraException), err
    else:
        assert isinstance(err, ConfigError), f"{type(err).__name__}: {err}"
        if row.key is not None:
            assert err.key == row.key, message(err)
    text = message(err)
    assert row.shown in text, text
    if row.kind != "hydra" and row.key is not None:
        assert "expected" in text, text  # says what is allowed
    assert "hunter2" not in text
    _assert_nothing_created(tmp_path, row)


# ---- the command line: a representative set (all rows with -m slow) ------------------------
def _assert_nothing_created(tmp: Path, row: Row) -> None:
    db = tmp / "mlruns" / "mlflow.db"
    if db.exists() and row.store not in ("not_a_database",):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "runs" in tables:
                assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
            if row.store != "locked":
                assert tables <= {"t"}, tables  # not even MLflow's schema
    assert not list(tmp.rglob("optuna.db")), "an Optuna study was created"
    assert not (tmp / "outputs").exists(), "Hydra's run directory was created"
    assert not (tmp / "multirun").exists(), "the sweep directory was created"


def _cli(row: Row, tmp: Path) -> None:
    """``python train.py`` as ``conftest.run_cli`` runs it, the row's own store keys kept."""
    hold = STORES[row.store].hold(tmp) if row.store else contextlib.nullcontext()
    multirun = ["-m"] if row.kind == "sweep" or "hparams_search=init_scale" in row.args else []
    cmd = [sys.executable, str(ROOT / "train.py"), *multirun, *_overrides(row, tmp),
           f"hydra.run.dir={tmp}/outputs/run", f"hydra.sweep.dir={tmp}/multirun"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0",
           "INITLAB_STORE_LOCK_TIMEOUT_S": "1"}
    with hold:
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert row.shown in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "hunter2" not in out
    if row.kind != "hydra":
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert lines[-1].startswith("initlab: configuration error: "), proc.stderr[-3000:]
        assert len([ln for ln in lines if "configuration error" in ln]) == 1
    _assert_nothing_created(tmp, row)


@pytest.mark.parametrize("row", params([r for r in ROWS if r.cli]))
def test_refused_on_the_command_line(row: Row, tmp_path: Path) -> None:
    _cli(row, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("row", params([r for r in ROWS if not r.cli]))
def test_every_row_refused_on_the_command_line(row: Row, tmp_path: Path, request) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("about a minute in all: run with -m slow")
    _cli(row, tmp_path)


# ---- what must still pass ------------------------------------------------------------------
GOOD = ["", "experiment=s4_circles", "experiment=s1_histograms", "experiment=s1_mnist",
        "experiment=s3_xavier_deep", "model=lenet", "model=lenet dataset=cifar10",
        "dataset=circles model=mlp_s4", "dataset=gaussian model=mlp_100x5", "init=lsuv",
        "trainer=ddp_cpu", "tracking=none", "diagnostics=off", "scheduler=cosine",
        "scheduler=step", "dataset.val_size=0 optimized_metric=train/loss callbacks=none",
        "trainer.max_epochs=-1 trainer.max_steps=100",
        "trainer.max_epochs=null trainer.max_steps=5",
        "optimizer=sgd optimizer.momentum=0.9 optimizer.nesterov=true",
        "callbacks=[model_checkpoint,early_stopping,ema,lr_monitor,rich_progress_bar]",
        "hparams_search=init_scale", "hparams_search=init_sigma_w2", "init.sigma_w2=2",
        "init=orthogonal init.sigma_w2=0.5", "init.bias.name=normal init.bias.sigma_b2=0.05",
        "init=xavier init.bias.name=default init.bias.sigma_b2=0.1",
        "init=lsuv init.bias.name=constant +init.bias.value=0.1",
        "dataset=digits dataset.standardize=true", "dataset=circles dataset.standardize=true"]


@pytest.mark.parametrize("overrides", GOOD)
def test_valid_configs_pass(make_cfg, overrides: str) -> None:
    cfg = make_cfg(*overrides.split())
    validate(cfg)
    check_store(cfg)


def test_a_search_that_can_run_passes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for overrides in (["hparams_search=init_scale"], ["hparams_search=init_sigma_w2"],
                          ["hparams_search=init_scale", "hydra/sweeper/sampler=grid",
                           "init.scale=choice(0.5,1.0)"],
                          ["seed=0,1", "init=he,xavier"]):
            mode = RunMode.MULTIRUN
            cfg = GlobalHydra.instance().hydra.compose_config(
                "train", [*overrides, f"tracking.tracking_uri=sqlite:///{tmp_path}/m/mlflow.db"],
                run_mode=mode, with_log_configuration=False)
            check_sweep(cfg)
    assert not list(tmp_path.iterdir())  # probing created nothing


def test_trial_hook_needs_an_objective(make_cfg) -> None:
    check_trial_config(make_cfg())
    with pytest.raises(ConfigError, match="optimized_metric = null"):
        check_trial_config(make_cfg("optimized_metric=null"))


# ---- the schema knows what the code offers -------------------------------------------------
def _first(*names: str):
    import importlib

    for name in names:
        module, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    pytest.skip(f"none of {names} exists (yet)")


def test_schema_matches_the_registries() -> None:
    from initlab.config import schema as S

    families = _first("initlab.inits.INIT_FAMILIES")
    options = _first("initlab.inits.family_options")
    assert set(S.INIT_SCHEMAS) == set(S.INIT_FAMILIES) == set(families)
    for name, model in S.INIT_SCHEMAS.items():
        assert set(model.model_fields) - {"name", "bias"} == set(options(name)), name
    assert set(S.BIAS_KINDS) == set(_first("initlab.inits.BIAS_KINDS"))
    assert set(S.ACTIVATIONS) == set(_first("initlab.nets.ACTIVATIONS"))
    assert set(S.DATASETS) == set(_first("initlab.data.loaders.LOADERS"))
    module = _first("initlab.engine.module.ClassifierModule")
    assert S.METRICS == module.METRICS


def test_read_only_folder_refused_even_where_chmod_cannot_show_it(make_cfg, tmp_path, monkeypatch):
    """As root a chmod'ed folder stays writable; the check itself is exercised here."""
    (tmp_path / "mlruns").mkdir(exist_ok=True)  # the store fixture made it
    real = os.access
    monkeypatch.setattr(config_store.os, "access",
                        lambda path, mode: False if Path(path) == tmp_path / "mlruns"
                        else real(path, mode))
    with pytest.raises(ConfigError, match=r"tracking.tracking_uri = .* read-only"):
        check_store(make_cfg())
