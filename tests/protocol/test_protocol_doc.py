"""docs/PROTOCOL.md's tables against the code they describe: frame kinds and caps, deny
reasons and which are final, the fields of every client-facing message, and the limits
quoted for them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from lm_core.engine import limits
from lm_core.engine import messages as m
from lm_core.engine.client import FINAL_REASONS, TRANSIENT_REASONS
from lm_core.engine.vocab import DenyReason
from lm_core.runtime.framing import FRAME_TIMEOUT
from lm_core.runtime.kinds import CAPS, Kind

DOC = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end >= 0 else len(DOC)]


def test_frame_kinds_and_caps() -> None:
    rows = re.findall(r"^ *\| (\d) \| ([A-Z_]+) \| .*? \| ([\d,]+) \|$", _section("## 2."), re.M)
    assert {(int(n), name, int(cap.replace(",", ""))) for n, name, cap in rows} == {
        (int(k), k.name, CAPS[k]) for k in Kind
    }
    assert f"within **{FRAME_TIMEOUT:g} s**" in DOC


def test_deny_reasons_and_what_is_final() -> None:
    table = _section("## 5.")
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| .*? \| (.*?) \| (?:.*?) \|$", table, re.M))
    assert set(rows) == {r.value for r in DenyReason} - {DenyReason.UNREACHABLE}
    final = {r for r, asking in rows.items() if "**final**" in asking or r == "reclaimed"}
    assert final == {r.value for r in FINAL_REASONS}
    for reason in TRANSIENT_REASONS:
        assert "transient" in table.split(f"| `{reason.value}` |")[1].split("\n")[0]
    assert "`unreachable` is never on the wire" in table


def _documented_fields(name: str) -> str:
    """The example and table of message `name` in section 3."""
    body = _section("## 3.")
    start = body.index(f"**`{name}`**")
    nxt = body.find("**`", start + 5)
    return body[start : nxt if nxt >= 0 else len(body)]


def test_every_client_message_field_is_documented() -> None:
    for cls in (m.Request, m.ClientHeartbeat, m.Release, m.Authorize, m.Deny):
        text = _documented_fields(cls.__name__)
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in text or f'"{f.name}"' in text, (cls.__name__, f.name)
    released = _documented_fields("Released")
    assert "`request_id`" in released
    assert "`license`" in released


def test_quoted_limits() -> None:
    assert f"≤ {limits.NAME_MAX} printable ASCII" in DOC
    assert f"≤ {limits.LICENSE_MAX} printable ASCII" in DOC
    assert f"≤ {limits.SENDER_MAX} printable ASCII" in DOC
    assert f"≤ {limits.TEXT_MAX:,} characters" in DOC
    assert "≤ 256 printable ASCII" in DOC
    assert m.TicketText.__metadata__[0].max == 256
    assert "0 .. 2^53−1" in DOC
    assert limits.COUNTER_MAX == 2**53 - 1
    assert f"0 .. {limits.HARD_LIMIT_MAX:,}" in DOC
    assert f"1 .. {m.MAX_COUNT:,}" in DOC
    assert f"0 .. {int(limits.SECONDS_MAX):,}" in DOC
