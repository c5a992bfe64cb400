"""Entry point: `python train.py [group=option ...] [-m]`.  See README.md."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # The config and the store were checked before Hydra created anything (the SweepCheck
    # callback: every job of a multirun up front); train() checks its config again (1 ms) for
    # callers that do not go through this entry point.
    from initlab.config import refuse
    from initlab.errors import ConfigError
    from initlab.jobs import objective, train_seeds

    try:
        if cfg.task == "propagation":  # S1's forward-only study (no training)
            from initlab.jobs.propagation import run_propagation

            metrics = run_propagation(cfg)
        else:
            metrics = train_seeds(cfg)  # objective_seeds: 1 = train(cfg)
    except ConfigError as err:
        # Bad input found with the data (a data set not available offline): one paragraph on
        # stderr, exit code 2, no traceback, and (in a multirun) no further jobs.
        refuse(err)
    return objective(cfg, metrics)


def _composition_error(exit_: SystemExit) -> bool:
    """Hydra reports a config it cannot compose (an unknown group option, a key not in the
    config, a bad override) with its own message and exit code 1; it is bad input too."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, \
        OverrideParseException

    cause = exit_.__context__
    refused = (ConfigCompositionException, MissingConfigException, OverrideParseException)
    return exit_.code == 1 and isinstance(cause, refused)


def _interrupted(interrupt: KeyboardInterrupt) -> None:
    """Ctrl-C or SIGTERM: the runs were ended KILLED on the way out; one line on stderr saying
    what was kept instead of a traceback, and the shell's exit code (130, SIGTERM 143)."""
    from initlab.tracking.interrupts import exit_code, exiting, interrupted_message

    exiting(interrupt)  # a multirun's parent run ends KILLED (tracking.sweep, at exit)
    multirun = any(a in ("-m", "--multirun") or a.startswith("hydra.mode=MULTIRUN")
                   for a in sys.argv[1:])
    print(interrupted_message(interrupt, multirun=multirun), file=sys.stderr, flush=True)
    sys.exit(exit_code(interrupt))


if __name__ == "__main__":
    import atexit
    import gc

    # At exit, after the handlers registered later (MLflow's, multiprocessing's, the sweep's):
    # the interpreter's own teardown then skips the garbage collector's passes over torch's,
    # Lightning's and the runs' objects (1.4-3 s of every exit on 2 cores).  Freezing frees
    # nothing and changes no object, so handlers that run after it (logging's) are unaffected.
    atexit.register(gc.freeze)
    try:
        main()
    except KeyboardInterrupt as interrupt:
        _interrupted(interrupt)
    except SystemExit as exit_:
        if _composition_error(exit_):
            sys.exit(2)
        raise
    from initlab.tracking.sweep import multirun_failure

    if multirun_failure():  # Hydra turns an exception in a callback into a warning
        sys.exit(1)
