"""Checks on the files a user names, before any work is done on them."""

from __future__ import annotations

import os

from .errors import MissingFileError, UserError


def check_input_file(path: str | os.PathLike, what: str = "file", *, missing: type[UserError] = MissingFileError,
                     invalid: type[UserError] = UserError) -> str:
    """-> the path as a string, if it names a readable file; else a one-line user error saying what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise missing(f"{path}: no such {what}")
    if os.path.isdir(path):
        raise invalid(f"{path}: is a directory, not a {what}")
    if not os.access(path, os.R_OK):
        raise invalid(f"{path}: not readable (permission denied)")
    return path
