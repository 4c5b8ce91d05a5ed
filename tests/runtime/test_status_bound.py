"""Issue 9, item 2: a server's status fits in one frame by construction.

The worst case the limits allow is built on a real `LicenseServer` -- 11 servers with
32-character ids, 1,024 licenses with the longest names, more key-table rows than a
status lists (client ids of 300 `"` characters, each doubled by JSON escaping, and a
client identity with every field at its bound), a full
event log of the longest texts -- and its `StatusReply` is measured on the wire."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest

from lm_core.engine import identity, limits
from lm_core.engine import messages as m
from lm_core.engine.codes import issue_code
from lm_core.engine.harness import Pool
from lm_core.engine.identity import ClientIdentity
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.rlf import Rlf, ServerEntry, Timing, Vendor, sign_rlf
from lm_core.runtime.codec import encode

TODAY = datetime.date(2026, 11, 24)
LICENSES = limits.CODES_MAX
EXTRA_CLIENTS = 50
WORST_IDENTITY = ClientIdentity(  # every field at its bound, each character doubled by JSON
    user='"' * identity.USER_MAX,
    host='"' * identity.HOST_MAX,
    pid=identity.PID_MAX,
    program='"' * identity.PROGRAM_MAX,
    version='"' * identity.VERSION_MAX,
    display='"' * identity.DISPLAY_MAX,
)


def _worst_rlf() -> Rlf:
    vendor_private, vendor_public = generate_keypair()
    admin_private, admin_public = generate_keypair()
    vkey = load_private(vendor_private)
    ids = [f"{n:02d}" + "s" * (limits.NAME_MAX - 2) for n in range(limits.SERVERS_MAX)]
    codes = tuple(
        issue_code(
            vkey,
            vendor="v" * limits.NAME_MAX,
            product=f"{n:04d}" + "P" * 60,
            version="9" * 32,
            seats=limits.SEATS_MAX,
            expires=datetime.date(2099, 12, 31),
            issued=TODAY,
            serial=f"S{n}",
        ).text()
        for n in range(LICENSES)
    )
    rlf = Rlf(
        pool="p" * limits.NAME_MAX,
        sequence=limits.SEQUENCE_MAX,
        admin_key=admin_public,
        servers=tuple(ServerEntry(sid, "127.0.0.1", 27001 + i) for i, sid in enumerate(ids)),
        vendors=(Vendor("v" * limits.NAME_MAX, vendor_public),),
        codes=codes,
        timing=Timing(client_lease=600.0, client_heartbeat=60.0),
    )
    return sign_rlf(rlf, load_private(admin_private))


@pytest.mark.slow
def test_worst_case_status_reply_fits_the_frame_cap() -> None:
    rlf = _worst_rlf()
    pool = Pool(rlf, today=TODAY)
    for sid in rlf.server_ids:
        pool.start(sid)
    pool.run(until=rlf.timing.leader_timeout * 3)
    leader = pool.leader()
    assert leader is not None
    server = pool.servers[leader]
    licenses = sorted(rlf.licenses(TODAY))
    granted = 0
    for n in range(limits.STATUS_CLIENTS_MAX + EXTRA_CLIENTS):
        cid = f"{n:05d}" + '"' * (limits.SENDER_MAX - 5)
        msg = m.Request(
            pool=rlf.pool, sender=cid, request_id=n + 1, license=licenses[n % len(licenses)],
            identity=WORST_IDENTITY,
        )  # fmt: skip
        replies = pool.ask(leader, msg, token=f"conn:{n}")
        granted += sum(isinstance(r, m.Authorize) for r in replies)
    assert granted == limits.STATUS_CLIENTS_MAX + EXTRA_CLIENTS
    for n in range(limits.STATUS_EVENTS_MAX + 10):  # long texts: stale releases quote the id
        cid = f"{n:05d}" + '"' * (limits.SENDER_MAX - 5)
        lic = licenses[n % len(licenses)]
        stale = m.Release(pool=rlf.pool, sender=cid, request_id=0, license=lic)
        assert isinstance(pool.ask(leader, stale)[0], m.Released)

    status = server.status(pool.now)
    assert len(status["clients"]) == limits.STATUS_CLIENTS_MAX
    assert status["clients_total"] == limits.STATUS_CLIENTS_MAX + EXTRA_CLIENTS
    assert len(status["licenses"]) == status["licenses_total"] == LICENSES
    assert len(status["events"]) == limits.STATUS_EVENTS_MAX
    assert max(len(e["text"]) for e in status["events"]) == limits.EVENT_TEXT_MAX

    reply = m.StatusReply(pool=rlf.pool, sender=leader, term=server.term, request_id=1,
                          status=status)  # fmt: skip
    size = len(encode(reply))
    parts = {k: len(json.dumps(v, ensure_ascii=False)) for k, v in status.items()}
    print(f"worst-case StatusReply: {size} bytes; by key: {parts}")
    assert size <= limits.STATUS_REPLY_BYTES_MAX
    # The figure is a real worst case, not a lucky one: it is most of the cap.
    assert size > limits.STATUS_REPLY_BYTES_MAX // 4


def test_event_texts_are_clipped_where_they_are_made() -> None:
    assert limits.clip_text("x" * 1000) == "x" * (limits.EVENT_TEXT_MAX - 1) + "…"
    assert limits.clip_text("short") == "short"
    rlf = dataclasses.replace(_small_rlf())
    pool = Pool(rlf, today=TODAY)
    pool.start("A")
    pool.run(until=rlf.timing.leader_timeout * 3)
    pool.ask("A", m.Request(pool="other", sender="c" * 300, request_id=1, license="Nope 1"))
    texts = [ev.text for _, ev in pool.events]
    assert texts
    assert max(len(t) for t in texts) <= limits.EVENT_TEXT_MAX


def _small_rlf() -> Rlf:
    from lm_core.engine.harness import make_kit

    return make_kit(majority_rule=False).rlf
