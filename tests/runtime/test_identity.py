"""Issue 10, item 1: the client identity -- bounded and validated like every other field,
filled in by the client library, carried by the codec, kept with the key entry, shown
in status -- and the RLF's `retention_days` setting (item 5)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from lm_core.engine import identity
from lm_core.engine import messages as m
from lm_core.engine.identity import ClientIdentity, IdentityError
from lm_core.engine.rlf import canonical_bytes, parse_rlf, render_rlf
from lm_core.errors import InputError, RlfError
from lm_core.runtime.client import LicenseClient, process_identity
from lm_core.runtime.codec import ProtocolError, decode, encode

GOOD = ClientIdentity(user="alice", host="ws1", pid=42, program="cad", version="2.1",
                      display=":0")  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("user", "u" * (identity.USER_MAX + 1), "at most"),
        ("host", "h" * (identity.HOST_MAX + 1), "at most"),
        ("program", "p" * (identity.PROGRAM_MAX + 1), "at most"),
        ("version", "v" * (identity.VERSION_MAX + 1), "at most"),
        ("display", "d" * (identity.DISPLAY_MAX + 1), "at most"),
        ("user", "al\nice", "printable ASCII"),
        ("host", "h\x1b[31m", "printable ASCII"),
        ("program", "caf\u00e9", "printable ASCII"),
        ("pid", -1, "pid"),
        ("pid", 2**32, "pid"),
    ],
)
def test_a_bad_field_is_refused_naming_it(field: str, value: object, why: str) -> None:
    with pytest.raises(IdentityError, match=why) as err:
        dataclasses.replace(GOOD, **{field: value})
    assert err.value.field == f"identity.{field}"
    assert isinstance(err.value, InputError)  # the CLI's one line and exit 2


def test_the_codec_carries_an_identity_and_refuses_a_bad_one() -> None:
    req = m.Request(pool="p", sender="c", request_id=1, license="App 1.0", identity=GOOD)
    assert decode(encode(req)) == req
    hb = m.ClientHeartbeat(pool="p", sender="c", request_id=2, license="App 1.0",
                           failover=True, identity=GOOD)  # fmt: skip
    assert decode(encode(hb)) == hb
    raw = json.loads(encode(req))
    raw["identity"]["user"] = "x" * 5000
    with pytest.raises(ProtocolError, match=r"identity\.user"):
        decode(json.dumps(raw).encode())
    raw["identity"]["user"] = "tab\there"
    with pytest.raises(ProtocolError, match="identity"):
        decode(json.dumps(raw).encode())
    raw["identity"] = {**GOOD.as_json(), "type": "ClientIdentity", "uid": 0}
    with pytest.raises(ProtocolError, match="unknown field"):
        decode(json.dumps(raw).encode())


def test_the_library_fills_in_the_process_and_a_program_overrides_it() -> None:
    me = process_identity()
    assert me.pid == os.getpid()
    assert me.host
    mine = process_identity(program="cad", version="2.1")
    assert (mine.program, mine.version) == ("cad", "2.1")
    with pytest.raises(IdentityError, match=r"identity\.version"):
        process_identity(version="v" * 100)
    servers = [("A", "127.0.0.1:1"), ("B", "127.0.0.1:2"), ("C", "127.0.0.1:3")]
    client = LicenseClient(servers, None, pool="p", identity=GOOD)
    assert client.identity == GOOD
    assert LicenseClient(servers, None, pool="p").identity.pid == os.getpid()
    with pytest.raises(InputError, match="ClientIdentity"):
        LicenseClient(servers, None, pool="p", identity="alice")  # type: ignore[arg-type]


def test_what_the_process_says_is_made_valid() -> None:
    assert identity.sanitize("jos\u00e9", 32) == "jos\\xe9"
    assert identity.sanitize("a\tb", 32) == "a?b"  # a control character: replaced
    assert identity.sanitize("x" * 100, 8) == "x" * 8
    ClientIdentity(user=identity.sanitize("\u00e9\u00e9\u00e9\x07", identity.USER_MAX))


def test_retention_days_is_an_rlf_setting(sample_rlf_text: str) -> None:
    rlf = parse_rlf(sample_rlf_text)
    assert rlf.retention_days == 400
    assert "retention_days" not in render_rlf(rlf)  # the default is not written
    short = dataclasses.replace(rlf, retention_days=30)
    text = render_rlf(short)
    assert "retention_days = 30" in text
    assert parse_rlf(text).retention_days == 30
    # signed only when set: an RLF signed before the setting existed still verifies
    assert b"retention_days" not in canonical_bytes(rlf)
    assert b'"retention_days":30' in canonical_bytes(short)
    bad = text.replace("retention_days = 30", "retention_days = 0")
    with pytest.raises(RlfError, match="retention_days") as err:
        parse_rlf(bad, file="pool.rlf")
    assert err.value.line is not None
    with pytest.raises(RlfError, match="retention_days"):
        parse_rlf(text.replace("retention_days = 30", 'retention_days = "30"'))


@pytest.fixture
def sample_rlf_text() -> str:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "sample_rlfs"
    path = sorted(root.glob("*.rlf"))[0]
    return path.read_text()
