"""The only code that talks to MLflow: the store, a run's params/tags/metrics/artifacts, its
lifecycle (status on every exit, signals), and the sweep's parent run.

Submodules import what they need; this package imports nothing, so that the Optuna sweeper
plugin can use ``store`` and ``interrupts`` without importing Lightning."""
