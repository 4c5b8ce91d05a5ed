"""The RLF: round trip, canonical bytes, signatures, distribution rules, located errors."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm_core.engine.codes import issue_code
from lm_core.engine.keys import generate_keypair, load_private, load_public
from lm_core.engine.rlf import (
    Rlf,
    ServerEntry,
    Timing,
    Vendor,
    canonical_bytes,
    check_expiry,
    locate,
    new_rlf,
    parse_rlf,
    render_rlf,
    sign_rlf,
    verify_rlf,
    with_code,
    with_distribution,
    with_server,
    with_vendor,
)
from lm_core.errors import (
    CodeError,
    ExpiredError,
    InputError,
    LmError,
    RlfError,
    SignatureError,
)

TODAY = datetime.date(2026, 11, 24)
FAR = datetime.date(2099, 12, 31)
ADMIN_PRIVATE, ADMIN_PUBLIC = generate_keypair()
ADMIN = load_private(ADMIN_PRIVATE)
VENDOR_KEYS = {name: generate_keypair() for name in ("acme", "globex")}


def code(
    product: str = "Application",
    version: str = "1.0",
    seats: int = 100,
    *,
    vendor: str = "acme",
    serial: str = "S1",
    kind: str = "base",
    expires: datetime.date = FAR,
) -> str:
    return issue_code(
        load_private(VENDOR_KEYS[vendor][0]),
        vendor=vendor,
        product=product,
        version=version,
        seats=seats,
        expires=expires,
        issued=datetime.date(2020, 1, 1),
        serial=serial,
        kind=kind,
    ).text()


def vendor(name: str = "acme") -> Vendor:
    return Vendor(name, VENDOR_KEYS[name][1])


def servers(ids: str = "ABC") -> list[ServerEntry]:
    return [ServerEntry(sid, "127.0.0.1", 27001 + i) for i, sid in enumerate(ids)]


def patent(dist: dict[str, int] | None = None) -> Rlf:
    rlf = new_rlf("eng", servers(), admin_key=ADMIN_PUBLIC, vendors=[vendor()])
    return with_code(rlf, code(), {"A": 40, "B": 30, "C": 30} if dist is None else dist)


SIGNED = sign_rlf(patent(), ADMIN)
SIGNED_TEXT = render_rlf(SIGNED)


# ---------------------------------------------------------------- round trip


@st.composite
def rlfs(draw: st.DrawFn) -> Rlf:
    n = draw(st.integers(3, 11))
    ids = draw(
        st.lists(
            st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,6}", fullmatch=True),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    hosts = draw(st.lists(st.sampled_from(["127.0.0.1", "::1", "lm-a.example.com"]), min_size=n,
                          max_size=n))  # fmt: skip
    ports = draw(st.lists(st.integers(1, 65535), min_size=n, max_size=n, unique=True))
    entries = tuple(ServerEntry(i, h, p) for i, h, p in zip(ids, hosts, ports, strict=True))
    vendor_names = draw(st.sampled_from([("acme",), ("acme", "globex")]))
    licenses = draw(
        st.lists(
            st.tuples(
                st.sampled_from(vendor_names),
                st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,8}[A-Za-z0-9]", fullmatch=True),
                st.from_regex(r"[0-9][0-9.]{0,3}", fullmatch=True),
                st.integers(1, 500),
                st.booleans(),  # with an add-on?
            ),
            max_size=3,
            unique_by=lambda t: (t[1], t[2]),
        )
    )
    codes: list[str] = []
    seats: dict[str, int] = {}
    for k, (v, product, version, count, add) in enumerate(licenses):
        codes.append(code(product, version, count, vendor=v, serial=f"S{k}"))
        seats[f"{product} {version}"] = count
        if add:
            codes.append(code(product, version, 7, vendor=v, serial=f"A{k}", kind="add"))
            seats[f"{product} {version}"] += 7
    distribution: dict[str, dict[str, int]] = {}
    for lic, total in seats.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(ids), unique=True, max_size=n))
            per: dict[str, int] = {}
            left = total
            for sid in chosen:
                per[sid] = draw(st.integers(0, left))
                left -= per[sid]
            distribution[lic] = per
    hb = draw(st.floats(0.01, 10))
    client_hb = draw(st.floats(0.01, 100))
    timing = Timing(
        heartbeat_interval=hb,
        leader_timeout=hb * draw(st.floats(1.01, 10)),
        server_lease=hb * draw(st.floats(1.01, 10)),
        client_heartbeat=client_hb,
        client_lease=client_hb * draw(st.floats(1.01, 10)),
        drift=draw(st.floats(0, 0.49)),
    )
    rlf = Rlf(
        pool=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)),
        sequence=draw(st.integers(0, 2**40)),
        admin_key=draw(st.sampled_from(["", ADMIN_PUBLIC])),
        servers=entries,
        vendors=tuple(vendor(v) for v in vendor_names),
        codes=tuple(codes),
        distribution=distribution,
        timing=timing,
        majority_rule=draw(st.booleans()),
        borrowing_threshold=draw(st.floats(0.01, 1)),
    )
    return sign_rlf(rlf, ADMIN) if draw(st.booleans()) else rlf


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rlfs())
def test_round_trip(rlf: Rlf) -> None:
    text = render_rlf(rlf)
    assert parse_rlf(text) == rlf
    assert render_rlf(parse_rlf(text)) == text


def _respell(text: str, salt: int) -> str:
    """Same content, different comments, spacing and top-level key order."""
    out = []
    for i, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("#"):
            continue  # drop the renderer's comments...
        if "=" in line and not line.lstrip().startswith("["):
            key, _, value = line.partition("=")
            line = f"{'  ' * (i % 2)}{key.strip()}{' ' * (1 + (i + salt) % 3)}={value}"
        out.append(line)
        if (i + salt) % 4 == 0:
            out.append(f"   # a comment of our own {i} = [oops]")  # ...and add others
        if (i + salt) % 5 == 0:
            out.append("")
    body = "\n".join(out)
    # move `sequence = ...` after `pool = ...`-> top-level key order must not matter
    seq = re.search(r"^\s*sequence\s*=.*$", body, re.M)
    assert seq
    body = body.replace(seq.group(0), "", 1)
    return seq.group(0).strip() + "\n" + body + "\n"


@pytest.mark.parametrize("salt", range(4))
def test_canonical_bytes_ignore_comments_spacing_and_key_order(salt: int) -> None:
    respelled = _respell(SIGNED_TEXT, salt)
    assert respelled != SIGNED_TEXT
    parsed = parse_rlf(respelled)
    assert canonical_bytes(parsed) == canonical_bytes(SIGNED)
    verify_rlf(parsed, admin_key=ADMIN.public_key())


def test_canonical_bytes_change_with_content() -> None:
    assert canonical_bytes(SIGNED) != canonical_bytes(
        with_distribution(SIGNED, "Application 1.0", None)
    )


# ---------------------------------------------------------------- signatures


def test_signed_rlf_verifies() -> None:
    verify_rlf(parse_rlf(SIGNED_TEXT), admin_key=ADMIN.public_key(), today=TODAY)


def _signed_positions(text: str) -> list[int]:
    """Offsets of non-space characters outside comments (what the signature covers)."""
    positions: list[int] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        content = line.rstrip("\n")
        cut = _comment_start(content)
        positions += [offset + i for i, ch in enumerate(content[:cut]) if not ch.isspace()]
        offset += len(line)
    return positions


def _comment_start(line: str) -> int:
    quote = False
    for i, ch in enumerate(line):
        if ch == '"':
            quote = not quote
        elif ch == "#" and not quote:
            return i
    return len(line)


def test_flipping_any_signed_byte_fails_verification() -> None:
    raw = SIGNED_TEXT.encode("ascii")
    admin = ADMIN.public_key()
    for pos in _signed_positions(SIGNED_TEXT):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        text = flipped.decode("ascii")
        try:
            rlf = parse_rlf(text)
        except (RlfError, CodeError):
            continue
        with pytest.raises(SignatureError):
            verify_rlf(rlf, admin_key=admin)


def test_unsigned_and_wrong_admin_are_refused() -> None:
    with pytest.raises(SignatureError, match="admin signature missing"):
        verify_rlf(patent())
    other = load_public(generate_keypair()[1])
    with pytest.raises(SignatureError, match="not the expected"):
        verify_rlf(SIGNED, admin_key=other)
    with pytest.raises(SignatureError, match="signing key"):
        sign_rlf(patent(), load_private(generate_keypair()[0]))


def test_forged_code_names_the_vendor_signature() -> None:
    # The RLF trusts "globex" with acme's key: a globex code then fails its vendor check,
    # though the admin signed the RLF.
    trusted_wrong = dataclasses.replace(
        patent(), vendors=(vendor(), Vendor("globex", VENDOR_KEYS["acme"][1]))
    )
    forgery = code("Solver", "5", 10, vendor="globex", serial="G1")
    bad = sign_rlf(dataclasses.replace(trusted_wrong, codes=(*trusted_wrong.codes, forgery)), ADMIN)
    text = render_rlf(bad)
    with pytest.raises(SignatureError, match=r"vendor 'globex' signature on code #1") as info:
        verify_rlf(parse_rlf(text, file="p.rlf"), file="p.rlf", text=text)
    assert info.value.line == text.splitlines().index(f'    "{forgery}",') + 1


# ---------------------------------------------------------------- distribution rules


def test_patent_example_distribution() -> None:
    assert SIGNED.initial_distribution(TODAY) == {
        "Application 1.0": ({"A": 40, "B": 30, "C": 30}, 0)
    }


def test_no_distribution_is_an_even_split_with_remainder_in_free_pool() -> None:
    rlf = with_distribution(patent(), "Application 1.0", None)
    assert rlf.initial_distribution(TODAY) == {"Application 1.0": ({"A": 33, "B": 33, "C": 33}, 1)}


def test_partial_distribution_leaves_rest_in_free_pool() -> None:
    rlf = patent({"A": 50})
    assert rlf.initial_distribution(TODAY)["Application 1.0"] == ({"A": 50, "B": 0, "C": 0}, 50)


@pytest.mark.parametrize(
    ("dist", "message"),
    [
        ({"A": 50, "B": 40, "C": 30}, "sum 120 exceeds hard limit 100"),
        ({"A": 40, "D": 1}, "unknown server 'D'"),
        ({"A": -1}, "negative distribution -1"),
    ],
)
def test_bad_distribution_is_refused(dist: dict[str, int], message: str) -> None:
    with pytest.raises(RlfError, match=message):
        with_distribution(patent(), "Application 1.0", dist)


def test_add_on_codes_raise_the_hard_limit_and_expire_alone() -> None:
    rlf = with_code(patent(), code(seats=20, serial="S2", kind="add", expires=TODAY))
    rlf = with_distribution(rlf, "Application 1.0", {"A": 60, "B": 30, "C": 30})
    assert rlf.licenses(TODAY)["Application 1.0"].hard_limit == 120
    later = TODAY + datetime.timedelta(days=1)
    assert rlf.licenses(later)["Application 1.0"].hard_limit == 100
    # the add-on expired: trimmed from the lowest-priority server up
    assert rlf.initial_distribution(later)["Application 1.0"] == ({"A": 60, "B": 30, "C": 10}, 0)


def test_expired_base_code_serves_nothing_and_check_expiry_names_it() -> None:
    rlf = with_code(patent(), code("Old", "1", 5, serial="S9", expires=TODAY))
    later = TODAY + datetime.timedelta(days=1)
    assert "Old 1" in rlf.licenses(TODAY)
    assert "Old 1" not in rlf.licenses(later)
    check_expiry(rlf, TODAY)
    text = render_rlf(rlf)
    with pytest.raises(ExpiredError, match=r"code #1 .*expired on 2026-11-24") as info:
        check_expiry(rlf, later, file="p.rlf", text=text)
    assert info.value.line is not None
    assert info.value.file == "p.rlf"


def test_add_on_without_base_is_refused() -> None:
    rlf = new_rlf("eng", servers(), vendors=[vendor()])
    with pytest.raises(RlfError, match="without a base code"):
        with_code(rlf, code(kind="add"))


# ---------------------------------------------------------------- edits


def test_every_edit_bumps_sequence_and_drops_signature() -> None:
    edits = [
        lambda r: with_distribution(r, "Application 1.0", {"A": 10}),
        lambda r: with_code(r, code("Other", "2", 3, serial="S5")),
        lambda r: with_server(r, ServerEntry("D", "127.0.0.1", 27009)),
        lambda r: with_vendor(r, "globex", VENDOR_KEYS["globex"][1]),
    ]
    for edit in edits:
        edited = edit(SIGNED)
        assert edited.sequence == SIGNED.sequence + 1
        assert edited.signature is None


def test_edits_refuse_duplicates_and_unknown_vendors() -> None:
    with pytest.raises(RlfError, match="already"):
        with_code(SIGNED, code())
    with pytest.raises(RlfError, match="unknown vendor 'globex'"):
        with_code(SIGNED, code(vendor="globex", serial="G1"))
    with pytest.raises(RlfError, match="no license code"):
        with_distribution(SIGNED, "Nope 1", {"A": 1})


# ---------------------------------------------------------------- located errors


def _replace_line(text: str, old: str, new: str) -> tuple[str, int]:
    lines = text.splitlines()
    index = lines.index(old)
    lines[index] = new
    return "\n".join(lines) + "\n", index + 1


@pytest.mark.parametrize(
    ("old", "new", "at", "field", "message"),
    [
        ('address = "127.0.0.1:27002"', 'address = "127.0.0.1"', None, "servers[1].address",
         "host:port"),
        ('address = "127.0.0.1:27003"', 'address = "127.0.0.1:27002"', None, "servers[2].address",
         "duplicate address"),
        ('id = "C"', 'id = "B"', None, "servers[2].id", "duplicate server id 'B'"),
        ("B = 30", "B = 90", '[distribution."Application 1.0"]', "distribution.Application 1.0",
         "sum 160 exceeds"),
        ("B = 30", "B = -3", None, "distribution.Application 1.0.B", "negative"),
        ("B = 30", 'B = "30"', None, "distribution.Application 1.0.B", "must be an integer"),
        ("client_lease = 6.0", "client_lease = 1.0", "client_heartbeat = 2.0",
         "timing.client_heartbeat", "below client_lease"),
        ("drift = 0.05", "drift = 0.9", None, "timing.drift", "< 0.5"),
        ("borrowing_threshold = 0.8", "borrowing_threshold = 1.5", None, "borrowing_threshold",
         "<= 1"),
        ('pool = "eng"', 'pool = "e ng"', None, "pool", "invalid pool name"),
        ("sequence = 2", "sequence = -1", None, "sequence", "0..9007199254740991"),
        ("sequence = 2", f"sequence = {2**63}", None, "sequence", "0..9007199254740991"),
        ("sequence = 2", f"sequence = {2**53}", None, "sequence", "(2**53 - 1)"),
        ('address = "127.0.0.1:27002"', 'address = "127.0.0.1:\u00b2"', None,
         "servers[1].address", "ASCII port"),
        ('address = "127.0.0.1:27002"', 'address = "127.0.0.1:\uff12\uff17"', None,
         "servers[1].address", "ASCII port"),
        ('address = "127.0.0.1:27002"', 'address = "127.0.0.1:\u0662\u0667"', None,
         "servers[1].address", "ASCII port"),
        ('address = "127.0.0.1:27002"', 'address = "127.0.0.1:070000"', None,
         "servers[1].address", "host:port"),
        ("B = 30", f"B = {2**63}", None, "distribution.Application 1.0.B", "largest hard limit"),
        ("majority_rule = true", "majority_rule = 1", None, "majority_rule", "true or false"),
        ("format = 1", "format = 2", None, "format", "unsupported"),
        ("drift = 0.05", "drift = 0.05\nspeed = 3", "speed = 3", "timing.speed", "unknown field"),
        ("sequence = 2", "sequence = 2\nextra = 1", "extra = 1", "extra", "unknown field"),
        ('key = "' + VENDOR_KEYS["acme"][1] + '"', 'key = "ed25519:AAAA"', None, "vendors[0].key",
         "32 bytes"),
    ],
)  # fmt: skip
def test_errors_name_file_line_and_field(
    old: str, new: str, at: str | None, field: str, message: str
) -> None:
    text, line = _replace_line(SIGNED_TEXT, old, new)
    if at is not None:
        line = text.splitlines().index(at) + 1
    with pytest.raises(RlfError) as info:
        parse_rlf(text, file="pool.rlf")
    err = info.value
    assert (err.file, err.line, err.field) == ("pool.rlf", line, field)
    assert message in str(err)
    assert str(err).startswith(f"pool.rlf:{line}: {field}: ")


def test_syntax_error_has_a_line() -> None:
    text, line = _replace_line(SIGNED_TEXT, "B = 30", "B = = 30")
    with pytest.raises(RlfError, match="TOML syntax error") as info:
        parse_rlf(text, file="pool.rlf")
    assert info.value.line == line


def test_missing_field_and_server_count() -> None:
    with pytest.raises(RlfError, match="pool: missing field"):
        parse_rlf("sequence = 1\n")
    with pytest.raises(RlfError, match="3 to 11 servers"):
        new_rlf("eng", servers("AB"))
    with pytest.raises(RlfError, match="3 to 11 servers"):
        new_rlf("eng", servers("ABCDEFGHIJKL"))


def test_locate_finds_array_elements_and_falls_back_to_parents() -> None:
    lines = SIGNED_TEXT.splitlines()
    assert locate(SIGNED_TEXT, ("codes", 0)) == lines.index(f'    "{SIGNED.codes[0]}",') + 1
    assert locate(SIGNED_TEXT, ("servers", 2, "nope")) == lines.index('id = "C"')
    assert locate(SIGNED_TEXT, ("nothing",)) is None


# ---------------------------------------------------------------- fuzz


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_random_text_raises_only_project_errors(text: str) -> None:
    with contextlib.suppress(LmError):
        parse_rlf(text)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_rlf_raises_only_project_errors(data: st.DataObject) -> None:
    text = SIGNED_TEXT
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(st.text(alphabet=st.sampled_from('[]"=#\n .,-0123456789Aaxe\\{}'),
                                   max_size=6))  # fmt: skip
        text = text[:pos] + insert + text[pos + cut :]
    with contextlib.suppress(InputError):  # anything else (even another LmError) fails
        rlf = parse_rlf(text)
        verify_rlf(rlf, today=TODAY)
        rlf.initial_distribution(TODAY)


# ---------------------------------------------------------------- bounds (issue 9)


def _respellings(b64: str) -> list[str]:
    """Other base64 spellings of the same bytes: the pad bits of the last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = b64.rstrip("=")
    pad = b64[len(body) :]
    free_bits = {1: 2, 2: 4}[len(pad)]  # "=" leaves 2 unused bits, "==" leaves 4
    last = alphabet.index(body[-1])
    return [
        body[:-1] + alphabet[last | extra] + pad
        for extra in range(1, 1 << free_bits)
        if last | extra != last
    ]


def test_a_respelled_signature_is_refused_not_verified() -> None:
    """64 signature bytes -> 88 base64 characters ending in "==": 15 other spellings
    decode to the same bytes (non-zero pad bits). Each is refused, by parse and verify."""
    sig = SIGNED.signature
    assert sig is not None
    assert sig.endswith("==")
    others = _respellings(sig)
    assert len(others) == 15
    for other in others:
        text = SIGNED_TEXT.replace(sig, other)
        with pytest.raises(RlfError, match="canonical base64") as info:
            parse_rlf(text, file="pool.rlf")
        assert info.value.field == "signature.admin"
        with pytest.raises(RlfError, match="canonical base64"):
            verify_rlf(dataclasses.replace(SIGNED, signature=other))
    for bad in (sig.rstrip("="), sig + "=", " " + sig, sig[:40] + "\n" + sig[40:]):
        with pytest.raises(RlfError, match="base64"):
            verify_rlf(dataclasses.replace(SIGNED, signature=bad))


def test_a_respelled_admin_key_is_refused() -> None:
    key = ADMIN_PUBLIC.removeprefix("ed25519:")
    for other in _respellings(key):
        with pytest.raises(RlfError, match="admin_key"):
            parse_rlf(SIGNED_TEXT.replace(key, other), file="pool.rlf")
        with pytest.raises(CodeError, match="canonical base64"):
            load_public("ed25519:" + other)


def test_sequence_range_is_0_to_2_pow_53_minus_1() -> None:
    top = sign_rlf(dataclasses.replace(SIGNED, sequence=2**53 - 1, signature=None), ADMIN)
    back = parse_rlf(render_rlf(top))
    verify_rlf(back)
    assert back.sequence == 2**53 - 1
    with pytest.raises(RlfError, match="sequence"):
        with_server(top, ServerEntry("D", "127.0.0.1", 27009))  # an edit would overflow
    for bad in (2**53, 2**63, 2**64, -1):
        with pytest.raises(RlfError, match=r"^sequence: must be an integer 0\.\."):
            sign_rlf(dataclasses.replace(SIGNED, sequence=bad, signature=None), ADMIN)


def test_too_many_codes_is_refused_before_they_are_checked() -> None:
    rlf = dataclasses.replace(patent(), codes=(SIGNED.codes[0],) * 1025)
    with pytest.raises(RlfError, match="at most 1024 codes"):
        sign_rlf(rlf, ADMIN)


def test_error_lines_echo_at_most_a_short_prefix_of_a_huge_value() -> None:
    text = SIGNED_TEXT.replace('pool = "eng"', 'pool = "' + "x" * 200_000 + ' y"')
    with pytest.raises(RlfError) as info:
        parse_rlf(text, file="pool.rlf")
    assert len(str(info.value)) < 200
