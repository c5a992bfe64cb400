"""One schema for the whole config, checked before any run, trial or directory is created.

* ``validate(cfg)``: one job's config (types, ranges, finiteness, the combinations that cannot
  work: net vs data shape, an objective the run never logs, a run with no end, a device that
  is not there).  Raises ``ConfigError`` whose message names the key, the value given and what
  is allowed.
* ``check_trial_config(cfg)``: ``validate`` for a trial of a search (needs an objective); the
  Optuna sweeper's ``hydra.sweeper.check_trial_config`` hook.
* ``check_store(cfg)``: the MLflow store (and a search's Optuna storage) can be reached and
  written, probed without creating anything.
* ``refuse(err)``: the one paragraph on stderr and exit code 2.
* ``initlab.config.sweep.SweepCheck``: the Hydra callback that runs all of this for a single run
  and for every job of a multirun, before any directory or parent run exists.

Nothing here imports torch (except to look for a GPU when one is asked for).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from omegaconf import DictConfig

from initlab.errors import ConfigError

PREFIX = "initlab: configuration error: "
EXIT_CODE = 2  # bad input, as argparse and Hydra's own usage errors


def validate(cfg: DictConfig | Mapping[str, Any], *, devices: bool = True) -> None:
    """Refuse (``ConfigError``) a job config that cannot run as given.  ``devices=False``
    leaves out whether the accelerator asked for is on this machine (e.g. to check a GPU
    preset on a CPU-only machine)."""
    from initlab.config.checks import check_job

    check_job(cfg, devices=devices)


def check_trial_config(cfg: DictConfig | Mapping[str, Any]) -> None:
    """``validate`` for a trial of a search: it must also name the number it optimizes."""
    from initlab.config.checks import check_job

    check_job(cfg, sweep=True)


def check_store(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Refuse (``ConfigError``) a store that cannot be reached or written."""
    from initlab.config.store import check_store as _check_store

    _check_store(cfg)


def message(err: BaseException) -> str:
    """The paragraph for the user: one line, prefixed."""
    from initlab.tracking.secrets import mask

    text = mask(" ".join(str(err).split()))  # never a password, whatever the message quotes
    return text if text.startswith("initlab:") else PREFIX + text


def refuse(err: BaseException) -> NoReturn:
    """Print the paragraph to stderr and exit with code 2 (no traceback)."""
    sys.stdout.flush()
    print(message(err), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CODE)


__all__ = ["ConfigError", "EXIT_CODE", "check_store", "check_trial_config", "message", "refuse",
           "validate"]
