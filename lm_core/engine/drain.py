"""Draining a server for maintenance (`lm server drain ID` / `lm server resume ID`).

A drain is a configuration change like a new distribution: the leader records it in the
replicated distribution table (`DistributionTable.drained`: server -> the config version
its drain took effect in), syncs it, and answers the operator once a majority holds it
durably (S6), so it survives a change of leader. A drained server

* grants, renews and adopts nothing: every Request and ClientHeartbeat it gets is
  denied `drained`, which a client treats like a server that is down for it: it walks
  on to the next server, presenting the ticket of the seats it holds;
* stays a pool member: it follows, votes, ACKs and counts in the majority until it is
  stopped;
* gives its seats up: a fail-over claim on its tickets is honoured as soon as it has
  ACKed a config version that holds its drain (`settled`), so each client's seats move
  with it (the claim path of `claims`); and the seats it does not use are a borrowing
  source (`borrowing.plan_borrow`).

Why S1 holds. The claim rules (docs/ENGINE.md, "Seats move with their clients") need the
granting server to be unable to grant; a server whose leases ran out is one, a settled
drained server is another: it installed (persisted) a table naming it drained before it
ACKed that version, and from then on every client path denies (a later table drops the
drain only through `resume`, below, or through a leader whose table lacks it, which
then holds none of the claims made under it either: a claim is answered only once a
majority holds a version that includes the drain). Everything else of the claim
argument is unchanged: the seats move as a transfer reserved for their client, the
drained server drops the entry and lowers its allowance when a heartbeat revokes the
ticket, and the client believes one lease at a time.

Resume removes the drain only once the server has applied every claim on its tickets
(`unapplied`: it ACKed a heartbeat that listed each of them): before that it could
serve again under an allowance that still counts seats that moved away.
"""

from __future__ import annotations

from collections.abc import Mapping

from lm_core.engine.tables import Cfg, DistributionTable


def is_drained(table: DistributionTable, server: str) -> bool:
    """Does the table say `server` is drained?"""
    return bool(table.drained) and server in table.drained


def settled(table: DistributionTable, server: str, acked: Cfg | None) -> bool:
    """Has drained `server` installed its drain (it ACKed config version `acked`, which
    holds it)? Then it grants and renews nothing any more."""
    since = table.drained.get(server)
    return since is not None and acked is not None and acked >= since


def unapplied(
    table: DistributionTable, server: str, revoke_seq: Mapping[str, int], acked_seq: int
) -> list[str]:
    """The claims on `server`'s tickets it has not applied yet: not yet listed in a
    heartbeat it ACKed (`revoke_seq`: key -> the heartbeat that first listed it)."""
    prefix = server + ":"
    return [
        k
        for k in table.claims
        if k.startswith(prefix) and revoke_seq.get(k, acked_seq + 1) > acked_seq
    ]


def apply(table: DistributionTable, server: str, drain: bool, cfg: Cfg) -> None:
    """Drain `server` as of config version `cfg` (the version this change makes), or
    resume it."""
    if drain:
        table.drained[server] = cfg
    else:
        table.drained.pop(server, None)
