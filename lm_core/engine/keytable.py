"""The key table: which clients hold authorizations from this server.

One entry per (client id, license): seat count, the server's own expiry time (later
than the client's: see `leases`), the last heartbeat and the request id. A heartbeat
renews the entry; an entry whose expiry passes is reclaimed. ``request_id`` is the
newest request id the client sent for the entry (never lowered by a replayed or reordered
message): a RELEASE with an older id was sent before that request and is stale.

Entries loaded from the store after a restart are *stale* until their client heartbeats
back in (re-adoption, S4). Stale seats still count as in use (nobody else may get them
while their client may still believe it holds them), but re-adopting one needs room in
the live count only.

An entry whose expiry passes while its last ticket may still be claimed elsewhere
(``claim_hold``, see `leases`) is *held*: no client holds it any more, but its seats stay
counted (stale, re-adoptable by its own client) until ``claim_hold``, so that this server
never gives them to another client while a fail-over claim could move them away.

Expiry uses a heap of (expires, generation, key) pushed once per entry; a popped item
whose entry was renewed meanwhile is pushed again at the new time, so a renewal costs
O(1) and an expiry O(log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lm_core.engine.identity import ClientIdentity, identity_json


@dataclass(slots=True)
class KeyEntry:
    client_id: str
    license: str
    count: int
    request_id: int
    expires: float
    last_heartbeat: float
    live: bool = True
    gen: int = 0
    serial: int = 0  # this server's serial for the entry (0: unknown, loaded from old state)
    # the client skipped request ids here (it spoke to other servers in between, and may
    # have shown them a ticket of this entry): until then a claim of such a ticket can
    # still be honoured (the entry's claim hold when the skip was seen; see server
    # `_renew`)
    skip_hold: float = float("-inf")
    # when the client last came back to this entry from a fail-over walk
    walked: float = float("-inf")
    # until then a ticket of this entry may be claimed: its seats stay counted
    claim_hold: float = float("-inf")
    held: bool = False  # its client's lease is over; counted only for `claim_hold`
    # its seat moved with its client's fail-over claim: counted until `claim_hold`, never
    # renewed (the adopter keeps the seat for the client)
    revoked: bool = False
    identity: ClientIdentity | None = None  # who holds it, as the client stated
    since: float = 0.0  # when this server granted (or re-adopted) it, on its clock

    def saw_request(self, request_id: int) -> None:
        """The client's request `request_id` renews me: a gap in its ids means it spoke
        to other servers in between (see `skip_hold`)."""
        if request_id > self.request_id + 1:
            self.skip_hold = max(self.skip_hold, self.claim_hold)
        self.request_id = max(self.request_id, request_id)

    def as_json(self) -> dict[str, Any]:
        """The durable part (times are this process's clock and are not kept)."""
        out: dict[str, Any] = {
            "client_id": self.client_id,
            "license": self.license,
            "count": self.count,
            "request_id": self.request_id,
            "serial": self.serial,
        }
        if self.identity is not None:
            out["identity"] = identity_json(self.identity)
        return out


class KeyTable:
    """Authorizations with leases, counted per license."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], KeyEntry] = {}
        self._in_use: dict[str, int] = {}
        self._live: dict[str, int] = {}
        self._held: dict[str, int] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._gen = 0
        self._by_serial: dict[int, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[KeyEntry]:
        return iter(self._entries.values())

    def get(self, client_id: str, license: str) -> KeyEntry | None:
        return self._entries.get((client_id, license))

    def index_serial(self, entry: KeyEntry) -> None:
        """Index an entry whose serial was set after it was added."""
        self._by_serial[entry.serial] = (entry.client_id, entry.license)

    def by_serial(self, serial: int) -> KeyEntry | None:
        key = self._by_serial.get(serial)
        return None if key is None else self._entries.get(key)

    def in_use(self, license: str) -> int:
        """Seats counted as in use (live and stale)."""
        return self._in_use.get(license, 0)

    def live(self, license: str) -> int:
        """Seats held by clients seen since this process started."""
        return self._live.get(license, 0)

    def add(
        self,
        client_id: str,
        license: str,
        count: int,
        request_id: int,
        *,
        now: float,
        expires: float,
        live: bool = True,
        serial: int = 0,
        identity: ClientIdentity | None = None,
    ) -> KeyEntry:
        """Insert a new entry (the caller checked there is none)."""
        self._gen += 1
        entry = KeyEntry(
            client_id, license, count, request_id, expires, now, live, self._gen, serial,
            identity=identity, since=now,
        )  # fmt: skip
        self._entries[(client_id, license)] = entry
        if serial:
            self._by_serial[serial] = (client_id, license)
        self._in_use[license] = self._in_use.get(license, 0) + count
        if live:
            self._live[license] = self._live.get(license, 0) + count
        heapq.heappush(self._heap, (expires, entry.gen, client_id, license))
        return entry

    def renew(self, entry: KeyEntry, *, now: float, expires: float, request_id: int) -> None:
        """Extend an entry (re-adopting it if stale or held). Never shortens it."""
        if entry.held:
            entry.held = False
            self._held[entry.license] -= entry.count
        if not entry.live:
            entry.live = True
            self._live[entry.license] = self._live.get(entry.license, 0) + entry.count
        entry.expires = max(entry.expires, expires)
        entry.last_heartbeat = now
        entry.saw_request(request_id)  # the newest the client sent

    def resize(self, entry: KeyEntry, count: int) -> None:
        """Change an entry's seat count."""
        delta = count - entry.count
        entry.count = count
        self._in_use[entry.license] = self._in_use.get(entry.license, 0) + delta
        if entry.live:
            self._live[entry.license] = self._live.get(entry.license, 0) + delta
        if entry.held:
            self._held[entry.license] += delta

    def remove(self, client_id: str, license: str) -> KeyEntry | None:
        entry = self._entries.pop((client_id, license), None)
        if entry is not None:
            if entry.serial:
                self._by_serial.pop(entry.serial, None)
            self._in_use[license] -= entry.count
            if entry.live:
                self._live[license] -= entry.count
            if entry.held:
                self._held[license] -= entry.count
        return entry

    def expire(self, now: float) -> tuple[list[KeyEntry], list[KeyEntry]]:
        """Entries whose expiry is at or before `now`: (ended, gone). *ended*: no client
        holds them any more (removed, or *held* until their `claim_hold`); *gone*: removed
        from the table (ended now, or held until now)."""
        ended: list[KeyEntry] = []
        gone: list[KeyEntry] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, gen, client_id, license = heapq.heappop(heap)
            entry = self._entries.get((client_id, license))
            if entry is None or entry.gen != gen:
                continue
            if entry.expires > now:
                heapq.heappush(heap, (entry.expires, gen, client_id, license))
                continue
            if not entry.held:
                ended.append(entry)
                if entry.claim_hold > now:
                    self.hold(entry)
                    continue
            self.remove(client_id, license)
            gone.append(entry)
        return ended, gone

    def hold(self, entry: KeyEntry) -> None:
        """No client holds `entry` any more; keep its seats counted until its
        `claim_hold` (stale: only its own client may re-adopt it)."""
        if entry.held:
            return
        entry.held = True
        self._held[entry.license] = self._held.get(entry.license, 0) + entry.count
        if entry.live:
            entry.live = False
            self._live[entry.license] -= entry.count
        entry.expires = entry.claim_hold
        heapq.heappush(self._heap, (entry.expires, entry.gen, entry.client_id, entry.license))

    def held(self, license: str) -> int:
        """Seats of `license` counted only for a claim hold (no client holds them)."""
        return self._held.get(license, 0)

    @property
    def next_expiry(self) -> float | None:
        """The earliest time `expire` may have something to do (may be early, never late)."""
        return self._heap[0][0] if self._heap else None
