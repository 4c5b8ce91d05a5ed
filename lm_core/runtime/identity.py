"""Server identities from TLS certificates (`lm_core.engine.binding` says what they are
for): the identity of a certificate file, of the peer of a TLS connection, and of every
server of a pool's TLS directory (what `lm pki export-identities` writes)."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lm_core.engine.binding import PoolIdentities, identity_of
from lm_core.engine.rlf import Rlf
from lm_core.errors import InputError
from lm_core.runtime.tlsconfig import role_files


def cert_identity(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return identity_of(spki)


def der_identity(der: bytes) -> str:
    return cert_identity(x509.load_der_x509_certificate(der))


def file_identity(path: Path) -> str:
    """The identity of the PEM certificate at `path`; `InputError` naming it if unreadable."""
    try:
        return cert_identity(x509.load_pem_x509_certificate(Path(path).read_bytes()))
    except OSError as exc:
        raise InputError(
            f"cannot read certificate: {exc.strerror or exc}", file=str(path)
        ) from None
    except ValueError:
        raise InputError("not a PEM certificate", file=str(path)) from None


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """The identity of the certificate the other end of a TLS connection presented
    ("" without TLS or without a certificate)."""
    if ssl_object is None:
        return ""
    der = ssl_object.getpeercert(binary_form=True)
    return der_identity(der) if der else ""


def pool_identities(rlf: Rlf, tls_dir: Path) -> PoolIdentities:
    """Every RLF server's identity from its certificate in `tls_dir` (`lm pki init`)."""
    servers = []
    for sid in rlf.server_ids:
        cert, _ = role_files(f"server-{sid}")
        path = Path(tls_dir) / cert
        if not path.is_file():
            raise InputError(f"no certificate for server {sid} (run `lm pki init`)", file=str(path))
        servers.append((sid, file_identity(path)))
    return PoolIdentities(rlf.pool, tuple(servers))
