"""Frame kinds: what a frame's header says it carries, and how big each kind may be.

Every frame's header names the kind of message in it (see `framing`), so a receiver
decides whether this sender may send this kind, and whether the announced length fits
the kind's cap, *before* it reads or decodes the body (`admission.admit_frame`). After
decoding, `Connection.recv` checks that the message really is of the announced kind.

A kind groups messages that have the same senders and about the same size:

=============  =============================================  ============  ==========
kind           messages                                       sent by       cap
=============  =============================================  ============  ==========
CLIENT         Request, ClientHeartbeat, Release              a client      8 KiB
CLIENT_REPLY   Authorize, Deny, Released                      a server      64 KiB
STATUS         StatusRequest, UsageRequest, AuditRequest      admin/monitor 4 KiB
ADMIN          ChangeDistribution, AddAllocations,            an admin      64 KiB
               AddLicenseCode, Reclaim, DrainServer
ADMIN_RLF      UpdateRlf                                      an admin      4 MiB
ADMIN_REPLY    StatusReply, AdminReply, UsageReply,           a server      4 MiB
               AuditReply
SERVER         every other server <-> server message          a server      256 KiB
SERVER_BULK    RlfTransfer, DistributionSync,                 a server      4 MiB
               ForwardedAdmin, ForwardedReply
=============  =============================================  ============  ==========

A `Message` subclass not named in the table is a server <-> server message (the
engine's vocabulary between servers grows; clients' and admins' does not without a
change here).
"""

from __future__ import annotations

import enum

from lm_core.engine import messages as m

KiB = 1024
MiB = 1024 * KiB
MAX_FRAME = 4 * MiB  # the largest cap of any kind


class Kind(enum.IntEnum):
    """The kind byte of a frame header."""

    CLIENT = 1
    CLIENT_REPLY = 2
    STATUS = 3
    ADMIN = 4
    ADMIN_RLF = 5
    ADMIN_REPLY = 6
    SERVER = 7
    SERVER_BULK = 8


CAPS: dict[Kind, int] = {
    Kind.CLIENT: 8 * KiB,
    Kind.CLIENT_REPLY: 64 * KiB,
    Kind.STATUS: 4 * KiB,
    Kind.ADMIN: 64 * KiB,
    Kind.ADMIN_RLF: MAX_FRAME,
    Kind.ADMIN_REPLY: MAX_FRAME,
    Kind.SERVER: 256 * KiB,
    Kind.SERVER_BULK: MAX_FRAME,
}

_EXPLICIT: dict[type[m.Message], Kind] = {
    m.Request: Kind.CLIENT,
    m.ClientHeartbeat: Kind.CLIENT,
    m.Release: Kind.CLIENT,
    m.Authorize: Kind.CLIENT_REPLY,
    m.Deny: Kind.CLIENT_REPLY,
    m.Released: Kind.CLIENT_REPLY,
    m.StatusRequest: Kind.STATUS,
    m.UsageRequest: Kind.STATUS,
    m.AuditRequest: Kind.STATUS,
    m.AuditReply: Kind.ADMIN_REPLY,
    m.ChangeDistribution: Kind.ADMIN,
    m.AddAllocations: Kind.ADMIN,
    m.AddLicenseCode: Kind.ADMIN,
    m.Reclaim: Kind.ADMIN,
    m.DrainServer: Kind.ADMIN,
    m.UpdateRlf: Kind.ADMIN_RLF,
    m.StatusReply: Kind.ADMIN_REPLY,
    m.AdminReply: Kind.ADMIN_REPLY,
    m.UsageReply: Kind.ADMIN_REPLY,
    m.RlfTransfer: Kind.SERVER_BULK,
    m.DistributionSync: Kind.SERVER_BULK,
    m.ForwardedAdmin: Kind.SERVER_BULK,
    m.ForwardedReply: Kind.SERVER_BULK,
}


def kind_of(cls: type[m.Message]) -> Kind:
    """The frame kind of a message class (SERVER unless listed above)."""
    return _EXPLICIT.get(cls, Kind.SERVER)


def kind_from_byte(value: int) -> Kind | None:
    """The `Kind` a header byte names, or None for a byte that names none."""
    try:
        return Kind(value)
    except ValueError:
        return None
