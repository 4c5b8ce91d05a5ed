"""Codes bound to a pool: one purchase, one pool (promise V1).

Theory of operation
-------------------
A server's **identity** is 32 hex digits: the first 128 bits of the SHA-256 of its TLS
certificate's public key (SubjectPublicKeyInfo, DER) -- the key `lm pki init` generated
for that server alone, so several daemons on one host have distinct identities, and a
second pool built from the same RLF and codes on other servers (with its own
`lm pki init`) has other identities. `lm pki export-identities` writes the pool's
identities to a file (`render_identities`); the vendor signs them into a code with
`lm code issue --bind FILE` (`codes.LicenseCode.binding`).

A bound code serves only while a majority of the servers it is bound to are present:
this server (if it is one of them) and the peers it is in contact with, as proved by the
TLS certificates on its live peer links. The runtime measures that and tells the engine
(`LicenseServer.set_identities`); the engine decides (`Binding.refusal`): a license with
a bound code whose binding does not hold serves nothing on this server -- requests and
renewals are denied with reason ``binding`` and a line that says why. Each server
decides for itself, from its own links; majority rule (S3) still applies on top.

An unbound code (format 1) serves anywhere, as before; it is shown as "unbound".
docs/SECURITY.md says what this stops and what it does not.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lm_core.engine.codes import IDENTITY_RE, LicenseCode, check_name, parse_code
from lm_core.engine.rlf import Rlf
from lm_core.errors import InputError

IDENTITY_HEX = 32
HEADER = "lm-pool-identities 1"
_SERVER_LINE = re.compile(r"server\s+(\S+)\s+(\S+)")
_POOL_LINE = re.compile(r"pool\s+(\S+)")


def identity_of(public_key_der: bytes) -> str:
    """A server identity from its public key (SubjectPublicKeyInfo, DER)."""
    return hashlib.sha256(public_key_der).hexdigest()[:IDENTITY_HEX]


# ---------------------------------------------------------------- the identities file


@dataclass(frozen=True, slots=True)
class PoolIdentities:
    """What `lm pki export-identities` writes: the pool and each server's identity."""

    pool: str
    servers: tuple[tuple[str, str], ...]  # (server id, identity), RLF order

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(sorted(i for _, i in self.servers))


def render_identities(ids: PoolIdentities) -> str:
    lines = [
        f"# server identities of pool {ids.pool} (lm pki export-identities): give this",
        "# file to your vendor to receive license codes bound to this pool",
        HEADER,
        f"pool {ids.pool}",
        *(f"server {sid} {ident}" for sid, ident in ids.servers),
    ]
    return "\n".join(lines) + "\n"


def parse_identities(text: str, *, file: str) -> PoolIdentities:
    """Parse an identities file; raises `InputError` naming the file, line and field."""
    pool = ""
    servers: list[tuple[str, str]] = []
    seen_header = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not seen_header:
            if line != HEADER:
                raise InputError(f"not an identities file (expected {HEADER!r})", file=file,
                                 line=n, field="header")  # fmt: skip
            seen_header = True
            continue
        if (mp := _POOL_LINE.fullmatch(line)) is not None and not pool:
            pool = mp.group(1)
            problem = check_name(pool, "pool")
            if problem:
                raise InputError(problem, file=file, line=n, field="pool")
            continue
        ms = _SERVER_LINE.fullmatch(line)
        if ms is None:
            raise InputError(f"expected 'server ID IDENTITY', got {line[:60]!r}", file=file,
                             line=n, field="server")  # fmt: skip
        sid, ident = ms.groups()
        problem = check_name(sid, "server id")
        if problem:
            raise InputError(problem, file=file, line=n, field="server")
        if not IDENTITY_RE.fullmatch(ident):
            raise InputError(f"{ident[:40]!r} is not a server identity (32 hex digits)",
                             file=file, line=n, field="identity")  # fmt: skip
        if any(ident == i or sid == s for s, i in servers):
            raise InputError(f"server {sid} or its identity is listed twice", file=file,
                             line=n, field="server")  # fmt: skip
        servers.append((sid, ident))
    if not seen_header:
        raise InputError(f"not an identities file (expected {HEADER!r})", file=file,
                         field="header")  # fmt: skip
    if not pool:
        raise InputError("no 'pool NAME' line", file=file, field="pool")
    if not servers:
        raise InputError("no 'server ID IDENTITY' line", file=file, field="server")
    return PoolIdentities(pool, tuple(servers))


# ---------------------------------------------------------------- does a binding hold?


def majority(code: LicenseCode) -> int:
    return len(code.binding) // 2 + 1


def binding_refusal(code: LicenseCode, own: str, present: frozenset[str]) -> str | None:
    """Why `code` serves nothing on a server with identity `own` that is in contact with
    servers of identities `present` (own included); None if it may serve."""
    if not code.binding:
        return None
    need = majority(code)
    have = len(present.intersection(code.binding))
    name = f"code {code.license} serial {code.serial}"
    if not own:
        return f"{name} is bound to a pool's servers; this server has no identity (no TLS)"
    if have >= need:
        return None
    if own not in code.binding and have == 0:
        return (
            f"{name} is bound to {len(code.binding)} servers of another pool; none of them "
            "is in this pool"
        )
    return (
        f"{name} is bound to {len(code.binding)} servers; {have} of them in this pool and "
        f"in contact, {need} needed"
    )


def offline_refusal(code: LicenseCode, identities: Sequence[str]) -> str | None:
    """Why `code` would serve nothing in a pool whose servers have `identities`, even with
    every server up (`lm rlf verify`); None if a majority of its servers are there."""
    if not code.binding:
        return None
    have = len(set(identities).intersection(code.binding))
    if have >= majority(code):
        return None
    return (
        f"code {code.license} serial {code.serial} is bound to {len(code.binding)} servers; "
        f"{have} of them are this pool's servers, {majority(code)} needed: it serves nothing here"
    )


class Binding:
    """The bound codes of each license (rebuilt when the RLF or the run-time codes
    change) and whether their bindings hold now."""

    def __init__(self) -> None:
        self._key: tuple[int, int, int, datetime.date] | None = None
        self._bound: dict[str, tuple[LicenseCode, ...]] = {}

    def _codes(
        self, rlf: Rlf, run_codes: Sequence[str], today: datetime.date
    ) -> dict[str, tuple[LicenseCode, ...]]:
        key = (id(rlf), rlf.sequence, len(run_codes), today)
        if key != self._key:
            bound: dict[str, list[LicenseCode]] = {}
            for code in (*rlf.license_codes(), *(parse_code(t) for t in run_codes)):
                if code.binding and not code.expired(today):
                    bound.setdefault(code.license, []).append(code)
            self._bound = {lic: tuple(cs) for lic, cs in bound.items()}
            self._key = key
        return self._bound

    def refusal(
        self,
        license: str,
        rlf: Rlf,
        run_codes: Sequence[str],
        today: datetime.date,
        own: str,
        present: frozenset[str],
    ) -> str | None:
        """Why `license` serves nothing here now (None: it may serve)."""
        for code in self._codes(rlf, run_codes, today).get(license, ()):
            why = binding_refusal(code, own, present)
            if why is not None:
                return why
        return None

    def state(
        self,
        license: str,
        rlf: Rlf,
        run_codes: Sequence[str],
        today: datetime.date,
        own: str,
        present: frozenset[str],
    ) -> str:
        """ "unbound", "bound" (its bindings hold) or "refused: <why>" (for status)."""
        if not self._codes(rlf, run_codes, today).get(license):
            return "unbound"
        why = self.refusal(license, rlf, run_codes, today, own, present)
        return "bound" if why is None else f"refused: {why}"


def binding_note(states: dict[str, str]) -> str:
    """How a license's binding reads in one line, from each server's own verdict
    (status "binding", reported only for licenses with a bound code): "" (none reported:
    unbound), "bound to this pool" or "bound: REFUSED on A, B" (`lm status`, the TUI)."""
    if not states or set(states.values()) == {"unbound"}:
        return ""
    refused = sorted(sid for sid, v in states.items() if v.startswith("refused"))
    return f"bound: REFUSED on {', '.join(refused)}" if refused else "bound to this pool"
