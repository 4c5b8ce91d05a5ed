"""Merge every server's own status into the pool status (the `lm status --json` contract).

Pure: no IO. The admin client asks each server of the RLF for `LicenseServer.status(now)`
(per-server schema in docs/CONTRACTS.md) and hands the answers here, `None` for a server
it could not reach in time.

Which view wins: the distribution table of a license is the *leader's* (only the leader
has the global picture; a follower's rows for other servers are "don't care"). The leader
is the reachable server that says it leads with the highest term; if no leader answered,
the leader named by the most reachable servers at the highest term is reported (its rows
stay empty `{}`: nobody reachable has the global table). A server's `up` is the leader's
view of it, or merely `reachable` when there is no leader view. `own` keeps each server's
own row as that server reports it, so a follower that disagrees with the leader shows.
A server lists at most `limits.STATUS_CLIENTS_MAX` key-table rows: `clients` holds what
was listed, `clients_total` (pool) and `servers[].clients_total` how many there are.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lm_core.engine.status_types import (
    LicenseStatus,
    Majority,
    PoolClient,
    PoolEvent,
    PoolLicense,
    PoolRow,
    PoolServer,
    PoolStatus,
    ServerStatus,
)

if TYPE_CHECKING:
    from lm_core.engine.rlf import Rlf

Status = ServerStatus


def find_leader(per_server: Mapping[str, Status | None]) -> tuple[str | None, Status | None]:
    """(leader id, the leader's own status if it answered)."""
    answered = {sid: st for sid, st in per_server.items() if st is not None}
    leaders = [
        (int(st.get("term") or 0), sid)
        for sid, st in answered.items()
        if st.get("role") == "leader"
    ]
    if leaders:
        _, sid = min(leaders, key=lambda t: (-t[0], t[1]))
        return sid, answered[sid]
    if not answered:
        return None, None
    top = max(int(st.get("term") or 0) for st in answered.values())
    named = Counter(
        leader
        for st in answered.values()
        if (leader := st.get("leader")) and int(st.get("term") or 0) == top
    )
    if not named:
        return None, None
    named_sid = sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return named_sid, answered.get(named_sid)


def merge_status(
    rlf: Rlf, per_server: Mapping[str, Status | None], collected_at: str
) -> PoolStatus:
    """The pool status of `rlf`'s servers from their own answers (None = unreachable)."""
    ids = [s.id for s in rlf.servers]
    answered = {sid: st for sid in ids if (st := per_server.get(sid)) is not None}
    leader, lead = find_leader({sid: per_server.get(sid) for sid in ids})

    # drained servers: the leader's replicated table says; without a leader, any answer
    drained = set(
        lead.get("drained") or []
        if lead is not None
        else [d for st in answered.values() for d in st.get("drained") or []]
    )
    servers = [
        _server_row(s.id, s.address, answered.get(s.id), leader, lead, s.id in drained)
        for s in rlf.servers
    ]
    up = sum(1 for row in servers if row["up"])
    majority: Majority
    if lead is not None and isinstance(lead.get("majority"), Mapping):
        majority = Majority(**lead["majority"])
    else:
        majority = {"up": up, "size": len(ids), "ok": up * 2 > len(ids) and lead is not None}

    seqs = [int(st["rlf_seq"]) for st in answered.values() if st.get("rlf_seq") is not None]
    if lead is not None and lead.get("rlf_seq") is not None:
        rlf_seq = int(lead["rlf_seq"])
    else:
        rlf_seq = max(seqs, default=rlf.sequence)
    terms = [int(st.get("term") or 0) for st in answered.values()]
    term = int(lead.get("term") or 0) if lead is not None else max(terms, default=0)

    return {
        "pool": rlf.pool,
        "rlf_seq": rlf_seq,
        "leader": leader,
        "term": term,
        "collected_at": collected_at,
        "majority": majority,
        "servers": servers,
        "drained": [sid for sid in ids if sid in drained],
        "licenses": _licenses(ids, answered, lead),
        "clients": _clients(ids, answered, collected_at),
        "clients_total": sum(_clients_total(st) for st in answered.values()),
        "events": _events(ids, answered),
    }


def _clients_total(st: Status) -> int:
    """How many key-table rows a server holds (its status lists at most
    `limits.STATUS_CLIENTS_MAX` of them and then says how many there are)."""
    listed = len(st.get("clients") or [])
    total = st.get("clients_total")
    return total if isinstance(total, int) and total >= listed else listed


def _server_row(
    sid: str,
    address: str,
    st: Status | None,
    leader: str | None,
    lead: Status | None,
    drained: bool,
) -> PoolServer:
    reachable = st is not None
    age: float | None
    if lead is not None:
        if sid == leader:
            up, age = True, 0.0
        else:
            peer = (lead.get("peers") or {}).get(sid)
            up = bool(peer.get("up", False)) if peer else False
            age = peer.get("last_heartbeat_age") if peer else None
    else:
        up, age = reachable, None
    return {
        "id": sid,
        "address": address,
        "up": up,
        "reachable": reachable,
        "role": st.get("role") if st else None,
        "term": st.get("term") if st else None,
        "rlf_seq": st.get("rlf_seq") if st else None,
        "config_version": st.get("config_version") if st else None,
        "serving": st.get("serving") if st else None,
        "not_serving_reason": st.get("not_serving_reason") if st else None,
        "leader": st.get("leader") if st else None,
        "last_heartbeat_age": age,
        "clients_total": _clients_total(st) if st is not None else None,
        "drained": drained,
        "restart_grace": st.get("restart_grace") if st else None,
    }


def _licenses(
    ids: list[str], answered: Mapping[str, Status], lead: Status | None
) -> list[PoolLicense]:
    names: list[str] = []
    info: dict[str, LicenseStatus] = {}
    # The leader's list first (its order), then licenses only followers know of.
    sources = ([lead] if lead is not None else []) + [answered[s] for s in ids if s in answered]
    for st in sources:
        for lic in st.get("licenses") or []:
            name = lic.get("license")
            if isinstance(name, str) and name not in info:
                names.append(name)
                info[name] = lic
    out: list[PoolLicense] = []
    for name in names:
        lic = info[name]
        lead_lic = _find_license(lead, name) if lead is not None else None
        rows: dict[str, PoolRow]
        if lead_lic is not None:
            rows = {
                sid: PoolRow(**row) if isinstance(row, Mapping) else {}
                for sid, row in (lead_lic.get("servers") or {}).items()
            }
            for sid in ids:
                rows.setdefault(sid, {})
            pool_available, free_pool = lead_lic.get("pool_available"), lead_lic.get("free_pool")
        else:
            rows = {sid: {} for sid in ids}
            pool_available = free_pool = None
        own: dict[str, PoolRow] = {}
        binding: dict[str, str] = {}
        for sid in ids:
            mine = _find_license(answered.get(sid), name)
            row = (mine.get("servers") or {}).get(sid) if mine else None
            if isinstance(row, Mapping):
                own[sid] = PoolRow(**row)
            if mine and isinstance(mine.get("binding"), str):
                binding[sid] = mine["binding"]
        out.append(
            {
                "license": name,
                "hard_limit": (lead_lic or lic).get("hard_limit"),
                "expires": (lead_lic or lic).get("expires"),
                "pool_available": pool_available,
                "free_pool": free_pool,
                "servers": rows,
                "own": own,
            }
        )
        if binding:  # V1: only a license with a bound code
            out[-1]["binding"] = binding
    return out


def _find_license(st: Status | None, name: str) -> LicenseStatus | None:
    if st is None:
        return None
    for lic in st.get("licenses") or []:
        if lic.get("license") == name:
            return lic
    return None


def _clients(
    ids: list[str], answered: Mapping[str, Status], collected_at: str
) -> list[PoolClient]:
    out: list[PoolClient] = []
    try:
        at = datetime.datetime.fromisoformat(collected_at.replace("Z", "+00:00"))
    except ValueError:
        at = None
    for sid in ids:
        st = answered.get(sid)
        for c in (st.get("clients") if st else None) or []:
            out.append(
                {
                    "client_id": c.get("client_id"),
                    "server": sid,
                    "license": c.get("license"),
                    "count": c.get("count"),
                    "lease_expires_in": c.get("lease_expires_in"),
                    "last_heartbeat_age": c.get("last_heartbeat_age"),
                    "held_for": c.get("held_for"),
                    "since": _since(at, c.get("held_for")),
                    "identity": c.get("identity"),
                }
            )
    return out


def _since(at: datetime.datetime | None, held_for: object) -> str | None:
    """The checkout start (ISO 8601 UTC, whole seconds) from the collection time and
    how long the server says the seat has been held (None from an older daemon)."""
    if at is None or not isinstance(held_for, int | float) or isinstance(held_for, bool):
        return None
    start = at - datetime.timedelta(seconds=float(held_for))
    return start.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _events(ids: list[str], answered: Mapping[str, Status]) -> list[PoolEvent]:
    out: list[PoolEvent] = []
    for sid in ids:
        st = answered.get(sid)
        for e in (st.get("events") if st else None) or []:
            out.append({"server": sid, **e})
    out.sort(key=lambda e: float(e.get("age") or 0.0))
    return out
