"""Entry point: `python train.py [group=option ...] [-m]`.  See README.md."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from initlab.errors import ConfigError
    from initlab.training import objective, train

    try:
        if cfg.task == "propagation":  # S1's forward-only study (no training)
            from initlab.propagation import run_propagation

            metrics = run_propagation(cfg)
        else:
            metrics = train(cfg)
    except ConfigError as err:
        # Bad input: one paragraph, no traceback, and (in a multirun) no further jobs.
        sys.exit(f"initlab: configuration error: {err}")
    return objective(cfg, metrics)


if __name__ == "__main__":
    main()
