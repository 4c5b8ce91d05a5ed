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
from lm_core.runtime.client import LicenseClient, process_identity
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
    program: Annotated[
        str | None,
        typer.Option("--program", help="Program name the servers log (default: this one)."),
    ] = None,
    program_version: Annotated[
        str, typer.Option("--program-version", help="Program version the servers log.")
    ] = "",
    json_out: JsonOpt = False,
    tls_dir: ClientTlsOpt = None,
) -> None:
    """Hold a seat like a protected program: ask, heartbeat, fail over, release at the end.
    Exit 1 if the pool denies the seat. Ctrl-C or SIGTERM (also while waiting) releases
    the seat and exits 130 / 143. While waiting, a repeated denial is shown once, with a
    count.

    Example: lm client hold --pool pool.rlf --license "Application 1.0" --seconds 60
    """  # fmt: skip
    rlf = load_pool(pool)
    trust = load_tls_dir(tls_dir, "client")
    identity = process_identity(program=program, version=program_version)
    client = LicenseClient(rlf, trust, client_id=client_id, prefer=server, identity=identity)
    out = _HoldOutput(client.client_id, json_out=json_out, waiting=wait)

    async def run() -> int:
        stop = asyncio.Event()
        signals: list[int] = []

        def on_signal(signum: int) -> None:
            signals.append(signum)
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal, sig)
        lease = client.acquire(license, count, wait=wait, on_event=out.event)
        # A signal while the seat is still being asked for (--wait) ends the wait: the
        # lease releases whatever a late answer might have granted.
        starting = asyncio.create_task(lease.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            out.end_streak()
            return 128 + signals[0]
        starting.result()  # LicenseDenied -> exit 1
        try:
            out.note(
                f"client {client.client_id}: "
                + (f"holding for {seconds:g} s" if seconds is not None else "Ctrl-C releases")
            )
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await stop.wait()
        finally:
            await lease.stop()
        return 128 + signals[0] if signals else 0

    try:
        code = asyncio.run(run())
    finally:
        out.end_streak()
    if code:
        if not json_out:
            print(f"stopped by signal {code - 128}: seat released", file=sys.stderr)
        raise typer.Exit(code=code)


class _HoldOutput:
    """The lines `lm client hold` prints. While waiting (--wait), a run of identical
    denials is shown once, then as a running count (rewritten in place on a terminal,
    else one summary line when the run ends), not once per retry."""

    def __init__(self, client_id: str, *, json_out: bool, waiting: bool) -> None:
        self.client_id = client_id
        self.json_out = json_out
        self.waiting = waiting
        self.tty = sys.stdout.isatty() and not json_out
        self.streak: dict[str, Any] | None = None  # the first denial of the current run
        self.count = 0

    def _write(self, event: dict[str, Any]) -> None:
        if self.json_out:
            sys.stdout.write(json.dumps({"client_id": self.client_id, **event}) + "\n")
            sys.stdout.flush()
        else:
            console().print(_line(event), markup=False)

    def note(self, text: str) -> None:
        if not self.json_out:
            console().print(text, markup=False)

    def event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "renewed":
            if self.json_out:
                self._write(event)
            return
        if kind == "denied" and self.waiting and not event.get("final"):
            if self.streak is not None and self.streak.get("reason") == event.get("reason"):
                self.count += 1
                if self.tty:
                    sys.stdout.write(f"\r  ... denied {self.count} times, still waiting\x1b[K")
                    sys.stdout.flush()
                return
            self.end_streak()
            self.streak, self.count = event, 1
            self._write({**event, "count": 1} if self.json_out else event)
            if not self.json_out:
                self.note("  waiting for a seat (Ctrl-C stops)")
            return
        self.end_streak()
        self._write(event)

    def end_streak(self) -> None:
        """Close a run of denials: say how many there were in all."""
        streak, count = self.streak, self.count
        self.streak, self.count = None, 0
        if streak is None or count < 2:
            return
        if self.json_out:
            self._write({**streak, "count": count, "repeated": True})
        elif self.tty:
            sys.stdout.write("\n")
            sys.stdout.flush()
        else:
            self.note(f"  ... denied {count} times in all: {streak['reason']}")


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
