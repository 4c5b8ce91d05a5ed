"""Every bound on a value that enters the pool from outside, defined once.

Theory of operation
-------------------
An integer, a float or a string that reaches a daemon -- in an RLF, a license code, or
a message -- has a range here. The parsers (`codes.parse_code`, `rlf.parse_rlf`), the
codec (through the `Annotated` hints of `messages`) and the store all check against
these same names, so a value that passed a parser can never be the first thing to
overflow further in (an SQLite INTEGER, a JSON reader that holds numbers as doubles, a
status reply that must fit in one frame).

Integers
  ``COUNTER_MAX = 2**53 - 1`` bounds every counter: RLF sequence, term, config term and
  version, heartbeat seq, request id. Why 2**53 - 1 and not 2**63 - 1: the largest
  integer every JSON reader keeps exactly (JavaScript, jq and any reader that holds
  numbers as doubles), so `lm status --json | jq` never shows a rounded sequence; it is
  also far inside SQLite's signed 64-bit INTEGER, so no +1 an engine does next to it can
  overflow the store. At one increment per millisecond it lasts 285,000 years.
  Seat counts: ``SEATS_MAX`` per code / per request, ``CODES_MAX`` codes per RLF, so a
  license's hard limit (and any seat count in a message) is at most ``HARD_LIMIT_MAX``.
Floats
  Durations (timing, leases, retry hints) are finite and in ``0 .. SECONDS_MAX``; a clock
  reading echoed between servers is finite and in ``0 .. CLOCK_MAX``.
Strings
  Names (pool, server id, vendor) ``NAME_MAX``; a license (``"Product Version"``)
  ``LICENSE_MAX``; a client id or any sender ``SENDER_MAX``; one human line ``TEXT_MAX``;
  an event text ``EVENT_TEXT_MAX``; a code ``CODE_TEXT_MAX``; an RLF ``RLF_CHARS_MAX``.
  Identifiers (`Ident`) are printable ASCII: no control character can reach a log line or
  a key table through them, and their byte size equals their length.
Status
  One server's status lists at most ``STATUS_CLIENTS_MAX`` key-table rows,
  ``STATUS_LICENSES_MAX`` licenses and ``STATUS_EVENTS_MAX`` events (with totals when it
  cut), so a StatusReply is at most ``STATUS_REPLY_BYTES_MAX`` bytes by construction
  (tests/runtime/test_codec.py builds the worst case and measures it).

The `Annotated` aliases (`Counter`, `Seats`, `Name`, ...) are what `messages` uses as
field types; `IntRange`, `FloatRange` and `Text` are the metadata the codec reads.
Pure: no IO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

# ---------------------------------------------------------------- integers

COUNTER_MAX = 2**53 - 1
SEQUENCE_MAX = COUNTER_MAX  # RLF sequence
TERM_MAX = COUNTER_MAX  # election term, config term
CONFIG_VERSION_MAX = COUNTER_MAX
REQUEST_ID_MAX = COUNTER_MAX
SQLITE_INT_MAX = 2**63 - 1  # what the store could hold; every limit above is far below it

SEATS_MAX = 1_000_000  # seats in one license code; count in one request
CODES_MAX = 1024  # license codes in one RLF (so licenses in one pool)
HARD_LIMIT_MAX = SEATS_MAX * CODES_MAX  # seats of one license; any seat count in a message
RETENTION_DAYS_DEFAULT = 400  # RLF `retention_days`: usage and audit rows kept this long
RETENTION_DAYS_MIN = 1
RETENTION_DAYS_MAX = 36_500
SERVERS_MIN = 3
SERVERS_MAX = 11
PORT_MIN = 1
PORT_MAX = 65535

# ---------------------------------------------------------------- floats

SECONDS_MAX = 86_400.0  # any duration: timing fields, leases, retry hints
CLOCK_MAX = 1e12  # a clock reading (monotonic seconds) echoed between servers

# ---------------------------------------------------------------- strings

NAME_MAX = 32  # pool, server id, vendor (codes.NAME_RE)
LICENSE_MAX = 64 + 1 + 32  # "Product Version" (codes.PRODUCT_RE, VERSION_RE)
SENDER_MAX = 300  # a client id ("host:pid:rand", host up to 253), server id or admin name
TOKEN_MAX = 64  # a daemon's connection token ("conn:17")
TEXT_MAX = 1024  # one human line: a deny detail, an admin reply, a reclaim reason
EVENT_TEXT_MAX = 240  # an event's text as kept by the engine and shown in status
CODE_TEXT_MAX = 4096  # one license code (printable form)
RLF_CHARS_MAX = 1_000_000  # one RLF text
FILE_BYTES_MAX = 4 * RLF_CHARS_MAX  # a user file the CLI or daemon reads (UTF-8: <= 4 B/char)
KEY_FILE_BYTES_MAX = 64 * 1024  # a key file (one key line plus comments)

# ---------------------------------------------------------------- status

STATUS_CLIENTS_MAX = 1_000  # rows carry a client identity (identity.py) since issue 10
STATUS_LICENSES_MAX = CODES_MAX
STATUS_CODES_MAX = CODES_MAX  # run-time codes listed in a status
STATUS_EVENTS_MAX = 64
STATUS_REPLY_BYTES_MAX = 4 * 1024 * 1024  # = framing.MAX_FRAME
# usage rows in one UsageReply: a row is at most ~2.2 KB on the wire (client id, reason,
# identity at their bounds, each character doubled by JSON), so a page is < 1/2 a frame
USAGE_PAGE_MAX = 1_000


# ---------------------------------------------------------------- codec metadata


@dataclass(frozen=True, slots=True)
class IntRange:
    """An integer field: ``lo <= value <= hi``."""

    lo: int
    hi: int

    def check(self, value: int) -> str | None:
        """None if `value` is in range, else why not."""
        if self.lo <= value <= self.hi:
            return None
        return f"integer {_short(value)} out of range {self.lo}..{self.hi}"


@dataclass(frozen=True, slots=True)
class FloatRange:
    """A float field: finite and ``lo <= value <= hi``."""

    lo: float
    hi: float

    def check(self, value: float) -> str | None:
        """None if `value` is in range, else why not."""
        if math.isfinite(value) and self.lo <= value <= self.hi:
            return None
        return f"number {value!r} out of range {self.lo:g}..{self.hi:g}"


@dataclass(frozen=True, slots=True)
class Text:
    """A string field of at most `max` characters; `ident` = printable ASCII only."""

    max: int
    ident: bool = False

    def check(self, value: str) -> str | None:
        """None if `value` fits, else why not."""
        if len(value) > self.max:
            return f"string longer than {self.max} characters"
        if self.ident and not is_ident(value):
            return "identifier holds a character outside printable ASCII"
        return None


def is_ident(value: str) -> bool:
    """True if every character is printable ASCII (space to ``~``)."""
    return value.isascii() and value.isprintable()


def in_counter_range(value: object) -> bool:
    """True for an int (not a bool) in ``0 .. COUNTER_MAX``."""
    return type(value) is int and 0 <= value <= COUNTER_MAX


def clip_text(value: str, limit: int = EVENT_TEXT_MAX) -> str:
    """`value` cut to `limit` characters (an ellipsis marks the cut)."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _short(value: int) -> str:
    text = str(value) if abs(value) < 10**30 else f"~1e{len(str(abs(value))) - 1}"
    return text


# ---------------------------------------------------------------- field types

Counter = Annotated[int, IntRange(0, COUNTER_MAX)]
Seats = Annotated[int, IntRange(0, HARD_LIMIT_MAX)]
Seconds = Annotated[float, FloatRange(0.0, SECONDS_MAX)]
Clock = Annotated[float, FloatRange(0.0, CLOCK_MAX)]
Name = Annotated[str, Text(NAME_MAX, ident=True)]
License = Annotated[str, Text(LICENSE_MAX, ident=True)]
Sender = Annotated[str, Text(SENDER_MAX, ident=True)]
Token = Annotated[str, Text(TOKEN_MAX, ident=True)]
Line = Annotated[str, Text(TEXT_MAX)]
CodeText = Annotated[str, Text(CODE_TEXT_MAX)]
RlfText = Annotated[str, Text(RLF_CHARS_MAX)]
