"""Errors that stop a run before training starts, with a message meant for the user."""


class ConfigError(ValueError):
    """The configuration cannot work (bad value, mismatched model and data); nothing ran."""


class DatasetUnavailableError(ConfigError):
    """A data set is neither on disk nor downloadable (typically: offline)."""
