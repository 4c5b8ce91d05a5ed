"""Codes bound to a pool (V1): `lm pki export-identities` for the customer's admin, and
the helpers `lm code issue --bind` and `lm rlf verify` use (`lm_core.engine.binding`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lm_cli.live import TlsDirOpt
from lm_cli.output import (
    JsonOpt,
    PoolOpt,
    console,
    handle_errors,
    load_pool,
    print_json,
    read_text,
    write_atomic,
)
from lm_core.engine.binding import (
    PoolIdentities,
    offline_refusal,
    parse_identities,
    render_identities,
)
from lm_core.engine.codes import LicenseCode
from lm_core.errors import InputError
from lm_core.runtime.identity import pool_identities


def read_identities(path: Path) -> PoolIdentities:
    """An identities file (`lm pki export-identities`); `InputError` naming file and line."""
    return parse_identities(read_text(path, what="identities file"), file=str(path))


@handle_errors
def export_identities(
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the identities file.", readable=False)
    ],
    pool: PoolOpt = None,
    tls_dir: TlsDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write the pool's server identities (from each server's TLS certificate) to a file
    for your vendor, who binds license codes to them (`lm code issue --bind FILE`).

    Example: lm pki export-identities --pool pool.rlf --tls-dir tls --out pool.ids

    A bound code serves only while a majority of these servers are in the pool and in
    contact (docs/SECURITY.md).
    """
    if tls_dir is None:
        raise InputError(
            "the identities are the servers' TLS keys: pass --tls-dir (or set LM_TLS_DIR)",
            field="--tls-dir",
        )
    rlf = load_pool(pool)
    ids = pool_identities(rlf, tls_dir)
    if out.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", file=str(out))
    write_atomic(out, render_identities(ids))
    if json_out:
        print_json({"pool": ids.pool, "servers": dict(ids.servers), "file": str(out)})
    else:
        console().print(
            f"wrote {out}: {len(ids.servers)} server identities of pool {ids.pool!r}",
            highlight=False,
        )


def binding_report(
    codes: tuple[LicenseCode, ...], identities: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """Per code: "unbound", "bound" (a majority of its servers are the pool's) or why it
    serves nothing here; `identities` None: not checked."""
    out = []
    for i, code in enumerate(codes):
        if not code.bound:
            state, why = "unbound", None
        elif identities is None:
            state, why = "bound (not checked: give --identities or --tls-dir)", None
        else:
            why = offline_refusal(code, identities)
            state = "bound to this pool" if why is None else "bound to another pool"
        out.append(
            {
                "code": i,
                "license": code.license,
                "serial": code.serial,
                "binding": state,
                "why": why,
            }
        )
    return out


def register_export(pki_app: typer.Typer) -> None:
    """Add `lm pki export-identities` to the `pki` sub-app."""
    pki_app.command("export-identities")(export_identities)
