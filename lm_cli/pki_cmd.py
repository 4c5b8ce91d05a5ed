"""`lm pki init`: the pool CA and every certificate the pool needs, from the RLF."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lm_cli.binding_cmd import register_export
from lm_cli.output import JsonOpt, console, handle_errors, load_pool, print_json
from lm_core.errors import InputError
from lm_core.runtime.pki import PkiServer, init_pki

pki_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "The pool's TLS certificates (a pool CA, a certificate per server, admin, monitor, client)."
    ),
)

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def _check_name(value: str, option: str) -> str:
    if not value or not set(value) <= _NAME_CHARS or len(value) > 64:
        raise InputError(
            f"expected 1-64 characters of [A-Za-z0-9._-@], got {value!r}", field=option
        )
    return value


@pki_app.command("init")
@handle_errors
def init(
    rlf: Annotated[
        Path | None,
        typer.Option(
            "--rlf",
            envvar="LM_POOL",
            help="The pool's RLF (servers and hosts).",
            show_default=False,
            readable=False,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write (created if needed).", readable=False)
    ] = Path("tls"),
    admin_name: Annotated[
        str, typer.Option("--admin-name", help="Name in the admin certificate (CN admin:NAME).")
    ] = "admin",
    monitor_name: Annotated[
        str,
        typer.Option("--monitor-name", help="Name in the monitor certificate (CN monitor:NAME)."),
    ] = "monitor",
    client_name: Annotated[
        str, typer.Option("--client-name", help="Name in the client certificate (CN client:NAME).")
    ] = "client",
    json_out: JsonOpt = False,
) -> None:
    """Write the pool CA (kept if OUT already has one), a certificate per RLF server (IP SANs:
    127.0.0.1 and its RLF host), an admin, a monitor and a client certificate. Keys are
    mode 0600. Roles: a server certificate talks to peers only; admin changes the pool;
    monitor reads status and changes nothing (give read-only operators ca.pem +
    monitor.pem/.key); client is optional for license clients.

    Example: lm pki init --rlf pool.rlf --out tls/
    """  # fmt: skip
    if rlf is None and not os.environ.get("LM_POOL"):
        raise InputError("no RLF given: pass --rlf FILE (or set LM_POOL)", field="--rlf")
    pool = load_pool(rlf)
    result = init_pki(
        out,
        pool=pool.pool,
        servers=[PkiServer(s.id, s.host) for s in pool.servers],
        admin_name=_check_name(admin_name, "--admin-name"),
        client_name=_check_name(client_name, "--client-name"),
        monitor_name=_check_name(monitor_name, "--monitor-name"),
    )
    if json_out:
        print_json(
            {
                "out": str(out),
                "pool": pool.pool,
                "ca_reused": result.ca_reused,
                "files": [str(p) for p in result.files],
            }
        )
        return
    con = console()
    con.print(
        f"{'kept the existing' if result.ca_reused else 'created a new'} pool CA in {out}/ "
        f"(pool {pool.pool!r})"
    )
    for path in result.files:
        con.print(f"  wrote {path}")
    con.print(
        "Install on each server host: ca.pem + server-<ID>.pem/.key (lm-daemon --tls-dir). "
        "Admins: ca.pem + admin.pem/.key. Read-only operators: ca.pem + monitor.pem/.key. "
        "Clients: ca.pem (+ client.pem/.key). "
        "Keep ca.key off the servers."
    )


register_export(pki_app)  # `lm pki export-identities` (lm_cli/binding_cmd.py)


def register(app: typer.Typer) -> None:
    """Add `lm pki ...`."""
    app.add_typer(pki_app, name="pki")
