"""The agent's HTTP API as an aiohttp application (the routes are listed in `openapi`).

Every answer is JSON. A refusal is ``{"reason": WORD, "detail": LINE, ...}`` with the
HTTP status of the word (`errors.STATUS`); that holds for a malformed body, an unknown
path or method and a missing token too, so a caller has one error shape to read.
"""

from __future__ import annotations

import hmac
import json
import math

from aiohttp import web
from aiohttp.typedefs import Handler

from lm_core.agent.errors import AgentError, AgentReason
from lm_core.agent.holdings import WAIT_MAX, Holdings
from lm_core.agent.openapi import openapi
from lm_core.engine import limits
from lm_core.engine.vocab import DenyReason

BODY_MAX = 16 * 1024  # bytes of one request body

HOLDINGS = web.AppKey("holdings", Holdings)
POOL = web.AppKey("pool", str)
TOKEN = web.AppKey("token", str)  # "" = no token asked


def error_response(err: AgentError) -> web.Response:
    return web.json_response(err.body(), status=err.status)


def bad(field: str, detail: str) -> AgentError:
    return AgentError(DenyReason.BAD_REQUEST, detail, field=field)


def parse_take(body: bytes) -> tuple[str, int, float, int | None]:
    """(license, count, wait, pid) from a take request's body; raises `AgentError`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AgentError(AgentReason.BAD_JSON, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AgentError(AgentReason.BAD_JSON, "the body must be a JSON object")
    unknown = sorted(set(data) - {"license", "count", "wait", "pid"})
    if unknown:
        raise bad(unknown[0], f"unknown field {unknown[0]!r} (license, count, wait, pid)")
    license = data.get("license")
    if not isinstance(license, str) or not license.strip():
        raise bad("license", 'license is required: a string such as "Application 1.0"')
    if len(license) > limits.LICENSE_MAX or not (license.isascii() and license.isprintable()):
        raise bad("license", f"license must be printable ASCII of at most {limits.LICENSE_MAX}")
    count = data.get("count", 1)
    if type(count) is not int or not 1 <= count <= limits.SEATS_MAX:
        raise bad("count", f"count must be an integer from 1 to {limits.SEATS_MAX}")
    wait = data.get("wait", 0)
    if type(wait) not in (int, float) or not math.isfinite(wait) or not 0 <= wait <= WAIT_MAX:
        raise bad("wait", f"wait must be a number of seconds from 0 to {WAIT_MAX:g}")
    pid = data.get("pid")
    if pid is not None and (type(pid) is not int or not 0 < pid < 2**31):
        raise bad("pid", "pid must be a positive integer (the process that holds the seat)")
    return license, count, float(wait), pid


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as JSON; the token check for /v1."""
    try:
        token = request.app[TOKEN]
        if token and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise AgentError(
                    AgentReason.UNAUTHORIZED,
                    "this agent wants 'Authorization: Bearer TOKEN' (the agent's token file)",
                )
        return await handler(request)
    except AgentError as err:
        return error_response(err)
    except web.HTTPNotFound:
        return error_response(AgentError(AgentReason.NOT_FOUND, f"no such path {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            AgentError(
                AgentReason.METHOD_NOT_ALLOWED,
                f"{request.method} {request.path}: allowed "
                + ", ".join(sorted(exc.allowed_methods)),
            )
        )
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            AgentError(AgentReason.BAD_JSON, f"the body is over {BODY_MAX} bytes")
        )


async def take(request: web.Request) -> web.Response:
    license, count, wait, pid = parse_take(await request.read())
    holdings = request.app[HOLDINGS]
    holding = await holdings.take(license, count, wait=wait, pid=pid)
    if request.transport is None or request.transport.is_closing():
        # the caller hung up while we waited: nobody knows this lease's id
        await holdings.release(holding.id)
    return web.json_response(holding.to_json(), status=201)


async def list_leases(request: web.Request) -> web.Response:
    return web.json_response({"leases": [h.to_json() for h in request.app[HOLDINGS].all()]})


async def show(request: web.Request) -> web.Response:
    return web.json_response(request.app[HOLDINGS].get(request.match_info["id"]).to_json())


async def release(request: web.Request) -> web.Response:
    holding = await request.app[HOLDINGS].release(request.match_info["id"])
    return web.json_response({**holding.to_json(), "released": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response(
        {"pool": request.app[POOL], "leases": len(request.app[HOLDINGS].all())}
    )


async def spec(request: web.Request) -> web.Response:
    return web.json_response(openapi())


def make_app(holdings: Holdings, *, pool: str, token: str = "") -> web.Application:
    """The agent's application over `holdings` (the caller starts and closes them)."""
    app = web.Application(middlewares=[json_errors], client_max_size=BODY_MAX)
    app[HOLDINGS] = holdings
    app[POOL] = pool
    app[TOKEN] = token
    app.router.add_get("/openapi.json", spec)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/leases", list_leases)
    app.router.add_post("/v1/leases", take)
    app.router.add_get("/v1/leases/{id}", show)
    app.router.add_delete("/v1/leases/{id}", release)
    return app
