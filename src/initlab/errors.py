"""Errors that stop a run before training starts, with a message meant for the user."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """The configuration cannot work (bad value, mismatched model and data); nothing ran.

    ``key`` (a dotted config path), ``value`` (as given) and ``allowed`` (what would be
    accepted) are set by the config schema (``initlab.config``); other raisers may leave them
    unset.  The message alone is what the user sees."""

    def __init__(self, message: str, *, key: str | None = None, value: Any = None,
                 allowed: str | None = None) -> None:
        super().__init__(message)
        self.key, self.value, self.allowed = key, value, allowed


class DatasetUnavailableError(ConfigError):
    """A data set is neither on disk nor downloadable (typically: offline)."""
