"""When to give up on a TCP connection that says nothing is wrong.

An established connection into a cut network stays "connected" for minutes: writes
queue in the kernel and are retransmitted with exponential backoff, asyncio reports
nothing until a write fails or a read sees EOF, and at the heal the whole backlog arrives
at once (see /work/shared/PITFALLS.md "TCP liveness"). Two defences, for the daemon's
peer links and the client library's connections:

* `Deadline` -- the application's own: once something was sent, the peer must be heard
  from (any frame, on any connection) within `limit` seconds, or the connection is
  abandoned. Pure (the caller passes the clock), so it is tested without sockets.
* `tcp_liveness` -- the kernel's: ``TCP_USER_TIMEOUT`` (sent data unacknowledged that
  long closes the connection; this also catches a link whose own direction stalled while
  the peer still talks to us on its own connection) and keepalive probes on an idle one.

`kill` closes a connection with a reset and *discards* what is still queued for it --
asyncio's buffer and the kernel's send queue (``SO_LINGER`` 0) -- so nothing stale is
delivered after the connection was given up.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from lm_core.runtime.connection import Connection

#: Added to two heartbeat intervals for the peer-link deadline: room for a busy peer.
PEER_MARGIN = 0.5


def peer_deadline(heartbeat_interval: float) -> float:
    """How long a peer link may go unanswered: the leader heartbeats every interval and
    each follower ACKs each, so two intervals plus a margin (1.5 s at the defaults)."""
    return 2 * heartbeat_interval + max(PEER_MARGIN, heartbeat_interval)


class Deadline:
    """ "Sent, and not heard from since" for one peer.

    `sent(now)` marks that something went out (the first unanswered send starts the
    clock); `heard(now)` that the peer said anything, which stops it. `expired(now)`
    once the clock has run `limit` seconds. A pair that has nothing to say to each other
    (two followers) never expires: silence is only suspicious after we spoke."""

    def __init__(self, limit: float) -> None:
        if not limit > 0:
            raise ValueError(f"deadline must be > 0, got {limit!r}")
        self.limit = limit
        self.waiting_since: float | None = None
        self.last_heard: float | None = None

    def sent(self, now: float) -> None:
        if self.waiting_since is None:
            self.waiting_since = now

    def heard(self, now: float) -> None:
        self.waiting_since = None
        self.last_heard = now

    def reset(self) -> None:
        """A new connection: nothing outstanding on it yet."""
        self.waiting_since = None

    def expired(self, now: float) -> bool:
        return self.waiting_since is not None and now - self.waiting_since >= self.limit

    def due(self) -> float | None:
        """When it will expire if nothing is heard (None: not waiting)."""
        return None if self.waiting_since is None else self.waiting_since + self.limit


def tcp_liveness(conn: Connection, *, user_timeout: float, keepalive: bool = False) -> None:
    """Set ``TCP_USER_TIMEOUT`` (and, if `keepalive`, probes after 1 s idle, every 1 s,
    3 of them) on `conn`'s socket, where the platform has them. Never raises."""
    sock = conn.writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(user_timeout * 1000))
        )
    if keepalive:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def kill(conn: Connection) -> None:
    """Close `conn` now with a reset, discarding everything not yet delivered."""
    try:
        sock = conn.writer.get_extra_info("socket")
    except AttributeError:  # an SSL transport already closed under us
        sock = None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        conn.writer.transport.abort()
    conn.abort()
