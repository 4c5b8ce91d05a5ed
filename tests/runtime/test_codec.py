"""The codec: every message round-trips; every malformed input is a ProtocolError."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm_core.engine import limits, messages
from lm_core.engine.messages import Message
from lm_core.errors import LmError
from lm_core.runtime import codec
from lm_core.runtime.codec import Codec, ProtocolError, decode, default_codec, encode

INT53 = st.integers(min_value=-limits.COUNTER_MAX, max_value=limits.COUNTER_MAX)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
JSON_LEAF = st.none() | st.booleans() | INT53 | FLOATS | st.text(max_size=20)
PLAIN_JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """A value strategy for a field type hint (the same hints the codec supports)."""
    if typing.get_origin(hint) is typing.Annotated:
        bound = typing.get_args(hint)[1]
        if isinstance(bound, limits.IntRange):
            return st.integers(min_value=bound.lo, max_value=bound.hi)
        if isinstance(bound, limits.FloatRange):
            return st.floats(min_value=bound.lo, max_value=bound.hi, allow_nan=False)
        assert isinstance(bound, limits.Text), hint
        alphabet = PRINTABLE_ASCII if bound.ident else st.characters(codec="utf-8")
        return st.text(alphabet, max_size=min(40, bound.max))
    if hint is str:
        return st.text(max_size=40)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return INT53
    if hint is float:
        return FLOATS
    if hint is type(None):
        return st.none()
    if hint is Any:
        return PLAIN_JSON
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return builds(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
    if origin is tuple:
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    if origin is dict:
        if args[1] is Any:
            return st.dictionaries(st.text(max_size=8), PLAIN_JSON, max_size=4)
        return st.dictionaries(st.text(max_size=8), strategy_for(args[1]), max_size=4)
    raise AssertionError(f"no strategy for {hint!r}")


def _mentions_message(cls: type[Any]) -> bool:
    return any("Message" in str(h) for h in typing.get_type_hints(cls).values())


@functools.cache
def builds(cls: type[Any]) -> st.SearchStrategy[Any]:
    if cls is Message:
        # A field typed `Message` (e.g. a forwarded admin operation) holds any concrete
        # message; draw from those that do not nest messages themselves, so it ends.
        leaves = [c for c in message_classes() if not _mentions_message(c)]
        return st.one_of([builds(c) for c in leaves])
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})


def message_classes() -> list[type[Any]]:
    return sorted(
        (c for c in default_codec().types.values() if issubclass(c, Message)),
        key=lambda c: c.__name__,
    )


def test_every_message_of_the_vocabulary_is_registered() -> None:
    in_module = {
        obj
        for obj in vars(messages).values()
        if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message
    }
    assert in_module
    assert in_module <= set(default_codec().types.values())
    assert default_codec().types["ServerAddress"] is messages.ServerAddress


def test_protocol_error_is_an_lm_error() -> None:
    assert issubclass(ProtocolError, LmError)


@pytest.mark.parametrize("cls", message_classes(), ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_message_type(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(builds(cls))
    wire = encode(msg)
    assert isinstance(wire, bytes)
    back = decode(wire)
    assert type(back) is cls
    assert back == msg
    assert encode(back) == wire


def test_wire_shape_is_the_documented_json() -> None:
    msg = messages.Authorize(
        pool="eng",
        sender="A",
        term=2,
        request_id=7,
        license="Application 1.0",
        count=1,
        lease=6.0,
        heartbeat_interval=2.0,
        servers=(messages.ServerAddress(id="A", address="127.0.0.1:27001"),),
    )
    assert json.loads(encode(msg)) == {
        "type": "Authorize",
        "pool": "eng",
        "sender": "A",
        "term": 2,
        "request_id": 7,
        "license": "Application 1.0",
        "count": 1,
        "lease": 6.0,
        "heartbeat_interval": 2.0,
        "servers": [{"type": "ServerAddress", "id": "A", "address": "127.0.0.1:27001"}],
        "ticket": "",  # no fail-over ticket (a daemon without claim.key)
    }


def _release(**over: Any) -> bytes:
    obj: dict[str, Any] = {
        "type": "Release",
        "pool": "eng",
        "sender": "c1",
        "term": 0,
        "request_id": 1,
        "license": "Application 1.0",
    }
    obj.update(over)
    return json.dumps({k: v for k, v in obj.items() if v is not DROP}).encode()


DROP = object()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


MALFORMED = {
    "empty": b"",
    "not utf-8": b"\xff\xfe\x00",
    "not json": b"{type: Release}",
    "trailing garbage": _release() + b"x",
    "array": b"[1, 2]",
    "string": b'"Release"',
    "no type": json.dumps({"pool": "eng"}).encode(),
    "type not a string": json.dumps({"type": 3}).encode(),
    "unknown type": _release(type="Nope"),
    "record as a message": json.dumps(
        {"type": "ServerAddress", "id": "A", "address": "127.0.0.1:1"}
    ).encode(),
    "base class": json.dumps({"type": "Message", "pool": "p", "sender": "s", "term": 0}).encode(),
    "missing field": _release(license=DROP),
    "missing defaulted field": _release(term=DROP),
    "extra field": _release(extra=1),
    "str as int": _release(request_id="1"),
    "bool as int": _release(request_id=True),
    "float as int": _release(request_id=1.0),
    "int as str": _release(license=5),
    "null as str": _release(license=None),
    "huge int": _release(request_id=1 << 64),
    "too many digits": b'{"type":"Release","request_id":' + b"9" * 5000 + b"}",
    "NaN": _release().replace(b'"term": 0', b'"term": NaN'),
    "Infinity float": json.dumps(
        {
            "type": "Deny",
            "pool": "p",
            "sender": "s",
            "term": 0,
            "request_id": 1,
            "license": "x",
            "reason": "no_seats",
            "detail": "",
            "retry_after": 1,
        }
    )
    .replace('"retry_after": 1', '"retry_after": Infinity')
    .encode(),
    "lone surrogate": _release().replace(b'"c1"', b'"\\ud800"'),
    "deep nesting": b"[" * 200_000 + b"]" * 200_000,
    "deep status": json.dumps(
        {
            "type": "StatusReply",
            "pool": "p",
            "sender": "s",
            "term": 0,
            "request_id": 1,
            "status": {"a": _nested(40)},
        }
    ).encode(),
    "status not an object": json.dumps(
        {
            "type": "StatusReply",
            "pool": "p",
            "sender": "s",
            "term": 0,
            "request_id": 1,
            "status": [],
        }
    ).encode(),
    "tuple pair too long": json.dumps(
        {
            "type": "ChangeDistribution",
            "pool": "p",
            "sender": "s",
            "term": 0,
            "request_id": 1,
            "license": "x",
            "distribution": [["A", 1, 2]],
        }
    ).encode(),
    "nested record wrong type": json.dumps(
        {
            "type": "Authorize",
            "pool": "p",
            "sender": "s",
            "term": 0,
            "request_id": 1,
            "license": "x",
            "count": 1,
            "lease": 1.0,
            "heartbeat_interval": 1.0,
            "servers": [{"type": "Release", "id": "A", "address": "x"}],
        }
    ).encode(),
    "nested record missing type": json.dumps(
        {
            "type": "Authorize",
            "pool": "p",
            "sender": "s",
            "term": 0,
            "request_id": 1,
            "license": "x",
            "count": 1,
            "lease": 1.0,
            "heartbeat_interval": 1.0,
            "servers": [{"id": "A", "address": "x"}],
        }
    ).encode(),
    "string too long": _release(license="x" * (codec.MAX_STRING + 1)),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_input_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert str(info.value).startswith("message")
    assert len(str(info.value)) < 300


def test_error_names_the_field() -> None:
    with pytest.raises(ProtocolError, match=r"message\.request_id: expected an integer, got bool"):
        decode(_release(request_id=True))
    with pytest.raises(ProtocolError, match="missing field 'license'"):
        decode(_release(license=DROP))
    with pytest.raises(ProtocolError, match="unknown field 'extra'"):
        decode(_release(extra=1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    cls = draw(st.sampled_from(message_classes()))
    obj = default_codec().to_json(draw(builds(cls)))
    key = draw(st.sampled_from(sorted(obj)))
    how = draw(st.sampled_from(["drop", "replace", "add"]))
    if how == "drop":
        del obj[key]
    elif how == "replace":
        obj[key] = draw(PLAIN_JSON)
    else:
        obj[draw(st.text(max_size=6))] = draw(PLAIN_JSON)
    return json.dumps(obj).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_messages())
def test_mutated_messages_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        msg = decode(data)
    except ProtocolError:
        return
    # A mutation that happens to stay valid must give a message that round-trips.
    assert decode(encode(msg)) == msg


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.integers(min_value=0, max_value=300))
def test_bytes_spliced_into_a_valid_message(noise: bytes, at: int) -> None:
    wire = _release()
    at = min(at, len(wire))
    with contextlib.suppress(ProtocolError):
        decode(wire[:at] + noise + wire[at:])


# ---------------------------------------------------------------- a codec for other hints


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    x: int
    y: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Rich:
    name: str | None
    either: int | str
    tag: Literal["a", "b"]
    color: Color
    points: list[Point]
    counts: dict[str, int]
    inner: Message | None = None
    pairs: tuple[tuple[str, int], ...] = ()
    blob: dict[str, Any] = field(default_factory=dict)


def rich_codec() -> Codec:
    return Codec([Rich, messages.Release, messages.Request])


def test_other_hints_round_trip() -> None:
    c = rich_codec()
    value = Rich(
        name=None,
        either="x",
        tag="b",
        color=Color.BLUE,
        points=[Point(x=1, y=2.5)],
        counts={"A": 3},
        inner=messages.Release(pool="p", sender="s", request_id=1, license="L"),
        pairs=(("A", 1),),
        blob={"k": [1, {"z": None}]},
    )
    assert c.decode(c.encode(value), want=Rich) == value
    obj = c.to_json(value)
    obj["either"] = 4
    obj["name"] = "n"
    assert c.from_json(obj, want=Rich) == dataclasses.replace(value, either=4, name="n")


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("tag", "c"),
        ("color", "green"),
        ("either", 1.5),
        ("points", [{"type": "Point", "x": 1}]),
        ("counts", {"A": "3"}),
        ("inner", {"type": "Point", "x": 1, "y": 2.0}),
        ("pairs", [["A"]]),
        ("blob", {"k": float("nan")}),
    ],
)
def test_other_hints_refuse_bad_values(key: str, bad: Any) -> None:
    c = rich_codec()
    obj = c.to_json(Rich(name="n", either=1, tag="a", color=Color.RED, points=[], counts={}))
    obj[key] = bad
    with pytest.raises(ProtocolError, match=key):
        c.from_json(obj, want=Rich)


def test_a_message_defined_after_the_codec_is_picked_up() -> None:
    c = Codec()
    wire = b'{"type":"LateMessage","pool":"p","sender":"s","term":0,"value":1}'
    with pytest.raises(ProtocolError, match="unknown type"):
        c.decode(wire)
    module = types.ModuleType("lm_test_late_messages")
    sys.modules[module.__name__] = module
    try:
        exec(  # a vocabulary module that grows after the codec was built
            "from __future__ import annotations\n"
            "from dataclasses import dataclass\n"
            "from lm_core.engine.messages import Message\n"
            "@dataclass(frozen=True, slots=True, kw_only=True)\n"
            "class LateMessage(Message):\n"
            "    value: int\n",
            module.__dict__,
        )
        msg = c.decode(wire)
        assert type(msg) is module.LateMessage
        assert msg.value == 1
    finally:
        del sys.modules[module.__name__]


def test_a_class_not_reachable_by_name_is_not_registered() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Hidden(Message):
        value: int

    with pytest.raises(ProtocolError, match="unknown type"):
        Codec().decode(b'{"type":"Hidden","pool":"p","sender":"s","term":0,"value":1}')


def test_unsupported_hints_fail_when_the_registry_is_built() -> None:
    @dataclass(frozen=True)
    class BadSet:
        items: frozenset[int]

    @dataclass(frozen=True)
    class BadKeys:
        items: dict[int, int]

    @dataclass(frozen=True)
    class NamedType:
        type: str

    for cls in (BadSet, BadKeys, NamedType):
        with pytest.raises(TypeError):
            Codec([cls])


def test_encoding_refuses_what_cannot_go_on_the_wire() -> None:
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode(messages.Deny(pool="p", sender="s", request_id=1, license="x", reason="r",
                             retry_after=float("inf")))  # fmt: skip
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode(messages.StatusReply(pool="p", sender="s", request_id=1, status={"x": object()}))


# ---------------------------------------------------------------- bounds (issue 9, item 1)


def _bounded_fields(cls: type[Any]) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Annotated:
            out.append((f.name, typing.get_args(hint)[1]))
    return out


def _minimal(hint: Any) -> Any:
    """The smallest valid value of a hint (lower bounds, empty strings and arrays)."""
    if typing.get_origin(hint) is typing.Annotated:
        bound = typing.get_args(hint)[1]
        return "" if isinstance(bound, limits.Text) else bound.lo
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint is Message:
            return messages.StatusRequest(pool="p", sender="s", request_id=1)
        hints = typing.get_type_hints(hint, include_extras=True)
        return hint(**{f.name: _minimal(hints[f.name]) for f in dataclasses.fields(hint)})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return None if type(None) in args else _minimal(args[0])
    if origin is tuple:
        return () if args[-1] is Ellipsis else tuple(_minimal(a) for a in args)
    if origin is dict:
        return {}
    return {str: "", bool: False, int: 0, float: 0.0}[hint]


def _edges(bound: Any) -> tuple[list[Any], list[Any]]:
    """(values just inside the bound, values just outside it)."""
    if isinstance(bound, limits.IntRange):
        return [bound.lo, bound.hi], [bound.lo - 1, bound.hi + 1]
    if isinstance(bound, limits.FloatRange):
        return [bound.lo, bound.hi], [bound.lo - 1.0, bound.hi * 2 + 1.0]
    inside = ["x" * bound.max]
    outside = ["x" * (bound.max + 1)]
    if bound.ident:
        outside += ["a\nb", "a\x1bb", "caf\u00e9"]
    else:
        inside.append("caf\u00e9 \u2713")
    return inside, outside


BOUNDED = [(cls, name, bound) for cls in message_classes() for name, bound in _bounded_fields(cls)]


def test_every_message_field_has_a_bound() -> None:
    """Every int/str/float field of the vocabulary is `Annotated` with a limits bound."""
    plain = []
    for cls in message_classes():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, str, float):
                plain.append(f"{cls.__name__}.{f.name}")
    assert plain == []
    assert len(BOUNDED) > 80


@pytest.mark.parametrize(
    ("cls", "name", "bound"), BOUNDED, ids=[f"{c.__name__}.{n}" for c, n, _ in BOUNDED]
)
def test_each_bound_is_enforced_at_decode(cls: type[Any], name: str, bound: Any) -> None:
    obj = default_codec().to_json(_minimal(cls))
    inside, outside = _edges(bound)
    for value in inside:
        obj[name] = value
        back = default_codec().from_json(json.loads(json.dumps(obj)))
        assert getattr(back, name) == value
    for value in outside:
        obj[name] = value
        with pytest.raises(ProtocolError, match=rf"message\.{name}: "):
            default_codec().decode(json.dumps(obj).encode())


def test_sequence_2_pow_63_is_refused_in_every_counter() -> None:
    """The value that killed leaders (issue 9): refused at decode, naming the field."""
    for cls, name, bound in BOUNDED:
        if isinstance(bound, limits.IntRange) and bound.hi == limits.COUNTER_MAX:
            obj = default_codec().to_json(_minimal(cls))
            obj[name] = 2**63
            with pytest.raises(ProtocolError, match=name):
                default_codec().decode(json.dumps(obj).encode())


def test_check_bounds_refuses_what_a_receiver_would() -> None:
    ok = messages.RlfOffer(pool="p", sender="A", rlf_seq=limits.SEQUENCE_MAX)
    assert codec.check_bounds(ok) == ok
    with pytest.raises(ProtocolError, match="rlf_seq"):
        codec.check_bounds(messages.RlfOffer(pool="p", sender="A", rlf_seq=2**63))


def test_a_bad_bound_in_a_hint_fails_when_the_registry_is_built() -> None:
    @dataclass(frozen=True)
    class Wrong:
        n: typing.Annotated[int, limits.Text(3)]

    @dataclass(frozen=True)
    class NoBound:
        n: typing.Annotated[int, "just a note"]

    for cls in (Wrong, NoBound):
        with pytest.raises(TypeError):
            Codec([cls])
