"""The protocol vectors against the project's own receive path, codec and client machine.

* Every frame a vector sends goes through what a daemon does with bytes
  (`framing.read_frame` with `admission.admit_frame`, the codec, the kind check): a vector
  expecting an answer must get a message of the kind it names; a vector expecting the
  connection closed must be refused by one of them.
* Every answer a vector expects (variable fields given a sample of their type) must be
  what the codec accepts from a server, of the frame kind the vector names, with exactly
  the fields the vector lists.
* `client_rules.json` drives `ClientMachine` (the Python client's decisions) and checks
  each message it sends, to whom, and how long it believes its lease.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lm_core.engine import messages as m
from lm_core.engine.client import ClientMachine, SendTo
from lm_core.runtime.admission import Verdict, admit_frame
from lm_core.runtime.codec import ProtocolError, default_codec
from lm_core.runtime.framing import FrameError, read_frame
from lm_core.runtime.kinds import Kind, kind_of

from .conftest import Values, filled_answer, load, mismatches, step_frame, wire_vectors

POOL = "eng"
VALUES = Values(
    pool=POOL,
    client="ws-17:4242:a1b2c3",
    license="Application 1.0",
    server="B",
    lease=6.0,
    heartbeat=2.0,
    servers=[
        {"type": "ServerAddress", "id": "A", "address": "10.0.0.1:27001"},
        {"type": "ServerAddress", "id": "B", "address": "10.0.0.2:27001"},
    ],
)

STEPS = [
    pytest.param(vec, i, step, id=f"{vec['name']}-{i}-{step.get('why', '')[:24]}")
    for vec in wire_vectors()
    for i, step in enumerate(vec["steps"])
]


async def _receive(data: bytes) -> m.Message:
    """What a TLS daemon does with `data` from a license client without a certificate:
    the message, or `ProtocolError` (the daemon closes the connection)."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()

    def admit(kind: Kind, size: int) -> None:
        decision = admit_frame(None, kind, size, tls=True, pool=POOL)
        if decision.verdict is Verdict.CLOSE:
            raise ProtocolError(decision.reason)

    got = await read_frame(reader, admit=admit)
    if got is None:
        raise FrameError("no frame")
    kind, body = got
    msg = default_codec().decode(body)
    if kind_of(type(msg)) is not kind:
        raise FrameError(f"a {type(msg).__name__} in a {kind.name} frame")
    return msg  # type: ignore[no-any-return]


def test_every_vector_is_found() -> None:
    names = {v["name"] for v in wire_vectors()}
    assert {"grant_renew_release", "bad_frames", "deny_reasons"} <= names


@pytest.mark.parametrize(("vec", "index", "step"), STEPS)
def test_sent_frame(vec: dict[str, Any], index: int, step: dict[str, Any]) -> None:
    data = step_frame(step, VALUES)
    if step["expect"].get("closed"):
        with pytest.raises(ProtocolError):
            asyncio.run(_receive(data))
        return
    msg = asyncio.run(_receive(data))
    sent = json.loads(data[5:])
    # the codec reads back exactly the fields the vector wrote
    assert default_codec().to_json(msg) == sent


@pytest.mark.parametrize(("vec", "index", "step"), STEPS)
def test_expected_answer(vec: dict[str, Any], index: int, step: dict[str, Any]) -> None:
    expect = step["expect"]
    if expect.get("closed"):
        return
    answer = filled_answer(expect, VALUES)
    msg = default_codec().from_json(answer)
    assert int(kind_of(type(msg))) == expect["kind"]
    back = default_codec().to_json(msg)
    assert mismatches(expect, back, VALUES) == []


def test_mismatches_catches_a_wrong_answer() -> None:
    """The matcher used on the daemon's answers fails on a wrong value, type or field."""
    step = load("grant_renew_release")["steps"][0]
    good = filled_answer(step["expect"], VALUES)
    assert mismatches(step["expect"], good, VALUES) == []
    assert mismatches(step["expect"], {**good, "count": 2}, VALUES)
    assert mismatches(step["expect"], {**good, "term": "3"}, VALUES)
    assert mismatches(step["expect"], {**good, "ticket": "é"}, VALUES)
    assert mismatches(step["expect"], {**good, "extra": 1}, VALUES)
    assert mismatches(step["expect"], {**good, "servers": []}, VALUES)


def _decode_answer(message: dict[str, Any]) -> m.Message:
    return default_codec().from_json(message)  # type: ignore[no-any-return]


def test_client_rules() -> None:
    vec = load("client_rules")
    cfg = vec["client"]
    servers = [m.ServerAddress(id=s["id"], address=s["address"]) for s in cfg["servers"]]
    machine = ClientMachine(
        cfg["client_id"],
        cfg["pool"],
        cfg["license"],
        servers,
        count=cfg["count"],
        home=cfg["home"],
        answer_timeout=cfg["answer_timeout"],
    )
    codec = default_codec()
    for i, step in enumerate(vec["steps"]):
        at = step["at"]
        where = f"step {i} at {at}: {step.get('note', '')}"
        # nothing was due before this step (else the client would have acted earlier)
        assert machine.next_deadline >= at - 1e-9, where
        if "receive" in step:
            rcv = step["receive"]
            effects = machine.handle(at, rcv["from"], _decode_answer(rcv["message"]))
            effects += machine.tick(at)
        elif step["do"] == "acquire":
            effects = machine.acquire(at)
        elif step["do"] == "tick":
            effects = machine.tick(at)
        elif step["do"] == "release":
            effects = machine.release(at)
        else:
            raise AssertionError(f"unknown step {step}")
        sends = [
            {"to": e.server, "message": codec.to_json(e.msg)}
            for e in effects
            if isinstance(e, SendTo)
        ]
        assert sends == step["sends"], where
        if "holds_until" in step:
            want = step["holds_until"]
            if want is None:
                assert machine.lease_expires is None, where
            else:
                assert machine.lease_expires == pytest.approx(want), where
        if "server" in step:
            assert machine.server == step["server"], where
