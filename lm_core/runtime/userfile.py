"""Reading a file a user named: bounded, regular files only, one clear error.

Every command that reads a user's file (an RLF, a key, a code, a scenario) and the
daemon's ``--rlf`` go through `read_user_file`:

* the file is opened non-blocking, so a FIFO cannot hang the open, then `fstat`-ed: only
  a regular file is read (a directory, FIFO, socket or device such as ``/dev/zero`` is
  refused by name);
* its size is checked against the limit before anything is read, and the read itself
  stops one byte past the limit (a file that grows meanwhile is refused too);
* it must be UTF-8 text.

Every failure is an `InputError` naming the file (exit 2 in the CLI, one line), never an
`OSError`, `MemoryError` or a hang. `read_user_stdin` bounds ``-`` (stdin) the same way.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import IO

from lm_core.engine import limits
from lm_core.errors import InputError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_user_file(
    path: str | os.PathLike[str], *, what: str = "file", limit: int = limits.FILE_BYTES_MAX
) -> str:
    """The UTF-8 text of the regular file `path`, at most `limit` bytes; else `InputError`."""
    where = os.fspath(path)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{what} not found", file=where) from None
    except PermissionError:
        raise InputError(f"cannot read {what}: permission denied", file=where) from None
    except OSError as err:
        raise InputError(f"cannot read {what}: {err.strerror}", file=where) from None
    try:
        info = os.fstat(fd)
        for test, kind in _KINDS:
            if test(info.st_mode):
                raise InputError(f"{what} is {kind}, not a regular file", file=where)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} is not a regular file", file=where)
        if info.st_size > limit:
            raise InputError(_too_big(what, limit), file=where)
        data = _read_at_most(fd, limit + 1)
    except OSError as err:
        raise InputError(f"cannot read {what}: {err.strerror}", file=where) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(_too_big(what, limit), file=where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text", file=where) from None


def read_user_stdin(
    *, what: str = "input", limit: int = limits.CODE_TEXT_MAX * 2, stream: IO[str] | None = None
) -> str:
    """At most `limit` characters of stdin (``-`` on a command line); more is an error."""
    text = (stream or sys.stdin).read(limit + 1)
    if len(text) > limit:
        raise InputError(f"{what} is larger than {limit} characters", file="<stdin>")
    return text


def _read_at_most(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _too_big(what: str, limit: int) -> str:
    return f"{what} is larger than {limit:,} bytes"
