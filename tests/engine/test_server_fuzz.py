"""B1: no well-typed message, from anyone, in any role, crashes the server or breaks S2."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm_core.engine import messages as m
from lm_core.engine.effects import Event
from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.identity import ClientIdentity

KIT = make_kit()
LIC = "Application 1.0"
TEXT = st.sampled_from(["A", "B", "C", "Z", "", "eng", LIC, "Other 1", "conn:1", "LM1-XX"])
INTS = st.one_of(st.integers(-3, 40), st.integers(-(2**63), 2**63 - 1))
FLOATS = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
MESSAGES = [
    cls
    for cls in vars(m).values()
    if isinstance(cls, type) and issubclass(cls, m.Message) and cls is not m.Message
]


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(hint)
    if hint is str:
        return TEXT
    if hint is int:
        return INTS
    if hint is float:
        return FLOATS
    if hint is bool:
        return st.booleans()
    if hint is type(None):
        return st.none()
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return st.one_of(*(strategy_for(a) for a in typing.get_args(hint)))
    if origin is dict or hint is dict:
        return st.just({})
    if hint is ClientIdentity:  # validates itself: only valid ones can exist
        word = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
        return st.builds(ClientIdentity, user=word, host=word, pid=st.integers(0, 2**32 - 1))
    if hint is m.Message:
        return st.deferred(lambda: message_strategy(depth=1))
    if dataclasses.is_dataclass(hint):
        return build(hint)
    return st.none()


def build(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)}
    if issubclass(cls, m.Message):
        fields["pool"] = st.sampled_from(["eng", "eng", "other"])
        fields["term"] = st.integers(0, 4)
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


def message_strategy(depth: int = 0) -> st.SearchStrategy[m.Message]:
    return st.one_of(*(build(cls) for cls in MESSAGES if depth == 0 or cls is not m.ForwardedAdmin))


def fresh_pool() -> Pool:
    pool = KIT.pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    pool.ask("B", m.Request(pool="eng", sender="c1", request_id=1, license=LIC))
    return pool


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(
        st.tuples(st.sampled_from("ABC"), st.sampled_from(["A", "B", "C", "Z", "conn:9"]),
                  message_strategy()),
        min_size=1, max_size=12,
    )
)  # fmt: skip
def test_no_message_crashes_any_role(script: list[tuple[str, str, m.Message]]) -> None:
    pool = fresh_pool()
    for target, sender, msg in script:
        out = pool.servers[target].handle(pool.now, sender, msg)
        bugs = [e for e in out if isinstance(e, Event) and e.kind == "bug"]
        assert not bugs, bugs
        pool.deliver()
        pool.now += 0.1
        for sid, server in pool.servers.items():
            for eff in server.tick(pool.now):
                assert not (isinstance(eff, Event) and eff.kind == "bug"), eff
            assert server.table.conserved(), sid
            assert server.next_deadline > pool.now, sid  # no tick loop
            server.status(pool.now)
    pool.run(pool.now + 20.0)
    assert not [e for _, e in pool.events if e.kind == "bug"]
    assert pool.leader() is not None
