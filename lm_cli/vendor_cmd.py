"""`lm vendor keygen`: a software vendor's signing key for license codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lm_cli.output import JsonOpt, console, handle_errors, print_json, write_atomic
from lm_core.engine.keys import generate_keypair
from lm_core.errors import InputError

vendor_app = typer.Typer(no_args_is_help=True, help="Vendor keys (sign license codes).")

ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")]


def write_keypair(out: str, *, role: str, force: bool) -> dict[str, str]:
    """Write OUT.key (private, 0600) and OUT.pub; returns {"private", "public", "key"}."""
    base = out[: -len(".key")] if out.endswith((".key", ".pub")) else out
    if not base or base.endswith("/"):
        raise InputError("--out needs a file name without extension, e.g. --out acme")
    private_path, public_path = Path(base + ".key"), Path(base + ".pub")
    if not force:
        for existing in (private_path, public_path):
            if existing.exists():
                raise InputError("already exists (use --force to overwrite)", file=str(existing))
    private, public = generate_keypair()
    name = Path(base).name
    write_atomic(
        private_path,
        f"# lm {role} key {name!r} -- PRIVATE: keep it secret, never share it.\n{private}\n",
        private=True,
    )
    write_atomic(public_path, f"# lm {role} key {name!r} -- public, safe to share.\n{public}\n")
    return {"private": str(private_path), "public": str(public_path), "key": public}


def keygen_output(result: dict[str, str], *, json_out: bool) -> None:
    """Print what `write_keypair` wrote."""
    if json_out:
        print_json(result)
        return
    out = console()
    out.print(f"private key: {result['private']} (mode 0600, keep it secret)")
    out.print(f"public key:  {result['public']}")
    out.print(result["key"])


@vendor_app.command("keygen")
@handle_errors
def keygen(
    out: Annotated[str, typer.Option("--out", help="Base name: writes OUT.key and OUT.pub.")],
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Make a vendor key pair: OUT.key (private) and OUT.pub.

    OUT.key (mode 0600) signs license codes; OUT.pub goes to license admins.

    Example: lm vendor keygen --out acme
    """
    keygen_output(write_keypair(out, role="vendor", force=force), json_out=json_out)


def register(app: typer.Typer) -> None:
    """Add `lm vendor ...`."""
    app.add_typer(vendor_app, name="vendor")
