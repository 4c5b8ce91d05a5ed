"""TLS for the pool: file layout, SSL contexts per role, and who a peer is.

Theory of operation
-------------------
`lm pki init` (`pki.py`) writes one directory for the whole pool::

    tls/ca.pem                 the pool CA certificate (every role trusts only this)
    tls/ca.key                 the CA's private key (0600; keep it off the servers if you can)
    tls/server-<ID>.pem/.key   one per RLF server: CN "server:<ID>", OU "server",
                               SANs: IP 127.0.0.1, the server's RLF host (IP or DNS), localhost
    tls/admin.pem/.key         CN "admin:<NAME>", OU "admin"
    tls/monitor.pem/.key       CN "monitor:<NAME>", OU "monitor" (read-only operators)
    tls/client.pem/.key        CN "client:<NAME>", OU "client" (optional for clients)

The role is carried by the certificate (CN "<role>:<name>", OU "<role>", O "<pool>"),
signed by the pool CA, so the daemon can tell a server from an admin from a client and
check that a server message's sender is the server the certificate names
(`PeerIdentity`). What each role may send is `admission`'s table (docs/SECURITY.md).
All contexts are TLS 1.3 only.

An operator's tools (`lm status`, `lm-tui`, admin commands) load the "admin" role: the
admin certificate if the directory holds one, else the monitor certificate (a directory
handed to a read-only operator holds ca.pem + monitor.pem/.key only). `LM_TLS_ROLE=monitor`
picks the monitor certificate even where both are present.

* `server_context` -- what a daemon listens with. It always asks for a client
  certificate and refuses one not signed by the pool CA; with
  ``require_client_cert=False`` (the daemon's default, since plain license clients may
  have no certificate) a client without one is let in with identity None, and the
  daemon then refuses server and admin messages from it. With ``True`` (mutual TLS) a
  client without a certificate is refused in the handshake.
* `connect_context` -- what a server (to its peers), an admin client, and a license
  client connect with: verifies the server's certificate against the pool CA and its
  IP/DNS SAN against the address dialled, and presents this role's certificate if the
  `TlsPaths` has one.

Plaintext (``tls=None`` everywhere) is allowed only on loopback; see
`connection.check_plaintext_allowed`.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_core.errors import InputError

ROLES = ("server", "admin", "monitor", "client")
OPERATOR_ROLES = ("admin", "monitor")


@dataclass(frozen=True, slots=True)
class TlsPaths:
    """The files one role needs: the pool CA certificate, and this role's certificate
    and key (None for a license client that has only the trust bundle)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who the other end of a TLS connection is, from its (CA-verified) certificate."""

    role: str  # "server", "admin", "monitor" or "client"
    name: str  # server id / admin name / client name
    pool: str  # the O of the certificate ("" if absent)


def role_files(role: str) -> tuple[str, str]:
    """(cert file name, key file name) for a role: "server-A" / "server:A", "admin",
    "monitor", "client"."""
    if role.startswith(("server-", "server:")):
        sid = role[len("server-") :]
        if not sid:
            raise InputError("empty server id in TLS role", field="role")
        return f"server-{sid}.pem", f"server-{sid}.key"
    if role in ("admin", "monitor", "client"):
        return f"{role}.pem", f"{role}.key"
    raise InputError(
        f"unknown TLS role {role!r} (expected server-<ID>, admin, monitor, client)", field="role"
    )


def operator_role(tls_dir: Path) -> str:
    """The role an operator's tool speaks with from `tls_dir`: "admin" when admin.pem or
    admin.key is there, else "monitor" when monitor.pem or monitor.key is; `LM_TLS_ROLE`
    ("admin" / "monitor") overrides."""
    forced = os.environ.get("LM_TLS_ROLE", "")
    if forced:
        if forced not in OPERATOR_ROLES:
            raise InputError(
                f"LM_TLS_ROLE must be admin or monitor, not {forced!r}", field="LM_TLS_ROLE"
            )
        return forced
    if not any((tls_dir / f).exists() for f in role_files("admin")) and any(
        (tls_dir / f).exists() for f in role_files("monitor")
    ):
        return "monitor"
    return "admin"


def load_tls_dir(tls_dir: Path | None, role: str) -> TlsPaths | None:
    """The `TlsPaths` of `role` in a directory written by `lm pki init`; None if
    `tls_dir` is None (plaintext, loopback only).

    Raises `InputError` naming the missing file. A "client" without client.pem/.key gets
    a trust-only `TlsPaths` (cert and key None); every other role needs its pair. "admin"
    means an operator: see `operator_role`.
    """
    if tls_dir is None:
        return None
    tls_dir = Path(tls_dir)
    if not tls_dir.is_dir():
        raise InputError("TLS directory not found", file=str(tls_dir))
    ca = tls_dir / "ca.pem"
    if not ca.is_file():
        raise InputError("pool CA certificate missing (run `lm pki init`)", file=str(ca))
    if role == "admin":
        role = operator_role(tls_dir)
    cert_name, key_name = role_files(role)
    cert, key = tls_dir / cert_name, tls_dir / key_name
    if role == "client" and not cert.exists() and not key.exists():
        return TlsPaths(ca=ca)
    for path in (cert, key):
        if not path.is_file():
            raise InputError(f"{role} certificate file missing (run `lm pki init`)", file=str(path))
    return TlsPaths(ca=ca, cert=cert, key=key)


def load_claim_key(tls_dir: Path | None, pool: str) -> bytes:
    """The pool servers' shared secret that authenticates fail-over tickets
    (``claim.key`` from `lm pki init`; servers only, never clients or admins).

    Plaintext loopback (no TLS dir) derives a fixed key from the pool name: nothing
    there is secret anyway. An empty result means the file is missing (older TLS dirs):
    the daemon then warns and seats do not move with fail-over clients."""
    if tls_dir is None:
        return hashlib.sha256(b"lm insecure loopback claim key:" + pool.encode()).digest()
    path = Path(tls_dir) / "claim.key"
    if not path.exists():
        return b""
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError):
        raise InputError("not a claim key (64 hex digits)", file=str(path)) from None
    if len(key) < 16:
        raise InputError("claim key too short (at least 32 hex digits)", file=str(path))
    return key


def _base(ctx: ssl.SSLContext, paths: TlsPaths) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_verify_locations(cafile=str(paths.ca))
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"cannot load the pool CA: {exc}", file=str(paths.ca)) from None
    if paths.cert is not None:
        if paths.key is None:
            raise InputError("certificate without a key", file=str(paths.cert))
        try:
            ctx.load_cert_chain(certfile=str(paths.cert), keyfile=str(paths.key))
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"cannot load certificate/key: {exc}", file=str(paths.cert)) from None
    return ctx


def server_context(paths: TlsPaths, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """The listening side's context (a daemon). See the module docstring for
    `require_client_cert`."""
    if paths.cert is None:
        raise InputError("a server needs its certificate and key", file=str(paths.ca))
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), paths)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    ctx.num_tickets = 0  # no session resumption: connections are long-lived
    return ctx


def connect_context(paths: TlsPaths) -> ssl.SSLContext:
    """The connecting side's context (a server dialling a peer, an admin client, a
    license client): verifies the server against the pool CA and the dialled address,
    presents this role's certificate if there is one."""
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), paths)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# Role-named aliases, so call sites read as what they are.
def peer_context(paths: TlsPaths) -> ssl.SSLContext:
    """A server connecting to another server (presents its server certificate)."""
    return connect_context(paths)


def admin_context(paths: TlsPaths) -> ssl.SSLContext:
    """An admin client connecting to a server (presents the admin certificate)."""
    return connect_context(paths)


def client_context(paths: TlsPaths) -> ssl.SSLContext:
    """A license client connecting to a server (client certificate optional)."""
    return connect_context(paths)


def identity_from_cert(cert: dict[str, Any] | None) -> PeerIdentity | None:
    """The identity in a certificate as returned by ``SSLObject.getpeercert()`` (already
    verified by the handshake); None if there is no certificate or it names no known
    role."""
    if not cert:
        return None
    attrs: dict[str, str] = {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            attrs.setdefault(key, value)
    cn = attrs.get("commonName", "")
    role, sep, name = cn.partition(":")
    if not sep or role not in ROLES or not name:
        return None
    ou = attrs.get("organizationalUnitName")
    if ou is not None and ou != role:
        return None
    return PeerIdentity(role=role, name=name, pool=attrs.get("organizationName", ""))


def cert_role(path: Path) -> str | None:
    """The role named by the certificate at `path` (None if it names none)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    role, sep, _ = str(cns[0].value).partition(":") if cns else ("", "", "")
    return role if sep and role in ROLES else None


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> PeerIdentity | None:
    """The identity of the other end of a TLS connection (None on plaintext or when the
    peer sent no certificate)."""
    if ssl_object is None:
        return None
    return identity_from_cert(ssl_object.getpeercert())
