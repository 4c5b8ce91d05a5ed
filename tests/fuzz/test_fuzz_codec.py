"""Fuzz the codec: a mutated message decodes to one inside every bound, or raises
`ProtocolError` -- never anything else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lm_core.engine import messages as m
from lm_core.runtime.codec import ProtocolError, check_bounds, decode, encode

from .budget import fuzz
from .strategies import messages

NASTY: list[Any] = [
    2**63, 2**53, -1, 2**53 - 1, 1e308, -0.0, 1.5, True, None, "", "x" * 5000,
    "a\nb", "\u202e", "\ud800", [], {}, [1] * 3, {"type": "Release"},
]  # fmt: skip


@fuzz(400)
@given(messages(), st.data())
def test_mutated_messages(msg: m.Message, data: st.DataObject) -> None:
    wire = encode(msg)
    assert decode(wire) == msg  # what the strategies draw is inside every bound
    obj = json.loads(wire)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(obj)))
        obj[key] = data.draw(st.sampled_from(NASTY) | st.integers() | st.text(max_size=40))
    try:
        raw = json.dumps(obj).encode()
    except (UnicodeEncodeError, ValueError):
        return
    try:
        back = decode(raw)
    except ProtocolError:
        return
    assert check_bounds(back) == back


@fuzz(200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda x: st.lists(x) | st.dictionaries(st.text(), x),
        max_leaves=20,
    )
)
def test_random_json(value: Any) -> None:  # fmt: skip
    try:
        raw = json.dumps(value).encode()
    except ValueError:
        return
    with contextlib.suppress(ProtocolError):
        decode(raw)
