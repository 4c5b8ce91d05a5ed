"""`lm alloc add`: ADD_ALLOCATIONS -- an add-on code raises a license's seats, live."""

from __future__ import annotations

from typing import Annotated

import typer

from lm_cli.live import ReasonOpt, TlsDirOpt, report, with_client
from lm_cli.output import JsonOpt, PoolOpt, handle_errors

alloc_app = typer.Typer(no_args_is_help=True, help="Allocations of a live pool (add).")


@alloc_app.command("add")
@handle_errors
def add(
    code: Annotated[str, typer.Argument(help="The add-on license code (kind 'add').")],
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Add allocations to a running pool with an add-on code (ADD_ALLOCATIONS).

    Example: lm alloc add --pool pool.rlf "LM1-..."

    Answers once the change is durable on a majority of the servers.
    """
    result = with_client(pool, tls_dir, lambda c: c.add_allocations(code, reason=reason))
    report(result, json_out=json_out, what="add allocations")


def register(app: typer.Typer) -> None:
    """Add `lm alloc`."""
    app.add_typer(alloc_app, name="alloc")
