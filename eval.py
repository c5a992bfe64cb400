"""Entry point: `python eval.py ckpt_path=<file.ckpt or MLflow run id> [split=test|val|train]
[dataset=...]`.  See docs/tracking.md, "What the record holds"."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    # Bad input (no ckpt_path, an unknown run, a file that is not a checkpoint, a split the data
    # set lacks) is found before the evaluation's MLflow run exists: one paragraph, exit code 2.
    from initlab.config import refuse
    from initlab.errors import ConfigError
    from initlab.jobs.evaluate import evaluate

    try:
        evaluate(cfg)
    except ConfigError as err:
        refuse(err)


def _composition_error(exit_: SystemExit) -> bool:
    """Hydra's own refusal of a config it cannot compose (exit code 1) is bad input too."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, \
        OverrideParseException

    cause = exit_.__context__
    refused = (ConfigCompositionException, MissingConfigException, OverrideParseException)
    return exit_.code == 1 and isinstance(cause, refused)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as exit_:
        if _composition_error(exit_):
            sys.exit(2)
        raise
