"""The vote-granting decision (`elections.judge_vote`) as a pure function."""

from __future__ import annotations

from lm_core.engine.elections import Ballot, judge_vote

V = (1, 3, 2)  # (config term, config version, RLF sequence)


def judge(
    *,
    term: int = 6,
    voted_for: str | None = None,
    pre: bool = False,
    theirs: tuple[int, int, int] = V,
) -> Ballot:
    return judge_vote(
        my_term=5,
        voted_for=voted_for,
        candidate="B",
        term=term,
        pre=pre,
        leader_alive=False,
        theirs=theirs,
        mine=V,
    ).ballot


def test_stale_terms_are_refused_and_a_pre_vote_needs_a_higher_term() -> None:
    assert judge(term=4) is Ballot.REFUSE
    assert judge(term=5, pre=True) is Ballot.REFUSE
    assert judge(term=6, pre=True) is Ballot.PRE


def test_one_vote_per_term_and_a_repeated_request_gets_the_same_answer() -> None:
    assert judge(term=5, voted_for="C") is Ballot.REFUSE
    assert judge(term=5, voted_for="B") is Ballot.REPEAT
    assert judge(term=6, voted_for="C") is Ballot.VOTE  # a higher term: a new vote


def test_leader_stickiness_and_older_config_refuse_the_vote() -> None:
    v = judge_vote(
        my_term=5,
        voted_for=None,
        candidate="B",
        term=6,
        pre=False,
        leader_alive=True,
        theirs=V,
        mine=V,
    )
    assert (v.ballot, v.leader_alive) == (Ballot.REFUSE, True)
    assert judge(theirs=(1, 2, 2)) is Ballot.REFUSE
    assert judge(theirs=(2, 0, 0)) is Ballot.VOTE
