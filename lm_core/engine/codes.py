"""License codes: vendor-signed, printable, copy-pasteable strings.

Theory of operation
-------------------
A code carries vendor, product, version, seats, expiry, issue date, a serial, a kind
("base", or "add" for an add-on that raises the seats of the same product+version) and
an Ed25519 signature by the vendor key.

Byte layout: ``body || signature`` where ``body`` is UTF-8 text
``1|kind|vendor|product|version|seats|expires|issued|serial`` (dates ISO, fields checked
against `_FIELD_RULES`, so no field holds ``|``) and ``signature`` is the 64-byte
Ed25519 signature over ``b"lm-license-code-v1\\0" + body``.

A code bound to a pool (promise V1, `lm_core.engine.binding`) has format ``2`` and a tenth
field: the identities of the servers it is bound to, sorted, comma-separated (each 32
lower-case hex digits: `binding.IDENTITY_RE`). The binding is inside the signed body, so
it cannot be removed or changed without the vendor's key. An unbound code keeps format 1.

Text form: ``LM1-`` followed by the RFC 4648 base32 of those bytes (upper case, no
padding) cut into groups of 5 joined by ``-``. Parsing first drops all whitespace (so
line-wrapped or indented codes from e-mail work), then demands exactly that form: the
canonical text is the only accepted spelling, which is why changing any single character
of a code makes it either unparseable or fail verification.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from lm_core.engine import limits
from lm_core.errors import CodeError, SignatureError

PREFIX = "LM1-"
GROUP = 5
SIGNATURE_DOMAIN = b"lm-license-code-v1\x00"
MAX_SEATS = limits.SEATS_MAX
KINDS = ("base", "add")
_FORMAT = "1"
_FORMAT_BOUND = "2"  # a tenth field: the server identities the code is bound to
IDENTITY_RE = re.compile(r"[0-9a-f]{32}")  # a server identity (see engine/binding.py)
BINDING_MAX = limits.SERVERS_MAX
_SIG_LEN = 64
_MAX_TEXT = limits.CODE_TEXT_MAX

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
PRODUCT_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._+-]{0,62}[A-Za-z0-9._+-])?")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
SERIAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SEATS_RE = re.compile(r"[1-9][0-9]{0,6}")
_TEXT_RE = re.compile(r"LM1(?:-[A-Z2-7]{1,5})+")
_WS_RE = re.compile(r"\s+")


def check_name(value: str, field: str, regex: re.Pattern[str] = NAME_RE) -> str | None:
    """None if `value` is a valid `field`, else a short reason."""
    if regex.fullmatch(value):
        return None
    shown = repr(value) if len(value) <= 60 else repr(value[:56] + "...")
    return f"invalid {field} {shown} (allowed: letters, digits and ._-)"


@dataclass(frozen=True, slots=True)
class LicenseCode:
    """A parsed license code. `license` ("Application 1.0") is the key used everywhere."""

    vendor: str
    product: str
    version: str
    seats: int
    expires: datetime.date
    issued: datetime.date
    serial: str
    kind: str  # "base" or "add" (add-on: raises seats of product+version)
    signature: bytes
    binding: tuple[str, ...] = ()  # server identities it is bound to; () = unbound

    @property
    def bound(self) -> bool:
        return bool(self.binding)

    @property
    def license(self) -> str:
        """The license this code counts towards: ``f"{product} {version}"``."""
        return f"{self.product} {self.version}"

    def body(self) -> bytes:
        """The signed bytes (without the domain prefix)."""
        return _body(
            kind=self.kind,
            vendor=self.vendor,
            product=self.product,
            version=self.version,
            seats=self.seats,
            expires=self.expires,
            issued=self.issued,
            serial=self.serial,
            binding=self.binding,
        )

    def text(self) -> str:
        """The printable code string (``LM1-XXXXX-XXXXX-...``)."""
        b32 = base64.b32encode(self.body() + self.signature).decode("ascii").rstrip("=")
        groups = [b32[i : i + GROUP] for i in range(0, len(b32), GROUP)]
        return PREFIX + "-".join(groups)

    def expired(self, today: datetime.date) -> bool:
        """True once `today` is past the expiry date (a code is valid through `expires`)."""
        return today > self.expires

    def describe(self) -> str:
        """One human line: ``acme Application 1.0: 100 seats (base), expires 2027-12-31``."""
        bound = f", bound to {len(self.binding)} servers" if self.binding else ""
        return (
            f"{self.vendor} {self.license}: {self.seats} seats ({self.kind}), "
            f"expires {self.expires.isoformat()}, serial {self.serial}{bound}"
        )

    def as_json(self) -> dict[str, object]:
        """The fields as plain JSON values (signature and text included)."""
        return {
            "vendor": self.vendor,
            "product": self.product,
            "version": self.version,
            "license": self.license,
            "seats": self.seats,
            "kind": self.kind,
            "expires": self.expires.isoformat(),
            "issued": self.issued.isoformat(),
            "serial": self.serial,
            "binding": list(self.binding) if self.binding else "unbound",
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "code": self.text(),
        }


def binding_problem(binding: tuple[str, ...]) -> str | None:
    """Why `binding` is not a list of server identities (None if it is one)."""
    if not binding:
        return "a bound code names at least one server identity"
    if len(binding) > BINDING_MAX:
        return f"a code is bound to at most {BINDING_MAX} servers, not {len(binding)}"
    for ident in binding:
        if not IDENTITY_RE.fullmatch(ident):
            shown = repr(ident) if len(ident) <= 40 else repr(ident[:36] + "...")
            return f"{shown} is not a server identity (32 hex digits)"
    if len(set(binding)) != len(binding):
        return "a server identity is listed twice"
    return None


def _check_fields(
    *,
    kind: str,
    vendor: str,
    product: str,
    version: str,
    seats: int,
    serial: str,
    file: str | None = None,
    line: int | None = None,
) -> None:
    problems = [
        ("kind", None if kind in KINDS else f"kind must be 'base' or 'add', got {kind!r}"),
        ("vendor", check_name(vendor, "vendor")),
        ("product", check_name(product, "product", PRODUCT_RE)),
        ("version", check_name(version, "version", VERSION_RE)),
        ("serial", check_name(serial, "serial", SERIAL_RE)),
        (
            "seats",
            None
            if isinstance(seats, int) and not isinstance(seats, bool) and 1 <= seats <= MAX_SEATS
            else f"seats must be 1..{MAX_SEATS}, got {seats!r}",
        ),
    ]
    for field, problem in problems:
        if problem is not None:
            raise CodeError(problem, file=file, line=line, field=field)


def _body(
    *,
    kind: str,
    vendor: str,
    product: str,
    version: str,
    seats: int,
    expires: datetime.date,
    issued: datetime.date,
    serial: str,
    binding: tuple[str, ...] = (),
) -> bytes:
    fields = [
        _FORMAT_BOUND if binding else _FORMAT,
        kind,
        vendor,
        product,
        version,
        str(seats),
        expires.isoformat(),
        issued.isoformat(),
        serial,
    ]
    if binding:
        fields.append(",".join(binding))
    return "|".join(fields).encode("utf-8")


def issue_code(
    key: Ed25519PrivateKey,
    *,
    vendor: str,
    product: str,
    version: str,
    seats: int,
    expires: datetime.date,
    issued: datetime.date,
    serial: str,
    kind: str = "base",
    binding: tuple[str, ...] = (),
) -> LicenseCode:
    """Sign a new license code with the vendor's key; raises `CodeError` on bad fields.
    `binding`: the identities of the servers the code is bound to (() = unbound)."""
    _check_fields(
        kind=kind, vendor=vendor, product=product, version=version, seats=seats, serial=serial
    )
    if expires < issued:
        raise CodeError(
            f"expiry {expires.isoformat()} is before the issue date {issued.isoformat()}",
            field="expires",
        )
    problem = binding_problem(binding) if binding else None
    binding = tuple(sorted(binding))
    if problem:
        raise CodeError(problem, field="binding")
    body = _body(
        kind=kind,
        vendor=vendor,
        product=product,
        version=version,
        seats=seats,
        expires=expires,
        issued=issued,
        serial=serial,
        binding=binding,
    )
    return LicenseCode(
        vendor=vendor,
        product=product,
        version=version,
        seats=seats,
        expires=expires,
        issued=issued,
        serial=serial,
        kind=kind,
        signature=key.sign(SIGNATURE_DOMAIN + body),
        binding=binding,
    )


def _date(value: str, field: str, *, file: str | None, line: int | None) -> datetime.date:
    if _DATE_RE.fullmatch(value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise CodeError(f"bad {field} date {value!r}", file=file, line=line, field=field)


def parse_code(text: str, *, file: str | None = None, line: int | None = None) -> LicenseCode:
    """Parse a printable code; whitespace anywhere is ignored. Raises `CodeError`.

    Parsing does not verify the signature: call `verify_code` with the vendor's key.
    """

    def bad(message: str) -> CodeError:
        return CodeError(message, file=file, line=line, field="code")

    if not isinstance(text, str):
        raise bad("a license code must be text")
    if len(text) > _MAX_TEXT * 2:
        raise bad("license code is too long")
    compact = _WS_RE.sub("", text)
    if not compact:
        raise bad("empty license code")
    if not compact.startswith(PREFIX):
        raise bad(f"a license code starts with {PREFIX!r}")
    if len(compact) > _MAX_TEXT or not _TEXT_RE.fullmatch(compact):
        raise bad("license code holds characters other than A-Z, 2-7 and '-' groups")
    b32 = compact[len(PREFIX) :].replace("-", "")
    try:
        raw = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    except (binascii.Error, ValueError):
        raise bad("license code is damaged (bad length)") from None
    if len(raw) <= _SIG_LEN:
        raise bad("license code is too short")
    body, signature = raw[:-_SIG_LEN], raw[-_SIG_LEN:]
    try:
        fields = body.decode("utf-8").split("|")
    except UnicodeDecodeError:
        raise bad("license code is damaged (body is not text)") from None
    fmt = fields[0]
    if fmt not in (_FORMAT, _FORMAT_BOUND):
        raise bad(f"unknown license code format {fmt!r}")
    want = 9 if fmt == _FORMAT else 10
    if len(fields) != want:
        raise bad(f"license code is damaged ({len(fields)} fields, expected {want})")
    binding: tuple[str, ...] = ()
    if fmt == _FORMAT_BOUND:
        binding = tuple(fields.pop().split(","))
        problem = binding_problem(binding)
        if problem or list(binding) != sorted(set(binding)):
            raise bad(f"license code is damaged (binding: {problem or 'not sorted'})")
    _, kind, vendor, product, version, seats_s, expires_s, issued_s, serial = fields
    if not _SEATS_RE.fullmatch(seats_s):
        raise bad(f"license code is damaged (seats {seats_s!r})")
    try:
        _check_fields(
            kind=kind,
            vendor=vendor,
            product=product,
            version=version,
            seats=int(seats_s),
            serial=serial,
            file=file,
            line=line,
        )
    except CodeError as err:
        raise bad(f"license code is damaged ({err.field}: {err.message})") from None
    code = LicenseCode(
        vendor=vendor,
        product=product,
        version=version,
        seats=int(seats_s),
        expires=_date(expires_s, "expires", file=file, line=line),
        issued=_date(issued_s, "issued", file=file, line=line),
        serial=serial,
        kind=kind,
        signature=signature,
        binding=binding,
    )
    # Only the canonical spelling is a code: no stray pad bits, no re-grouping.
    if code.text() != compact:
        raise bad("license code is damaged (not in canonical form)")
    return code


def verify_code(code: LicenseCode, vendor_key: Ed25519PublicKey, *, what: str = "") -> None:
    """Return None if the vendor's signature verifies, else raise `SignatureError`.

    `what` names the code in the message (e.g. "code #2"); default: its license.
    """
    try:
        vendor_key.verify(code.signature, SIGNATURE_DOMAIN + code.body())
    except InvalidSignature:
        name = what or f"code {code.license} serial {code.serial}"
        raise SignatureError(
            f"vendor {code.vendor!r} signature on {name} does not verify "
            "(tampered code or wrong vendor key)"
        ) from None
