"""Name a TLS failure instead of reporting a healthy pool as down.

A connection that fails for a TLS reason looks, from the admin client, like a server
that is down ("closed by peer", "handshake failed: self-signed certificate in certificate
chain"). `diagnose_status` looks again at every server that did not answer and says what
is wrong, in words an operator can act on:

* our own files first (no network): our certificate expired or not yet valid, not
  issued by our `ca.pem`, our CA expired;
* then the handshake's own verdict: the server's certificate is not signed by our
  `ca.pem` (wrong CA), has expired, does not name the dialled address;
* a connection closed right after the handshake means the server refused our
  certificate (from another pool's CA, or expired on the server's clock);
* without `--tls-dir`, a server that closes the plaintext connection is probed with a
  TLS hello (nothing verified): if it answers, it needs TLS.

Each server row that did not answer gets `tls_error` (None when the failure is not a
TLS one); the status gets a top-level `tls_error` when every unanswered server has the
same one. Used by `lm status` and `lm-tui`.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from lm_core.engine import limits
from lm_core.engine.status_types import PoolServer, PoolStatus
from lm_core.errors import InputError
from lm_core.runtime.tlsconfig import TlsPaths
from lm_core.runtime.userfile import read_user_file

PROBE_TIMEOUT = 1.0


def local_problem(
    paths: TlsPaths, *, role: str = "admin", now: datetime.datetime | None = None
) -> str | None:
    """What is wrong with our own TLS files, or None."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        ca = _load(paths.ca, "pool CA")
    except (InputError, ValueError) as exc:
        return f"cannot read the pool CA {paths.ca}: {exc}"
    if ca.not_valid_after_utc < now:
        return f"expired certificate: the pool CA {paths.ca} expired on {_day(ca)}"
    if paths.cert is None:
        return None
    try:
        cert = _load(paths.cert, "certificate")
    except (InputError, ValueError) as exc:
        return f"cannot read {paths.cert}: {exc}"
    if cert.not_valid_after_utc < now:
        return f"expired certificate: {paths.cert} ({role}) expired on {_day(cert)}"
    if cert.not_valid_before_utc > now:
        return f"certificate not yet valid: {paths.cert} ({role}) is valid from " + (
            cert.not_valid_before_utc.date().isoformat()
        )
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return f"wrong CA: {paths.cert} is not issued by {paths.ca}"
    return None


def _load(path: Path, what: str) -> x509.Certificate:
    """A PEM certificate read through `userfile` (bounded, regular file only)."""
    text = read_user_file(path, what=what, limit=limits.KEY_FILE_BYTES_MAX)
    return x509.load_pem_x509_certificate(text.encode())


def _day(cert: x509.Certificate) -> str:
    return cert.not_valid_after_utc.date().isoformat()


def explain(error: str, paths: TlsPaths | None) -> str | None:
    """A named TLS failure from one connection error text, or None (not TLS, or not
    sure: plaintext closes need `probe`)."""
    text = error.lower()
    if "alert certificate expired" in text:
        return "expired certificate: the server says our certificate has expired"
    if "alert unknown ca" in text or "alert bad certificate" in text:
        return "the server refused our certificate: not issued by the pool's CA"
    if "tls handshake failed" in text or "certificate verify failed" in text:
        ca = f" {paths.ca}" if paths is not None else ""
        if "certificate has expired" in text:
            return "expired certificate: the server's certificate has expired"
        if "not yet valid" in text:
            return "certificate not yet valid: the server's certificate (check the clocks)"
        if "self-signed" in text or "unable to get local issuer" in text:
            return f"wrong CA: the server's certificate is not signed by{ca or ' our CA'}"
        if "hostname mismatch" in text or "ip address mismatch" in text:
            return "certificate name mismatch: the server's certificate does not name its address"
        if "reset by the server" in text or "alert" in text:
            return "the server refused our certificate during the handshake"
        return "TLS handshake failed: " + error.rsplit("TLS handshake failed:", 1)[-1].strip()
    if paths is not None and "closed by peer" in text:
        return (
            "the server closed the connection after the TLS handshake: it refused our "
            "certificate (issued by another pool's CA, or expired by its clock)"
        )
    return None


def explain_inbound(failure: str) -> str | None:
    """A named TLS failure of a handshake that a connecting peer started with us (the
    text of `connection.handshake_failure`), or None when it is not one of these."""
    text = failure.lower()
    if "alert certificate expired" in text:
        return "expired certificate: the connecting peer says our certificate has expired"
    if "alert unknown ca" in text or "alert bad certificate" in text:
        return "wrong CA: the connecting peer refused our certificate (not issued by its CA)"
    if "certificate has expired" in text:
        return "expired certificate: the connecting peer's certificate has expired"
    if "not yet valid" in text:
        return "certificate not yet valid: the connecting peer's (check the clocks)"
    if "unable to get local issuer" in text or "self-signed" in text or "unknown ca" in text:
        return "wrong CA: the connecting peer's certificate is not issued by our pool CA"
    if "did not return a certificate" in text or "certificate required" in text:
        return "missing certificate: the connecting peer presented none"
    return None


def _not_listening(error: str) -> bool:
    text = error.lower()
    return any(
        s in text for s in ("connect call failed", "connection refused", "no connection within")
    )


async def probe_speaks_tls(address: str) -> bool:
    """True if `address` completes a TLS handshake (nothing verified: just "is it TLS")."""
    timeout = PROBE_TIMEOUT
    host, _, port = address.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=ctx)
    except (OSError, TimeoutError, ssl.SSLError, ValueError):
        return False
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        pass
    return True


async def diagnose_status(
    status: PoolStatus, paths: TlsPaths | None, *, role: str = "admin"
) -> PoolStatus:
    """Add `tls_error` to each unanswered server row of a merged pool status (and at the
    top when they all share it). Returns `status` (changed in place)."""
    rows: list[PoolServer] = status["servers"]
    down = [r for r in rows if not r.get("reachable")]
    own = local_problem(paths, role=role) if paths is not None else None
    found: dict[str, str | None] = {}
    probes: dict[str, asyncio.Task[bool]] = {}
    for row in down:
        error = str(row.get("error") or "")
        if own is not None and not _not_listening(error):
            found[row["id"]] = own  # whatever the server said, our own files are unusable
            continue
        found[row["id"]] = explain(error, paths)
        if paths is None and found[row["id"]] is None and "closed by peer" in error:
            probes[row["id"]] = asyncio.ensure_future(probe_speaks_tls(str(row["address"])))
    for sid, task in probes.items():
        if await task:
            found[sid] = "no TLS: the server requires TLS; pass --tls-dir (or set LM_TLS_DIR)"
    for row in rows:
        row["tls_error"] = found.get(row["id"])
    named = set(found.values())
    status["tls_error"] = named.pop() if down and len(named) == 1 else None
    return status
