"""Log lines a peer cannot forge or flood.

* `escape` -- everything a peer controls (ids, pool names, JSON keys, exception texts)
  goes into a log line escaped: control characters (newline, carriage return, escape,
  ...) and other unprintable characters become ``\\n`` / ``\\xNN`` / ``\\uNNNN``, a
  backslash becomes ``\\\\``, and the text is cut at `MAX_FIELD` characters. A line
  therefore always ends where the logger ends it.
* `SafeFormatter` -- the daemon's log formatter: applies `escape` to every record's
  message (so a line added later cannot forget it), leaving our own tracebacks intact.
* `Limiter` -- repeated lines caused by peers are rate-limited per connection, per
  source address and overall (token buckets); the first line after a suppression says
  how many similar lines were dropped. The number of keys it remembers is bounded.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Hashable

MAX_FIELD = 300  # characters of one peer-controlled value in a line
MAX_LINE = 2000  # characters of one message

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if ch.isprintable():
        return ch
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else (f"\\U{code:08x}")
    )


def escape(value: object, limit: int = MAX_FIELD) -> str:
    """`value` as one safe line fragment (see the module doc)."""
    text = str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if not (text.isprintable() and "\\" not in text):
        text = "".join(_escape_char(ch) for ch in text)
    return text + ("..." if cut else "")


class SafeFormatter(logging.Formatter):
    """A formatter whose message part is always one escaped line (tracebacks, which are
    ours, keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message, MAX_LINE)
        return super().formatMessage(record)


class _Bucket:
    __slots__ = ("stamp", "suppressed", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.suppressed = 0


class Limiter:
    """Token buckets keyed by anything hashable: `burst` lines at once, refilled at
    `burst` per `window` seconds. At most `max_keys` buckets are kept (the least recently
    used goes first)."""

    def __init__(
        self,
        *,
        burst: int,
        window: float,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate = burst / window
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: collections.OrderedDict[Hashable, _Bucket] = collections.OrderedDict()

    def _bucket(self, key: Hashable, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
        return b

    def take(self, *keys: Hashable) -> int | None:
        """None if a line under `keys` must be dropped now (every key must have a token);
        else the number of lines dropped under the first key since its last line."""
        now = self.clock()
        buckets = [self._bucket(k, now) for k in keys]
        if any(b.tokens < 1.0 for b in buckets):
            buckets[0].suppressed += 1
            return None
        for b in buckets:
            b.tokens -= 1.0
        dropped, buckets[0].suppressed = buckets[0].suppressed, 0
        return dropped


class PeerLog:
    """Lines caused by peers: by default at most 3 per 10 s per connection, 20 per 10 s
    per source address and 200 per 10 s overall. `log(logger, level, conn, source, fmt,
    *args)` escapes every argument."""

    def __init__(
        self,
        *,
        per_conn: int = 3,
        per_source: int = 20,
        overall: int = 200,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_conn = Limiter(burst=per_conn, window=window, clock=clock)
        self.per_source = Limiter(burst=per_source, window=window, clock=clock)
        self.overall = Limiter(burst=overall, window=window, max_keys=16, clock=clock)

    def log(
        self,
        logger: logging.Logger,
        level: int,
        conn: Hashable,
        source: str,
        fmt: str,
        *args: object,
    ) -> bool:
        """Log one line unless a limit is reached; True if it was logged."""
        if not logger.isEnabledFor(level):
            return False
        a = self.per_conn.take(conn)
        if a is None:
            return False
        b = self.per_source.take(source)
        if b is None:
            return False
        c = self.overall.take("*")
        if c is None:
            return False
        text = fmt % tuple(escape(x) for x in args)
        dropped = a + b + c
        if dropped:
            text += f" ({dropped} similar lines suppressed)"
        logger.log(level, "%s", text)
        return True
