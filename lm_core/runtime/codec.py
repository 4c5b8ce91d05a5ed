"""The one module that turns messages into bytes and back, and validates them.

Theory of operation
-------------------
A message is a frozen dataclass from `lm_core.engine.messages` (a `Message` subclass).
On the wire it is one UTF-8 JSON object::

    {"type": "Request", "pool": "eng", "sender": "c1", "term": 0, "request_id": 7,
     "license": "Application 1.0", "count": 1}

Every dataclass object -- a message or a nested record such as `ServerAddress` -- carries
its class name under ``"type"``; every field is written, none may be missing and no other
key may be present -- except a field added to the protocol later and marked optional on the
wire (``field(metadata=OPTIONAL)``, default None, e.g. `Request.identity`): it is left out
when None and may be absent (then None), so the frames of clients that predate it stay
valid and byte for byte the same. The registry is built from the dataclasses themselves: every
subclass of `Message` (found at first use, so messages added to the vocabulary later need
no change here) and every dataclass reachable from their field type hints. For each field
a validator is compiled once from its type hint:

=====================  ==============================================================
hint                   accepted JSON (decoded Python value)
=====================  ==============================================================
``str``                a string of at most `limits.TEXT_MAX` characters, valid Unicode
``int``                an integer (never ``true``/``false``), ``|n| <= limits.COUNTER_MAX``
``float``              a finite number; an integer is accepted and becomes a float
``Annotated[T, m]``    a T also inside the bound `m` (`limits.IntRange`, `FloatRange`,
                       `Text`): this is how `messages` states every field's range
``bool``               ``true`` / ``false``
``None``               ``null``
``X | None``           ``null`` or an X (any union of the supported hints)
``tuple[T, ...]``      an array of at most `MAX_ITEMS` T (a tuple)
``tuple[A, B]``        an array of exactly two items, an A and a B (a tuple)
``list[T]``            an array of at most `MAX_ITEMS` T (a list)
``dict[str, T]``       an object with at most `MAX_ITEMS` string keys and T values
``Any``                plain JSON (objects, arrays, strings, numbers, bools, null),
                       nested at most `MAX_DEPTH` deep
a dataclass D          an object whose ``"type"`` names D or a registered subclass of D
                       (``Message`` itself is abstract: only its subclasses go on the wire)
``Literal[...]``       one of the literal values
an `enum.Enum` E       one of E's values
=====================  ==============================================================

Anything else in a hint is a programming error and raises `TypeError` when the
registry is built (the tests build it, so a bad hint fails CI, not a daemon).

Any malformed input -- not UTF-8, not JSON, NaN/Infinity, too deep, an unknown type, a
missing / extra / wrong-typed field, a value outside its field's bound, a string or array
over its cap -- raises `ProtocolError` and never anything else. (A key given twice in one
object: the last one counts, as in the stdlib `json`.) The codec checks ranges, not
meaning (stale terms, the pool's own name, counts against what a license has): that is
the engine's job. Encoding does not re-check bounds (the engine builds its messages from
values that passed them); `check_bounds(msg)` does, for tests and senders that want it.

Size: the frame layer (`framing.py`) caps a whole message at `framing.MAX_FRAME` bytes
before the codec ever sees it; the string and item caps here bound what a message can
hold once decoded.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from lm_core.engine import limits
from lm_core.engine import messages as _messages
from lm_core.engine.messages import Message
from lm_core.errors import LmError

MAX_STRING = 1 << 20  # characters in one string inside plain JSON (`Any`: status payloads)
MAX_ITEMS = 100_000  # items in one array / object field
MAX_DEPTH = 32  # nesting of plain-JSON (`Any`) values
_INT_MIN = -limits.COUNTER_MAX  # plain `int`: what every JSON reader keeps exactly
_INT_MAX = limits.COUNTER_MAX
_TEXT_DEFAULT = limits.Text(limits.TEXT_MAX)  # plain `str` field


class ProtocolError(LmError):
    """A frame or message that does not follow the protocol. The runtime closes that one
    connection and logs ``str(err)``; nothing else happens."""


Decoder = Callable[[Any, str], Any]
Encoder = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _ClassSpec:
    cls: type[Any]
    fields: tuple[tuple[str, Decoder, Encoder | None], ...]  # encoder None = identity
    names: frozenset[str]
    optional: frozenset[str] = frozenset()  # may be absent (None); not written when None


def _fail(path: str, what: str) -> typing.NoReturn:
    raise ProtocolError(f"{path}: {what}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ---------------------------------------------------------------- leaf validators


def _check_text(value: str, path: str) -> str:
    if len(value) > MAX_STRING:
        _fail(path, f"string longer than {MAX_STRING} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _fail(path, "string is not valid Unicode (lone surrogate)")
    return value


def _dec_str_bounded(bound: limits.Text) -> Decoder:
    check = bound.check

    def dec(value: Any, path: str) -> str:
        if type(value) is not str:
            _fail(path, f"expected a string, got {_kind(value)}")
        why = check(value)
        if why is not None:
            _fail(path, why)
        return _check_text(value, path)

    return dec


def _dec_int_bounded(bound: limits.IntRange) -> Decoder:
    lo, hi, check = bound.lo, bound.hi, bound.check

    def dec(value: Any, path: str) -> int:
        if type(value) is not int:
            _fail(path, f"expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            _fail(path, check(value) or "out of range")
        return value

    return dec


def _dec_float_bounded(bound: limits.FloatRange) -> Decoder:
    lo, hi, check = bound.lo, bound.hi, bound.check

    def dec(value: Any, path: str) -> float:
        number = _dec_float(value, path)
        if not lo <= number <= hi:
            _fail(path, check(number) or "out of range")
        return number

    return dec


_dec_str = _dec_str_bounded(_TEXT_DEFAULT)


def _dec_int(value: Any, path: str) -> int:
    if type(value) is not int:
        _fail(path, f"expected an integer, got {_kind(value)}")
    if not _INT_MIN <= value <= _INT_MAX:
        _fail(path, f"integer out of range +-{_INT_MAX}")
    return value


def _dec_float(value: Any, path: str) -> float:
    t = type(value)
    if t is float:
        if not math.isfinite(value):
            _fail(path, "number is not finite")
        return typing.cast(float, value)
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            _fail(path, "number out of range")
        return float(value)
    _fail(path, f"expected a number, got {_kind(value)}")


def _dec_bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        _fail(path, f"expected true/false, got {_kind(value)}")
    return bool(value)


def _dec_none(value: Any, path: str) -> None:
    if value is not None:
        _fail(path, f"expected null, got {_kind(value)}")


def _dec_json(value: Any, path: str, depth: int = 0) -> Any:
    """Plain JSON, checked all the way down (strings valid, numbers finite, depth bounded)."""
    t = type(value)
    if value is None or t is bool:
        return value
    if t is str:
        return _check_text(value, path)
    if t is int:
        return _dec_int(value, path)
    if t is float:
        return _dec_float(value, path)
    if depth >= MAX_DEPTH:
        _fail(path, f"nested deeper than {MAX_DEPTH}")
    if t is list:
        if len(value) > MAX_ITEMS:
            _fail(path, f"more than {MAX_ITEMS} items")
        for i, item in enumerate(value):
            _dec_json(item, f"{path}[{i}]", depth + 1)
        return value
    if t is dict:
        if len(value) > MAX_ITEMS:
            _fail(path, f"more than {MAX_ITEMS} items")
        for key, item in value.items():
            _check_text(key, path)
            _dec_json(item, f"{path}.{key}", depth + 1)
        return value
    _fail(path, f"not plain JSON: {_kind(value)}")


def _dec_any(value: Any, path: str) -> Any:
    return _dec_json(value, path)


def _dec_json_object(value: Any, path: str) -> Any:
    if type(value) is not dict:
        _fail(path, f"expected an object, got {_kind(value)}")
    return _dec_json(value, path)


def _enc_json(value: Any) -> Any:
    # Tuples inside plain JSON are written as arrays by json.dumps itself.
    return value


# ---------------------------------------------------------------- the codec


class Codec:
    """A registry of message and record dataclasses with compiled validators.

    `Codec()` registers every current subclass of `Message`; pass `classes` to build a
    codec for other dataclasses (tests do). Instances are immutable after construction
    apart from the lazy refresh in `decode` (a `Message` subclass defined after the
    codec was built is picked up on first sight of its name).
    """

    def __init__(self, classes: Iterable[type[Any]] | None = None) -> None:
        self._auto = classes is None
        self._specs: dict[str, _ClassSpec] = {}
        self._by_cls: dict[type[Any], _ClassSpec] = {}
        self._building: set[type[Any]] = set()
        for cls in _all_messages() if classes is None else classes:
            self._register(cls)

    # -- registry

    @property
    def types(self) -> dict[str, type[Any]]:
        """Registered class name -> class."""
        return {name: spec.cls for name, spec in self._specs.items()}

    def _register(self, cls: type[Any]) -> _ClassSpec | None:
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"{cls!r} is not a dataclass")
        spec = self._by_cls.get(cls)
        if spec is not None or cls in self._building:
            return spec
        other = self._specs.get(cls.__name__)
        if other is not None and other.cls is not cls:
            raise TypeError(f"two classes named {cls.__name__}: {other.cls!r} and {cls!r}")
        self._building.add(cls)
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
            fields: list[tuple[str, Decoder, Encoder | None]] = []
            for f in dataclasses.fields(cls):
                if f.name == "type":
                    raise TypeError(f"{cls.__name__}: a field may not be named 'type'")
                dec, enc = self._compile(hints[f.name], f"{cls.__name__}.{f.name}")
                fields.append((f.name, dec, enc))
            optional = frozenset(
                f.name for f in dataclasses.fields(cls) if f.metadata.get("wire") == "optional"
            )
            spec = _ClassSpec(cls, tuple(fields), frozenset(n for n, _, _ in fields), optional)
        finally:
            self._building.discard(cls)
        self._specs[cls.__name__] = spec
        self._by_cls[cls] = spec
        return spec

    def _compile(self, hint: Any, where: str) -> tuple[Decoder, Encoder | None]:
        """Decoder and encoder (None = the value is already JSON-able) for one hint."""
        if typing.get_origin(hint) is typing.Annotated:
            return self._compile_annotated(hint, where)
        if hint is str:
            return _dec_str, None
        if hint is bool:
            return _dec_bool, None
        if hint is int:
            return _dec_int, None
        if hint is float:
            return _dec_float, None
        if hint is None or hint is type(None):
            return _dec_none, None
        if hint is Any:
            return _dec_any, _enc_json
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return self._compile_enum(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self._compile_dataclass(hint)
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Union or origin is types.UnionType:
            return self._compile_union(args, where)
        if origin is typing.Literal:
            return self._compile_literal(args, where)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return self._compile_seq(args[0], where, tuple)
            if not args or () in args:
                raise TypeError(f"{where}: unsupported tuple hint {hint!r}")
            return self._compile_fixed(args, where)
        if origin is list and len(args) == 1:
            return self._compile_seq(args[0], where, list)
        if origin is dict and len(args) == 2:
            if args[0] is not str:
                raise TypeError(f"{where}: dict keys must be str")
            if args[1] is Any:
                return _dec_json_object, _enc_json
            return self._compile_dict(args[1], where)
        raise TypeError(f"{where}: the codec does not support the type hint {hint!r}")

    def _compile_annotated(self, hint: Any, where: str) -> tuple[Decoder, Encoder | None]:
        base, *meta = typing.get_args(hint)
        bounds = [
            m for m in meta if isinstance(m, (limits.IntRange, limits.FloatRange, limits.Text))
        ]
        if len(bounds) != 1:
            raise TypeError(f"{where}: Annotated needs exactly one bound from limits, got {meta!r}")
        (bound,) = bounds
        if isinstance(bound, limits.IntRange) and base is int:
            return _dec_int_bounded(bound), None
        if isinstance(bound, limits.FloatRange) and base is float:
            return _dec_float_bounded(bound), None
        if isinstance(bound, limits.Text) and base is str:
            return _dec_str_bounded(bound), None
        raise TypeError(f"{where}: bound {bound!r} does not fit {base!r}")

    def _compile_enum(self, hint: type[enum.Enum]) -> tuple[Decoder, Encoder | None]:
        by_value = {m.value: m for m in hint}

        def dec(value: Any, path: str) -> Any:
            if type(value) not in (str, int) or value not in by_value:
                _fail(path, f"expected one of {sorted(map(str, by_value))}")
            return by_value[value]

        def enc(value: Any) -> Any:
            return value.value

        return dec, enc

    def _compile_dataclass(self, hint: type[Any]) -> tuple[Decoder, Encoder | None]:
        if hint is not Message:  # the base is abstract: a `Message` field holds a subclass
            self._register(hint)
        for sub in _subclasses(hint):
            self._register(sub)

        def dec(value: Any, path: str) -> Any:
            return self._decode_obj(value, path, hint)

        return dec, self._encode_obj

    def _compile_union(self, args: tuple[Any, ...], where: str) -> tuple[Decoder, Encoder | None]:
        none_ok = type(None) in args
        rest = [a for a in args if a is not type(None)]
        arms = [self._compile(a, where) for a in rest]
        if len(arms) == 1:
            (inner, inner_enc) = arms[0]

            def dec_opt(value: Any, path: str) -> Any:
                if value is None:
                    return None
                return inner(value, path)

            if inner_enc is None:
                return dec_opt, None

            def enc_opt(value: Any) -> Any:
                return None if value is None else inner_enc(value)

            return dec_opt, enc_opt

        # A general union: the first arm that accepts the value wins (arms are tried in
        # the order of the hint, so put `int` before `float`).
        def dec_union(value: Any, path: str) -> Any:
            if value is None and none_ok:
                return None
            for arm, _ in arms:
                try:
                    return arm(value, path)
                except ProtocolError:
                    continue
            _fail(path, f"{_kind(value)} matches none of {rest}")

        def enc_union(value: Any) -> Any:
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return self._encode_obj(value)
            if isinstance(value, enum.Enum):
                return value.value
            return value

        return dec_union, enc_union

    def _compile_literal(self, args: tuple[Any, ...], where: str) -> tuple[Decoder, Encoder | None]:
        allowed = tuple(args)
        for a in allowed:
            if type(a) not in (str, int, bool) and a is not None:
                raise TypeError(f"{where}: unsupported literal {a!r}")

        def dec(value: Any, path: str) -> Any:
            for a in allowed:
                if type(a) is type(value) and a == value:
                    return a
            _fail(path, f"expected one of {list(allowed)!r}")

        return dec, None

    def _compile_seq(
        self, item: Any, where: str, kind: type[tuple[Any, ...]] | type[list[Any]]
    ) -> tuple[Decoder, Encoder | None]:
        dec_item, enc_item = self._compile(item, where + "[]")

        def dec(value: Any, path: str) -> Any:
            if type(value) is not list:
                _fail(path, f"expected an array, got {_kind(value)}")
            if len(value) > MAX_ITEMS:
                _fail(path, f"more than {MAX_ITEMS} items")
            return kind(dec_item(v, f"{path}[{i}]") for i, v in enumerate(value))

        if enc_item is None:
            return dec, None
        enc_one = enc_item

        def enc(value: Any) -> Any:
            return [enc_one(v) for v in value]

        return dec, enc

    def _compile_fixed(self, items: tuple[Any, ...], where: str) -> tuple[Decoder, Encoder | None]:
        compiled = [self._compile(a, f"{where}[{i}]") for i, a in enumerate(items)]
        n = len(compiled)

        def dec(value: Any, path: str) -> Any:
            if type(value) is not list:
                _fail(path, f"expected an array, got {_kind(value)}")
            if len(value) != n:
                _fail(path, f"expected {n} items, got {len(value)}")
            return tuple(
                d(v, f"{path}[{i}]")
                for i, ((d, _), v) in enumerate(zip(compiled, value, strict=True))
            )

        if all(e is None for _, e in compiled):
            return dec, None

        def enc(value: Any) -> Any:
            return [v if e is None else e(v) for (_, e), v in zip(compiled, value, strict=True)]

        return dec, enc

    def _compile_dict(self, item: Any, where: str) -> tuple[Decoder, Encoder | None]:
        dec_item, enc_item = self._compile(item, where + "{}")

        def dec(value: Any, path: str) -> Any:
            if type(value) is not dict:
                _fail(path, f"expected an object, got {_kind(value)}")
            if len(value) > MAX_ITEMS:
                _fail(path, f"more than {MAX_ITEMS} items")
            return {_check_text(k, path): dec_item(v, f"{path}.{k}") for k, v in value.items()}

        if enc_item is None:
            return dec, None
        enc_one = enc_item

        def enc(value: Any) -> Any:
            return {k: enc_one(v) for k, v in value.items()}

        return dec, enc

    # -- objects

    def _spec_for_name(self, name: str) -> _ClassSpec | None:
        spec = self._specs.get(name)
        if spec is None and self._auto:
            # A Message subclass defined after this codec was built.
            for cls in _all_messages():
                if cls.__name__ == name:
                    return self._register(cls)
        return spec

    def _decode_obj(self, value: Any, path: str, want: type[Any]) -> Any:
        if type(value) is not dict:
            _fail(path, f"expected an object, got {_kind(value)}")
        name = value.get("type")
        if type(name) is not str:
            _fail(path, "missing 'type'")
        spec = self._spec_for_name(name)
        if spec is None:
            _fail(path, f"unknown type {name[:64]!r}")
        if not issubclass(spec.cls, want):
            _fail(path, f"type {name} is not a {want.__name__}")
        if len(value) != len(spec.names) + 1 or not spec.names.issubset(value.keys()):
            keys = set(value) - {"type"}
            missing = sorted(spec.names - spec.optional - keys)
            extra = sorted(keys - spec.names)
            if missing:
                _fail(path, f"{name}: missing field {missing[0]!r}")
            if extra:
                _fail(path, f"{name}: unknown field {extra[0][:64]!r}")
        kwargs = {
            fname: dec(value[fname], f"{path}.{fname}")
            for fname, dec, _ in spec.fields
            if fname in value
        }
        try:
            return spec.cls(**kwargs)
        except (TypeError, ValueError) as exc:  # a dataclass __post_init__ may validate
            _fail(path, f"{name}: {exc}")

    def _encode_obj(self, obj: Any) -> dict[str, Any]:
        spec = self._by_cls.get(type(obj))
        if spec is None:
            if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
                raise ProtocolError(f"cannot encode {type(obj).__name__}: not a dataclass")
            spec = self._register(type(obj))
            assert spec is not None
        out: dict[str, Any] = {"type": spec.cls.__name__}
        for fname, _, enc in spec.fields:
            v = getattr(obj, fname)
            if v is None and fname in spec.optional:
                continue
            out[fname] = v if enc is None else enc(v)
        return out

    # -- public

    def to_json(self, obj: Any) -> dict[str, Any]:
        """The JSON object (a dict, arrays as lists) for a message or record, exactly as
        `decode` would parse it from the wire."""
        value: dict[str, Any] = json.loads(self.encode(obj))
        return value

    def from_json(self, value: Any, want: type[Any] = Message) -> Any:
        """Validate a parsed JSON value and build the dataclass it describes."""
        try:
            return self._decode_obj(value, "message", want)
        except RecursionError:
            _fail("message", "nested too deeply")

    def encode(self, msg: Any) -> bytes:
        """UTF-8 JSON bytes for `msg`. Raises `ProtocolError` if it cannot be encoded
        (a non-finite float, a lone surrogate, a non-JSON value in an `Any` field)."""
        try:
            return _ENCODER.encode(self._encode_obj(msg)).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise ProtocolError(f"cannot encode {type(msg).__name__}: {exc}") from None

    def decode(self, data: bytes, want: type[Any] = Message) -> Any:
        """The message in `data`; raises `ProtocolError` for anything malformed."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            _fail("message", "not UTF-8")
        try:
            value = _DECODER.decode(text)
        except ProtocolError:
            raise
        except (ValueError, RecursionError) as exc:
            _fail("message", f"not JSON: {str(exc)[:80]}")
        return self.from_json(value, want)


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"message: {name} is not a number")


# Built once: `json.dumps` / `json.loads` with options build a new one per call, a
# measurable share of a small message's cost. Both are stateless, so shared is safe.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _is_live(cls: type[Any]) -> bool:
    # `dataclass(slots=True)` replaces the class it decorates; the discarded original
    # stays in `__subclasses__()` until it is garbage-collected. The live class is the
    # one its module names.
    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    out: list[type[Any]] = []
    todo = list(cls.__subclasses__())
    while todo:
        sub = todo.pop(0)
        if sub not in out:
            todo.extend(sub.__subclasses__())
            if _is_live(sub):
                out.append(sub)
    return out


def _all_messages() -> list[type[Any]]:
    # Make sure the vocabulary module is imported so its subclasses exist.
    assert _messages.Message is Message
    return [c for c in _subclasses(Message) if dataclasses.is_dataclass(c)]


_default: Codec | None = None


def default_codec() -> Codec:
    """The codec for the whole message vocabulary (built on first use)."""
    global _default
    if _default is None:
        _default = Codec()
    return _default


def encode(msg: Message) -> bytes:
    """Bytes of one message (see `Codec.encode`)."""
    return default_codec().encode(msg)


def decode(data: bytes) -> Message:
    """The message in `data` (see `Codec.decode`); raises `ProtocolError`."""
    return typing.cast(Message, default_codec().decode(data))


def check_bounds(msg: Message) -> Message:
    """`msg` as a receiver would decode it: raises `ProtocolError` if any field is out of
    its bound (encoding alone does not check bounds)."""
    return decode(encode(msg))
