"""Joining and leaving the pool through a newer RLF (issue 11, item 3).

A server listed in a newer RLF than the running pool's comes up; the running servers
do not know it (messages from non-members are refused). So a server that stands for
election offers its RLF (`RlfTransfer`) to every peer that never answered it. A running
server takes that offer from a non-member only if the RLF is for its pool, signed by
its admin key, of a higher sequence (the checks of `lm rlf push`, `admin.check_rlf`) and
lists the offering server; it then adopts it as it adopts any newer RLF (a leader
installs it and sends it to every follower; a follower's ACK carries it to the leader),
its runtime dials the new server, and the newcomer follows the leader.

A server that a newer RLF no longer lists is told (the leader sends that RLF to the
servers it dropped) and leaves: it serves nothing, stands for nothing, ignores the pool
and says why in its status and log; restarted with that RLF on disk, it refuses to start
(it is not in the pool).
"""

from __future__ import annotations

from collections.abc import Sequence

from lm_core.engine.admin import Refused, check_rlf
from lm_core.engine.rlf import Rlf


def check_offer(text: str, current: Rlf, sender: str) -> Rlf:
    """The RLF a non-member `sender` offers, if the pool may adopt it (else `Refused`)."""
    new = check_rlf(text, current)
    if sender not in new.server_ids:
        raise Refused(f"RLF seq {new.sequence} does not list {sender}")
    return new


def removed_peers(peers: Sequence[str], new: Rlf, own_id: str) -> list[str]:
    """My peers that `new` no longer lists (to be told)."""
    keep = set(new.server_ids)
    return [p for p in peers if p not in keep and p != own_id]


def removed_text(server_id: str, new: Rlf) -> str:
    return (
        f"{server_id} was removed from pool {new.pool!r} by RLF seq {new.sequence}: "
        "it serves nothing; stop it"
    )
