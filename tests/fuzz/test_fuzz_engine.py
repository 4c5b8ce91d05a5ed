"""Fuzz the engine's handlers with messages that passed the codec: no bug events, S2
holds, every server's status still fits one frame."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lm_core.engine import limits
from lm_core.engine import messages as m
from lm_core.engine.effects import Event
from lm_core.engine.harness import Pool, make_kit
from lm_core.runtime.codec import decode, encode

from .budget import fuzz
from .strategies import messages

KIT = make_kit()
LIC = "Application 1.0"


def fresh_pool() -> Pool:
    pool = KIT.pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    pool.ask("B", m.Request(pool="eng", sender="c1", request_id=1, license=LIC))
    return pool


@fuzz(60)
@given(st.lists(st.tuples(st.sampled_from("ABC"), st.sampled_from(["A", "B", "C", "Z", "conn:9"]),
                          messages(realistic=True)), min_size=1, max_size=8))  # fmt: skip
def test_decoded_messages_never_break_a_server(script: list[tuple[str, str, m.Message]]) -> None:
    pool = fresh_pool()
    for target, sender, msg in script:
        msg = decode(encode(msg))  # exactly what a daemon would hand the engine
        out = pool.servers[target].handle(pool.now, sender, msg)
        assert not [e for e in out if isinstance(e, Event) and e.kind == "bug"]
        pool.deliver()
        pool.now += 0.1
        for sid, server in pool.servers.items():
            for eff in server.tick(pool.now):
                assert not (isinstance(eff, Event) and eff.kind == "bug"), eff
            assert server.table.conserved(), sid
            reply = m.StatusReply(pool="eng", sender=sid, request_id=1,
                                  status=server.status(pool.now))  # fmt: skip
            assert len(encode(reply)) <= limits.STATUS_REPLY_BYTES_MAX
    pool.run(pool.now + 20.0)
    assert not [e for _, e in pool.events if e.kind == "bug"]
    assert pool.leader() is not None
