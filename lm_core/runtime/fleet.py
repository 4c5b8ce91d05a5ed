"""Many `LicenseClient`s in one event loop, watched from the clients' side.

The load and the witness for fail-over on a live pool, shared by the integration tests
and `bench/failover.py`. Headless; no asserts: it records, the caller judges.

Theory of operation
-------------------
`Fleet.seat(homes)` enters one lease per client on the real client library (TLS as the
caller's `trust` says), each client asking its home server first (the patent's clients
pick their server), a few at a time; it raises `FleetError` if a client ends up on
another server than its home (a pool that is not ready yet). `Fleet.queue(homes)` adds
clients that ask with ``wait=True`` in the background and are not awaited: on a full pool
they wait, and a pool that over-issues during a fault lets one of them in.

Every lease reports its events through the library's ``on_event`` callback
(``authorized`` / ``renewed`` / ``lost`` / ``denied`` / ``released``); the fleet stamps
each with `time.monotonic()` on arrival and keeps it. While entered (``async with
fleet:``) a sampler counts, every `sample_interval` seconds, the seats the clients
believe they hold (`Lease.holds`) and keeps the maximum: S1 counted from the clients.

After a fault of server `victim` at time `t0` (and its return at `back`, if paused),
`Fleet.outcome` says, for the seated clients: which were the victim's at `t0`; how long
after `t0` each got its next authorization from a server that could answer (another
server, or the victim after `back`) -- its *re-seat* time; which clients of other
servers were authorized by a server other than their own after `t0` (*moved*); which
reported ``lost`` after `t0` (*lapsed*); and the most seats held at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from lm_core.engine.rlf import Rlf
from lm_core.errors import LmError
from lm_core.runtime.client import Lease, LicenseClient
from lm_core.runtime.tlsconfig import TlsPaths

GRANTS = ("authorized", "renewed")  # the events that mean "holds a seat from event['server']"


class FleetError(LmError):
    """The fleet could not be seated as asked (the pool was not ready)."""


@dataclass
class Member:
    """One client of the fleet: its id, the server it asks first, its lease and the
    events the library reported, as ``(monotonic time, event)``."""

    client_id: str
    home: str
    lease: Lease
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def server_at(self, t: float) -> str | None:
        """The server of the last grant reported at or before `t`."""
        server = None
        for when, ev in self.events:
            if when > t:
                break
            if ev["event"] in GRANTS:
                server = ev["server"]
        return server

    def grants_after(self, t: float) -> list[tuple[float, str]]:
        """(time, server) of every grant reported after `t`."""
        return [(w, ev["server"]) for w, ev in self.events if w > t and ev["event"] in GRANTS]

    def lost_after(self, t: float) -> list[tuple[float, str]]:
        """(time, reason) of every ``lost`` reported after `t`."""
        return [
            (w, str(ev.get("reason"))) for w, ev in self.events if w > t and ev["event"] == "lost"
        ]


@dataclass(frozen=True)
class Outcome:
    """What the seated clients saw after a fault of `victim` at `t0` (see the module
    docstring). `reseat` maps each victim client to its re-seat delay in seconds (None:
    not re-seated); `moved` lists ``(client, from, to)``; `lapsed` lists ``(client, its
    server at t0)``."""

    victim: str
    clients: int
    reseat: dict[str, float | None]
    moved: list[tuple[str, str, str]]
    lapsed: list[tuple[str, str | None]]
    max_held: int

    @property
    def victims(self) -> int:
        return len(self.reseat)

    @property
    def reseated(self) -> list[float]:
        return sorted(d for d in self.reseat.values() if d is not None)

    @property
    def live_clients(self) -> int:
        """Seated clients of the servers that stayed up."""
        return self.clients - self.victims

    def summary(self, limit: int) -> str:
        """One line for a failure message or a log."""
        times = self.reseated
        med = f"{times[len(times) // 2]:.1f}" if times else "-"
        top = f"{times[-1]:.1f}" if times else "-"
        return (
            f"{self.victim}'s clients holding a seat again: {len(times)}/{self.victims} "
            f"(median {med} s, max {top} s); leases lapsed: {len(self.lapsed)} of {self.clients}; "
            f"clients of live servers moved: {len(self.moved)} of {self.live_clients}; "
            f"max held {self.max_held} (limit {limit})"
        )


async def serving(
    rlf: Rlf, trust: TlsPaths | None, sid: str, *, license: str, limit: float = 60.0
) -> None:
    """Wait until server `sid` alone grants a seat of `license` (e.g. its restart grace,
    S4, is over), then release it. `FleetError` after `limit` seconds."""
    entry = rlf.server(sid)
    client = LicenseClient(
        [(entry.id, entry.address)], trust, pool=rlf.pool, client_id=f"probe-{sid}"
    )
    try:
        async with asyncio.timeout(limit), client.acquire(license, wait=True):
            pass
    except TimeoutError:
        raise FleetError(f"server {sid} granted nothing within {limit:g} s") from None


class Fleet:
    """Clients of one pool in this event loop (see the module docstring). Use ``async
    with`` to run the sampler; leaving releases every lease."""

    def __init__(
        self,
        rlf: Rlf,
        trust: TlsPaths | None,
        *,
        license: str,
        prefix: str = "fleet",
        sample_interval: float = 0.02,
    ) -> None:
        self.rlf = rlf
        self.trust = trust
        self.license = license
        self.prefix = prefix
        self.sample_interval = sample_interval
        self.members: list[Member] = []  # seated by `seat`
        self.queued: list[Member] = []  # asking in the background (`queue`)
        self.max_held = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._sampler: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ clients

    def _member(self, home: str, n: int, tag: str) -> Member:
        cid = f"{self.prefix}-{tag}{home}-{n:03d}"
        client = LicenseClient(self.rlf, self.trust, client_id=cid, prefer=home)
        member: Member | None = None

        def on_event(event: dict[str, Any]) -> None:
            assert member is not None
            member.events.append((time.monotonic(), event))

        lease = client.acquire(self.license, wait=True, on_event=on_event)
        member = Member(cid, home, lease)
        return member

    async def seat(
        self, homes: Mapping[str, int], *, concurrency: int = 10, limit: float = 60.0
    ) -> None:
        """Seat ``homes[sid]`` clients homed on each server `sid`; `FleetError` if one
        lands elsewhere or is not seated within `limit` seconds."""
        gate = asyncio.Semaphore(concurrency)
        new = [
            self._member(sid, len([m for m in self.members if m.home == sid]) + i, "")
            for sid, n in homes.items()
            for i in range(n)
        ]
        self.members += new

        async def one(m: Member) -> None:
            async with gate:
                await m.lease.start()

        try:
            async with asyncio.timeout(limit):
                await asyncio.gather(*(one(m) for m in new))
        except TimeoutError:
            raise FleetError(
                f"{sum(1 for m in new if not m.lease.holds)} of {len(new)} clients not seated "
                f"within {limit:g} s"
            ) from None
        astray = [(m.client_id, m.lease.server) for m in new if m.lease.server != m.home]
        if astray:
            raise FleetError(f"clients seated away from their home server: {astray[:5]}")

    def queue(self, homes: Mapping[str, int]) -> None:
        """Start ``homes[sid]`` clients homed on `sid` that wait for a seat (not awaited)."""
        for sid, n in homes.items():
            for i in range(n):
                m = self._member(sid, i, "q")
                self.queued.append(m)
                self._tasks.append(asyncio.create_task(self._wait_seat(m)))

    @staticmethod
    async def _wait_seat(m: Member) -> None:
        with contextlib.suppress(LmError):  # a final refusal: the lease's events say so
            await m.lease.start()

    # ------------------------------------------------------------------ counting

    def held(self) -> int:
        """Seats the clients believe they hold now (seated and queued)."""
        return sum(m.lease.count for m in (*self.members, *self.queued) if m.lease.holds)

    def reset_max(self) -> None:
        self.max_held = self.held()

    async def _sample(self) -> None:
        while True:
            self.max_held = max(self.max_held, self.held())
            await asyncio.sleep(self.sample_interval)

    def holding(self) -> dict[str, str | None]:
        """Each seated client's server if it holds now, else None."""
        return {m.client_id: (m.lease.server if m.lease.holds else None) for m in self.members}

    def on(self, sid: str) -> list[Member]:
        """The seated clients holding from `sid` now."""
        return [m for m in self.members if m.lease.holds and m.lease.server == sid]

    def granted_since(self, t: float, n: int = 1) -> bool:
        """Every seated client got at least `n` grants after `t` and holds now."""
        return all(m.lease.holds and len(m.grants_after(t)) >= n for m in self.members)

    async def until(self, cond: Callable[[], bool], limit: float, poll: float = 0.05) -> bool:
        """Wait until `cond()` holds (True) or `limit` seconds pass (False)."""
        deadline = time.monotonic() + limit
        while not cond():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(poll)
        return True

    # ------------------------------------------------------------------ the verdict

    def victims(self, victim: str, t0: float) -> list[Member]:
        """The seated clients whose server at `t0` was `victim`."""
        return [m for m in self.members if m.server_at(t0) == victim]

    def reseated(self, victim: str, t0: float, back: float = math.inf) -> bool:
        """Every client of `victim` at `t0` was granted again after it (see `outcome`)
        and holds now."""
        return all(
            m.lease.holds and self._reseat_delay(m, victim, t0, back) is not None
            for m in self.victims(victim, t0)
        )

    @staticmethod
    def _reseat_delay(m: Member, victim: str, t0: float, back: float) -> float | None:
        for when, server in m.grants_after(t0):
            if server != victim or when > back:
                return when - t0
        return None

    def outcome(self, victim: str, t0: float, back: float = math.inf) -> Outcome:
        """The verdict on the seated clients after a fault of `victim` at `t0` (it could
        answer again from `back` on)."""
        reseat: dict[str, float | None] = {}
        moved: list[tuple[str, str, str]] = []
        lapsed: list[tuple[str, str | None]] = []
        for m in self.members:
            before = m.server_at(t0)
            if before == victim:
                reseat[m.client_id] = self._reseat_delay(m, victim, t0, back)
            elif before is not None:
                away = next((s for _, s in m.grants_after(t0) if s != before), None)
                if away is not None:
                    moved.append((m.client_id, before, away))
            if m.lost_after(t0):
                lapsed.append((m.client_id, before))
        return Outcome(victim, len(self.members), reseat, moved, lapsed, self.max_held)

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Fleet:
        self._sampler = asyncio.create_task(self._sample(), name="fleet sampler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the sampler and the queued clients; release every lease (briefly)."""
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
            self._sampler = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        leases = [m.lease for m in (*self.members, *self.queued)]
        await asyncio.gather(*(lease.stop() for lease in leases), return_exceptions=True)
