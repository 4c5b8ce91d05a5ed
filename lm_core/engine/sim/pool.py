"""Signed test pools for the simulator: one admin and one vendor key pair per process.

Keys are generated once (Ed25519, real signatures) and cached; `make_pool` builds and
signs an RLF for ``n`` servers named A, B, C, ... in leader-priority order, and
`PoolKit` issues further codes (add-ons, new licenses) and newer RLFs for admin
operations.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lm_core.engine.codes import LicenseCode, issue_code
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.rlf import (
    Rlf,
    ServerEntry,
    Timing,
    Vendor,
    render_rlf,
    sign_rlf,
)

TODAY = datetime.date(2026, 11, 24)
EXPIRES = datetime.date(2099, 12, 31)
VENDOR = "acme"
SERVER_NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@cache
def _keys() -> tuple[Ed25519PrivateKey, str, Ed25519PrivateKey, str]:
    admin_priv, admin_pub = generate_keypair()
    vendor_priv, vendor_pub = generate_keypair()
    return load_private(admin_priv), admin_pub, load_private(vendor_priv), vendor_pub


def server_ids(n: int) -> tuple[str, ...]:
    if not 1 <= n <= len(SERVER_NAMES):
        raise ValueError(f"1..{len(SERVER_NAMES)} servers, got {n}")
    return tuple(SERVER_NAMES[:n])


def admin_key() -> Ed25519PrivateKey:
    """The process's simulated admin key (signs RLFs)."""
    return _keys()[0]


def vendor_key() -> Ed25519PrivateKey:
    """The process's simulated vendor key (signs license codes)."""
    return _keys()[2]


@dataclass
class PoolKit:
    """A signed pool plus the keys to change it (simulated admin and vendor)."""

    rlf: Rlf | None = None
    serial: int = 0

    def code(self, product: str, version: str, seats: int, *, kind: str = "base") -> LicenseCode:
        """Issue a vendor-signed code with a fresh serial."""
        self.serial += 1
        return issue_code(
            vendor_key(),
            vendor=VENDOR,
            product=product,
            version=version,
            seats=seats,
            expires=EXPIRES,
            issued=TODAY,
            serial=f"S{self.serial:06d}",
            kind=kind,
        )

    @property
    def signed(self) -> Rlf:
        assert self.rlf is not None
        return self.rlf

    @staticmethod
    def text(rlf: Rlf) -> str:
        return render_rlf(rlf)


def make_pool(
    n_servers: int,
    licenses: Sequence[tuple[str, str, int]] = (("Application", "1.0", 100),),
    *,
    distribution: Mapping[str, Mapping[str, int]] | None = None,
    timing: Timing | None = None,
    majority_rule: bool = True,
    borrowing_threshold: float = 0.8,
    pool: str = "sim",
) -> PoolKit:
    """A signed RLF for ``n_servers`` servers (A, B, ...) and the given (product, version,
    seats) licenses; ``distribution`` maps "Product Version" -> server -> count."""
    admin_priv, admin_pub, _, vendor_pub = _keys()
    ids = server_ids(n_servers)
    servers = tuple(ServerEntry(i, "127.0.0.1", 27000 + k) for k, i in enumerate(ids))
    kit = PoolKit()
    codes = tuple(kit.code(p, v, s).text() for p, v, s in licenses)
    rlf = Rlf(
        pool=pool,
        sequence=1,
        admin_key=admin_pub,
        servers=servers,
        vendors=(Vendor(VENDOR, vendor_pub),),
        codes=codes,
        distribution={k: dict(v) for k, v in (distribution or {}).items()},
        timing=timing or Timing(),
        majority_rule=majority_rule,
        borrowing_threshold=borrowing_threshold,
    )
    kit.rlf = sign_rlf(rlf, admin_priv)
    return kit
