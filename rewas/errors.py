"""Error types that mean "the input or the options are wrong", as opposed to a bug in rewas.

The CLI prints these as one line and exits with 2; any other exception is an internal error (exit 1, and
REWAS_DEBUG=1 shows its traceback). Raise them only where the cause is something the user gave.
"""

from __future__ import annotations

import errno


class UserError(ValueError):
    """Something the user gave is wrong: an option, a file's content, a model folder."""


class MediaError(UserError):
    """A media file the user gave cannot be used: missing, unreadable, no video, no frames, no duration."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (still a FileNotFoundError for API callers)."""


class DownloadError(RuntimeError):
    """A released file could not be fetched or verified (`rewas download`): the network or the remote, not the
    user and not a bug; one line, exit 1."""


# a full disk or quota, a file-size limit, a read-only file system, out of memory, an I/O error
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.ENOMEM, errno.EIO)


def is_environment(e: BaseException) -> bool:
    """The machine, not rewas and not the user (ENVIRONMENT_ERRNOS, MemoryError). One line, exit 1, but not
    called an internal error."""
    return isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS)


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (its class name if it has none): what the CLI prints."""
    text = str(e).strip()
    return text.splitlines()[0] if text else e.__class__.__name__


class NonFiniteError(RuntimeError):
    """A stage produced NaN or inf (a model or precision fault, not the user's input): raised at the stage's
    boundary so that no NaN reaches a file."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, `kill`, a job scheduler's time limit): raised in the main thread so that a run
    stops as Ctrl+C stops it, through every cleanup (temporary files, worker pools), and can be resumed."""
