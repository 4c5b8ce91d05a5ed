"""The pool's small PKI: a CA, a certificate per server, an admin, a monitor and a client
certificate.

Roles (what each may send is `admission`'s table; docs/SECURITY.md says why):

* server -- one per RLF server; talks to its peers; cannot send admin operations.
* admin -- changes the pool (codes, allocations, distribution, RLF pushes, reclaims).
* monitor -- reads status (`lm status`, `lm-tui --read-only`); changes nothing.
* client -- optional for license clients (a client without a certificate is served too).

Layout and naming: see `tlsconfig` (this module writes what `load_tls_dir` reads).
Keys are ECDSA P-256 (fast TLS 1.3 handshakes). Every file is written to a temporary
name in the same directory, fsynced and renamed (then the directory is fsynced); keys are
created 0600, certificates 0644.

Running `init_pki` again on a directory that already holds ``ca.pem`` + ``ca.key`` keeps
that CA (so certificates already deployed stay valid) and issues fresh leaf
certificates for every server in the RLF -- the way to add a server to the pool.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lm_core.errors import InputError

LEAF_DAYS = 825
CA_DAYS = 3650


@dataclass(frozen=True, slots=True)
class PkiServer:
    """One server as the PKI needs it: its id and the host clients dial."""

    id: str
    host: str


@dataclass(frozen=True, slots=True)
class PkiResult:
    """What `init_pki` wrote."""

    ca_reused: bool
    files: tuple[Path, ...]


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` via a temporary file in the same directory: fsync, chmod
    `mode`, rename, fsync the directory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str, pool: str, ou: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, pool or "lm")]
    if ou is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _sans(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        if host in seen:
            continue
        seen.add(host)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(out)


def make_ca(
    pool: str, *, now: datetime.datetime | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new pool CA (key, self-signed certificate)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"lm pool CA {pool}", pool, None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    role: str,
    name: str,
    pool: str,
    hosts: Sequence[str] = (),
    now: datetime.datetime | None = None,
    days: int = LEAF_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for `role` ("server", "admin", "monitor", "client") named `name`,
    signed by the CA. Servers get serverAuth + clientAuth (they dial each other) and IP/DNS
    SANs for `hosts`; the other roles get clientAuth."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == "server":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{role}:{name}", pool, role))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(_sans(hosts), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _load_ca(out: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    cert_path, key_path = out / "ca.pem", out / "ca.key"
    if not cert_path.exists() and not key_path.exists():
        return None
    for p in (cert_path, key_path):
        if not p.is_file():
            raise InputError("half a CA (ca.pem and ca.key go together)", file=str(p))
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as exc:
        raise InputError(f"not a PEM certificate: {exc}", file=str(cert_path)) from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"not an unencrypted PEM key: {exc}", file=str(key_path)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError("the CA key is not an EC key", file=str(key_path))
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise InputError("ca.key does not match ca.pem", file=str(key_path))
    return key, cert


def init_pki(
    out: Path,
    *,
    pool: str,
    servers: Sequence[PkiServer],
    admin_name: str = "admin",
    client_name: str = "client",
    monitor_name: str = "monitor",
    now: datetime.datetime | None = None,
) -> PkiResult:
    """Write (or refresh) the pool's TLS directory `out`. See the module docstring.
    Raises `InputError` for an unusable directory or an existing CA that does not load."""
    out = Path(out)
    if not servers:
        raise InputError("the RLF names no servers", field="servers")
    try:
        return _init(out, pool, servers, admin_name, client_name, monitor_name, now)
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else str(out)
        raise InputError(f"cannot write: {exc.strerror or exc}", file=where) from None


def _init(
    out: Path,
    pool: str,
    servers: Sequence[PkiServer],
    admin_name: str,
    client_name: str,
    monitor_name: str,
    now: datetime.datetime | None,
) -> PkiResult:
    out.mkdir(parents=True, exist_ok=True)
    loaded = _load_ca(out)
    files: list[Path] = []
    if loaded is None:
        ca_key, ca_cert = make_ca(pool, now=now)
        write_atomic(out / "ca.key", _key_pem(ca_key), mode=0o600)
        write_atomic(out / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
        files += [out / "ca.pem", out / "ca.key"]
    else:
        ca_key, ca_cert = loaded

    def leaf(role: str, name: str, stem: str, hosts: Sequence[str] = ()) -> None:
        key, cert = make_leaf(
            ca_key, ca_cert, role=role, name=name, pool=pool, hosts=hosts, now=now
        )
        write_atomic(out / f"{stem}.key", _key_pem(key), mode=0o600)
        write_atomic(out / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))
        files.extend([out / f"{stem}.pem", out / f"{stem}.key"])

    claim = out / "claim.key"
    if not claim.exists():  # the servers' shared secret for fail-over tickets (L2)
        write_atomic(claim, (secrets.token_hex(32) + "\n").encode(), mode=0o600)
        files.append(claim)
    for server in servers:
        leaf("server", server.id, f"server-{server.id}", ("127.0.0.1", server.host, "localhost"))
    leaf("admin", admin_name, "admin")
    leaf("monitor", monitor_name, "monitor")
    leaf("client", client_name, "client")
    return PkiResult(ca_reused=loaded is not None, files=tuple(files))
