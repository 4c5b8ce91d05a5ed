"""The redundant license file (RLF): the pool's one signed configuration.

Theory of operation
-------------------
An RLF is TOML text (comments allowed, diff-friendly) holding the pool name, a sequence
number, the admin's public key, the servers in leader-priority order (first = preferred
leader), the trusted vendors, the license codes as issued, an optional initial
distribution per license, timing, majority rule, the borrowing threshold, and the admin
signature. `render_rlf` writes the canonical layout; `parse_rlf` reads any TOML spelling
of it and checks everything it can without keys: ``parse_rlf(render_rlf(x)) == x``.

Signing: `canonical_bytes` is a compact, key-sorted JSON of every field except the
signature, so comments, whitespace and key order never change it; the admin signature
(Ed25519 over ``b"lm-rlf-v1\\n" + canonical_bytes``) covers everything else. Every edit
helper (`with_code`, `with_distribution`, `with_server`, `with_vendor`) bumps the
sequence number and drops the signature: a changed RLF must be re-signed.

Distribution rules (patent): a license's hard limit is the seats of its unexpired codes
(a base code plus any add-on codes); a distribution that sums below the hard limit leaves
the rest in the free pool; no distribution means an even split with the remainder in the
free pool (100 over 3 -> 33/33/33, free 1); a distribution over the hard limit, naming an
unknown server, or negative is an `RlfError`. (If add-on codes expire so the hard limit
drops below a stored distribution, `initial_distribution` trims from the lowest-priority
server up.) An expired code is not an error: it serves nothing.

Errors name file, line and field: ``pool.rlf:12: distribution.Application 1.0: sum 120
exceeds hard limit 100``. Pure: no IO, no clock (callers pass `today`).
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from lm_core.engine import limits
from lm_core.engine.codes import NAME_RE, LicenseCode, parse_code, verify_code
from lm_core.engine.keys import decode_b64, load_public, public_text
from lm_core.errors import CodeError, ExpiredError, InputError, RlfError, SignatureError

FORMAT = 1
MIN_SERVERS = limits.SERVERS_MIN
MAX_SERVERS = limits.SERVERS_MAX
MAX_RLF_CHARS = limits.RLF_CHARS_MAX
MAX_CODES = limits.CODES_MAX
RETENTION_DAYS_DEFAULT = limits.RETENTION_DAYS_DEFAULT
RETENTION_DAYS_MIN = limits.RETENTION_DAYS_MIN
RETENTION_DAYS_MAX = limits.RETENTION_DAYS_MAX
SIGNATURE_DOMAIN = b"lm-rlf-v1\n"

Path = tuple[str | int, ...]

_HOST_RE = re.compile(r"[A-Za-z0-9._:-]{1,253}")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POS_RE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")
_PORT_RE = re.compile(r"[0-9]{1,5}")  # ASCII only: str.isdigit() accepts "²" and "５"


def _shown(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut so an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# ------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One pool member: its id and where it listens."""

    id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds. `drift` is the max relative clock-rate error; fencing adds margins from it.

    `problems()` lists what is insane (heartbeat not below the leader timeout, ...)."""

    heartbeat_interval: float = 0.5
    leader_timeout: float = 2.0
    server_lease: float = 1.5
    client_heartbeat: float = 2.0
    client_lease: float = 6.0
    drift: float = 0.05

    def problems(self) -> list[tuple[str, str]]:
        """(field, reason) for every rule this timing breaks; empty when sane."""
        out: list[tuple[str, str]] = []
        for name in _TIMING_FIELDS:
            value = getattr(self, name)
            if name == "drift":
                if not (math.isfinite(value) and 0 <= value < 0.5):
                    out.append((name, f"must be >= 0 and < 0.5, got {value!r}"))
            elif not (math.isfinite(value) and 0 < value <= 86400):
                out.append((name, f"must be > 0 and <= 86400 seconds, got {value!r}"))
        if out:
            return out
        if self.heartbeat_interval >= self.leader_timeout:
            out.append(
                ("heartbeat_interval", f"must be below leader_timeout ({self.leader_timeout})")
            )
        if self.heartbeat_interval >= self.server_lease:
            out.append(("heartbeat_interval", f"must be below server_lease ({self.server_lease})"))
        if self.client_heartbeat >= self.client_lease:
            out.append(("client_heartbeat", f"must be below client_lease ({self.client_lease})"))
        return out


_TIMING_FIELDS = (
    "heartbeat_interval",
    "leader_timeout",
    "server_lease",
    "client_heartbeat",
    "client_lease",
    "drift",
)


@dataclass(frozen=True, slots=True)
class Vendor:
    """A trusted vendor: codes naming `name` must verify with `key` (public_text form)."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class LicenseTotals:
    """What the unexpired codes of one license add up to."""

    license: str
    vendor: str
    hard_limit: int
    expires: datetime.date  # the last day any base code of this license is valid
    next_change: datetime.date  # the first day-end at which a contributing code expires
    codes: tuple[LicenseCode, ...]


@dataclass(frozen=True, slots=True)
class Rlf:
    """A parsed RLF. `servers` are in leader-priority order (first = highest)."""

    pool: str
    sequence: int
    admin_key: str  # public_text of the admin key that signs this RLF ("" = not yet set)
    servers: tuple[ServerEntry, ...]
    vendors: tuple[Vendor, ...]
    codes: tuple[str, ...]  # code texts as issued (canonical form)
    distribution: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    timing: Timing = Timing()
    majority_rule: bool = True
    borrowing_threshold: float = 0.8
    signature: str | None = None  # base64 Ed25519 signature by admin_key
    # days the servers keep usage (and audit) rows; older ones are pruned
    retention_days: int = RETENTION_DAYS_DEFAULT

    def server(self, server_id: str) -> ServerEntry:
        """The server with this id; raises `RlfError` if there is none."""
        for entry in self.servers:
            if entry.id == server_id:
                return entry
        raise RlfError(f"no server {server_id!r} in pool {self.pool!r}", field="servers")

    @property
    def server_ids(self) -> tuple[str, ...]:
        """Server ids in leader-priority order."""
        return tuple(s.id for s in self.servers)

    def vendor_key(self, name: str) -> str | None:
        """The public key text of vendor `name`, or None."""
        for vendor in self.vendors:
            if vendor.name == name:
                return vendor.key
        return None

    def license_codes(self) -> tuple[LicenseCode, ...]:
        """The codes, parsed (signatures are checked by `verify_rlf`, not here)."""
        return tuple(_parse_cached(text) for text in self.codes)

    def licenses(self, today: datetime.date) -> dict[str, LicenseTotals]:
        """License -> totals over its unexpired codes, in order of first appearance.

        A license serves only while one of its base codes is unexpired; add-on codes
        raise its hard limit while they are unexpired themselves."""
        grouped: dict[str, list[LicenseCode]] = {}
        for code in self.license_codes():
            grouped.setdefault(code.license, []).append(code)
        out: dict[str, LicenseTotals] = {}
        for lic, codes in grouped.items():
            live = tuple(c for c in codes if not c.expired(today))
            bases = [c for c in live if c.kind == "base"]
            if not bases:
                continue
            out[lic] = LicenseTotals(
                license=lic,
                vendor=live[0].vendor,
                hard_limit=sum(c.seats for c in live),
                expires=max(c.expires for c in bases),
                next_change=min(c.expires for c in live),
                codes=live,
            )
        return out

    def initial_distribution(self, today: datetime.date) -> dict[str, tuple[dict[str, int], int]]:
        """License -> (seats per server in priority order, free pool) for serving licenses."""
        ids = self.server_ids
        out: dict[str, tuple[dict[str, int], int]] = {}
        for lic, totals in self.licenses(today).items():
            hard = totals.hard_limit
            given = self.distribution.get(lic)
            if given is None:
                share = hard // len(ids) if ids else 0
                per = dict.fromkeys(ids, share)
            else:
                per = {sid: int(given.get(sid, 0)) for sid in ids}
                excess = sum(per.values()) - hard
                for sid in reversed(ids):  # an add-on expired: trim lowest priority first
                    if excess <= 0:
                        break
                    cut = min(per[sid], excess)
                    per[sid] -= cut
                    excess -= cut
            out[lic] = (per, hard - sum(per.values()))
        return out


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> LicenseCode:
    # parse_code is pure and LicenseCode is frozen: safe to share.
    return parse_code(text)


# ------------------------------------------------------------------ problems with paths


class _Problem(Exception):
    """Internal: a problem at a field path; turned into a located `InputError`."""

    def __init__(self, path: Path, message: str, kind: type[InputError] = RlfError) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.kind = kind


def field_name(path: Path) -> str:
    """``("servers", 1, "address")`` -> ``servers[1].address``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _error(problem: _Problem, *, file: str | None, text: str | None) -> InputError:
    line = locate(text, problem.path) if text is not None else None
    return problem.kind(problem.message, file=file, line=line, field=field_name(problem.path))


# ------------------------------------------------------------------ checks


def _check_public(value: str, path: Path) -> None:
    try:
        if public_text(load_public(value)) != value:
            raise _Problem(path, "public key is not in canonical ed25519:<base64> form")
    except CodeError as err:
        raise _Problem(path, err.message) from None


def _check(rlf: Rlf) -> None:
    """Raise `_Problem` for the first thing wrong with `rlf` (no signatures checked)."""
    if not NAME_RE.fullmatch(rlf.pool):
        raise _Problem(("pool",), f"invalid pool name {_shown(rlf.pool)} (letters, digits, ._-)")
    if not limits.in_counter_range(rlf.sequence):
        raise _Problem(
            ("sequence",),
            f"must be an integer 0..{limits.SEQUENCE_MAX} (2**53 - 1), got {_shown(rlf.sequence)}",
        )
    if rlf.admin_key:
        _check_public(rlf.admin_key, ("admin_key",))
    _check_servers(rlf.servers)
    names: set[str] = set()
    for i, vendor in enumerate(rlf.vendors):
        if not NAME_RE.fullmatch(vendor.name):
            raise _Problem(("vendors", i, "name"), f"invalid vendor name {_shown(vendor.name)}")
        if vendor.name in names:
            raise _Problem(("vendors", i, "name"), f"duplicate vendor {_shown(vendor.name)}")
        names.add(vendor.name)
        _check_public(vendor.key, ("vendors", i, "key"))
    seats = _check_codes(rlf, names)
    _check_distribution(rlf, seats)
    for name, reason in rlf.timing.problems():
        raise _Problem(("timing", name), reason)
    if not isinstance(rlf.majority_rule, bool):
        raise _Problem(("majority_rule",), "must be true or false")
    bt = rlf.borrowing_threshold
    if isinstance(bt, bool) or not isinstance(bt, (int, float)) or not 0 < bt <= 1:
        raise _Problem(("borrowing_threshold",), f"must be > 0 and <= 1, got {bt!r}")
    rd = rlf.retention_days
    if type(rd) is not int or not RETENTION_DAYS_MIN <= rd <= RETENTION_DAYS_MAX:
        raise _Problem(
            ("retention_days",),
            f"must be a whole number of days {RETENTION_DAYS_MIN}..{RETENTION_DAYS_MAX}, "
            f"got {rd!r}",
        )
    if rlf.signature is not None:
        sig = decode_b64(rlf.signature)
        if sig is None:
            raise _Problem(("signature", "admin"), "signature is not canonical base64")
        if len(sig) != 64:
            raise _Problem(("signature", "admin"), "signature must hold 64 bytes")


def _check_servers(servers: Sequence[ServerEntry]) -> None:
    if not MIN_SERVERS <= len(servers) <= MAX_SERVERS:
        raise _Problem(
            ("servers",), f"a pool has {MIN_SERVERS} to {MAX_SERVERS} servers, got {len(servers)}"
        )
    ids: set[str] = set()
    addresses: set[str] = set()
    for i, server in enumerate(servers):
        if not NAME_RE.fullmatch(server.id):
            raise _Problem(("servers", i, "id"), f"invalid server id {_shown(server.id)}")
        if server.id in ids:
            raise _Problem(("servers", i, "id"), f"duplicate server id {server.id!r}")
        ids.add(server.id)
        if not _HOST_RE.fullmatch(server.host):
            raise _Problem(("servers", i, "address"), f"invalid host {_shown(server.host)}")
        port = server.port
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _Problem(("servers", i, "address"), f"port must be 1..65535, got {port!r}")
        if server.address in addresses:
            raise _Problem(("servers", i, "address"), f"duplicate address {server.address}")
        addresses.add(server.address)


def _check_codes(rlf: Rlf, vendors: set[str]) -> dict[str, int]:
    """Check the codes; return license -> seats of all codes (expired or not)."""
    seats: dict[str, int] = {}
    owner: dict[str, str] = {}
    has_base: set[str] = set()
    seen: set[tuple[str, str]] = set()
    parsed: list[tuple[int, LicenseCode]] = []
    if len(rlf.codes) > MAX_CODES:
        raise _Problem(("codes",), f"an RLF holds at most {MAX_CODES} codes, got {len(rlf.codes)}")
    for i, text in enumerate(rlf.codes):
        try:
            code = _parse_cached(text)
        except CodeError as err:
            raise _Problem(("codes", i), err.message, CodeError) from None
        if code.text() != text:
            raise _Problem(("codes", i), "code is not in canonical form")
        if code.vendor not in vendors:
            raise _Problem(
                ("codes", i),
                f"code of unknown vendor {code.vendor!r}: add the vendor and its public key",
            )
        if (code.vendor, code.serial) in seen:
            raise _Problem(
                ("codes", i), f"duplicate code: vendor {code.vendor!r} serial {code.serial!r}"
            )
        seen.add((code.vendor, code.serial))
        if owner.setdefault(code.license, code.vendor) != code.vendor:
            raise _Problem(
                ("codes", i),
                f"license {code.license!r} has codes from two vendors "
                f"({owner[code.license]!r} and {code.vendor!r})",
            )
        seats[code.license] = seats.get(code.license, 0) + code.seats
        if code.kind == "base":
            has_base.add(code.license)
        parsed.append((i, code))
    for i, code in parsed:
        if code.license not in has_base:
            raise _Problem(("codes", i), f"add-on code for {code.license!r} without a base code")
    return seats


def _check_distribution(rlf: Rlf, seats: Mapping[str, int]) -> None:
    ids = set(rlf.server_ids)
    for lic, per in rlf.distribution.items():
        if lic not in seats:
            raise _Problem(("distribution", lic), f"no license code for {_shown(lic)}")
        total = 0
        for sid, count in per.items():
            if sid not in ids:
                raise _Problem(
                    ("distribution", lic, sid),
                    f"unknown server {_shown(sid)} (servers: {', '.join(rlf.server_ids)})",
                )
            if isinstance(count, bool) or not isinstance(count, int):
                raise _Problem(("distribution", lic, sid), f"must be an integer, got {count!r}")
            if count < 0:
                raise _Problem(("distribution", lic, sid), f"negative distribution {count}")
            if count > limits.HARD_LIMIT_MAX:
                raise _Problem(
                    ("distribution", lic, sid),
                    f"{_shown(count)} exceeds the largest hard limit {limits.HARD_LIMIT_MAX}",
                )
            total += count
        if total > seats[lic]:
            raise _Problem(("distribution", lic), f"sum {total} exceeds hard limit {seats[lic]}")


def check_rlf(rlf: Rlf, *, file: str | None = None) -> None:
    """Raise `RlfError` (or `CodeError`) for the first thing wrong with `rlf`."""
    try:
        _check(rlf)
    except _Problem as problem:
        raise _error(problem, file=file, text=None) from None


# ------------------------------------------------------------------ parse


def _toml_error(err: tomllib.TOMLDecodeError, text: str, file: str) -> RlfError:
    message = str(err)
    line: int | None = None
    match = _TOML_POS_RE.search(message)
    if match:
        message = message[: match.start()]
        if match.group(1):
            line = int(match.group(1))
        else:
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    return RlfError(f"TOML syntax error: {message}", file=file, line=line)


def _get(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path,
         *, required: bool = True, default: Any = None) -> Any:  # fmt: skip
    if key not in table:
        if required:
            raise _Problem((*path, key) if path else (key,), "missing field")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise _Problem((*path, key), f"must be {names}, got {_type_name(value)}")
    return value


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__).replace("a ", "").replace("an ", "")


def _no_extra(table: Mapping[str, Any], allowed: Sequence[str], path: Path) -> None:
    for key in table:
        if key not in allowed:
            raise _Problem((*path, key), f"unknown field (allowed: {', '.join(allowed)})")


_TOP_FIELDS = (
    "format",
    "pool",
    "sequence",
    "admin_key",
    "majority_rule",
    "borrowing_threshold",
    "retention_days",
    "codes",
    "servers",
    "vendors",
    "distribution",
    "timing",
    "signature",
)


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); raises `InputError`."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""
    if not sep or not host or not _PORT_RE.fullmatch(port_text):
        raise InputError(f"address must be host:port with an ASCII port, got {_shown(address)}")
    return host, int(port_text)


def _from_doc(doc: Mapping[str, Any]) -> Rlf:
    _no_extra(doc, _TOP_FIELDS, ())
    fmt = _get(doc, "format", int, (), required=False, default=FORMAT)
    if fmt != FORMAT:
        raise _Problem(("format",), f"unsupported RLF format {fmt} (this lm reads {FORMAT})")
    pool = _get(doc, "pool", str, ())
    sequence = _get(doc, "sequence", int, ())
    admin_key = _get(doc, "admin_key", str, (), required=False, default="")
    servers: list[ServerEntry] = []
    for i, table in enumerate(_get(doc, "servers", list, ())):
        path: Path = ("servers", i)
        if not isinstance(table, dict):
            raise _Problem(path, "each server is a [[servers]] table with id and address")
        _no_extra(table, ("id", "address"), path)
        sid = _get(table, "id", str, path)
        try:
            host, port = split_address(_get(table, "address", str, path))
        except InputError as err:
            raise _Problem((*path, "address"), err.message) from None
        servers.append(ServerEntry(sid, host, port))
    vendors: list[Vendor] = []
    for i, table in enumerate(_get(doc, "vendors", list, (), required=False, default=[])):
        path = ("vendors", i)
        if not isinstance(table, dict):
            raise _Problem(path, "each vendor is a [[vendors]] table with name and key")
        _no_extra(table, ("name", "key"), path)
        vendors.append(Vendor(_get(table, "name", str, path), _get(table, "key", str, path)))
    codes: list[str] = []
    for i, text in enumerate(_get(doc, "codes", list, (), required=False, default=[])):
        if not isinstance(text, str):
            raise _Problem(("codes", i), "each code is a string")
        try:
            codes.append(parse_code(text).text())
        except CodeError as err:
            raise _Problem(("codes", i), err.message, CodeError) from None
    distribution: dict[str, dict[str, int]] = {}
    for lic, per in _get(doc, "distribution", dict, (), required=False, default={}).items():
        if not isinstance(per, dict):
            raise _Problem(("distribution", lic), "must be a table of server = seats")
        for sid in per:
            _get(per, sid, int, ("distribution", lic))
        distribution[lic] = dict(per)
    timing_table = _get(doc, "timing", dict, (), required=False, default={})
    _no_extra(timing_table, _TIMING_FIELDS, ("timing",))
    timing_values = {
        name: _float_of(_get(timing_table, name, (int, float), ("timing",)), ("timing", name))
        for name in _TIMING_FIELDS
        if name in timing_table
    }
    majority = _get(doc, "majority_rule", bool, (), required=False, default=True)
    threshold = _get(doc, "borrowing_threshold", (int, float), (), required=False, default=0.8)
    threshold = _float_of(threshold, ("borrowing_threshold",))
    retention = _get(doc, "retention_days", int, (), required=False, default=RETENTION_DAYS_DEFAULT)
    signature: str | None = None
    if "signature" in doc:
        sig_table = _get(doc, "signature", dict, ())
        _no_extra(sig_table, ("admin",), ("signature",))
        signature = _get(sig_table, "admin", str, ("signature",))
    return Rlf(
        pool=pool,
        sequence=sequence,
        admin_key=admin_key,
        servers=tuple(servers),
        vendors=tuple(vendors),
        codes=tuple(codes),
        distribution=distribution,
        timing=Timing(**timing_values),
        majority_rule=majority,
        borrowing_threshold=threshold,
        signature=signature,
        retention_days=retention,
    )


def _float_of(value: int | float, path: Path) -> float:
    try:
        return float(value)
    except OverflowError:
        raise _Problem(path, f"number out of range: {value}") from None


def parse_rlf(text: str, *, file: str = "<rlf>") -> Rlf:
    """Parse and check RLF text. Raises `RlfError` (or `CodeError`) naming file, line, field.

    Signatures are not checked here: call `verify_rlf`."""
    if not isinstance(text, str):
        raise RlfError("an RLF must be text", file=file)
    if len(text) > MAX_RLF_CHARS:
        raise RlfError(f"file is larger than {MAX_RLF_CHARS} characters", file=file)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _toml_error(err, text, file) from None
    except RecursionError:
        raise RlfError("TOML nested too deeply", file=file) from None
    try:
        rlf = _from_doc(doc)
        _check(rlf)
    except _Problem as problem:
        raise _error(problem, file=file, text=text) from None
    return rlf


# ------------------------------------------------------------------ locate fields


def _strip_comment(s: str) -> str:
    """Drop a trailing ``# comment`` (outside quotes) from one line."""
    quote = ""
    for i, ch in enumerate(s):
        if quote:
            if ch == "\\" and quote == '"':
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return s[:i].rstrip()
    return s.rstrip()


def _path_of(doc: Any) -> Path:
    out: list[str | int] = []
    while isinstance(doc, dict) and len(doc) == 1:
        key = next(iter(doc))
        out.append(key)
        doc = doc[key]
    return tuple(out)


def _line_index(text: str) -> dict[Path, int]:
    """Field path -> first line defining it (tables, keys, elements of multi-line arrays)."""
    found: dict[Path, int] = {}
    table: Path = ()
    aot: dict[Path, int] = {}
    array: Path | None = None
    element = 0
    ml_quote = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if ml_quote:
            if ml_quote in s:
                ml_quote = ""
            continue
        if array is not None:
            body = _strip_comment(s)
            if body[:1] in ("'", '"'):
                found.setdefault((*array, element), number)
                element += body.count(",") or 1
            if body.endswith("]") or body.startswith("]"):
                array = None
            continue
        if not s or s.startswith("#"):
            continue
        body = _strip_comment(s)
        try:
            if body.startswith("[["):
                path = _path_of(tomllib.loads(body))
                index = aot.get(path, 0)
                aot[path] = index + 1
                table = (*path, index)
                found.setdefault(table, number)
                found.setdefault(path, number)
                continue
            if body.startswith("["):
                table = _path_of(tomllib.loads(body))
                found.setdefault(table, number)
                continue
        except tomllib.TOMLDecodeError:
            continue
        key, eq, value = body.partition("=")
        if not eq:
            continue
        try:
            full = (*table, *_path_of(tomllib.loads(key + "= 0")))
        except tomllib.TOMLDecodeError:
            continue
        found.setdefault(full, number)
        value = value.strip()
        if value.startswith("[") and not value.endswith("]"):
            array, element = full, 0
            rest = value[1:].strip()
            if rest[:1] in ("'", '"'):
                found.setdefault((*full, 0), number)
                element = rest.count(",")
        for quote in ('"""', "'''"):
            if value.startswith(quote) and value.count(quote) == 1:
                ml_quote = quote
    return found


def locate(text: str | None, path: Path) -> int | None:
    """The line of `text` that defines `path` (or its nearest parent that has a line)."""
    if not text:
        return None
    index = _line_index(text)
    for end in range(len(path), 0, -1):
        line = index.get(path[:end])
        if line is not None:
            return line
    return None


# ------------------------------------------------------------------ render


_PLAIN_RE = re.compile(r'[^"\\\x00-\x1f\x7f]*')


def _str(value: str) -> str:
    if _PLAIN_RE.fullmatch(value):  # the usual case, without a per-character loop
        return f'"{value}"'
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _key(value: str) -> str:
    return value if _BARE_KEY_RE.fullmatch(value) else _str(value)


def _float(value: float) -> str:
    text = repr(float(value))
    return text if any(c in text for c in ".en") else text + ".0"


def _describe(text: str) -> str:
    try:
        return parse_code(text).describe()
    except CodeError as err:
        return f"unreadable code: {err.message}"


def render_rlf(rlf: Rlf) -> str:
    """The canonical text layout of `rlf`, with explanatory comments."""
    out = [
        f"# lm redundant license file (RLF) for pool {rlf.pool!r}, sequence {rlf.sequence}.",
        "# Change it with `lm rlf ...` (or by hand: then bump the sequence), and re-sign:",
        "# `lm rlf sign FILE --key admin.key`. Comments and spacing are not signed.",
        f"format = {FORMAT}",
        f"pool = {_str(rlf.pool)}",
        f"sequence = {rlf.sequence}",
        f"admin_key = {_str(rlf.admin_key)}",
        f"majority_rule = {'true' if rlf.majority_rule else 'false'}",
        f"borrowing_threshold = {_float(rlf.borrowing_threshold)}",
        *(
            [
                f"# Days the servers keep usage and audit rows (default {RETENTION_DAYS_DEFAULT}).",
                f"retention_days = {rlf.retention_days}",
            ]
            if rlf.retention_days != RETENTION_DAYS_DEFAULT
            else []
        ),
        "",
        "# License codes as issued by the vendors (vendor signatures are checked on load).",
    ]
    if rlf.codes:
        out.append("codes = [")
        for text in rlf.codes:
            out.append(f"    # {_describe(text)}")
            out.append(f"    {_str(text)},")
        out.append("]")
    else:
        out.append("codes = []")
    out.append("")
    out.append("# Servers in leader-priority order: the first one listed is the preferred leader.")
    for server in rlf.servers:
        out += ["[[servers]]", f"id = {_str(server.id)}", f"address = {_str(server.address)}", ""]
    if rlf.vendors:
        out.append("# Vendors whose codes this pool trusts.")
    for vendor in rlf.vendors:
        out += ["[[vendors]]", f"name = {_str(vendor.name)}", f"key = {_str(vendor.key)}", ""]
    out.append("# Initial distribution per license (server = seats); seats not given out stay in")
    out.append("# the free pool. A license not listed is split evenly, remainder to the free pool.")
    for lic, per in rlf.distribution.items():
        out.append(f"[distribution.{_key(lic)}]")
        order = {sid: i for i, sid in enumerate(rlf.server_ids)}
        for sid, count in sorted(per.items(), key=lambda kv: (order.get(kv[0], 1 << 30), kv[0])):
            out.append(f"{_key(sid)} = {count}")
        out.append("")
    out.append("[timing]  # seconds")
    for name in _TIMING_FIELDS:
        out.append(f"{name} = {_float(getattr(rlf.timing, name))}")
    out.append("")
    if rlf.signature is not None:
        out.append("# Admin signature over everything above except comments and spacing.")
        out.append("[signature]")
        out.append(f"admin = {_str(rlf.signature)}")
    else:
        out.append("# Not signed: run `lm rlf sign FILE --key admin.key`.")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ sign / verify


def canonical_bytes(rlf: Rlf) -> bytes:
    """Every field but the signature as compact key-sorted JSON (comment/layout independent)."""
    doc = {
        "format": FORMAT,
        "pool": rlf.pool,
        "sequence": rlf.sequence,
        "admin_key": rlf.admin_key,
        "servers": [[s.id, s.host, s.port] for s in rlf.servers],
        "vendors": [[v.name, v.key] for v in rlf.vendors],
        "codes": list(rlf.codes),
        "distribution": {lic: dict(per) for lic, per in rlf.distribution.items()},
        "timing": {name: float(getattr(rlf.timing, name)) for name in _TIMING_FIELDS},
        "majority_rule": rlf.majority_rule,
        "borrowing_threshold": float(rlf.borrowing_threshold),
    }
    if rlf.retention_days != RETENTION_DAYS_DEFAULT:
        # signed only when set: every RLF signed before the setting existed still verifies
        doc["retention_days"] = rlf.retention_days
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_rlf(rlf: Rlf, admin_key: Ed25519PrivateKey) -> Rlf:
    """Sign with the admin key. An RLF without an admin_key gets this key's public half;
    one naming another admin key is refused (`SignatureError`)."""
    check_rlf(rlf)
    mine = public_text(admin_key.public_key())
    if rlf.admin_key and rlf.admin_key != mine:
        raise SignatureError(
            f"this RLF names admin key {rlf.admin_key}; the signing key is {mine}",
            field="admin_key",
        )
    rlf = replace(rlf, admin_key=mine, signature=None)
    sig = admin_key.sign(SIGNATURE_DOMAIN + canonical_bytes(rlf))
    return replace(rlf, signature=base64.b64encode(sig).decode("ascii"))


def expired_codes(rlf: Rlf, today: datetime.date) -> list[tuple[int, LicenseCode]]:
    """(index, code) of every code past its expiry date."""
    return [(i, c) for i, c in enumerate(rlf.license_codes()) if c.expired(today)]


def verify_rlf(
    rlf: Rlf,
    *,
    admin_key: Ed25519PublicKey | None = None,
    today: datetime.date | None = None,
    file: str | None = None,
    text: str | None = None,
) -> None:
    """Return None if the admin signature and every code's vendor signature verify.

    Raises `SignatureError` saying which signature failed. `admin_key`, if given, must be
    the key the RLF names. `today` is accepted for symmetry: expired codes are not an
    error here (they serve nothing; the CLI warns). `file`/`text` locate errors."""
    del today
    try:
        _verify(rlf, admin_key)
    except _Problem as problem:
        raise _error(problem, file=file, text=text) from None


def _verify(rlf: Rlf, admin_key: Ed25519PublicKey | None) -> None:
    _check(rlf)
    if not rlf.admin_key:
        raise _Problem(("admin_key",), "RLF names no admin key: sign it first", SignatureError)
    if admin_key is not None and public_text(admin_key) != rlf.admin_key:
        raise _Problem(
            ("admin_key",),
            f"admin signature: the RLF names admin key {rlf.admin_key}, "
            f"not the expected {public_text(admin_key)}",
            SignatureError,
        )
    if rlf.signature is None:
        raise _Problem(("signature",), "admin signature missing: run `lm rlf sign`", SignatureError)
    key = load_public(rlf.admin_key)
    sig = decode_b64(rlf.signature)
    assert sig is not None  # _check: canonical base64
    try:
        key.verify(sig, SIGNATURE_DOMAIN + canonical_bytes(rlf))
    except InvalidSignature:
        raise _Problem(
            ("signature", "admin"),
            "admin signature does not verify (RLF changed after signing, or wrong key)",
            SignatureError,
        ) from None
    for i, code in enumerate(rlf.license_codes()):
        vendor = rlf.vendor_key(code.vendor)
        assert vendor is not None  # _check: every code's vendor is listed
        try:
            verify_code(code, load_public(vendor), what=f"code #{i} ({code.license})")
        except SignatureError as err:
            raise _Problem(("codes", i), err.message, SignatureError) from None


# ------------------------------------------------------------------ edits


def _edited(rlf: Rlf, **changes: Any) -> Rlf:
    new = replace(rlf, **changes, sequence=rlf.sequence + 1, signature=None)
    check_rlf(new)
    return new


def with_code(rlf: Rlf, code_text: str, dist: Mapping[str, int] | None = None) -> Rlf:
    """Add a license code (and optionally set its license's distribution)."""
    code = parse_code(code_text)
    text = code.text()
    if text in rlf.codes:
        raise RlfError("this code is already in the RLF", field="codes")
    if rlf.vendor_key(code.vendor) is None:
        raise RlfError(
            f"code of unknown vendor {code.vendor!r}: add the vendor's public key first",
            field="vendors",
        )
    distribution = {k: dict(v) for k, v in rlf.distribution.items()}
    if dist is not None:
        distribution[code.license] = dict(dist)
    return _edited(rlf, codes=(*rlf.codes, text), distribution=distribution)


def with_distribution(rlf: Rlf, license: str, dist: Mapping[str, int] | None) -> Rlf:
    """Set (or with None: remove, meaning an even split) one license's distribution."""
    known = {c.license for c in rlf.license_codes()}
    if license not in known:
        raise RlfError(
            f"no license code for {license!r} (licenses: {', '.join(sorted(known)) or 'none'})",
            field="distribution",
        )
    distribution = {k: dict(v) for k, v in rlf.distribution.items()}
    if dist is None:
        distribution.pop(license, None)
    else:
        distribution[license] = dict(dist)
    return _edited(rlf, distribution=distribution)


def with_server(rlf: Rlf, server: ServerEntry, *, position: int | None = None) -> Rlf:
    """Add a server (or replace the one with the same id) at `position` (default: last)."""
    servers = [s for s in rlf.servers if s.id != server.id]
    servers.insert(len(servers) if position is None else position, server)
    return _edited(rlf, servers=tuple(servers))


def without_server(rlf: Rlf, server_id: str) -> Rlf:
    """Remove a server; its share of every initial distribution goes to the free pool."""
    return _edited(
        rlf,
        servers=tuple(s for s in rlf.servers if s.id != server_id),
        distribution={
            lic: {sid: n for sid, n in per.items() if sid != server_id}
            for lic, per in rlf.distribution.items()
        },
    )


def with_vendor(rlf: Rlf, name: str, key: str) -> Rlf:
    """Trust a vendor (or replace its key)."""
    vendors = [v for v in rlf.vendors if v.name != name]
    vendors.append(Vendor(name, key))
    return _edited(rlf, vendors=tuple(vendors))


def new_rlf(
    pool: str,
    servers: Sequence[ServerEntry],
    *,
    admin_key: str = "",
    vendors: Sequence[Vendor] = (),
    timing: Timing | None = None,
    majority_rule: bool = True,
    borrowing_threshold: float = 0.8,
) -> Rlf:
    """A fresh, unsigned RLF with sequence 1 and no codes."""
    rlf = Rlf(
        pool=pool,
        sequence=1,
        admin_key=admin_key,
        servers=tuple(servers),
        vendors=tuple(vendors),
        codes=(),
        distribution={},
        timing=timing or Timing(),
        majority_rule=majority_rule,
        borrowing_threshold=borrowing_threshold,
    )
    check_rlf(rlf)
    return rlf


def check_expiry(
    rlf: Rlf, today: datetime.date, *, file: str | None = None, text: str | None = None
) -> None:
    """Raise `ExpiredError` naming the first expired code (an expired code serves
    nothing; `lm rlf verify` treats it as an error, the daemon just ignores the code)."""
    for i, code in expired_codes(rlf, today):
        raise _error(
            _Problem(
                ("codes", i),
                f"code #{i} ({code.vendor} {code.license}, serial {code.serial}) "
                f"expired on {code.expires.isoformat()}",
                ExpiredError,
            ),
            file=file,
            text=text,
        )
