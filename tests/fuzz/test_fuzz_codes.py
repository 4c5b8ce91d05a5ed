"""Fuzz `parse_code`: only `InputError`; what parses is canonical and in range."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from lm_core.engine import limits
from lm_core.engine.codes import parse_code
from lm_core.errors import InputError

from .budget import BAD_RLFS, GOOD_RLFS, fuzz

SEED_CODES = sorted(
    {c for p in GOOD_RLFS + BAD_RLFS for c in re.findall(r'"(LM1-[A-Z2-7-]+)"', p.read_text())}
)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-=18 \n\u00b2"


def check(text: str) -> None:
    try:
        code = parse_code(text)
    except InputError:
        return
    assert code.text() == re.sub(r"\s+", "", text)
    assert 1 <= code.seats <= limits.SEATS_MAX
    assert len(code.license) <= limits.LICENSE_MAX


@fuzz(300)
@given(st.sampled_from(SEED_CODES), st.lists(st.tuples(st.integers(0, 500),
       st.sampled_from(ALPHABET)), max_size=4))  # fmt: skip
def test_mutated_codes(seed: str, edits: list[tuple[int, str]]) -> None:
    chars = list(seed)
    for at, ch in edits:
        chars[at % len(chars)] = ch
    check("".join(chars))


@fuzz(200)
@given(st.text(ALPHABET, max_size=600) | st.text(max_size=200))
@example("")
@example("LM1-" + "A" * 5000)
def test_random_code_text(text: str) -> None:
    check(text)


def test_seed_codes_parse() -> None:
    assert len(SEED_CODES) >= 5
    for text in SEED_CODES:
        parse_code(text)
