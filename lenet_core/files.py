"""Write a file under its real name only once it is complete, and clean up after writes that were cut short.

:func:`atomic_write` hands out a hidden sibling of the target,
``.<name>.<pid>.<token><suffix>`` (``.tmp`` for checkpoints, ``.part`` for
downloads), and renames it over the target once the ``with`` block ends without an
error, after flushing it to disk. So the target is always either the old file or
the whole new one. A replaced file keeps its permission bits; a new one gets the
usual ``0o666`` minus the umask.

A process killed in the middle (SIGKILL, power cut) cannot delete its temporary
file. :func:`remove_stale` deletes the leftovers of our own naming for one target
that are older than this process and whose writer is gone (its process id no
longer runs, or the file is a day old); files of any other name are never touched.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
from pathlib import Path

__all__ = ["atomic_write", "remove_stale", "temp_name"]

#: When this process loaded lenet_core: temporary files modified later may belong to a live writer.
STARTED = time.time()
#: Older than this, a temporary file is stale whoever wrote it (no write takes a day; process ids get reused).
MAX_AGE = 24 * 3600.0
#: Names from lenet_core versions before the process id was part of the name (tempfile.mkstemp's 8 characters).
_LEGACY_AGE = 600.0


def temp_name(name: str, suffix: str) -> str:
    """The hidden name a write of ``name`` uses while it is incomplete."""
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"


def _pattern(name: str, suffix: str):
    return re.compile(rf"\.{re.escape(name)}\.(?:(?P<pid>\d+)\.[0-9a-f]{{8}}|[a-z0-9_]{{8}}){re.escape(suffix)}")


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":   # os.kill(pid, 0) would end the process on Windows; rely on the age alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale(directory, name: str, suffix: str) -> list[Path]:
    """Delete the temporary files that interrupted writes of ``directory / name`` left; return them.

    Only files named by :func:`temp_name` (or by earlier lenet_core versions) for this
    ``name`` and ``suffix`` are candidates, and only those last modified before this
    process started whose writer no longer runs (or that are older than a day).
    """
    directory = Path(directory)
    pattern = _pattern(name, suffix)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_mtime >= STARTED:
            continue
        age = now - info.st_mtime
        pid = match.group("pid")
        if pid is not None:
            stale = age > MAX_AGE or not _running(int(pid))
        else:
            stale = age > _LEGACY_AGE
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _fsync_directory(directory: Path) -> None:
    try:  # make the rename itself durable; not possible on every platform
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(target, suffix: str = ".tmp"):
    """``with atomic_write(path) as f: f.write(...)``: ``f`` is a new binary file (``w+b``) in
    ``path``'s directory; on a normal exit it replaces ``path``, on any exception (Ctrl-C
    included) it is deleted and ``path`` is left as it was.

    Raises ``FileNotFoundError`` if the directory does not exist.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {directory} does not exist (needed for {target.name})")
    tmp = directory / temp_name(target.name, suffix)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))   # a replaced file keeps its mode
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
