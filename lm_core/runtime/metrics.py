"""`lm-daemon --metrics ADDR:PORT`: the server's status in the Prometheus text format.

Theory of operation
-------------------
`prometheus_client` serves ``/metrics`` from a thread of its own. Its registry holds one
custom collector (`PoolCollector`) and nothing else; on every scrape the collector asks
the daemon's event loop for a `Snapshot` -- the engine's status plus the grant and
denial counters -- and waits for it (at most `SNAPSHOT_TIMEOUT` s). The engine is
touched only on the loop, never from the HTTP thread, and nothing is computed between
scrapes. A scrape while the loop is stuck gets ``lm_up 0`` and nothing else.

One scrape of any server gives that server's own view: its role, term, majority, RLF
sequence, peers (up, heartbeat age, fenced), its own row of each license, and the
grants and denials (by reason) it answered since it started. The leader's scrape adds the
pool-wide table (``lm_pool_*``): every server's row and the pool's in use / available /
free per license (a follower's table covers only itself: "don't care").

Every metric carries ``pool`` and ``server`` (the server scraped) labels, so one
Prometheus job scraping every server of a redundant pool keeps their views apart.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from lm_core.engine.status_types import ServerStatus
from lm_core.errors import LmError

log = logging.getLogger("lm.metrics")

SNAPSHOT_TIMEOUT = 2.0
ROLES = ("leader", "follower", "candidate", "disassociated", "starting")


@dataclass(slots=True)
class UsageCounters:
    """Grants and denials since the daemon started, per license (and reason). Fed from
    the engine's `LogUsage` effects on the event loop."""

    grants: collections.Counter[str] = field(default_factory=collections.Counter)
    denials: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def note(self, kind: str, license: str, count: int, reason: str) -> None:
        if kind == "grant":
            self.grants[license] += 1
        elif kind == "deny":
            self.denials[(license, reason)] += 1

    def copy(self) -> UsageCounters:
        return UsageCounters(collections.Counter(self.grants), collections.Counter(self.denials))


@dataclass(frozen=True, slots=True)
class Snapshot:
    status: ServerStatus
    counters: UsageCounters


class PoolCollector(Collector):
    """Reads a fresh `Snapshot` (through `take`) on each scrape and yields the families."""

    def __init__(self, take: Callable[[], Snapshot | None]) -> None:
        self._take = take

    def collect(self) -> Iterator[Any]:
        snap = self._take()
        up = GaugeMetricFamily("lm_up", "1 if the daemon answered this scrape", labels=[])
        up.add_metric([], 1.0 if snap is not None else 0.0)
        yield up
        if snap is not None:
            yield from families(snap)


def families(snap: Snapshot) -> Iterator[Any]:
    """The metric families of one snapshot (pure: tests call it directly too)."""
    st = snap.status
    base = [st["pool"], st["id"]]
    lb = ["pool", "server"]

    def gauge(name: str, doc: str, value: float | None, extra: list[str] | None = None,
              values: list[str] | None = None) -> GaugeMetricFamily:  # fmt: skip
        g = GaugeMetricFamily(name, doc, labels=lb + (extra or []))
        if value is not None:
            g.add_metric(base + (values or []), float(value))
        return g

    role = StateSetMetricFamily("lm_role", "this server's role", labels=lb)
    role.add_metric(base, {r: st["role"] == r for r in ROLES})
    yield role
    yield gauge("lm_term", "election term", st["term"])
    yield gauge("lm_rlf_sequence", "sequence number of the RLF this server runs", st["rlf_seq"])
    yield gauge("lm_config_version", "distribution config version", st["config_version"])
    yield gauge("lm_serving", "1 if this server issues authorizations now", int(st["serving"]))
    maj = st["majority"]
    yield gauge("lm_majority_up", "servers in contact (as this server knows)", maj["up"])
    yield gauge("lm_majority_size", "servers in the RLF", maj["size"])
    yield gauge("lm_majority_ok", "1 if majority rule lets this server serve", int(maj["ok"]))

    p_up = GaugeMetricFamily("lm_peer_up", "1 if the peer is in contact", labels=[*lb, "peer"])
    p_age = GaugeMetricFamily(
        "lm_peer_heartbeat_age_seconds",
        "seconds since the last heartbeat/ACK from the peer (absent: none seen)",
        labels=[*lb, "peer"],
    )
    p_fenced = GaugeMetricFamily(
        "lm_peer_fenced", "1 if the leader fenced the peer (its seats may move)",
        labels=[*lb, "peer"],
    )  # fmt: skip
    fenced = 0
    for peer, ps in sorted(st["peers"].items()):
        p_up.add_metric([*base, peer], float(ps["up"]))
        if ps["last_heartbeat_age"] is not None:
            p_age.add_metric([*base, peer], float(ps["last_heartbeat_age"]))
        if "fenced" in ps:
            p_fenced.add_metric([*base, peer], float(bool(ps.get("fenced"))))
            fenced += bool(ps.get("fenced"))
    yield p_up
    yield p_age
    yield p_fenced
    yield gauge(
        "lm_fenced_servers", "servers the leader has fenced (leader only)",
        fenced if st["role"] == "leader" else None,
    )  # fmt: skip

    ll = [*lb, "license"]
    hard = GaugeMetricFamily("lm_license_hard_limit", "seats the license codes allow", labels=ll)
    dist = GaugeMetricFamily(
        "lm_license_distribution", "this server's current distribution", labels=ll
    )
    in_use = GaugeMetricFamily("lm_license_in_use", "seats in use on this server", labels=ll)
    avail = GaugeMetricFamily(
        "lm_license_available", "distribution minus in use on this server", labels=ll
    )
    rl = [*ll, "row"]
    p_in = GaugeMetricFamily("lm_pool_license_in_use", "pool-wide seats in use (leader)", labels=ll)
    p_av = GaugeMetricFamily(
        "lm_pool_license_available", "pool-wide seats available (leader)", labels=ll
    )
    p_free = GaugeMetricFamily("lm_pool_license_free", "seats in the free pool (leader)", labels=ll)
    r_dist = GaugeMetricFamily(
        "lm_pool_row_distribution", "each server's distribution (leader's table)", labels=rl
    )
    r_in = GaugeMetricFamily(
        "lm_pool_row_in_use", "each server's in use (leader's table)", labels=rl
    )
    r_av = GaugeMetricFamily(
        "lm_pool_row_available", "each server's available (leader's table)", labels=rl
    )
    for lic in st["licenses"]:
        name = lic["license"]
        v = [*base, name]
        hard.add_metric(v, float(lic["hard_limit"]))
        own = lic["servers"].get(st["id"])
        if own is not None:
            dist.add_metric(v, float(own["distribution"]))
            in_use.add_metric(v, float(own["in_use"]))
            avail.add_metric(v, float(own["available"]))
        if st["role"] != "leader":
            continue
        if lic.get("in_use") is not None:
            p_in.add_metric(v, float(lic["in_use"] or 0))
        if lic["pool_available"] is not None:
            p_av.add_metric(v, float(lic["pool_available"]))
        if lic["free_pool"] is not None:
            p_free.add_metric(v, float(lic["free_pool"]))
        for sid, row in sorted(lic["servers"].items()):
            if row is None:
                continue
            r_dist.add_metric([*v, sid], float(row["distribution"]))
            r_in.add_metric([*v, sid], float(row["in_use"]))
            r_av.add_metric([*v, sid], float(row["available"]))
    yield from (hard, dist, in_use, avail, p_in, p_av, p_free, r_dist, r_in, r_av)

    grants = CounterMetricFamily(
        "lm_grants", "authorizations granted by this server since it started", labels=ll
    )
    for name, n in sorted(snap.counters.grants.items()):
        grants.add_metric([*base, name], float(n))
    yield grants
    denials = CounterMetricFamily(
        "lm_denials", "requests this server denied since it started, by reason",
        labels=[*ll, "reason"],
    )  # fmt: skip
    for (name, reason), n in sorted(snap.counters.denials.items()):
        denials.add_metric([*base, name, reason], float(n))
    yield denials


class MetricsBindError(LmError):
    """The metrics address cannot be bound (in use, not local): the daemon exits 1."""


class MetricsServer:
    """The ``/metrics`` HTTP endpoint of one daemon. `start` from the event loop;
    `take` is called from the HTTP thread and hops onto the loop for the snapshot."""

    def __init__(self, host: str, port: int, snapshot: Callable[[], Snapshot]) -> None:
        self.host = host
        self.port = port
        self._snapshot = snapshot
        self._loop: asyncio.AbstractEventLoop | None = None
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    def _take(self) -> Snapshot | None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return None

        async def snap() -> Snapshot:
            return self._snapshot()

        try:
            return asyncio.run_coroutine_threadsafe(snap(), loop).result(SNAPSHOT_TIMEOUT)
        except Exception as exc:  # a stuck or stopping loop: lm_up 0
            log.warning("metrics snapshot failed: %s", exc or type(exc).__name__)
            return None

    def start(self) -> None:
        """Bind and serve (raises `MetricsBindError` if the address cannot be bound)."""
        self._loop = asyncio.get_running_loop()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PoolCollector(self._take))
        try:
            self._httpd, self._thread = start_http_server(self.port, self.host, registry)
        except OSError as exc:
            raise MetricsBindError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        self._loop = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
