"""`lm key release`: an operator reclaims a stale authorization from the key tables."""

from __future__ import annotations

from typing import Annotated

import typer

from lm_cli.live import TlsDirOpt, report, with_client
from lm_cli.output import JsonOpt, PoolOpt, handle_errors

key_app = typer.Typer(no_args_is_help=True, help="Key tables of a live pool (release).")


@key_app.command("release")
@handle_errors
def release(
    client_id: Annotated[str, typer.Option("--client-id", help="The client holding the seat.")],
    license: Annotated[str, typer.Option("--license", help='e.g. "Application 1.0".')],
    reason: Annotated[str, typer.Option("--reason", help="Why (logged with the reclaim).")],
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
) -> None:
    """Reclaim a stale authorization (logged with the reason).

    Example: lm key release --pool pool.rlf --client-id ws-17 --license "Application 1.0"
    --reason "host decommissioned"
    """
    result = with_client(pool, tls_dir, lambda c: c.reclaim(client_id, license, reason))
    report(result, json_out=json_out, what=f"release {client_id}")


def register(app: typer.Typer) -> None:
    """Add `lm key`."""
    app.add_typer(key_app, name="key")
