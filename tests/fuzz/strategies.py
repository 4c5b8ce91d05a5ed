"""Hypothesis strategies for the message vocabulary, from the same type hints and bounds
the codec compiles: every value drawn is one the codec accepts (edges included)."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from hypothesis import strategies as st

from lm_core.engine import limits
from lm_core.engine import messages as m

NAMES = st.sampled_from(["A", "B", "C", "Z", "eng", "", "Application 1.0", "conn:1"])


def edge_ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(sorted({lo, min(lo + 1, hi), hi, max(hi - 1, lo)})),
                     st.integers(lo, min(hi, lo + 50)), st.integers(lo, hi))  # fmt: skip


def for_hint(hint: Any, realistic: bool) -> st.SearchStrategy[Any]:
    if typing.get_origin(hint) is typing.Annotated:
        _base, bound = typing.get_args(hint)[:2]
        if isinstance(bound, limits.IntRange):
            hi = min(bound.hi, 1000) if realistic else bound.hi
            return edge_ints(bound.lo, hi)
        if isinstance(bound, limits.FloatRange):
            return st.floats(bound.lo, bound.hi, allow_nan=False)
        ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                             max_size=bound.max)  # fmt: skip
        names = NAMES.filter(lambda s: len(s) <= bound.max)
        return names | (ascii_text if bound.ident else st.text(max_size=min(bound.max, 300)))
    if hint is bool:
        return st.booleans()
    if hint is type(None):
        return st.none()
    if hint is Any or hint is dict or typing.get_origin(hint) is dict:
        return st.just({})
    if hint is m.Message:
        return st.deferred(lambda: messages(realistic, nested=False))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, realistic)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(for_hint(a, realistic) for a in args))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(for_hint(args[0], realistic), max_size=3).map(tuple)
    if origin is tuple:
        return st.tuples(*(for_hint(a, realistic) for a in args))
    raise AssertionError(f"no strategy for {hint!r}")


@functools.cache
def build(cls: type[Any], realistic: bool) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: for_hint(hints[f.name], realistic) for f in dataclasses.fields(cls)}
    if realistic and issubclass(cls, m.Message):
        fields["pool"] = st.sampled_from(["eng", "eng", "other"])
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


MESSAGE_CLASSES = sorted(
    (c for c in vars(m).values() if isinstance(c, type) and issubclass(c, m.Message)
     and c is not m.Message),
    key=lambda c: c.__name__,
)  # fmt: skip


def messages(realistic: bool = False, *, nested: bool = True) -> st.SearchStrategy[m.Message]:
    classes = [c for c in MESSAGE_CLASSES if nested or c is not m.ForwardedAdmin]
    return st.one_of(*(build(c, realistic) for c in classes))
