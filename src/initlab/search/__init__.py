"""The small public API the Optuna sweeper plugin and search configs use: trial-config
checks and the pruning callback."""
