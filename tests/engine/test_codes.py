"""License codes: issue, print, parse, verify; tamper and fuzz resistance."""

from __future__ import annotations

import base64
import contextlib
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm_core.engine import limits
from lm_core.engine.codes import MAX_SEATS, LicenseCode, issue_code, parse_code, verify_code
from lm_core.engine.keys import (
    generate_keypair,
    load_private,
    load_public,
    normalize_public,
    public_text,
)
from lm_core.errors import CodeError, LmError, SignatureError

PRIVATE, PUBLIC = generate_keypair()
KEY = load_private(PRIVATE)
PUB = load_public(PUBLIC)
OTHER_PUB = load_public(generate_keypair()[1])


def make(**over: object) -> LicenseCode:
    fields: dict[str, object] = {
        "vendor": "acme",
        "product": "Application",
        "version": "1.0",
        "seats": 100,
        "expires": datetime.date(2027, 12, 31),
        "issued": datetime.date(2026, 11, 24),
        "serial": "S1",
    }
    fields.update(over)
    return issue_code(KEY, **fields)  # type: ignore[arg-type]


CODE = make()
TEXT = CODE.text()


def test_round_trip_and_verify() -> None:
    parsed = parse_code(TEXT)
    assert parsed == CODE
    assert parsed.license == "Application 1.0"
    assert TEXT.startswith("LM1-")
    verify_code(parsed, PUB)


def test_survives_mail_wrapping_and_surrounding_whitespace() -> None:
    wrapped = "\r\n".join("    " + TEXT[i : i + 60] for i in range(0, len(TEXT), 60))
    assert parse_code(f"\n\t {wrapped}  \n") == CODE


def test_wrong_vendor_key_names_the_vendor() -> None:
    with pytest.raises(SignatureError, match="vendor 'acme' signature"):
        verify_code(CODE, OTHER_PUB)


def test_add_on_kind_round_trips() -> None:
    add = make(kind="add", seats=20, serial="S2")
    assert parse_code(add.text()).kind == "add"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"seats": 0}, "seats"),
        ({"seats": 10_000_001}, "seats"),
        ({"seats": 1_000_001}, "seats"),
        ({"seats": 2**63}, "seats"),
        ({"seats": True}, "seats"),
        ({"vendor": "ac|me"}, "vendor"),
        ({"product": ""}, "product"),
        ({"version": "1 0"}, "version"),
        ({"serial": "a b"}, "serial"),
        ({"kind": "extra"}, "kind"),
        ({"expires": datetime.date(2026, 1, 1)}, "expires"),
    ],
)
def test_issue_refuses_bad_fields(over: dict[str, object], field: str) -> None:
    with pytest.raises(CodeError) as info:
        make(**over)
    assert info.value.field == field


def test_expiry_is_inclusive() -> None:
    assert not CODE.expired(datetime.date(2027, 12, 31))
    assert CODE.expired(datetime.date(2028, 1, 1))


def test_every_single_byte_flip_fails() -> None:
    raw = TEXT.encode("ascii")
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            text = flipped.decode("latin-1")
            try:
                code = parse_code(text)
            except CodeError:
                continue
            with pytest.raises(SignatureError):
                verify_code(code, PUB)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "LM1-", "LM2-AAAAA", "lm1-" + TEXT[4:], TEXT + "A", TEXT[:-1], TEXT.lower()],
)
def test_malformed_codes_are_refused(text: str) -> None:
    try:
        code = parse_code(text)
    except CodeError:
        return
    with pytest.raises(SignatureError):  # e.g. an extra group shifts the signature
        verify_code(code, PUB)


def _as_code_text(raw: bytes) -> str:
    b32 = base64.b32encode(raw).decode().rstrip("=")
    return "LM1-" + "-".join(b32[i : i + 5] for i in range(0, len(b32), 5))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_text_raises_only_project_errors(text: str) -> None:
    with contextlib.suppress(LmError):
        parse_code(text)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda body, sig: body + sig,
            st.lists(
                st.sampled_from(["1", "base", "add", "acme", "9", "2027-12-31", "x", "", "é"]),
                max_size=11,
            ).map(lambda parts: "|".join(parts).encode()),
            st.binary(min_size=64, max_size=64),
        ),
    )
)
def test_fuzz_well_formed_text_raises_only_project_errors(raw: bytes) -> None:
    try:
        code = parse_code(_as_code_text(raw))
    except LmError:
        return
    with pytest.raises(SignatureError):
        verify_code(code, PUB)


def test_keys_round_trip_and_refuse_mixups() -> None:
    assert public_text(KEY.public_key()) == PUBLIC
    assert normalize_public(f"# comment\n\n{PUBLIC}\n") == PUBLIC
    with pytest.raises(CodeError, match="public key"):
        load_private(PUBLIC, file="acme.pub")
    with pytest.raises(CodeError, match="private key"):
        load_public(PRIVATE)
    with pytest.raises(CodeError, match="32 bytes"):
        load_public("ed25519:AAAA")
    with pytest.raises(CodeError, match="exactly one"):
        load_public(f"{PUBLIC}\n{PUBLIC}\n")
    with pytest.raises(CodeError, match="base64"):
        load_public("ed25519:!!!")


def test_seat_limit_is_the_shared_one_and_its_edge_round_trips() -> None:
    assert MAX_SEATS == limits.SEATS_MAX
    top = make(seats=limits.SEATS_MAX)
    assert parse_code(top.text()).seats == limits.SEATS_MAX


def test_a_key_has_one_spelling() -> None:
    """Canonical base64 only (issue 9, item 9): non-zero pad bits are another spelling."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for text, loader in ((PUBLIC, load_public), (PRIVATE, load_private)):
        prefix, _, body = text.partition(":")
        assert body.endswith("=")
        assert not body.endswith("==")
        last = alphabet.index(body[-2])
        for extra in (1, 2, 3):
            if last | extra == last:
                continue
            other = f"{prefix}:{body[:-2]}{alphabet[last | extra]}="
            assert base64.b64decode(other.partition(":")[2]) == base64.b64decode(body)
            with pytest.raises(CodeError, match="canonical base64"):
                loader(other)
        with pytest.raises(CodeError, match="canonical base64"):
            loader(f"{prefix}:{body.rstrip('=')}")
