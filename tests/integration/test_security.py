"""TLS on real daemons: a peer from another CA is kept out, admin operations need the
admin certificate, a license client cannot do admin operations."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from lm_core.engine import messages as m
from lm_core.runtime.connection import Connection
from lm_core.runtime.pki import PkiServer, init_pki
from lm_core.runtime.tlsconfig import client_context, load_tls_dir

from .conftest import APP, Pool

pytestmark = pytest.mark.integration


def _wait_log(pool: Pool, sid: str, needle: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while needle not in pool.logs[sid].read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{needle!r} not in {sid}'s log\n" + pool.log_tail()
        time.sleep(0.05)


def test_peer_with_cert_from_another_ca_is_refused(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    assert pool.tls_dir is not None
    rogue = pool.root / "rogue-tls"
    init_pki(
        rogue,
        pool=pool.rlf.pool,
        servers=[PkiServer(id=s.id, host=s.host) for s in pool.rlf.servers],
    )
    pool.start("A")
    pool.start("B")
    pool.wait(lambda st: st["leader"] is not None and st["majority"]["ok"], "A and B lead")
    # C runs with a certificate from another CA (same pool name, same server id)
    args = pool.daemon_args("C")
    args[args.index("--tls-dir") + 1] = str(rogue)
    log = pool.root / "C.log"
    pool.logs["C"] = log
    with open(log, "wb") as fh:
        pool.procs["C"] = subprocess.Popen(args, stdout=fh, stderr=fh)
    _wait_log(pool, "C", "TLS handshake failed")
    st = pool.status()
    c = st["servers"][2]
    assert c["up"] is False
    assert c["reachable"] is False  # the admin (pool CA) does not trust C either
    assert "certificate" in (c["error"] or "")
    leader = st["leader"]
    assert leader in ("A", "B")
    assert st["majority"]["up"] == 2


def test_admin_operations_need_the_admin_certificate(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    assert pool.tls_dir is not None
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(
        lambda st: st["leader"] is not None and all(s["up"] for s in st["servers"]),
        "three servers up",
    )
    # an "admin" directory that holds the client certificate instead
    fake = pool.root / "client-as-admin"
    fake.mkdir()
    shutil.copy(pool.tls_dir / "ca.pem", fake / "ca.pem")
    shutil.copy(pool.tls_dir / "client.pem", fake / "admin.pem")
    shutil.copy(pool.tls_dir / "client.key", fake / "admin.key")
    code = pool.issue(seats=5, product="Other", version="2.0")
    for args in (
        ("code", "add", code),
        ("dist", "set", APP, "A:30,B:30,C:30"),
        ("status",),
    ):
        out = pool.lm(*args, "--tls-dir", str(fake))
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "admin certificate" in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    # nothing changed
    st = pool.status()
    assert [lic["license"] for lic in st["licenses"]] == [APP]
    assert {sid: r["distribution"] for sid, r in st["licenses"][0]["servers"].items()} == {
        "A": 40,
        "B": 30,
        "C": 30,
    }


def test_license_client_cannot_do_admin_operations(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    assert pool.tls_dir is not None
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(
        lambda st: st["leader"] is not None and all(s["up"] for s in st["servers"]),
        "three servers up",
    )
    trust = load_tls_dir(pool.tls_dir, "client")
    assert trust is not None
    base = {"pool": pool.rlf.pool, "sender": "sneaky"}
    ops = [
        m.AddLicenseCode(**base, request_id=1, code=pool.issue(seats=5, product="X", version="1")),
        m.ChangeDistribution(
            **base, request_id=2, license=APP, distribution=(("A", 100), ("B", 0), ("C", 0))
        ),
        m.UpdateRlf(**base, request_id=3, rlf_text=pool.rlf_path.read_text()),
        m.Reclaim(**base, request_id=4, client_id="x", license=APP, reason="r"),
        m.StatusRequest(**base, request_id=5),
    ]

    async def go() -> list[m.Message]:
        out = []
        for sid in pool.ids:
            address = pool.rlf.server(sid).address
            async with await Connection.open(address, ssl=client_context(trust)) as conn:
                for op in ops:
                    out.append(await conn.request(op, reply_timeout=5))
        return out

    replies = asyncio.run(go())
    assert len(replies) == len(ops) * 3
    for reply in replies:
        assert isinstance(reply, m.AdminReply)
        assert not reply.ok
        assert "admin certificate" in reply.message
    st = pool.status()
    assert {sid: r["distribution"] for sid, r in st["licenses"][0]["servers"].items()} == {
        "A": 40,
        "B": 30,
        "C": 30,
    }
