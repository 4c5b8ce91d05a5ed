"""The roles a pool member can be in (`Role`) and the legal moves between them
(`TRANSITIONS`); `LicenseServer._become` makes every move and checks it here.
"""

from __future__ import annotations

import enum


class Role(enum.Enum):
    STARTING = "starting"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"
    DISASSOCIATED = "disassociated"


# The legal moves. FOLLOWER -> FOLLOWER is a new leader or term; CANDIDATE -> CANDIDATE a
# new election round.
TRANSITIONS: dict[Role, frozenset[Role]] = {
    Role.STARTING: frozenset({Role.FOLLOWER, Role.CANDIDATE, Role.DISASSOCIATED}),
    Role.FOLLOWER: frozenset({Role.FOLLOWER, Role.CANDIDATE, Role.DISASSOCIATED}),
    Role.CANDIDATE: frozenset({Role.CANDIDATE, Role.FOLLOWER, Role.LEADER, Role.DISASSOCIATED}),
    Role.LEADER: frozenset({Role.FOLLOWER}),
    Role.DISASSOCIATED: frozenset({Role.FOLLOWER, Role.CANDIDATE, Role.DISASSOCIATED}),
}
