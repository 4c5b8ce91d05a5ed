"""Fuzz `parse_rlf` + `verify_rlf` from the sample files: only `InputError`, and an RLF
that parses is in range (sequence, ports, seats) and renders back to itself."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from lm_core.engine import limits
from lm_core.engine.rlf import parse_rlf, render_rlf, verify_rlf
from lm_core.errors import InputError

from .budget import BAD_RLFS, GOOD_RLFS, fuzz

SEEDS = [p.read_text() for p in GOOD_RLFS + BAD_RLFS]
TOKENS = ["9223372036854775808", "9007199254740992", "-1", "\u00b2", "\uff11", "0", "1e400",
          '"', "\n", "[", "]", "=", "nan", "inf", "#", "\\u0000", "9" * 20]  # fmt: skip


def check(text: str) -> None:
    try:
        rlf = parse_rlf(text, file="fuzz.rlf")
    except InputError as err:
        refused = err
    else:
        refused = None
    if refused is not None:
        assert str(refused).startswith("fuzz.rlf")
        assert "\n" not in refused.message
        return
    assert 0 <= rlf.sequence <= limits.SEQUENCE_MAX
    assert all(limits.PORT_MIN <= s.port <= limits.PORT_MAX for s in rlf.servers)
    assert len(rlf.codes) <= limits.CODES_MAX
    assert parse_rlf(render_rlf(rlf)) == rlf
    with contextlib.suppress(InputError):
        verify_rlf(rlf, text=text, file="fuzz.rlf")


@fuzz(150)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 20), st.sampled_from(TOKENS)),
             max_size=3),
)  # fmt: skip
@example(SEEDS[0], [])
def test_mutated_sample_rlfs(seed: str, edits: list[tuple[int, int, str]]) -> None:
    text = seed
    for at, cut, token in edits:
        at %= len(text) + 1
        text = text[:at] + token + text[at + cut :]
    check(text)


def test_every_sample_is_a_seed() -> None:
    names = {Path(p).name for p in GOOD_RLFS + BAD_RLFS}
    assert {"patent.rlf", "tampered_body.rlf", "syntax_error.rlf"} <= names
    for text in SEEDS:
        check(text)
