"""A server's status (`ServerStatus`, the schema in `status_types`), built from its state.

Read-only: building a status changes nothing in the server. The server passes what only
it can work out (who is in contact, why it does not serve, its grace holds and its own
allowance); everything else is read from its tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lm_core.engine.identity import identity_json
from lm_core.engine.limits import (
    STATUS_CLIENTS_MAX,
    STATUS_CODES_MAX,
    STATUS_EVENTS_MAX,
    STATUS_LICENSES_MAX,
)
from lm_core.engine.status_types import (
    ClientStatus,
    LicenseStatus,
    PeerStatus,
    ServerRow,
    ServerStatus,
)

if TYPE_CHECKING:
    from lm_core.engine.server import LicenseServer


def server_status(
    srv: LicenseServer,
    now: float,
    *,
    up: set[str],
    why: tuple[str, str] | None,
    grace_held: Callable[[str, int], int],
    limit: Callable[[str], int],
    events: list[tuple[float, str, str]],
) -> ServerStatus:
    """`srv`'s view, JSON-able (schema: docs/CONTRACTS.md "Per-server status").

    `up`: the servers in contact (leader; empty otherwise); `why`: (reason, detail) when
    it does not serve. Bounded by construction (`limits`): at most `STATUS_LICENSES_MAX`
    licenses, `STATUS_CLIENTS_MAX` key-table rows and `STATUS_EVENTS_MAX` events, every
    string in them bounded; `licenses_total` / `clients_total` say how many there are."""
    ld = srv.leader
    leader = ld is not None
    peers: dict[str, PeerStatus] = {}
    for p in srv.peers:
        if ld is not None:
            pr = ld.progress.get(p)
            last = pr.last_ack_recv if pr is not None and pr.acked else None
            peers[p] = {
                "up": p in up,
                "last_heartbeat_age": None if last is None else round(now - last, 3),
                "fenced": p in ld.ledger.fenced,
            }
        else:
            age = round(now - srv.last_contact, 3) if p == srv.leader_id else None
            peers[p] = {"up": p in srv.leader_up, "last_heartbeat_age": age}
    licenses: list[LicenseStatus] = []
    for n, (lic, state) in enumerate(srv.table.licenses.items()):
        if n >= STATUS_LICENSES_MAX:
            break
        servers: dict[str, ServerRow | None] = {}
        total_in_use = total_held = 0
        for sid in srv.servers:
            row = state.rows.get(sid, 0)
            held_back = 0  # a down server's seats that cannot be handed out yet
            down = fenced = False
            if sid == srv.id:
                counted = srv.keys.in_use(lic)
                held = srv.keys.held(lic)  # no client holds them: kept for claims
                in_use = counted - held
                grace = held + grace_held(lic, counted)
            elif ld is not None:
                a = ld.ledger.get(sid, lic)
                fenced = sid in ld.ledger.fenced
                down = sid not in up
                if down:
                    in_use = grace = 0
                    if not fenced:
                        held_back = a.hold(state.hard_limit) if a.known else a.sent
                else:
                    grace = a.grace
                    in_use = a.in_use - a.grace
            else:
                servers[sid] = None
                continue
            total_in_use += in_use
            total_held += grace + held_back
            servers[sid] = {
                "distribution": row,
                "in_use": in_use,
                "available": max(0, row - in_use),
                "allowed": limit(lic)
                if sid == srv.id
                else (ld.ledger.get(sid, lic).sent if ld is not None else None),
                "grace_held": grace,
                "down": down,
                "fenced": fenced,
                "held_back": held_back,
            }
        pool_available = max(0, state.hard_limit - total_in_use - total_held)
        licenses.append(
            {
                "license": lic,
                "hard_limit": state.hard_limit,
                "expires": state.expires,
                "pool_available": pool_available if leader else None,
                "free_pool": state.free if leader else None,
                "in_use": total_in_use if leader else None,
                "held_back": total_held if leader else None,
                "servers": servers,
            }
        )
        bound = srv.binding.state(
            lic, srv.rlf, srv.table.codes, srv.today, srv.identity, srv.present_ids
        )
        if bound != "unbound":  # V1: only licenses with a bound code say so
            licenses[-1]["binding"] = bound
    clients: list[ClientStatus] = []
    clients_total = 0
    for e in srv.keys:
        if e.held:
            continue
        clients_total += 1
        if clients_total > STATUS_CLIENTS_MAX:
            continue
        clients.append(
            {
                "client_id": e.client_id,
                "license": e.license,
                "count": e.count,
                "lease_expires_in": round(e.expires - now, 3),
                "last_heartbeat_age": round(now - e.last_heartbeat, 3),
                "live": e.live,
                "held_for": round(now - e.since, 3),
                "identity": identity_json(e.identity),
            }
        )
    events = events[-STATUS_EVENTS_MAX:]
    return {
        "id": srv.id,
        "pool": srv.pool,
        "role": srv.role.value,
        "term": srv.term,
        "leader": srv.leader_id,
        "rlf_seq": srv.rlf.sequence,
        "config_version": srv.table.cfg[1],
        "config_term": srv.table.cfg[0],
        "serving": why is None,
        # S4: seconds until this restarted server grants anything new again
        "restart_grace": round(max(0.0, srv.grace_until - now), 3),
        "not_serving_reason": None if why is None else f"{why[0]}: {why[1]}",
        "majority": {
            "up": len(up) if leader else (len(srv.leader_up) if why is None else 1),
            "size": srv.size,
            "ok": why is None,
        },
        "peers": peers,
        "licenses": licenses,
        "licenses_total": len(srv.table.licenses),
        # codes added at run time, on top of the RLF's (`lm rlf pull`); at most as many
        # as an RLF may hold, so the status still fits its frame
        "codes": list(srv.table.codes)[:STATUS_CODES_MAX],
        "drained": sorted(srv.table.drained),
        "clients": clients,
        "clients_total": clients_total,
        "events": [{"age": round(now - t, 3), "kind": k, "text": text} for t, k, text in events],
    }
