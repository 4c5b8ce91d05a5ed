"""A tiny in-memory pool for tests and examples: `LicenseServer`s joined by a perfect
(but cuttable) network on one shared clock. No randomness: messages are delivered in
the order they were sent. The simulator (`lm_core.engine.sim`) is the real test bench;
this is for scripted scenarios such as the patent's figures.

An engine step that raises, or that reports ``Event("bug")``, is a failure here as in the
simulator: `Violation("BUG", ...)` (the engine hides no bug; the daemon is the one place
that catches, logs and survives).
"""

from __future__ import annotations

import datetime
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lm_core.engine.claims import TEST_CLAIM_KEY
from lm_core.engine.codes import issue_code
from lm_core.engine.effects import (
    Effect,
    Event,
    LogUsage,
    Persisted,
    PersistKey,
    PersistState,
    Reply,
    Send,
)
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.messages import Message
from lm_core.engine.rlf import Rlf, ServerEntry, Timing, Vendor, new_rlf, sign_rlf, with_code
from lm_core.engine.server import LicenseServer
from lm_core.engine.sim.invariants import Violation
from lm_core.engine.status_types import ServerRow, ServerStatus


@dataclass
class _Disk:
    state: dict[str, Any] | None = None
    keys: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class Pool:
    """Servers by id; `now` is everyone's clock (tests move it with `run`)."""

    def __init__(self, rlf: Rlf, *, today: datetime.date, now: float = 0.0) -> None:
        self.rlf = rlf
        self.today = today
        self.now = now
        self.servers: dict[str, LicenseServer] = {}
        self.disks: dict[str, _Disk] = {sid: _Disk() for sid in rlf.server_ids}
        self.queue: deque[tuple[str, str, Message]] = deque()
        self.cut: set[tuple[str, str]] = set()  # (from, to) links that drop everything
        self.replies: dict[str, list[Message]] = {}
        self.events: list[tuple[str, Event]] = []
        self.usage: list[tuple[str, LogUsage]] = []
        self.sent: list[tuple[str, str, Message]] = []

    # ------------------------------------------------------------ life cycle

    def start(self, sid: str, rlf: Rlf | None = None, *, fresh: bool = False) -> LicenseServer:
        """Start (or restart) `sid` with what its disk holds (nothing if `fresh`); a
        server of a newer RLF (`rlf`) gets a disk of its own."""
        disk = self.disks.setdefault(sid, _Disk())
        persisted = None
        if not fresh and (disk.state is not None or disk.keys):
            persisted = Persisted(disk.state, list(disk.keys.values()))
        if fresh:
            self.disks[sid] = _Disk()
        server = LicenseServer(
            sid,
            rlf or self.rlf,
            now=self.now,
            today=self.today,
            persisted=persisted,
            claim_key=TEST_CLAIM_KEY,
        )
        self.servers[sid] = server
        self._apply(sid, self._step(sid, server, None, None))
        return server

    def crash(self, sid: str) -> None:
        self.servers.pop(sid, None)
        self.queue = deque(item for item in self.queue if item[1] != sid)

    def isolate(self, sid: str) -> None:
        for other in self.rlf.server_ids:
            if other != sid:
                self.cut.add((sid, other))
                self.cut.add((other, sid))

    def heal(self) -> None:
        self.cut.clear()

    # ------------------------------------------------------------ running

    def _step(
        self, sid: str, server: LicenseServer, sender: str | None, msg: Message | None
    ) -> list[Effect]:
        """One `handle` (or `tick` when ``msg`` is None); a raising engine is a BUG."""
        try:
            if msg is None:
                return server.tick(self.now)
            assert sender is not None
            return server.handle(self.now, sender, msg)
        except Exception as err:
            what = "tick" if msg is None else f"{type(msg).__name__} from {sender}"
            raise Violation("BUG", f"{sid} raised on {what}: {err!r}", self.now) from err

    def _apply(self, sid: str, effects: list[Effect]) -> None:
        disk = self.disks[sid]
        for eff in effects:
            if isinstance(eff, Send):
                self.sent.append((sid, eff.to, eff.msg))
                if (sid, eff.to) not in self.cut:
                    self.queue.append((sid, eff.to, eff.msg))
            elif isinstance(eff, Reply):
                self.replies.setdefault(eff.to, []).append(eff.msg)
            elif isinstance(eff, PersistState):
                disk.state = eff.state
            elif isinstance(eff, PersistKey):
                if eff.entry is None:
                    disk.keys.pop((eff.client_id, eff.license), None)
                else:
                    disk.keys[(eff.client_id, eff.license)] = eff.entry
            elif isinstance(eff, Event):
                self.events.append((sid, eff))
                if eff.kind == "bug":
                    raise Violation("BUG", f"{sid} reported a bug: {eff.text}", self.now)
            elif isinstance(eff, LogUsage):
                self.usage.append((sid, eff))

    def deliver(self, limit: int = 100_000) -> None:
        """Deliver queued messages (and what they cause) until the network is quiet."""
        for _ in range(limit):
            if not self.queue:
                return
            src, dst, msg = self.queue.popleft()
            server = self.servers.get(dst)
            if server is None or (src, dst) in self.cut:
                continue
            self._apply(dst, self._step(dst, server, src, msg))
        raise RuntimeError("the pool did not go quiet")

    def run(self, until: float, step: float = 0.05) -> None:
        """Advance the clock to `until`, ticking every server every `step`."""
        while self.now < until - 1e-9:
            self.now = min(until, self.now + step)
            for sid, server in list(self.servers.items()):
                self._apply(sid, self._step(sid, server, None, None))
                if server.next_deadline <= self.now:
                    raise RuntimeError(f"{sid}: next_deadline not after the tick (tick loop)")
            self.deliver()

    def ask(self, sid: str, msg: Message, token: str = "conn:1") -> list[Message]:
        """Hand a client/admin message to `sid`; return the replies it caused at once
        (after delivering the server traffic it set off)."""
        self.replies.pop(token, None)
        self._apply(sid, self._step(sid, self.servers[sid], token, msg))
        self.deliver()
        return self.replies.pop(token, [])

    # ------------------------------------------------------------ looking

    def leader(self) -> str | None:
        leaders = [sid for sid, s in self.servers.items() if s.role.value == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def status(self, sid: str) -> ServerStatus:
        return self.servers[sid].status(self.now)

    def row(self, sid: str, license: str, of: str | None = None) -> ServerRow | None:
        """Server `sid`'s table row for server `of` (default: itself)."""
        for lic in self.status(sid)["licenses"]:
            if lic["license"] == license:
                return lic["servers"].get(of or sid)
        raise KeyError(license)

    def license_view(self, sid: str, license: str) -> dict[str, Any]:
        for lic in self.status(sid)["licenses"]:
            if lic["license"] == license:
                return dict(lic)
        raise KeyError(license)


# ---------------------------------------------------------------- signed test pools

PATENT_DAY = datetime.date(2026, 11, 24)


@dataclass
class Kit:
    """Fresh demo keys and a signed RLF built with them (tests only)."""

    vendor_private: str
    vendor_public: str
    admin_private: str
    admin_public: str
    rlf: Rlf
    today: datetime.date = PATENT_DAY

    def code(
        self,
        *,
        seats: int,
        serial: str,
        kind: str = "base",
        product: str = "Application",
        version: str = "1.0",
        expires: datetime.date = datetime.date(2027, 12, 31),
        vendor: str = "acme",
        key: str | None = None,
    ) -> str:
        """A license code text signed by the kit's vendor key (or `key`)."""
        return issue_code(
            load_private(key or self.vendor_private),
            vendor=vendor,
            product=product,
            version=version,
            seats=seats,
            expires=expires,
            issued=min(self.today, expires),
            serial=serial,
            kind=kind,
        ).text()

    def sign(self, rlf: Rlf, key: str | None = None) -> Rlf:
        return sign_rlf(rlf, load_private(key or self.admin_private))

    def pool(self, now: float = 0.0) -> Pool:
        return Pool(self.rlf, today=self.today, now=now)


def make_kit(
    distribution: dict[str, int] | None = None,
    *,
    ids: tuple[str, ...] = ("A", "B", "C"),
    seats: int = 100,
    majority_rule: bool = True,
    borrowing_threshold: float = 0.8,
    timing: Timing | None = None,
    pool: str = "eng",
) -> Kit:
    """The patent's example by default: "Application 1.0", 100 seats, A:40 B:30 C:30."""
    vendor_private, vendor_public = generate_keypair()
    admin_private, admin_public = generate_keypair()
    kit = Kit(vendor_private, vendor_public, admin_private, admin_public, rlf=None)  # type: ignore[arg-type]
    rlf = new_rlf(
        pool,
        [ServerEntry(sid, "127.0.0.1", 27001 + n) for n, sid in enumerate(ids)],
        admin_key=admin_public,
        vendors=[Vendor("acme", vendor_public)],
        majority_rule=majority_rule,
        borrowing_threshold=borrowing_threshold,
        timing=timing,
    )
    dist = {"A": 40, "B": 30, "C": 30} if distribution is None else distribution
    rlf = with_code(rlf, kit.code(seats=seats, serial="S1"), dist or None)
    kit.rlf = kit.sign(rlf)
    return kit
