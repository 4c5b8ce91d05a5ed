"""Shared plumbing of the `lm` commands that talk to a live pool (status, alloc, dist,
key, code add, rlf push): the `--tls-dir` option, building an `AdminClient`, running
one admin operation and printing its result."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from lm_cli.output import console, load_pool, print_json
from lm_core.engine.rlf import Rlf
from lm_core.errors import InputError, RefusedError
from lm_core.runtime.admin import AdminClient, AdminResult
from lm_core.runtime.connection import is_loopback
from lm_core.runtime.tlsconfig import load_tls_dir

T = TypeVar("T")

TLS_ENV = "LM_TLS_DIR"

TlsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-dir",
        envvar=TLS_ENV,
        help="Directory from `lm pki init` (uses admin.pem/.key); omit only on loopback.",
        show_default=False,
        readable=False,
    ),
]
ReasonOpt = Annotated[
    str,
    typer.Option(
        "--reason", help="Why (recorded in the audit log with your certificate's identity)."
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for each server.", min=0.1)
]


def admin_client(rlf: Rlf, tls_dir: Path | None, *, timeout: float = 3.0) -> AdminClient:
    """An admin client for `rlf`'s servers; plaintext only if every server is loopback."""
    tls = load_tls_dir(tls_dir, "admin")
    if tls is None:
        far = [s.address for s in rlf.servers if not is_loopback(s.host)]
        if far:
            raise InputError(
                f"servers not on loopback ({', '.join(far)}) need TLS: pass --tls-dir "
                f"or set {TLS_ENV}",
                field="--tls-dir",
            )
    return AdminClient(rlf, tls=tls, timeout=timeout, name=f"admin:{os.getpid()}")


def with_client(
    pool: Path | None,
    tls_dir: Path | None,
    fn: Callable[[AdminClient], Awaitable[T]],
    *,
    timeout: float = 3.0,
) -> T:
    """Load the pool, run `fn(client)` on a fresh event loop, close the client."""
    rlf = load_pool(pool)
    client = admin_client(rlf, tls_dir, timeout=timeout)

    async def go() -> T:
        try:
            return await fn(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def report(result: AdminResult, *, json_out: bool, what: str) -> None:
    """Print an admin operation's result; exit 1 (RefusedError) if it was refused."""
    if json_out:
        print_json(
            {
                "ok": result.ok,
                "message": result.message,
                "server": result.server,
                "data": result.data,
            }
        )
        if not result.ok:
            raise typer.Exit(code=1)
        return
    if not result.ok:
        raise RefusedError(f"{what} refused: {result.message}")
    by = f" (answered by {result.server})" if result.server else ""
    console().print(f"{what}: done{by}" + (f" -- {result.message}" if result.message else ""))
