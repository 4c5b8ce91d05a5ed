"""`lm code add`: ADD_LICENSE_CODE on a live pool. Registered by `code_cmd` on its
`code` sub-app: ``code_app.command("add")(code_add)``."""

from __future__ import annotations

from typing import Annotated

import typer

from lm_cli.live import ReasonOpt, TlsDirOpt, report, with_client
from lm_cli.output import JsonOpt, PoolOpt, handle_errors
from lm_core.runtime.userfile import read_user_stdin


@handle_errors
def code_add(
    code: Annotated[str, typer.Argument(help="The license code (quote it; '-' reads stdin).")],
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Add a license code to a running pool (ADD_LICENSE_CODE).

    Example: lm code add --pool pool.rlf "LM1-..."

    Answers once the change is durable on a majority of the servers.
    """
    text = read_user_stdin(what="license code") if code.strip() == "-" else code
    result = with_client(pool, tls_dir, lambda c: c.add_code(text, reason=reason))
    report(result, json_out=json_out, what="add license code")


def register_code_add(code_app: typer.Typer) -> None:
    """Add `lm code add` to the `code` sub-app."""
    code_app.command("add")(code_add)
