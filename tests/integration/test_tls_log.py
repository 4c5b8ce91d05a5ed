"""TLS failures between pool servers are named in the daemons' logs (one clear line),
on real daemons: a daemon started with another pool's CA file, a daemon whose whole TLS
directory comes from another CA, one whose certificate has expired, and a peer that
presents no certificate."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lm_core.engine.messages import ServerUp
from lm_core.runtime import pki, tlsconfig
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import Connection, TransportError
from lm_core.runtime.localpool import write_tls
from lm_core.runtime.tlsconfig import TlsPaths

from .conftest import Pool

pytestmark = pytest.mark.integration


def _start_with(pool: Pool, sid: str, tls_dir: Path) -> None:
    """Start `sid` on another TLS directory than the pool's."""
    assert pool.tls_dir is not None
    args = pool.args(sid)
    args[args.index(str(pool.tls_dir))] = str(tls_dir)
    log = pool.log_path(sid)
    log.parent.mkdir(parents=True, exist_ok=True)
    pool.log_paths[sid] = log
    with open(log, "ab") as fh:
        pool.procs[sid] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh)


def _wait_logged(pool: Pool, sid: str, text: str, timeout: float = 20.0) -> str:
    """Wait until `sid`'s log has a line containing `text`; return that line."""
    deadline = time.monotonic() + timeout
    while True:
        path = pool.logs.get(sid)
        lines = path.read_text().splitlines() if path is not None and path.exists() else []
        hits = [ln for ln in lines if text in ln]
        if hits:
            return hits[0]
        if time.monotonic() > deadline:
            pytest.fail(f"{sid}'s log never said {text!r}\n" + pool.log_tail())
        time.sleep(0.1)


def _other_ca(pool: Pool, out: Path) -> Path:
    """A TLS directory made by another `lm pki init` (another CA) for the same servers."""
    write_tls(out, pool.rlf)
    return out


def _expired_server(tls_dir: Path, out: Path, sid: str) -> Path:
    """A copy of the pool's TLS directory where server `sid`'s certificate expired."""
    shutil.copytree(tls_dir, out)
    ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    key, cert = pki.make_leaf(ca_key, ca_cert, role="server", name=sid, pool="itest",
                              hosts=("127.0.0.1",), now=past, days=3)  # fmt: skip
    (out / f"server-{sid}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / f"server-{sid}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out


async def _server_message_without_a_certificate(pool: Pool, sid: str) -> None:
    """Dial `sid` over TLS presenting no certificate and send it a server message."""
    assert pool.tls_dir is not None
    ctx = tlsconfig.connect_context(TlsPaths(ca=pool.tls_dir / "ca.pem"))
    conn = await Connection.open(pool.rlf.server(sid).address, ssl=ctx)
    try:
        await conn.send(ServerUp(pool="itest", sender="B", rlf_seq=1, cfg_term=0, cfg_version=0))
        await conn.recv(idle_timeout=5.0)  # the daemon closes the connection
    except (TransportError, ProtocolError):
        pass
    finally:
        await conn.aclose()


def _up(pool: Pool, *ids: str) -> None:
    for sid in ids:
        pool.start(sid)
        pool.wait_listening(sid)


def test_a_daemon_started_with_another_pools_ca_file_says_so(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory()
    assert pool.tls_dir is not None
    other = _other_ca(pool, pool.root / "other-tls")
    wrong = shutil.copytree(pool.tls_dir, pool.root / "c-tls")
    shutil.copy(other / "ca.pem", wrong / "ca.pem")  # the operator copied the wrong ca.pem
    _up(pool, "A", "B")
    _start_with(pool, "C", wrong)
    line = _wait_logged(pool, "C", "TLS: wrong CA:")
    assert "server-C.pem is not issued by" in line
    assert "ERROR" in line
    # C dials A: A's certificate is not signed by the CA C trusts
    assert "wrong CA: the server's certificate is not signed by" in _wait_logged(
        pool, "C", "peer A: TLS:"
    )
    # A dials C: C refuses A's certificate
    _wait_logged(pool, "A", "peer C: TLS:")
    # C names what A presented when A dials it
    assert "not issued by our pool CA" in _wait_logged(pool, "C", "TLS handshake from")


def test_peers_presenting_another_cas_or_an_expired_certificate_are_named(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory()
    assert pool.tls_dir is not None
    other = _other_ca(pool, pool.root / "other-tls")
    _up(pool, "A", "B")
    _start_with(pool, "C", other)  # every file of C from another pool's CA
    assert "wrong CA: the server's certificate is not signed by" in _wait_logged(
        pool, "A", "peer C: TLS:"
    )
    # C dials A and B: their certificates are not signed by the CA C trusts
    assert "wrong CA: the server's certificate is not signed by" in _wait_logged(
        pool, "C", "peer A: TLS:"
    )
    pool.kill("C")

    # a peer that presents no certificate at all
    asyncio.run(_server_message_without_a_certificate(pool, "A"))
    _wait_logged(pool, "A", "missing certificate: server message without a server certificate")

    expired = _expired_server(pool.tls_dir, pool.root / "expired-tls", "C")
    _start_with(pool, "C", expired)
    assert "expired on" in _wait_logged(pool, "C", "TLS: expired certificate:")
    assert "the server's certificate has expired" in _wait_logged(
        pool, "A", "peer C: TLS: expired certificate"
    )
