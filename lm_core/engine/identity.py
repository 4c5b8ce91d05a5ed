"""Who is asking: the identity a client states with its request (A1).

A `Request` (and a fail-over `ClientHeartbeat`) carries one `ClientIdentity`: the user,
host, process id, program name and version, and the display or terminal where there is
one. The client library fills it in from its process (`lm_core.runtime.client`); a
program may state its own. The server keeps it with the key-table entry, persists it
with the entry, shows it in its status and writes it to the usage log.

The identity is what the client *says*; it is not authenticated (a program can claim any
user, as with every floating-license manager's `lmstat`). It is bounded like every other
field: printable ASCII only (no control character reaches a log line or a terminal
through it) and at most the lengths below, so a status reply listing
`limits.STATUS_CLIENTS_MAX` rows still fits its frame. The codec refuses a field out of
bounds (the connection is closed; nothing changes); building one in a program raises
`IdentityError`, an `InputError` naming the field.

Pure: no IO.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Any

from lm_core.engine.limits import IntRange, Text, is_ident
from lm_core.errors import InputError

USER_MAX = 32  # POSIX login names (useradd) fit
HOST_MAX = 64  # gethostname(): Linux HOST_NAME_MAX
PROGRAM_MAX = 64
VERSION_MAX = 32
DISPLAY_MAX = 64  # an X display ("host:0.0"), a tty ("/dev/pts/3"), an SSH session
PID_MAX = 2**32 - 1

User = Annotated[str, Text(USER_MAX, ident=True)]
Host = Annotated[str, Text(HOST_MAX, ident=True)]
Program = Annotated[str, Text(PROGRAM_MAX, ident=True)]
ProgramVersion = Annotated[str, Text(VERSION_MAX, ident=True)]
Display = Annotated[str, Text(DISPLAY_MAX, ident=True)]
Pid = Annotated[int, IntRange(0, PID_MAX)]

_TEXT_MAX = {
    "user": USER_MAX,
    "host": HOST_MAX,
    "program": PROGRAM_MAX,
    "version": VERSION_MAX,
    "display": DISPLAY_MAX,
}


class IdentityError(InputError, ValueError):
    """A client identity field out of bounds (a `ValueError` too: the codec turns it into
    a refused frame)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientIdentity:
    """Who holds (or asks for) a seat. Empty strings and pid 0 mean "not stated"."""

    user: User = ""
    host: Host = ""
    pid: Pid = 0
    program: Program = ""
    version: ProgramVersion = ""
    display: Display = ""

    def __post_init__(self) -> None:
        for name, limit in _TEXT_MAX.items():
            value = getattr(self, name)
            if type(value) is not str:
                raise IdentityError("must be a string", field=f"identity.{name}")
            if len(value) > limit:
                raise IdentityError(
                    f"{len(value)} characters, at most {limit}", field=f"identity.{name}"
                )
            if not is_ident(value):
                raise IdentityError(
                    "holds a character outside printable ASCII", field=f"identity.{name}"
                )
        if type(self.pid) is not int or not 0 <= self.pid <= PID_MAX:
            raise IdentityError(f"pid must be 0..{PID_MAX}", field="identity.pid")

    def as_json(self) -> dict[str, Any]:
        """The identity as a plain JSON object (status, key table, usage log)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, value: object) -> ClientIdentity | None:
        """An identity from `as_json` output; None for None. Raises `IdentityError`."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise IdentityError("must be an object", field="identity")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(value) - known)
        if extra:
            raise IdentityError(f"unknown field {str(extra[0])[:32]!r}", field="identity")
        return cls(**value)

    def describe(self) -> str:
        """One short line: ``user@host program version (pid N, display)``."""
        who = self.user or "?"
        if self.host:
            who += f"@{self.host}"
        prog = " ".join(p for p in (self.program, self.version) if p)
        extra = ", ".join(p for p in (f"pid {self.pid}" if self.pid else "", self.display) if p)
        return " ".join(p for p in (who, prog, f"({extra})" if extra else "") if p)


def sanitize(value: str, limit: int) -> str:
    """`value` made printable ASCII (backslash escapes for the rest) and cut to `limit`:
    how the client library fills in what it read from its process, which must never make
    its own request invalid."""
    text = value.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:limit]


def identity_json(identity: ClientIdentity | None) -> dict[str, Any] | None:
    """`identity.as_json()`, or None."""
    return None if identity is None else identity.as_json()


def identity_or_none(value: object) -> ClientIdentity | None:
    """`ClientIdentity.from_json(value)`, or None if it is missing or not valid (a key
    entry persisted by another version keeps its seat without its identity)."""
    try:
        return ClientIdentity.from_json(value)
    except (IdentityError, TypeError):
        return None
