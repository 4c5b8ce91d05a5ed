"""The agent's OpenAPI 3.1 description (served at ``GET /openapi.json``).

Written as data next to the routes it describes (`api.make_app`); the reason words are
taken from `errors.REASONS`, so the description cannot list a word the agent does not
send. A test checks that every route of the app is described here and the reverse.
"""

from __future__ import annotations

from typing import Any

from lm_core.agent.errors import REASONS, STATUS
from lm_core.agent.holdings import WAIT_MAX
from lm_core.engine import limits
from lm_core.version import version


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


LEASE_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The lease id from the take answer.",
}


def openapi() -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for word, status in STATUS.items():
        by_status.setdefault(status, []).append(str(word))

    def errors(*codes: int) -> dict[str, Any]:
        return {
            str(c): _error("Refused: reason " + " / ".join(sorted(by_status[c]))) for c in codes
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lm agent",
            "version": version(),
            "description": (
                "A local license agent: holds floating-license seats of one pool for the "
                "programs of this host (heartbeats and fail-over included) until they "
                "release them or their process exits. Bound to loopback or a Unix socket; "
                "with a token file, every /v1 call needs 'Authorization: Bearer TOKEN'."
            ),
        },
        "paths": {
            "/v1/leases": {
                "post": {
                    "summary": "Take a lease (hold seats until released or the pid exits)",
                    "operationId": "take",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/TakeRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _ok("Held", "Lease"),
                        **errors(400, 401, 403, 404, 409, 503),
                    },
                },
                "get": {
                    "summary": "List the leases held by this agent",
                    "operationId": "list",
                    "responses": {"200": _ok("The leases", "LeaseList"), **errors(401)},
                },
            },
            "/v1/leases/{id}": {
                "parameters": [LEASE_ID],
                "get": {
                    "summary": "One lease",
                    "operationId": "show",
                    "responses": {"200": _ok("The lease", "Lease"), **errors(401, 404)},
                },
                "delete": {
                    "summary": "Release a lease (Release sent to the holding server)",
                    "operationId": "release",
                    "responses": {
                        "200": _ok("Released (the lease as it was, released: true)", "Lease"),
                        **errors(401, 404),
                    },
                },
            },
            "/v1/health": {
                "get": {
                    "summary": "The agent is up: its pool and how many leases it holds",
                    "operationId": "health",
                    "responses": {"200": _ok("Up", "Health"), **errors(401)},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "OpenAPI 3.1 document"}},
                }
            },
        },
        "components": {
            "schemas": {
                "TakeRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["license"],
                    "properties": {
                        "license": {
                            "type": "string",
                            "maxLength": limits.LICENSE_MAX,
                            "examples": ["Application 1.0"],
                        },
                        "count": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": limits.SEATS_MAX,
                            "default": 1,
                        },
                        "wait": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": WAIT_MAX,
                            "default": 0,
                            "description": "Seconds to keep asking while no seat is free "
                            "(0: ask each server once).",
                        },
                        "pid": {
                            "type": ["integer", "null"],
                            "minimum": 1,
                            "description": "The process the seat is for: the agent "
                            "releases the lease when it exits.",
                        },
                    },
                },
                "Lease": {
                    "type": "object",
                    "required": ["id", "license", "count", "client_id", "holds", "state"],
                    "properties": {
                        "id": {"type": "string"},
                        "license": {"type": "string"},
                        "count": {"type": "integer"},
                        "client_id": {
                            "type": "string",
                            "description": "The id the pool knows this lease by.",
                        },
                        "pid": {"type": ["integer", "null"]},
                        "server": {
                            "type": ["string", "null"],
                            "description": "The pool member holding the seats.",
                        },
                        "holds": {
                            "type": "boolean",
                            "description": "The seats are held now (an unexpired lease).",
                        },
                        "state": {
                            "type": "string",
                            "enum": ["idle", "requesting", "holding", "failover", "waiting"],
                        },
                        "expires_in": {"type": ["number", "null"]},
                        "taken_at": {"type": "number", "description": "Unix time."},
                        "lost": {
                            "type": ["string", "null"],
                            "description": "Why the seats were lost, until granted again.",
                        },
                        "released": {"type": "boolean"},
                    },
                },
                "LeaseList": {
                    "type": "object",
                    "properties": {
                        "leases": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}}
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {"pool": {"type": "string"}, "leases": {"type": "integer"}},
                },
                "Error": {
                    "type": "object",
                    "required": ["reason", "detail"],
                    "properties": {
                        "reason": {"type": "string", "enum": [str(r) for r in REASONS]},
                        "detail": {"type": "string"},
                        "field": {"type": "string", "description": "The request field at fault."},
                        "server": {"type": "string", "description": "The server that refused."},
                    },
                },
            }
        },
    }
