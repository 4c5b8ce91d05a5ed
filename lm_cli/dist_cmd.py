"""`lm dist set`: CHANGE_DISTRIBUTION of one license on a live pool."""

from __future__ import annotations

from typing import Annotated

import typer

from lm_cli.live import ReasonOpt, TlsDirOpt, report, with_client
from lm_cli.output import JsonOpt, PoolOpt, handle_errors, parse_dist

dist_app = typer.Typer(no_args_is_help=True, help="Distribution of a live pool (set).")


@dist_app.command("set")
@handle_errors
def set_(
    license: Annotated[str, typer.Argument(help='The license, e.g. "Application 1.0".')],
    distribution: Annotated[str, typer.Argument(help="SERVER:SEATS,... e.g. A:50,B:25,C:25")],
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Change the distribution of a license on a running pool (CHANGE_DISTRIBUTION).

    Example: lm dist set --pool pool.rlf "Application 1.0" A:50,B:25,C:25

    Seats not given to a server go to the free pool. Answers once the change is durable
    on a majority of the servers.
    """
    dist = parse_dist(distribution)
    result = with_client(pool, tls_dir, lambda c: c.set_distribution(license, dist, reason=reason))
    report(result, json_out=json_out, what="change distribution")


def register(app: typer.Typer) -> None:
    """Add `lm dist`."""
    app.add_typer(dist_app, name="dist")
