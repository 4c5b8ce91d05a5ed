"""The leases the agent holds for the programs of its host.

Theory of operation
-------------------
`Holdings.take` enters one `Lease` of the client library per call, each under a client id
of its own (``host:agent:PID:rand``, so the pool's key table and `lm key release` name
the program, and two leases of one license never share a key-table row). The library
does everything else -- heartbeats at the interval the pool grants, fail-over in
priority order, the send-time lease -- so the agent holds a seat exactly as a Python
program would.

`wait` (seconds) > 0 asks with the library's ``wait=True`` and gives up after that long,
answering with the last refusal seen; 0 asks each server once.

A caller that passes its `pid` has the lease released when that process ends: the
reaper task looks every `pid_check` seconds (`pids.ProcessRef`: pid and start time, so
a reused pid does not keep a seat). `release` and `close` release through the library
(Release to the holding server, waiting briefly for its Released).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lm_core.agent.errors import AgentError, AgentReason
from lm_core.agent.pids import ProcessRef
from lm_core.engine.client import ClientState
from lm_core.engine.vocab import DenyReason
from lm_core.runtime.client import Lease, LicenseClient, LicenseDenied

log = logging.getLogger("lm.agent")

IDLE = ClientState.IDLE  # a machine that stopped trying (a final refusal)

WAIT_MAX = 3600.0  # seconds a take may wait for a seat

ClientFactory = Callable[[str], LicenseClient]  # client id -> a client of the pool


def new_client_id(pid: int | None) -> str:
    return f"{socket.gethostname()}:agent:{pid if pid else os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Holding:
    """One lease the agent holds: what was asked, for whom, and the library's lease."""

    id: str
    license: str
    count: int
    client_id: str
    process: ProcessRef | None
    lease: Lease
    taken_at: float = field(default_factory=time.time)  # wall clock, for display
    lost: str | None = None  # why the seat was lost (cleared by the next grant)
    last_denial: dict[str, Any] | None = None

    def event(self, ev: dict[str, Any]) -> None:
        """The library's ``on_event``."""
        kind = ev.get("event")
        if kind in ("authorized", "renewed"):
            self.lost = None
        elif kind == "lost":
            self.lost = str(ev.get("reason"))
        elif kind == "denied":
            self.last_denial = ev
            if ev.get("final") and self.lost is None and self.lease.machine.state is IDLE:
                self.lost = str(ev.get("reason"))

    def to_json(self) -> dict[str, Any]:
        info = self.lease.info()
        return {
            "id": self.id,
            "license": self.license,
            "count": self.count,
            "client_id": self.client_id,
            "pid": self.process.pid if self.process else None,
            "server": info.server,
            "holds": info.holds,
            "state": info.state,
            "expires_in": None if info.expires_in is None else round(info.expires_in, 3),
            "taken_at": round(self.taken_at, 3),
            "lost": self.lost,
        }


class Holdings:
    """The agent's leases by id (see the module doc)."""

    def __init__(self, client_for: ClientFactory, *, pid_check: float = 1.0) -> None:
        self.client_for = client_for
        self.pid_check = pid_check
        self._by_id: dict[str, Holding] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False

    # -- queries

    def all(self) -> list[Holding]:
        return list(self._by_id.values())

    def get(self, lease_id: str) -> Holding:
        h = self._by_id.get(lease_id)
        if h is None:
            raise AgentError(AgentReason.NO_SUCH_LEASE, f"no lease {lease_id!r} held here")
        return h

    # -- doors

    async def take(
        self, license: str, count: int = 1, *, wait: float = 0.0, pid: int | None = None
    ) -> Holding:
        """Hold `count` seats of `license` (see the module doc); raises `AgentError`."""
        if self._closing:
            raise AgentError(AgentReason.SHUTTING_DOWN, "the agent is stopping")
        process = None
        if pid is not None:
            process = ProcessRef.of(pid)
            if process is None:
                raise AgentError(
                    AgentReason.NO_SUCH_PROCESS, f"no running process {pid}", field="pid"
                )
        client_id = new_client_id(pid)
        client = self.client_for(client_id)
        holding: Holding | None = None

        def on_event(ev: dict[str, Any]) -> None:
            if holding is not None:
                holding.event(ev)
            elif ev.get("event") == "denied":
                denials.append(ev)

        denials: list[dict[str, Any]] = []
        lease = client.acquire(license, count, wait=wait > 0, on_event=on_event)
        try:
            async with asyncio.timeout(wait if wait > 0 else None):
                await lease.start()
        except LicenseDenied as exc:
            raise AgentError(exc.reason, str(exc), server=exc.server) from None
        except TimeoutError:
            last = denials[-1] if denials else {}
            reason = str(last.get("reason") or DenyReason.NO_SEATS)
            raise AgentError(
                reason,
                f"{license}: no seat within {wait:g} s (last refusal: {reason}"
                + (f" from server {last['server']}" if last.get("server") else "")
                + ")",
                server=last.get("server"),
            ) from None
        holding = Holding(uuid.uuid4().hex[:12], license, count, client_id, process, lease)
        if process is not None and not process.alive():
            await lease.stop()
            raise AgentError(
                AgentReason.NO_SUCH_PROCESS, f"process {pid} exited while waiting", field="pid"
            )
        if self._closing:
            await lease.stop()
            raise AgentError(AgentReason.SHUTTING_DOWN, "the agent is stopping")
        self._by_id[holding.id] = holding
        log.info(
            "lm agent: holding %d x %s for pid %s as %s (lease %s)",
            count, license, pid, client_id, holding.id,
        )  # fmt: skip
        return holding

    async def release(self, lease_id: str) -> Holding:
        """Release one lease (Release to its server); raises `AgentError` if unknown."""
        h = self.get(lease_id)
        del self._by_id[lease_id]
        await h.lease.stop()
        log.info("lm agent: released %s (%s)", lease_id, h.client_id)
        return h

    # -- the reaper

    def start(self) -> None:
        """Start the task that releases the leases of exited processes."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_loop(), name="lm-agent reaper")

    async def reap(self) -> list[Holding]:
        """Release every lease whose process has exited; returns them."""
        gone = [h for h in self._by_id.values() if h.process and not h.process.alive()]
        for h in gone:
            if self._by_id.pop(h.id, None) is not None:
                log.info(
                    "lm agent: process %d exited: releasing %s (%s)",
                    h.process.pid if h.process else 0, h.id, h.client_id,
                )  # fmt: skip
                await h.lease.stop()
        return gone

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.pid_check)
            try:
                await self.reap()
            except Exception:  # a failed release must not stop the reaper
                log.exception("lm agent: reaping failed")

    async def close(self) -> None:
        """Stop the reaper and release every lease."""
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        held, self._by_id = list(self._by_id.values()), {}
        if held:
            await asyncio.gather(*(h.lease.stop() for h in held), return_exceptions=True)
