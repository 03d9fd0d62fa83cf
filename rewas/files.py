"""Files: checks on the ones a user names, before any work is done on them; reading manifests; writing outputs
atomically (a temporary file renamed into place)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ENVIRONMENT_ERRNOS, MissingFileError, UserError


def check_input_file(
    path: str | os.PathLike,
    what: str = "file",
    *,
    missing: type[UserError] = MissingFileError,
    invalid: type[UserError] = UserError,
) -> str:
    """-> the path as a string, if it names a readable file; else a one-line user error saying what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise missing(f"{path}: no such {what}")
    if os.path.isdir(path):
        raise invalid(f"{path}: is a directory, not a {what}")
    if not os.access(path, os.R_OK):
        raise invalid(f"{path}: not readable (permission denied)")
    return path


def read_jsonl(path: str) -> list[tuple[int, object]]:
    """A JSONL file -> (line number, value) for each non-empty line; bad text or JSON is a one-line user error
    naming the line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (a JSONL manifest is UTF-8 text, one JSON object per line)") from None
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not JSON ({e.msg})") from None
    return rows


def read_manifest(path: str | os.PathLike, required: tuple[str, ...], path_keys: tuple[str, ...]) -> list[dict]:
    """A JSONL manifest -> one dict per non-empty line, each with every key in `required`; the values of
    `path_keys` that are relative paths are taken relative to the manifest's folder. Anything malformed is a
    one-line user error naming the line."""
    path = check_input_file(path, "manifest")
    base = os.path.dirname(os.path.abspath(path))
    items = []
    for n, item in read_jsonl(path):
        if not isinstance(item, dict) or any(key not in item for key in required):
            needs = " and ".join(f"{k!r}" for k in required) or "a JSON object"
            raise UserError(f"{path}:{n}: each line needs {needs}")
        for key in path_keys:
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                raise UserError(f"{path}:{n}: {key!r} must be a path, not {value!r}")
            if value and not os.path.isabs(value):
                item[key] = os.path.join(base, value)
        items.append(item)
    if not items:
        raise UserError(f"{path}: the manifest is empty")
    return items


TEMP_PREFIX = ".rewas-"


def _host() -> str:
    return socket.gethostname().replace("-", "_")  # "-" separates the name's fields


def temp_prefix(pid: int | None = None) -> str:
    """The name prefix of the temporary files and folders of process `pid` (default: this one): it names the host
    and the process, so that what a killed process left behind can be told from what a live one is writing."""
    return f"{TEMP_PREFIX}{_host()}-{os.getpid() if pid is None else pid}-"


_WINDOWS = os.name == "nt"


def _windows_alive(pid: int, kernel32=None) -> bool:
    """Whether process `pid` runs, asked through OpenProcess + GetExitCodeProcess: on Windows os.kill(pid, 0) is
    not a probe, it terminates the process."""
    import ctypes

    kernel32 = kernel32 or ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: it exists, it is someone else's
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # unknown: keep its files
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _alive(pid: int) -> bool:
    if _WINDOWS:
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders in `directory` left by processes of this host that are gone (a run
    killed with SIGKILL cannot clean up after itself); -> what was removed. Those of live processes (other ranks
    writing into the same folder) and of other hosts are left alone."""
    host = _host()
    removed = []
    for path in Path(directory).glob(f"{TEMP_PREFIX}*"):
        owner, _, rest = path.name[len(TEMP_PREFIX) :].partition("-")
        pid = rest.partition("-")[0]
        if owner != host or not pid.isdigit() or _alive(int(pid)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def atomic_path(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `out`; it replaces `out` only if the block succeeds."""
    out = Path(out)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=temp_prefix(), suffix=out.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        _usual_mode(Path(tmp))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _writer_errors() -> tuple[type[BaseException], ...]:
    """What the libraries that write our files raise when the system refuses a write: libsndfile and torch.save
    raise RuntimeErrors, safetensors its own error."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors is a core dependency
        return (RuntimeError,)
    return (RuntimeError, SafetensorError)


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Wrap one write of `path`: a write the system refuses (a full disk or quota, a file-size limit, an I/O
    error), whichever library made it, comes out as one OSError that names the file and that
    `errors.is_environment` counts as the machine's. Wrap only the write itself: any RuntimeError inside is taken
    for the writer's."""
    import errno

    try:
        yield
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        reason = e.strerror or str(e)
        raise _write_error(path, reason, e.errno) from None
    except _writer_errors() as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _write_error(path, reason, errno.EIO) from None


def _write_error(path: str | os.PathLike, reason: str, code: int) -> OSError:
    error = OSError(f"writing {Path(path).name} failed ({reason}): is the disk full, or a file-size limit hit?")
    error.errno = code
    return error


def _usual_mode(path: Path) -> None:
    """A finished temporary file or folder gets the permissions an output usually has (the umask's), not mkstemp's
    and mkdtemp's 0600 and 0700."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; it becomes `out` only if the block succeeds, so a failed or killed
    write never leaves a folder that looks whole: `atomic_outputs` of one output. An existing `out` is replaced
    (its files are gone only once the new folder is in place); what a killed writer left beside it is cleared
    first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_outputs(out) as (tmp,):
        tmp.mkdir()
        yield tmp


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl+C and SIGTERM wait until the block is done, then take effect as they would have (main thread only).
    Their handlers are swapped for ones that only note them: masking the signals holds them off the main thread
    alone, and torch's or tqdm's threads took them, the handler then running in the block all the same."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous: dict[int, object] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.signal(signum, lambda n, frame: came.append(n))
            previous[signum] = signal.SIG_DFL if handler is None else handler  # None: set outside Python
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(came):  # now, to the handlers that were there
            signal.raise_signal(signum)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextmanager
def atomic_outputs(*outs: str | os.PathLike) -> Iterator[list[Path]]:
    """Outputs that belong together (a video, its WAV and curve; a stems folder), written or not as one: yield a
    temporary path beside each, of the same name (a file to write, or a folder to make). Once the block succeeds,
    with Ctrl+C and SIGTERM held off, the earlier outputs are moved aside and the new ones put in their places;
    should a move fail (a file open in another program on Windows), those done are undone and the earlier ones come
    back (or, where even that fails, are kept where they were moved, and the error says where). A failure before
    that (a full disk at the last file) leaves none of them: written one after another, a failed WAV left a new
    video beside an old WAV."""
    outs = [Path(o) for o in outs]
    if len({os.path.normcase(os.path.abspath(o)) for o in outs}) != len(outs):
        raise ValueError(f"atomic_outputs: an output named twice in {[str(o) for o in outs]}")
    folders: list[Path] = []
    kept: set[Path] = set()  # holding an earlier output that could not be put back
    try:
        for out in outs:
            remove_stale_temps(out.parent)
            folders.append(Path(tempfile.mkdtemp(dir=out.parent, prefix=temp_prefix())))
        temps = [folder / out.name for folder, out in zip(folders, outs)]
        yield temps
        for tmp, out in zip(temps, outs):  # a folder where a file goes, or the other way: someone else's
            if os.path.lexists(out) and not out.is_symlink() and out.is_dir() != tmp.is_dir():
                raise UserError(f"{out}: is {'a folder' if out.is_dir() else 'a file'} now; not replaced")
        asides = [folder / f"earlier-{out.name}" for folder, out in zip(folders, outs)]
        with _signals_held():
            moved, placed = [], []
            try:
                for out, aside in zip(outs, asides):
                    if os.path.lexists(out):
                        os.replace(out, aside)
                        moved.append((aside, out))
                for tmp, out in zip(temps, outs):
                    _usual_mode(tmp)
                    os.replace(tmp, out)
                    placed.append(out)
            except BaseException as e:
                earlier = {out for _, out in moved}
                for out in placed:  # each step on its own: one that fails must not stop the others
                    if out not in earlier or out.is_dir():  # (a file is put back over the new one below)
                        try:
                            _remove(out)
                        except OSError:
                            pass
                lost = []
                for aside, out in moved:
                    try:
                        os.replace(aside, out)
                    except OSError:
                        # beside it under a name no clean-up takes (a temporary's would go with the next run)
                        spare = out.with_name(f"{out.name}.earlier-{os.getpid()}")
                        try:
                            os.replace(aside, spare)
                        except OSError:
                            spare = aside
                            kept.add(aside.parent)
                        lost.append(f"{out} is at {spare}")
                if lost:
                    raise OSError(f"the earlier outputs could not be put back: {'; '.join(lost)}") from e
                raise
    finally:
        for folder in folders:
            if folder not in kept:
                shutil.rmtree(folder, ignore_errors=True)
