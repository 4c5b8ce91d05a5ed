"""TLS with real certificates from `pki` on real loopback sockets."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from lm_core.engine.messages import Release, Released
from lm_core.errors import InputError
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import (
    ConnectError,
    Connection,
    TransportError,
    close_server,
    serve,
)
from lm_core.runtime.pki import PkiServer, _load_ca, init_pki, make_leaf, write_atomic
from lm_core.runtime.tlsconfig import (
    PeerIdentity,
    TlsPaths,
    admin_context,
    client_context,
    identity_from_cert,
    load_tls_dir,
    peer_context,
    server_context,
)

WAIT = 5.0


@pytest.fixture(scope="module")
def pool_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tls")
    init_pki(out, pool="eng", servers=[PkiServer("A", "127.0.0.1"), PkiServer("B", "10.1.2.3")])
    return out


@pytest.fixture(scope="module")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("other")
    init_pki(out, pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    return out


@dataclass
class Seen:
    peers: list[PeerIdentity | None] = field(default_factory=list)


async def _answer(seen: Seen, conn: Connection) -> None:
    seen.peers.append(conn.peer)
    while (msg := await conn.recv()) is not None:
        assert isinstance(msg, Release)
        await conn.send(Released(pool="eng", sender="A", request_id=msg.request_id, license="L"))


@dataclass
class Listener:
    server: asyncio.Server
    seen: Seen

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


async def listen(ctx: ssl.SSLContext) -> Listener:
    seen = Seen()
    server = await serve(lambda c: _answer(seen, c), "127.0.0.1", 0, ssl=ctx)
    return Listener(server, seen)


@pytest.fixture
async def server_a(pool_tls: Path) -> AsyncIterator[Listener]:
    paths = load_tls_dir(pool_tls, "server-A")
    assert paths is not None
    lst = await listen(server_context(paths))
    yield lst
    await close_server(lst.server)


@pytest.fixture
async def server_a_mutual(pool_tls: Path) -> AsyncIterator[Listener]:
    paths = load_tls_dir(pool_tls, "server-A")
    assert paths is not None
    lst = await listen(server_context(paths, require_client_cert=True))
    yield lst
    await close_server(lst.server)


def release() -> Release:
    return Release(pool="eng", sender="c1", request_id=1, license="L")


async def exchange(address: str, ctx: ssl.SSLContext) -> Connection:
    conn = await Connection.open(address, ssl=ctx)
    reply = await conn.request(release(), reply_timeout=WAIT)
    assert isinstance(reply, Released)
    return conn


async def refused(address: str, ctx: ssl.SSLContext) -> str:
    """The connection fails at the handshake or at the first exchange (TLS 1.3 reports a
    refused client certificate only after the client's side of the handshake)."""
    try:
        conn = await Connection.open(address, ssl=ctx)
    except ConnectError as exc:
        return str(exc)
    try:
        await conn.request(release(), reply_timeout=WAIT)
    except (TransportError, ProtocolError) as exc:
        return str(exc)
    finally:
        await conn.aclose()
    raise AssertionError("the exchange succeeded")


def tls(pool_tls: Path, role: str) -> TlsPaths:
    paths = load_tls_dir(pool_tls, role)
    assert paths is not None
    return paths


async def test_each_side_knows_who_the_other_is(pool_tls: Path, server_a: Listener) -> None:
    conn = await exchange(server_a.address, admin_context(tls(pool_tls, "admin")))
    assert conn.tls
    assert conn.peer == PeerIdentity(role="server", name="A", pool="eng")
    await conn.aclose()
    conn = await exchange(server_a.address, peer_context(tls(pool_tls, "server-B")))
    await conn.aclose()
    conn = await exchange(server_a.address, client_context(tls(pool_tls, "client")))
    await conn.aclose()
    assert server_a.seen.peers == [
        PeerIdentity(role="admin", name="admin", pool="eng"),
        PeerIdentity(role="server", name="B", pool="eng"),
        PeerIdentity(role="client", name="client", pool="eng"),
    ]


async def test_a_client_with_only_the_trust_bundle_is_anonymous(
    pool_tls: Path, server_a: Listener, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "ca.pem").write_bytes((pool_tls / "ca.pem").read_bytes())
    paths = load_tls_dir(bundle, "client")
    assert paths == TlsPaths(ca=bundle / "ca.pem")
    conn = await exchange(server_a.address, client_context(paths))
    await conn.aclose()
    assert server_a.seen.peers == [None]


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    pool_tls: Path, server_a_mutual: Listener
) -> None:
    trust_only = TlsPaths(ca=pool_tls / "ca.pem")
    await refused(server_a_mutual.address, client_context(trust_only))
    assert server_a_mutual.seen.peers == []  # the handler never ran
    conn = await exchange(server_a_mutual.address, admin_context(tls(pool_tls, "admin")))
    await conn.aclose()
    assert len(server_a_mutual.seen.peers) == 1


async def test_a_client_certificate_from_another_ca_is_refused(
    pool_tls: Path, other_tls: Path, server_a: Listener
) -> None:
    # Trusts our CA (so it accepts our server) but presents a cert of another CA.
    stranger = TlsPaths(
        ca=pool_tls / "ca.pem", cert=other_tls / "admin.pem", key=other_tls / "admin.key"
    )
    await refused(server_a.address, admin_context(stranger))
    assert server_a.seen.peers == []


async def test_a_server_certificate_from_another_ca_is_refused(
    pool_tls: Path, other_tls: Path
) -> None:
    impostor = await listen(server_context(tls(other_tls, "server-A")))
    try:
        why = await refused(impostor.address, client_context(tls(pool_tls, "client")))
        assert "self-signed certificate in certificate chain" in why
        assert impostor.seen.peers == []
    finally:
        await close_server(impostor.server)


async def test_the_server_name_is_checked_against_the_address(pool_tls: Path) -> None:
    # B's certificate names 10.1.2.3, 127.0.0.1 and localhost -- not 127.0.0.2.
    ctx = server_context(tls(pool_tls, "server-B"))
    seen = Seen()
    server = await serve(lambda c: _answer(seen, c), "127.0.0.2", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectError, match="IP address mismatch"):
            await Connection.open(f"127.0.0.2:{port}", ssl=client_context(tls(pool_tls, "client")))
        assert seen.peers == []
    finally:
        await close_server(server)


async def test_a_certificate_without_the_loopback_san_fails_hostname_check(
    pool_tls: Path, tmp_path: Path
) -> None:
    loaded = _load_ca(pool_tls)
    assert loaded is not None
    key, cert = make_leaf(*loaded, role="server", name="X", pool="eng", hosts=("10.9.9.9",))
    write_atomic(
        tmp_path / "x.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    write_atomic(tmp_path / "x.pem", cert.public_bytes(serialization.Encoding.PEM))
    paths = TlsPaths(ca=pool_tls / "ca.pem", cert=tmp_path / "x.pem", key=tmp_path / "x.key")
    lst = await listen(server_context(paths))
    try:
        with pytest.raises(ConnectError, match="TLS handshake failed"):
            await Connection.open(lst.address, ssl=client_context(tls(pool_tls, "client")))
    finally:
        await close_server(lst.server)


async def test_tls_below_1_3_is_refused(pool_tls: Path, server_a: Listener) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pool_tls / "ca.pem"))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ConnectError, match="TLS handshake failed"):
        await Connection.open(server_a.address, ssl=ctx)
    assert server_a.seen.peers == []


async def test_plaintext_to_tls_listener_gets_nothing(server_a: Listener) -> None:
    conn = await Connection.open(server_a.address, ssl=None)
    with pytest.raises((TransportError, ProtocolError)):
        await conn.request(release(), reply_timeout=WAIT)
    await conn.aclose()
    assert server_a.seen.peers == []


async def test_plaintext_is_refused_off_loopback() -> None:
    with pytest.raises(ConnectError, match="loopback"):
        await Connection.open("10.1.2.3:27001", ssl=None)
    with pytest.raises(ConnectError, match="loopback"):
        await serve(_never, "0.0.0.0", 0, ssl=None)


async def _never(conn: Connection) -> None:
    raise AssertionError("no connection expected")


def test_load_tls_dir_names_the_missing_file(pool_tls: Path, tmp_path: Path) -> None:
    assert load_tls_dir(None, "admin") is None
    with pytest.raises(InputError, match=r"server-Z\.pem"):
        load_tls_dir(pool_tls, "server-Z")
    with pytest.raises(InputError, match=r"ca\.pem"):
        load_tls_dir(tmp_path, "admin")
    with pytest.raises(InputError, match="not found"):
        load_tls_dir(tmp_path / "nope", "admin")
    with pytest.raises(InputError, match="unknown TLS role"):
        load_tls_dir(pool_tls, "root")
    paths = load_tls_dir(pool_tls, "server:A")
    assert paths is not None
    assert paths.cert == pool_tls / "server-A.pem"


def test_a_broken_key_file_is_an_input_error(pool_tls: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(InputError, match="cannot load certificate/key"):
        server_context(TlsPaths(ca=pool_tls / "ca.pem", cert=pool_tls / "server-A.pem", key=bad))
    with pytest.raises(InputError, match="needs its certificate"):
        server_context(TlsPaths(ca=pool_tls / "ca.pem"))


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ((), None),
        (((("commonName", "server:A"),),), PeerIdentity("server", "A", "")),
        (
            (
                (("organizationName", "eng"),),
                (("organizationalUnitName", "admin"),),
                (("commonName", "admin:ops"),),
            ),
            PeerIdentity("admin", "ops", "eng"),
        ),
        (((("organizationalUnitName", "client"),), (("commonName", "admin:ops"),)), None),
        (((("commonName", "root:x"),),), None),
        (((("commonName", "server:"),),), None),
        (((("commonName", "server"),),), None),
    ],
)
def test_identity_from_cert(subject: tuple[object, ...], expected: PeerIdentity | None) -> None:
    assert identity_from_cert({"subject": subject} if subject else None) == expected
