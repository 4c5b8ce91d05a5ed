"""Regenerate sample_rlfs/: demo keys (DEMO ONLY), good pools, and bad/ known-answer files.

Run from the repository root:  .venv/bin/python sample_rlfs/make_samples.py

Deterministic: existing demo keys are reused (Ed25519 signatures are deterministic), and
codes carry fixed dates and serials, so running it again rewrites identical files.
tests/engine/test_samples.py checks the files on disk equal what `build()` makes.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
from pathlib import Path

from lm_core.engine.codes import issue_code, parse_code
from lm_core.engine.keys import generate_keypair, load_private, load_public, public_text
from lm_core.engine.rlf import (
    Rlf,
    ServerEntry,
    Vendor,
    new_rlf,
    render_rlf,
    sign_rlf,
    with_code,
    with_distribution,
)

HERE = Path(__file__).resolve().parent
KEYS = HERE / "keys"
ISSUED = datetime.date(2026, 11, 1)
FAR = datetime.date(2099, 12, 31)
KEY_NAMES = ("admin", "acme", "globex", "intruder")


def key_texts(names: tuple[str, ...] = KEY_NAMES) -> dict[str, tuple[str, str]]:
    """name -> (private text, public text), generating missing demo keys on disk."""
    out: dict[str, tuple[str, str]] = {}
    KEYS.mkdir(exist_ok=True)
    for name in names:
        private_path = KEYS / f"DEMO_ONLY_{name}.key"
        public_path = KEYS / f"DEMO_ONLY_{name}.pub"
        if not private_path.exists():
            private, public = generate_keypair()
            private_path.write_text(
                f"# DEMO ONLY -- lm key {name!r}, published in the repository: never use it"
                f" for real licenses.\n{private}\n"
            )
            public_path.write_text(f"# DEMO ONLY -- lm key {name!r} (public half).\n{public}\n")
        private = [ln for ln in private_path.read_text().splitlines() if ln and ln[0] != "#"]
        out[name] = (private[0], public_text(load_private(private[0]).public_key()))
    return out


def _servers(ids: str, base_port: int) -> list[ServerEntry]:
    return [ServerEntry(sid, "127.0.0.1", base_port + i) for i, sid in enumerate(ids)]


def build() -> dict[str, str]:
    """Relative path -> file text for every sample RLF (good and bad) and .expect file."""
    keys = key_texts()
    admin = load_private(keys["admin"][0])
    vendor_keys = {name: load_private(keys[name][0]) for name in ("acme", "globex")}
    vendors = {name: Vendor(name, keys[name][1]) for name in ("acme", "globex")}

    def code(vendor: str, product: str, version: str, seats: int, serial: str, *,
             kind: str = "base", expires: datetime.date = FAR,
             issued: datetime.date = ISSUED) -> str:  # fmt: skip
        return issue_code(
            vendor_keys[vendor], vendor=vendor, product=product, version=version,
            seats=seats, expires=expires, issued=issued, serial=serial, kind=kind,
        ).text()  # fmt: skip

    def pool(name: str, ids: str, port: int, vendor_names: tuple[str, ...] = ("acme",)) -> Rlf:
        return new_rlf(
            name,
            _servers(ids, port),
            admin_key=keys["admin"][1],
            vendors=[vendors[v] for v in vendor_names],
        )

    app = code("acme", "Application", "1.0", 100, "DEMO-0001")
    patent = with_code(pool("patent", "ABC", 27001), app, {"A": 40, "B": 30, "C": 30})
    even = with_code(pool("even", "ABC", 27011), app)
    multi = pool("multi", "ABC", 27021, ("acme", "globex"))
    multi = with_code(multi, app)
    multi = with_code(multi, code("acme", "Application", "1.0", 20, "DEMO-0002", kind="add"))
    multi = with_distribution(multi, "Application 1.0", {"A": 40, "B": 40, "C": 40})
    multi = with_code(multi, code("acme", "Designer", "2.1", 10, "DEMO-0003"), {"A": 5})
    multi = with_code(multi, code("globex", "Solver", "5", 25, "GX-0001"))
    multi = with_code(multi, code("globex", "Solver", "5", 5, "GX-0002", kind="add"))
    five = with_code(pool("five", "ABCDE", 27031), app)
    eleven = with_code(pool("eleven", "ABCDEFGHIJK", 27041), app)

    files: dict[str, str] = {}
    for name, rlf in (("patent", patent), ("even", even), ("multi_vendor", multi),
                      ("five", five), ("eleven", eleven)):  # fmt: skip
        files[f"{name}.rlf"] = render_rlf(sign_rlf(rlf, admin))

    signed_patent = sign_rlf(patent, admin)
    bad: dict[str, tuple[str, str]] = {}

    forged = dataclasses.replace(parse_code(app), seats=1000)  # the vendor's signature reused
    tampered = dataclasses.replace(patent, codes=(forged.text(),))
    bad["tampered_code"] = (
        render_rlf(sign_rlf(tampered, admin)),
        "SignatureError: vendor 'acme' signature on code #0",
    )
    bad["tampered_body"] = (
        render_rlf(signed_patent).replace("B = 30\n", "B = 20\n"),
        "SignatureError: admin signature does not verify",
    )
    intruder = load_private(keys["intruder"][0])
    stolen = dataclasses.replace(patent, admin_key=keys["intruder"][1])
    bad["wrong_admin_key"] = (
        render_rlf(sign_rlf(stolen, intruder)),
        "SignatureError: not the expected",
    )
    # The checked edit helpers refuse these, so they are rendered from raw dataclasses
    # (render_rlf does not validate); the old signature is left in: parsing fails first.
    over = dataclasses.replace(
        signed_patent, distribution={"Application 1.0": {"A": 50, "B": 40, "C": 30}}
    )
    bad["distribution_over_seats"] = (
        render_rlf(over),
        "RlfError: distribution.Application 1.0: sum 120 exceeds hard limit 100",
    )
    unknown = dataclasses.replace(
        signed_patent, distribution={"Application 1.0": {"A": 40, "D": 30}}
    )
    bad["unknown_server"] = (
        render_rlf(unknown),
        "RlfError: distribution.Application 1.0.D: unknown server 'D'",
    )
    negative = dataclasses.replace(signed_patent, distribution={"Application 1.0": {"A": -5}})
    bad["negative_distribution"] = (
        render_rlf(negative),
        "RlfError: distribution.Application 1.0.A: negative distribution -5",
    )
    old = code("acme", "Application", "1.0", 100, "DEMO-0099",
               expires=datetime.date(2020, 12, 31), issued=datetime.date(2020, 1, 1))  # fmt: skip
    expired = with_code(pool("expired", "ABC", 27001), old, {"A": 40, "B": 30, "C": 30})
    bad["expired_code"] = (
        render_rlf(sign_rlf(expired, admin)),
        "ExpiredError: code #0 (acme Application 1.0, serial DEMO-0099) expired on 2020-12-31",
    )
    bad["syntax_error"] = (
        render_rlf(signed_patent).replace('pool = "patent"', 'pool = "patent'),
        "RlfError: TOML syntax error",
    )
    dup = dataclasses.replace(
        signed_patent,
        servers=(*signed_patent.servers[:2], ServerEntry("B", "127.0.0.1", 27003)),
    )
    bad["duplicate_server_id"] = (
        render_rlf(dup),
        "RlfError: servers[2].id: duplicate server id 'B'",
    )
    two = dataclasses.replace(signed_patent, servers=signed_patent.servers[:2], distribution={})
    bad["two_servers"] = (render_rlf(two), "RlfError: servers: a pool has 3 to 11 servers, got 2")
    for name, (text, expect) in bad.items():
        files[f"bad/{name}.rlf"] = text
        files[f"bad/{name}.expect"] = expect + "\n"
    return files


def main() -> int:
    files = build()
    for rel, text in files.items():
        path = HERE / rel
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    print(f"wrote {len(files)} files under {HERE}", file=sys.stderr)
    # Sanity: the demo admin's public key is what the good samples name.
    load_public((KEYS / "DEMO_ONLY_admin.pub").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
