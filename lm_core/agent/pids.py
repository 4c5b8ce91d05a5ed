"""Is the process that asked for a lease still running?

A pid alone is not enough: a process that exited may be reaped and its pid given to a
new one. `ProcessRef` records the pid with the process's start time (field 22 of
``/proc/PID/stat``, in clock ticks since boot); the process is gone when the pid no
longer exists, is a zombie (exited, not yet reaped by its parent), or has another start
time. Where ``/proc`` is missing (not Linux) only the pid is checked (``kill(pid, 0)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) from /proc/PID/stat; None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ")"
    rest = text[text.rfind(")") + 2 :].split()
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """One process: its pid and (on Linux) its start time."""

    pid: int
    started: int | None

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The running process `pid`, or None if there is none (or it is a zombie)."""
        if pid <= 0 or not _exists(pid):
            return None
        st = _stat(pid)
        if st is None:
            return cls(pid, None)
        state, started = st
        if state in ("Z", "X"):
            return None
        return cls(pid, started)

    def alive(self) -> bool:
        """True while this very process runs (not a zombie, not a reused pid)."""
        if not _exists(self.pid):
            return False
        if self.started is None:
            return True
        st = _stat(self.pid)
        if st is None:
            return not os.path.isdir("/proc/self")  # no /proc at all: trust kill(0)
        state, started = st
        return state not in ("Z", "X") and started == self.started
