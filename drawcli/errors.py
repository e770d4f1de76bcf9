"""Errors a user can cause; the CLI turns each into one line on stderr, never a traceback."""

from __future__ import annotations


class DrawcliError(Exception):
    """Base class for every error that is the user's input, not a bug in drawcli."""


class ConfigError(DrawcliError):
    """A model config (from options or checkpoint metadata) that does not validate."""


class PluginError(DrawcliError):
    """A component name that is unknown, or a plugin that fails to load."""


class CheckpointError(DrawcliError):
    """A file that is not a readable drawcli checkpoint."""


class DataError(DrawcliError):
    """A data set that cannot be found or read."""


class WriteError(DrawcliError):
    """A file that cannot be written (read-only folder, full disk); the previous file is kept."""


class RunInUseError(DrawcliError):
    """A run folder that another live process is training into (drawcli/runlock.py)."""
