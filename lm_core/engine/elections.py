"""Where elections are decided: whether a server grants a (pre-)vote, as a pure function.

The rest of an election (standing, counting votes, becoming leader) is in `server`
(`_stand`, `_start_vote`, `_on_vote_reply`, `_become`), since it changes the server's
role and term. A voter grants at most one vote per term, only to a candidate whose
(config term, config version, RLF sequence) is at least its own (S6), and never while it
hears from a live leader (leader stickiness).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Ballot(enum.Enum):
    REFUSE = "refuse"
    REPEAT = "repeat"  # the same real vote asked again: the same answer, nothing changes
    PRE = "pre"  # a pre-vote granted: nobody changes term
    VOTE = "vote"  # a real vote granted: adopt the term if higher, record the vote


@dataclass(frozen=True, slots=True)
class Verdict:
    ballot: Ballot
    reason: str = ""  # why refused
    leader_alive: bool = False  # refused because a leader is alive (the reply names it)


def judge_vote(
    *,
    my_term: int,
    voted_for: str | None,
    candidate: str,
    term: int,
    pre: bool,
    leader_alive: bool,
    theirs: tuple[int, int, int],
    mine: tuple[int, int, int],
) -> Verdict:
    """The answer to `candidate`'s (pre-)vote request for `term`."""
    if term < my_term or (pre and term == my_term):
        return Verdict(Ballot.REFUSE, f"stale term {term} (mine {my_term})")
    if not pre and term == my_term and voted_for == candidate:
        return Verdict(Ballot.REPEAT)
    if leader_alive:
        return Verdict(Ballot.REFUSE, "a leader is alive", leader_alive=True)
    if theirs < mine:
        return Verdict(Ballot.REFUSE, f"candidate config {theirs} older than mine {mine}")
    if pre:
        return Verdict(Ballot.PRE)
    # a higher term resets my vote; in my own term I keep the one I gave
    if term == my_term and voted_for not in (None, candidate):
        return Verdict(Ballot.REFUSE, f"already voted for {voted_for} in term {my_term}")
    return Verdict(Ballot.VOTE)
