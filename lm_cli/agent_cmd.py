"""`lm agent`: the local license agent (HTTP on loopback and/or a Unix socket).

The agent itself is `lm_core.agent`; this module reads the options, the pool and the
token file, sets up logging and signals, and prints where it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from lm_cli.client_cmd import ClientTlsOpt
from lm_cli.output import PoolOpt, handle_errors, load_pool, read_text, write_atomic
from lm_core.agent.serve import DEFAULT_PORT, AgentConfig, run_agent
from lm_core.errors import InputError
from lm_core.runtime.tlsconfig import load_tls_dir

LEVELS = ("debug", "info", "warning", "error")


def token_from(path: Path) -> str:
    """The token in `path`; a missing file is created (mode 0600) with a new token."""
    if not path.exists():
        write_atomic(path, secrets.token_urlsafe(32) + "\n", private=True)
    token = read_text(path, what="token file").strip()
    if len(token) < 16 or not token.isascii() or not token.isprintable() or " " in token:
        raise InputError(
            "the token must be one line of at least 16 printable ASCII characters",
            file=str(path),
        )
    return token


@handle_errors
def agent(
    pool: PoolOpt = None,
    tls_dir: ClientTlsOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless a token).")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", help="TCP port (0: any free port, printed).", min=0, max=65535),
    ] = DEFAULT_PORT,
    no_tcp: Annotated[
        bool, typer.Option("--no-tcp", help="Listen on the Unix socket only.")
    ] = False,
    socket_path: Annotated[
        Path | None,
        typer.Option("--socket", help="Also listen on this Unix socket (created mode 0600)."),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Require 'Authorization: Bearer TOKEN' with the token in this file "
            "(created, mode 0600, if missing).",
        ),
    ] = None,
    pid_check: Annotated[
        float,
        typer.Option(
            "--pid-check", help="Seconds between checks that callers still run.", min=0.05
        ),
    ] = 1.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the local license agent: programs in any language take and release seats over
    HTTP; the agent holds them (heartbeats, fail-over) and releases the seat of a program
    that exits. Prints one "listening on URL" line per listener. SIGTERM / Ctrl-C
    releases every seat and exits 0.

    Example: lm agent --pool pool.rlf --tls-dir tls --socket /run/lm-agent.sock
    then: curl -s -X POST localhost:7390/v1/leases -d '{"license": "Application 1.0", "pid": 4242}'
    """  # fmt: skip
    if log_level not in LEVELS:
        raise InputError(f"log level must be one of {', '.join(LEVELS)}", field="--log-level")
    rlf = load_pool(pool)
    cfg = AgentConfig(
        rlf=rlf,
        trust=load_tls_dir(tls_dir, "client"),
        host=host,
        port=None if no_tcp else port,
        socket_path=socket_path,
        token=token_from(token_file) if token_file is not None else "",
        pid_check=pid_check,
    )
    cfg.check()
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )

    def ready(urls: list[str]) -> None:
        for url in urls:
            print(f"lm agent: pool {rlf.pool}: listening on {url}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        await run_agent(cfg, stop, ready)

    asyncio.run(main())
    print("lm agent: stopped; every seat released", flush=True)


def register(app: typer.Typer) -> None:
    """Add `lm agent`."""
    app.command(
        "agent", short_help="Run the local license agent: any program takes seats over HTTP."
    )(agent)
