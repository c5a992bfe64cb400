"""MLflow's system metrics (``system/cpu_utilization_percentage``, memory, disk, network, and
GPU with ``nvidia-ml-py``) for a run made with ``MlflowClient.create_run``, behind
``tracking.system_metrics``.

``mlflow.start_run(log_system_metrics=True)`` only serves fluent runs; its worker,
``mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor`` (a public module, its
``run_id`` / ``tracking_uri`` arguments and ``start`` / ``finish`` documented in its docstring;
pinned by tests/tracking/test_logged_model.py), takes any run id and store.  It samples every
10 s (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` changes it) and needs psutil.
"""

from __future__ import annotations

from initlab.errors import ConfigError


def monitor_class():
    """The monitor class, or a ``ConfigError`` (before any run exists) without psutil."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError as err:
        raise ConfigError(f"tracking.system_metrics = true needs psutil ({err}); "
                          f"`pip install psutil`, or tracking.system_metrics=false",
                          key="tracking.system_metrics", value=True) from None
    return SystemMetricsMonitor


def start(monitor_cls, run_id: str, tracking_uri: str):
    """A started monitor of ``run_id``; stop it with ``finish()`` before the run ends."""
    monitor = monitor_cls(run_id, tracking_uri=tracking_uri)
    monitor.start()
    return monitor
