"""The Lightning loggers a job's metrics go to: the ``logger`` group (``conf/logger/``).

Two groups, two questions: ``tracking`` says whether the job has an MLflow run and where it
lives (store, experiment, heartbeat); ``logger`` says which loggers get the metrics.  The
``mlflow`` entry is the tracked run's own logger (``TrackedRun.logger``); any other entry is a
Lightning logger built from its ``_target_`` (CSV, TensorBoard) into the job's output dir.
Without a run (``tracking=none``) the ``mlflow`` entry becomes a CSV logger, so the metrics are
never lost: ``<output dir>/csv/version_0/metrics.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

DEFAULT = {"mlflow": {}}  # a config composed without the logger group (older callers)
CSV_FALLBACK = {"_target_": "lightning.pytorch.loggers.CSVLogger", "name": "csv"}


def logger_nodes(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The ``logger`` group's entries as plain values, switched-off (null) ones left out."""
    nodes = cfg.get("logger") if "logger" in cfg else DEFAULT
    if isinstance(nodes, DictConfig):
        nodes = OmegaConf.to_container(nodes, resolve=True)
    return {name: node for name, node in (nodes or {}).items() if node is not None}


def build(node: Mapping[str, Any], out: Path) -> Logger:
    """A Lightning logger from its node; ``save_dir: null`` means the job's output dir."""
    from hydra.utils import instantiate

    node = dict(node)
    if node.get("save_dir") is None:
        node["save_dir"] = str(out)
    return instantiate(node)


def metric_loggers(cfg: DictConfig, out: Path, run_logger: Logger | None) -> list[Logger]:
    """The job's loggers, the tracked run's first (``trainer.logger`` is the first one: the
    initial weights' metrics go to it)."""
    nodes = logger_nodes(cfg)
    loggers: list[Logger] = []
    if "mlflow" in nodes:
        if run_logger is not None:
            loggers.append(run_logger)
        elif not any(str(n.get("_target_", "")).endswith("CSVLogger") for n in nodes.values()):
            loggers.append(build(CSV_FALLBACK, out))  # no run: the metrics go to disk instead
    loggers += [build(node, out) for name, node in nodes.items() if name != "mlflow"]
    return loggers


def local_logs(loggers: list[Logger]) -> list[str]:
    """Where the loggers that write into the output dir put the metrics (for the final print)."""
    places = []
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            places.append(str(Path(logger.log_dir) / "metrics.csv"))
        elif isinstance(logger, TensorBoardLogger):
            places.append(str(logger.log_dir))
    return places
