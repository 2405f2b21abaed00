"""The one base class of errors that describe a problem with the user's input, not with mmrag.

Entry points (train.py, eval.py, the data tools) catch `UserError` only and print its message as
one line; anything else is a bug and keeps its traceback. Every error a user can cause by a config
value, a path, a data file or a checkpoint subclasses `UserError` (and, where it helps callers, the
built-in error it resembles). Messages name the file / line / config key and what was expected.
"""
from __future__ import annotations


class UserError(Exception):
    """A bad config value, path, data file or checkpoint, explained in one line."""


class ConfigError(UserError, ValueError):
    """A configuration problem, reported as one line that names where it came from."""


class UnknownNameError(UserError, LookupError):
    """A registry / template / preset name that does not exist; the message lists the known ones."""

    def __str__(self) -> str:  # LookupError would not quote, but be explicit: the message as written
        return str(self.args[0]) if self.args else ""


class MissingPathError(UserError, FileNotFoundError):
    """A config key that points at a file or folder that does not exist."""


class DataFormatError(UserError, ValueError):
    """A malformed data file: names the file, the line or item, and what was expected."""


class ImageReadError(UserError, OSError):
    """An image file that is missing or cannot be decoded: names the file."""
