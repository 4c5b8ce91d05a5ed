"""Where admin changes are checked: pure validation of admin operations and pushed RLFs.

Each check takes what it judges (the pool's current RLF, distribution table, date) and
raises `Refused` with the one-line reason, or returns the parsed item. Nothing here
changes state: the leader applies a change only after these checks pass, and a follower
runs the same checks before it forwards an operation (an invalid one is refused there).
"""

from __future__ import annotations

import datetime

from lm_core.engine.codes import LicenseCode, parse_code, verify_code
from lm_core.engine.keys import load_public
from lm_core.engine.messages import (
    AddAllocations,
    AddLicenseCode,
    ChangeDistribution,
    DrainServer,
    Message,
    UpdateRlf,
)
from lm_core.engine.rlf import Rlf, parse_rlf, verify_rlf
from lm_core.engine.tables import DistributionTable
from lm_core.errors import LmError


class Refused(Exception):
    """An admin operation (or a pushed RLF) is invalid: the message is the one-line reason."""


def check_rlf(text: str, current: Rlf) -> Rlf:
    """Parse and verify a pushed RLF against the `current` one (S5)."""
    try:
        new = parse_rlf(text, file="pushed RLF")
    except LmError as err:
        raise Refused(str(err)) from None
    if new.pool != current.pool:
        raise Refused(f"RLF is for pool {new.pool!r}, not {current.pool!r}")
    if new.sequence <= current.sequence:
        raise Refused(
            f"RLF sequence {new.sequence} is not higher than the current {current.sequence}"
        )
    try:
        verify_rlf(new, admin_key=load_public(current.admin_key))
    except LmError as err:
        raise Refused(str(err)) from None
    return new


def check_code(text: str, rlf: Rlf, table: DistributionTable, today: datetime.date) -> LicenseCode:
    """A license code that may join the pool: signed by a vendor the RLF trusts,
    unexpired, and not in the pool already."""
    try:
        code = parse_code(text)
    except LmError as err:
        raise Refused(str(err)) from None
    key = next((v.key for v in rlf.vendors if v.name == code.vendor), None)
    if key is None:
        raise Refused(f"code of unknown vendor {code.vendor!r}: not trusted by the RLF")
    try:
        verify_code(code, load_public(key))
    except LmError as err:
        raise Refused(str(err)) from None
    if code.expired(today):
        raise Refused(f"code {code.serial} of {code.license!r} expired on {code.expires}")
    text = code.text()
    if text in rlf.codes or text in table.codes:
        raise Refused(f"code {code.serial} of {code.license!r} is already in the pool")
    return code


def check_admin(msg: Message, rlf: Rlf, table: DistributionTable, today: datetime.date) -> None:
    """An admin operation that may be applied to this pool now."""
    if isinstance(msg, ChangeDistribution):
        dist = dict(msg.distribution)
        if len(dist) != len(msg.distribution):
            raise Refused("a server is listed twice")
        why = table.check_change(msg.license, dist, rlf.server_ids)
        if why:
            raise Refused(why)
    elif isinstance(msg, AddAllocations):
        code = check_code(msg.code, rlf, table, today)
        if code.kind != "add":
            raise Refused(f"code {code.serial} is a {code.kind} code, not an add-on code")
        if code.license not in table.licenses:
            raise Refused(f"no license {code.license!r} in the pool to add allocations to")
    elif isinstance(msg, AddLicenseCode):
        code = check_code(msg.code, rlf, table, today)
        if code.kind == "add" and code.license not in table.licenses:
            raise Refused(f"add-on code for {code.license!r}, which has no base code")
    elif isinstance(msg, UpdateRlf):
        check_rlf(msg.rlf_text, rlf)
    elif isinstance(msg, DrainServer):
        check_drain(msg, rlf, table)


def check_drain(msg: DrainServer, rlf: Rlf, table: DistributionTable) -> None:
    """A drain (or resume) of a pool member that is not drained (or is)."""
    if msg.server not in rlf.server_ids:
        raise Refused(f"no server {msg.server!r} in pool {rlf.pool!r}")
    if msg.drain and msg.server in table.drained:
        raise Refused(f"{msg.server} is drained already")
    if not msg.drain and msg.server not in table.drained:
        raise Refused(f"{msg.server} is not drained")
