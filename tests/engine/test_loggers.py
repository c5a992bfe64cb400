"""The logger group: which loggers get the metrics (tracking says whether there is an MLflow
run).  Without a run the metrics still land on disk as CSV, and the final print says where;
bad logger configs are refused before anything exists."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import FAST, all_runs, run_cli
from initlab.config import validate
from initlab.errors import ConfigError
from initlab.jobs import train
from initlab.tracking.context import HydraContext
from initlab.tracking.loggers import metric_loggers


def read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_tracking_none_still_writes_the_metrics_as_csv_and_says_where(tmp_path, unborn_store):
    proc = run_cli(tmp_path, unborn_store, *FAST, "tracking=none")
    metrics = tmp_path / "outputs/run/csv/version_0/metrics.csv"
    rows = read_metrics(metrics)
    assert {"train/loss", "val/acc", "test/acc"} <= set(rows[0]), rows[0]
    assert {r["epoch"] for r in rows if r["train/loss"]} == {"0", "1"}  # both epochs
    assert f"metrics: {metrics}" in proc.stdout
    assert not (tmp_path / "mlruns").exists()


def test_many_loggers_write_mlflow_and_csv(make_cfg, store, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(HydraContext, "current", classmethod(lambda cls: cls(output_dir=out)))
    train(make_cfg(*FAST, "logger=many_loggers"))
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED" and "val/acc" in run.data.metrics
    rows = read_metrics(out / "csv/version_0/metrics.csv")
    last_val = [float(r["val/acc"]) for r in rows if r.get("val/acc")][-1]
    assert last_val == pytest.approx(run.data.metrics["val/acc"])
    assert f"MLflow run {run.info.run_id}" in capsys.readouterr().out


@pytest.mark.parametrize("overrides, says", [
    (["logger=none"], "logger=none with tracking=none"),
    (["logger=tensorboard"], 'pip install -e ".[tensorboard]"'),
    (["logger=csv", "+logger.csv.prefx=a"], "logger.csv has no key 'prefx'"),
    (["+logger.wandb.name=a"], "a _target_ for logger 'wandb'"),
])
def test_bad_logger_configs_are_refused(make_cfg, overrides, says):
    if overrides == ["logger=tensorboard"] and _has_tensorboard():
        pytest.skip("tensorboard is installed: nothing to refuse")
    with pytest.raises(ConfigError) as refused:
        validate(make_cfg(*overrides))
    assert says in str(refused.value), str(refused.value)


def _has_tensorboard() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))


def test_a_refused_logger_exits_2_before_anything_exists(tmp_path, store):
    proc = run_cli(tmp_path, store, *FAST, "logger=none", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "logger = {} is not allowed" in proc.stderr and "Traceback" not in proc.stderr
    assert not all_runs(store) and not (tmp_path / "outputs/run/csv").exists()


def test_without_a_run_mlflow_falls_back_to_one_csv_logger(make_cfg, tmp_path):
    kinds = lambda *o: [type(lg).__name__ for lg in metric_loggers(  # noqa: E731
        make_cfg(*o, tracking=False), tmp_path, None)]
    assert kinds() == ["CSVLogger"]
    assert kinds("logger=many_loggers") == ["CSVLogger"]  # not two CSV loggers in one folder
    assert kinds("logger=none") == []
