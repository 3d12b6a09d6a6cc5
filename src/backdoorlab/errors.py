"""Project exceptions: each names the bad thing and what was expected.

The CLI prints any :class:`BackdoorLabError` on one line and exits non-zero; anything else is a bug.
"""

from __future__ import annotations


class BackdoorLabError(Exception):
    """Base class of every error the toolkit raises on bad input."""


class DataError(BackdoorLabError):
    """A data file or data set is missing, corrupt or inconsistent."""


class ConfigError(BackdoorLabError, ValueError):
    """An option, name or value is not acceptable."""


class ModelError(BackdoorLabError):
    """A model file cannot be loaded safely, or a model does not fit the data."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup failed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
