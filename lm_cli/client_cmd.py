"""`lm client hold` (a thin CLI over the client library) and `lm client release`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lm_cli.live import report, with_client
from lm_cli.output import JsonOpt, PoolOpt, console, handle_errors, load_pool
from lm_core.errors import InputError
from lm_core.runtime.client import LicenseClient
from lm_core.runtime.tlsconfig import load_tls_dir

client_app = typer.Typer(
    no_args_is_help=True,
    help="Act as a license client (hold a seat), or reclaim a client's seat (release).",
)

LicenseOpt = Annotated[str, typer.Option("--license", help='The license, e.g. "Application 1.0".')]
ClientTlsOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-dir",
        envvar="LM_TLS_DIR",
        help="Directory with the pool CA (ca.pem, optional client.pem/.key); omit only on "
        "loopback.",
        show_default=False,
        readable=False,
    ),
]


def _line(event: dict[str, Any]) -> str:
    kind = event["event"]
    if kind == "authorized":
        return (
            f"holding {event['count']} x {event['license']} from server {event['server']} "
            f"(lease {event['lease_expires_in']:.1f} s)"
        )
    if kind == "denied":
        who = f" (server {event['server']})" if event.get("server") else ""
        return f"denied by the pool: {event['reason']}{who}" + (
            f" -- {event['detail']}" if event.get("detail") else ""
        )
    if kind == "lost":
        return f"lost the seat: {event['reason']}"
    if kind == "released":
        return f"released {event['license']} (server {event['server']})"
    return f"{kind}: {event}"


@client_app.command("hold")
@handle_errors
def hold(
    license: LicenseOpt,
    pool: PoolOpt = None,
    count: Annotated[int, typer.Option("--count", help="Seats to hold.", min=1)] = 1,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="This client's id (default: host:pid:rand).")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Ask this server first (its id).")
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(
            "--seconds", help="Hold this long, then release (default: until Ctrl-C).", min=0.0
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="If no seat is free, keep trying until one is.")
    ] = False,
    json_out: JsonOpt = False,
    tls_dir: ClientTlsOpt = None,
) -> None:
    """Hold a seat like a protected program: ask, heartbeat, fail over, release at the end.
    Exit 1 if the pool denies the seat.

    Example: lm client hold --pool pool.rlf --license "Application 1.0" --seconds 60
    """  # fmt: skip
    rlf = load_pool(pool)
    trust = load_tls_dir(tls_dir, "client")
    client = LicenseClient(rlf, trust, client_id=client_id, prefer=server)

    def on_event(event: dict[str, Any]) -> None:
        if json_out:
            out = {"client_id": client.client_id, **event}
            sys.stdout.write(json.dumps(out, sort_keys=False) + "\n")
            sys.stdout.flush()
        elif event["event"] != "renewed":
            console().print(_line(event))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        async with client.acquire(license, count, wait=wait, on_event=on_event):
            if not json_out:
                console().print(
                    f"client {client.client_id}: "
                    + (f"holding for {seconds:g} s" if seconds is not None else "Ctrl-C releases")
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await stop.wait()

    asyncio.run(run())


@client_app.command("release")
@handle_errors
def release(
    client_id: Annotated[str, typer.Option("--client-id", help="The client holding the seat.")],
    license: LicenseOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (logged with the reclaim).")],
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: Annotated[
        Path | None,
        typer.Option(
            "--tls-dir",
            envvar="LM_TLS_DIR",
            show_default=False,
            help="Directory from `lm pki init` (uses admin.pem/.key).",
            readable=False,
        ),
    ] = None,
) -> None:
    """Operator reclaim of a stale authorization (same as `lm key release`; needs the admin
    certificate). Logged with the reason.

    Example: lm client release --pool pool.rlf --client-id ws-17 --license "Application 1.0"
    --reason "host decommissioned"
    """  # fmt: skip
    if not reason.strip():
        raise InputError("a reason is required", field="--reason")
    result = with_client(pool, tls_dir, lambda c: c.reclaim(client_id, license, reason))
    report(result, json_out=json_out, what=f"release {client_id}")


def register(app: typer.Typer) -> None:
    """Add `lm client`."""
    app.add_typer(client_app, name="client")
