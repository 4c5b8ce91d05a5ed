"""`lm admin keygen`: the pool admin's key that signs RLFs."""

from __future__ import annotations

from typing import Annotated

import typer

from lm_cli.output import JsonOpt, handle_errors
from lm_cli.vendor_cmd import ForceOpt, keygen_output, write_keypair

admin_app = typer.Typer(no_args_is_help=True, help="Admin keys (sign RLFs).")


@admin_app.command("keygen")
@handle_errors
def keygen(
    out: Annotated[str, typer.Option("--out", help="Base name: writes OUT.key and OUT.pub.")],
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Make the pool admin's key pair: OUT.key (private) and OUT.pub.

    OUT.key (mode 0600) signs RLFs (lm rlf sign); OUT.pub pins the admin
    (lm rlf verify --admin-key).

    Example: lm admin keygen --out admin
    """
    keygen_output(write_keypair(out, role="admin", force=force), json_out=json_out)


def register(app: typer.Typer) -> None:
    """Add `lm admin ...`."""
    app.add_typer(admin_app, name="admin")
