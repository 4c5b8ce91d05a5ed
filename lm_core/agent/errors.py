"""What the agent answers when it cannot do what was asked: one JSON object
``{"reason": WORD, "detail": LINE}`` (plus ``"field"`` for a bad request field,
``"server"`` for a pool refusal), with an HTTP status chosen from the word.

The words are the pool's own refusals (`DenyReason`, unchanged: a program that reads
them needs no second vocabulary) plus the few the agent adds about the HTTP request
itself (`AgentReason`).
"""

from __future__ import annotations

import enum
from typing import Any

from lm_core.engine.vocab import DenyReason


class AgentReason(enum.StrEnum):
    """The agent's own refusals (about the HTTP request, not the pool)."""

    BAD_JSON = "bad_json"  # the body is not a JSON object
    NO_SUCH_LEASE = "no_such_lease"  # no lease with that id (released, or never held)
    NO_SUCH_PROCESS = "no_such_process"  # the pid given is not a running process
    UNAUTHORIZED = "unauthorized"  # the agent wants a token and none (or a wrong one) came
    NOT_FOUND = "not_found"  # no such path
    METHOD_NOT_ALLOWED = "method_not_allowed"
    SHUTTING_DOWN = "shutting_down"  # the agent is stopping


# The HTTP status of each word. A pool refusal that may clear by itself (an election, a
# server restarting, nothing reachable) is 503, and so is any pool word not listed here;
# "no seat" is 409: the request was fine, the pool is full.
STATUS: dict[str, int] = dict.fromkeys(DenyReason, 503) | {
    DenyReason.NO_SEATS: 409,
    DenyReason.RECLAIMED: 409,
    DenyReason.NO_MAJORITY: 503,
    DenyReason.RESTART_GRACE: 503,
    DenyReason.DISASSOCIATED: 503,
    DenyReason.UNREACHABLE: 503,
    DenyReason.UNKNOWN_LICENSE: 404,
    DenyReason.EXPIRED: 403,
    DenyReason.BAD_REQUEST: 400,
    AgentReason.BAD_JSON: 400,
    AgentReason.NO_SUCH_PROCESS: 400,
    AgentReason.NO_SUCH_LEASE: 404,
    AgentReason.NOT_FOUND: 404,
    AgentReason.METHOD_NOT_ALLOWED: 405,
    AgentReason.UNAUTHORIZED: 401,
    AgentReason.SHUTTING_DOWN: 503,
}

# Every word a client may see in ``reason``.
REASONS: tuple[str, ...] = tuple(STATUS)


def status_of(reason: str) -> int:
    """The HTTP status for `reason` (an unknown word is the pool's: 503)."""
    return STATUS.get(reason, 503)


class AgentError(Exception):
    """A refusal to answer as JSON (see the module doc)."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        field: str | None = None,
        server: str | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field
        self.server = server

    @property
    def status(self) -> int:
        return status_of(self.reason)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": str(self.reason), "detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        if self.server is not None:
            out["server"] = self.server
        return out
