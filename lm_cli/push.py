"""`lm rlf push`: force an RLF push (UPDATE_RLF) to a live pool. Registered by `rlf_cmd`
on its `rlf` sub-app: ``register_push(rlf_app)``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lm_cli.live import ReasonOpt, TlsDirOpt, admin_client
from lm_cli.output import JsonOpt, console, handle_errors, load_pool, print_json, read_text
from lm_core.errors import RefusedError
from lm_core.runtime.admin import PushResult


@handle_errors
def push_command(
    file: Annotated[
        Path, typer.Argument(help="The new signed RLF (higher sequence).", readable=False)
    ],
    pool_from: Annotated[
        Path | None,
        typer.Option(
            "--pool-from",
            "--pool",
            envvar="LM_POOL",
            help="The RLF the pool runs now (where to find its servers; default: FILE).",
            show_default=False,
            readable=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Push a newer signed RLF to every server and wait until each runs it.

    Example: lm rlf push pool.rlf --pool-from old.rlf

    The file is verified first (signature, pool, admin key, sequence above the pool's).
    Exit 0 when every reachable server took it, 1 otherwise, 2 for a bad file.
    """
    text = read_text(file, what="RLF")
    current = load_pool(pool_from if pool_from is not None else file)
    client = admin_client(current, tls_dir)

    async def go() -> PushResult:
        try:
            return await client.push_rlf(text, file=str(file), reason=reason)
        finally:
            await client.aclose()

    result = asyncio.run(go())
    if json_out:
        print_json({"ok": result.ok, "message": result.message, "servers": result.per_server})
        if not result.ok:
            raise typer.Exit(code=1)
        return
    table = Table(title=result.message)
    table.add_column("server")
    table.add_column("result")
    for sid, what in result.per_server.items():
        table.add_row(sid, what)
    console().print(table)
    if not result.ok:
        raise RefusedError(result.message)


def register_push(rlf_app: typer.Typer) -> None:
    """Add `lm rlf push` to the `rlf` sub-app."""
    rlf_app.command("push")(push_command)
