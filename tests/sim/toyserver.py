"""A deliberately tiny engine for testing the simulator on its own (not the product).

Server "A" is the only one that grants (from the whole hard limit); the others deny
with ``no_seats`` and report A as leader. A persists every key before it replies and
observes a restart grace of one client lease, so it keeps S1; the ``careless``
variant skips both, which the S1 checker must catch. The ``raising`` and
``bug_reporting`` variants break B1's rule that the engine hides no bug.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from lm_core.engine.effects import Event, Persisted, PersistKey, Reply
from lm_core.engine.messages import (
    Authorize,
    ClientHeartbeat,
    Deny,
    Message,
    Release,
    Released,
    Request,
    ServerAddress,
)
from lm_core.engine.rlf import Rlf


class ToyServer:
    careless = False

    def __init__(
        self,
        server_id: str,
        rlf: Rlf,
        *,
        now: float,
        today: date,
        persisted: Persisted | None = None,
    ) -> None:
        self.id = server_id
        self.rlf = rlf
        self.term = 1
        self.role = "leader" if server_id == "A" else "follower"
        self.limits = {k: v.hard_limit for k, v in rlf.licenses(today).items()}
        t = rlf.timing
        self.lease = t.client_lease
        self.keep = t.client_lease * (1 + 4 * t.drift) + 1.0  # server counts longer
        self.keys: dict[tuple[str, str], float] = {}
        self.grace_until = now + (0.0 if persisted is None or self.careless else self.keep)
        if persisted is not None and not self.careless:
            for e in persisted.keys:
                self.keys[(e["client"], e["license"])] = now + self.keep
        self.servers = tuple(ServerAddress(id=s.id, address=s.address) for s in rlf.servers)

    @property
    def next_deadline(self) -> float:
        return min(self.keys.values(), default=float("inf"))

    def tick(self, now: float) -> list[Any]:
        for k, exp in list(self.keys.items()):
            if exp <= now:
                del self.keys[k]
        return []

    def handle(self, now: float, sender: str, msg: Message) -> list[Any]:
        self.tick(now)
        if isinstance(msg, Release):
            self.keys.pop((msg.sender, msg.license), None)
            return [
                PersistKey(msg.sender, msg.license, None),
                Reply(
                    sender,
                    Released(
                        pool=msg.pool,
                        sender=self.id,
                        request_id=msg.request_id,
                        license=msg.license,
                    ),
                ),
            ]
        if not isinstance(msg, Request | ClientHeartbeat):
            return []
        key = (msg.sender, msg.license)

        def deny(reason: str) -> list[Any]:
            return [
                Reply(
                    sender,
                    Deny(
                        pool=msg.pool,
                        sender=self.id,
                        request_id=msg.request_id,
                        license=msg.license,
                        reason=reason,
                    ),
                )
            ]

        if self.role != "leader":
            return deny("no_seats")
        if now < self.grace_until and key not in self.keys:
            return deny("restart_grace")
        if key not in self.keys:
            used = sum(1 for k in self.keys if k[1] == msg.license)
            if used + msg.count > self.limits.get(msg.license, 0):
                return deny("no_seats")
        self.keys[key] = now + self.keep
        out: list[Any] = []
        if not self.careless:
            out.append(
                PersistKey(msg.sender, msg.license, {"client": msg.sender, "license": msg.license})
            )
        out.append(
            Reply(
                sender,
                Authorize(
                    pool=msg.pool,
                    sender=self.id,
                    request_id=msg.request_id,
                    license=msg.license,
                    count=msg.count,
                    lease=self.lease,
                    heartbeat_interval=self.rlf.timing.client_heartbeat,
                    servers=self.servers,
                ),
            )
        )
        return out

    def status(self, now: float) -> dict[str, Any]:
        lic = []
        for name, limit in self.limits.items():
            used = sum(1 for k in self.keys if k[1] == name)
            rows: dict[str, Any] = {s.id: None for s in self.rlf.servers}
            if self.role == "leader":
                rows = {
                    s.id: {"distribution": 0, "in_use": 0, "available": 0} for s in self.rlf.servers
                }
                rows["A"] = {"distribution": limit, "in_use": used, "available": limit - used}
            lic.append(
                {
                    "license": name,
                    "hard_limit": limit,
                    "free_pool": 0,
                    "pool_available": limit - used,
                    "servers": rows,
                }
            )
        return {
            "id": self.id,
            "role": self.role,
            "term": self.term,
            "leader": "A",
            "rlf_seq": self.rlf.sequence,
            "config_version": 0,
            "licenses": lic,
        }


class CarelessToyServer(ToyServer):
    careless = True


def toy_factory(sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None) -> ToyServer:
    return ToyServer(sid, rlf, now=now, today=today, persisted=p)


def careless_factory(sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None) -> ToyServer:
    return CarelessToyServer(sid, rlf, now=now, today=today, persisted=p)


class RaisingToyServer(ToyServer):
    """Raises on the third client request it handles: the simulator must fail (BUG)."""

    requests = 0

    def handle(self, now: float, sender: str, msg: Message) -> list[Any]:
        if isinstance(msg, Request):
            self.requests += 1
            if self.requests == 3:
                raise RuntimeError("toy engine bug")
        return super().handle(now, sender, msg)


class BugReportingToyServer(ToyServer):
    """Reports ``Event("bug")`` on a release instead of raising (today's engine turns
    every exception into such an event): the simulator must fail on that too."""

    def handle(self, now: float, sender: str, msg: Message) -> list[Any]:
        out = super().handle(now, sender, msg)
        if isinstance(msg, Release):
            out.append(Event("bug", f"Release from {sender}: KeyError('toy')", {}))
        return out


def raising_factory(sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None) -> ToyServer:
    return RaisingToyServer(sid, rlf, now=now, today=today, persisted=p)


def bug_reporting_factory(
    sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None
) -> ToyServer:
    return BugReportingToyServer(sid, rlf, now=now, today=today, persisted=p)
