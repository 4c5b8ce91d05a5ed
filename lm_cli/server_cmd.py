"""`lm server drain ID` / `lm server resume ID`: take a server out for maintenance and
bring it back, on a live pool (the DrainServer admin operation)."""

from __future__ import annotations

from typing import Annotated

import typer

from lm_cli.live import ReasonOpt, TlsDirOpt, report, with_client
from lm_cli.output import JsonOpt, PoolOpt, handle_errors

server_app = typer.Typer(
    no_args_is_help=True, help="Servers of a live pool (drain for maintenance, resume)."
)

ServerArg = Annotated[str, typer.Argument(help="The server's id in the RLF, e.g. B.")]


@server_app.command("drain")
@handle_errors
def drain(
    server: ServerArg,
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Drain a server for maintenance: it grants and renews nothing from now on, and its
    clients move to the other servers, each with its seats.

    Example: lm server drain --pool pool.rlf B

    The server stays in the pool (it counts in the majority) until you stop it; the
    drain is durable on a majority before this answers, and survives a change of
    leader. `lm status` shows it. The leader cannot be drained: drain the followers,
    or stop the leader (its clients fail over) and drain it once another server leads.
    """
    result = with_client(pool, tls_dir, lambda c: c.drain_server(server, drain=True, reason=reason))
    report(result, json_out=json_out, what=f"drain {server}")


@server_app.command("resume")
@handle_errors
def resume(
    server: ServerArg,
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Put a drained server back in service: it grants again.

    Example: lm server resume --pool pool.rlf B
    """
    result = with_client(
        pool, tls_dir, lambda c: c.drain_server(server, drain=False, reason=reason)
    )
    report(result, json_out=json_out, what=f"resume {server}")


def register(app: typer.Typer) -> None:
    """Add `lm server`."""
    app.add_typer(server_app, name="server")
