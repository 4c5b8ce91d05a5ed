"""Admission as a pure function: who may send which kind of frame to a daemon, and the
log-safety helpers every refusal goes through."""

from __future__ import annotations

import pytest

from lm_core.engine import messages as m
from lm_core.runtime.admission import (
    REFUSE_DECODE_MAX,
    Verdict,
    admit_frame,
    admit_server_sender,
    reaches_nobody,
)
from lm_core.runtime.kinds import CAPS, Kind, kind_of
from lm_core.runtime.logsafe import Limiter, escape
from lm_core.runtime.tlsconfig import PeerIdentity

POOL = "eng"


def who(role: str | None, name: str = "x", pool: str = POOL) -> PeerIdentity | None:
    return None if role is None else PeerIdentity(role=role, name=name, pool=pool)


# (role, kind) -> verdict for a small frame over TLS
TABLE = {
    (None, Kind.CLIENT): Verdict.ACCEPT,
    ("client", Kind.CLIENT): Verdict.ACCEPT,
    ("monitor", Kind.STATUS): Verdict.ACCEPT,
    ("admin", Kind.STATUS): Verdict.ACCEPT,
    ("admin", Kind.ADMIN): Verdict.ACCEPT,
    ("admin", Kind.ADMIN_RLF): Verdict.ACCEPT,
    ("server", Kind.SERVER): Verdict.ACCEPT,
    ("server", Kind.SERVER_BULK): Verdict.ACCEPT,
    ("server", Kind.ADMIN): Verdict.REFUSE,  # a server's key cannot change the pool
    ("server", Kind.ADMIN_RLF): Verdict.REFUSE,
    ("server", Kind.STATUS): Verdict.REFUSE,
    ("monitor", Kind.ADMIN): Verdict.REFUSE,
    ("monitor", Kind.ADMIN_RLF): Verdict.REFUSE,
    ("client", Kind.ADMIN): Verdict.REFUSE,
    ("client", Kind.STATUS): Verdict.REFUSE,
    (None, Kind.STATUS): Verdict.REFUSE,
    (None, Kind.SERVER): Verdict.CLOSE,
    ("admin", Kind.SERVER): Verdict.CLOSE,
    ("client", Kind.SERVER_BULK): Verdict.CLOSE,
    ("server", Kind.CLIENT_REPLY): Verdict.CLOSE,  # a daemon takes no replies
    (None, Kind.ADMIN_REPLY): Verdict.CLOSE,
}


@pytest.mark.parametrize(("role", "kind"), sorted(TABLE, key=str))
def test_who_may_send_what(role: str | None, kind: Kind) -> None:
    assert admit_frame(who(role), kind, 100, tls=True, pool=POOL).verdict is TABLE[(role, kind)]


def test_every_role_and_kind_has_a_decision() -> None:
    for role in (None, "client", "monitor", "admin", "server"):
        for kind in Kind:
            d = admit_frame(who(role), kind, 10, tls=True, pool=POOL)
            assert d.verdict in Verdict
            assert (d.verdict is Verdict.ACCEPT) == (d.reason == "")


def test_a_large_refused_frame_is_not_read() -> None:
    d = admit_frame(who("monitor"), Kind.ADMIN_RLF, REFUSE_DECODE_MAX + 1, tls=True, pool=POOL)
    assert d.verdict is Verdict.CLOSE
    assert "admin certificate" in d.reason


def test_a_certificate_of_another_pool_counts_as_none() -> None:
    other = who("admin", pool="other")
    assert admit_frame(other, Kind.ADMIN, 10, tls=True, pool=POOL).verdict is Verdict.REFUSE
    assert admit_frame(other, Kind.CLIENT, 10, tls=True, pool=POOL).verdict is Verdict.ACCEPT


def test_plaintext_loopback_takes_every_kind_a_daemon_takes() -> None:
    assert admit_frame(None, Kind.ADMIN, 10, tls=False, pool=POOL).verdict is Verdict.ACCEPT
    assert admit_frame(None, Kind.SERVER, 10, tls=False, pool=POOL).verdict is Verdict.ACCEPT
    assert admit_frame(None, Kind.CLIENT_REPLY, 10, tls=False, pool=POOL).verdict is Verdict.CLOSE


def test_a_server_message_must_come_from_the_certified_server() -> None:
    ids = ("A", "B", "C")
    ok = admit_server_sender(who("server", "B"), "B", POOL, tls=True, pool=POOL,
                             server_ids=ids, own_id="A")  # fmt: skip
    assert ok.verdict is Verdict.ACCEPT
    for sender, pool, own in (("C", POOL, "A"), ("B", "other", "A"), ("B", POOL, "B")):
        d = admit_server_sender(who("server", "B"), sender, pool, tls=True, pool=POOL,
                                server_ids=ids, own_id=own)  # fmt: skip
        assert d.verdict is Verdict.CLOSE, (sender, pool, own)
    plain = admit_server_sender(None, "Z", POOL, tls=False, pool=POOL, server_ids=ids, own_id="A")
    assert plain.verdict is Verdict.CLOSE


def test_kinds_cover_the_vocabulary_and_client_messages_are_small() -> None:
    assert kind_of(m.Request) is Kind.CLIENT
    assert kind_of(m.UpdateRlf) is Kind.ADMIN_RLF
    assert kind_of(m.ServerHeartbeat) is Kind.SERVER
    assert CAPS[Kind.CLIENT] <= 8 * 1024
    assert CAPS[Kind.STATUS] <= 4 * 1024


def test_a_request_nobody_can_receive_is_not_carried_out() -> None:
    base = {"pool": POOL, "sender": "c", "request_id": 1, "license": "L"}
    assert reaches_nobody(m.Request(**base), open=False)
    assert reaches_nobody(m.ClientHeartbeat(**base, failover=True), open=False)
    assert not reaches_nobody(m.ClientHeartbeat(**base), open=False)
    assert not reaches_nobody(m.Release(**base), open=False)
    assert not reaches_nobody(m.Request(**base), open=True)


def test_escape_keeps_one_line() -> None:
    assert escape("a\nb\r\x1b[31m\\") == "a\\nb\\r\\x1b[31m\\\\"
    assert escape("plain élan") == "plain élan"
    assert escape("\u2028x") == "\\u2028x"
    assert escape("x" * 500, 10) == "x" * 10 + "..."


def test_limiter_drops_repeats_and_counts_them() -> None:
    now = [0.0]
    lim = Limiter(burst=2, window=10.0, clock=lambda: now[0])
    assert lim.take("s") == 0
    assert lim.take("s") == 0
    assert lim.take("s") is None
    assert lim.take("s") is None
    assert lim.take("other") == 0
    now[0] = 5.0  # one token back
    assert lim.take("s") == 2  # two lines were dropped since the last one
