"""`lm code issue/show/verify`: vendor-signed license codes."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lm_cli.binding_cmd import read_identities
from lm_cli.code_live import register_code_add
from lm_cli.output import (
    JsonOpt,
    console,
    handle_errors,
    load_private_file,
    load_public_file,
    parse_date,
    print_json,
    today_utc,
)
from lm_core.engine.codes import KINDS, LicenseCode, issue_code, parse_code, verify_code
from lm_core.errors import ExpiredError, InputError
from lm_core.runtime.userfile import read_user_stdin

code_app = typer.Typer(no_args_is_help=True, help="License codes (issue, show, verify).")

CodeArg = Annotated[
    str, typer.Argument(help="The license code (quote it; '-' reads it from stdin).")
]
TodayOpt = Annotated[
    str | None,
    typer.Option("--today", help="Check expiry against this date (YYYY-MM-DD; default: today)."),
]


def read_code(text: str) -> LicenseCode:
    """Parse a CODE argument ('-' = read stdin)."""
    if text.strip() == "-":
        return parse_code(read_user_stdin(what="license code"), file="<stdin>")
    return parse_code(text)


def code_table(code: LicenseCode) -> Table:
    """The code's fields as a two-column table."""
    table = Table(show_header=False, box=None)
    for key, value in code.as_json().items():
        if key not in ("signature", "code"):
            table.add_row(key, str(value))
    return table


@code_app.command("issue")
@handle_errors
def issue(
    key: Annotated[
        Path, typer.Option("--key", help="The vendor's private key file.", readable=False)
    ],
    product: Annotated[str, typer.Option("--product", help="Product name, e.g. Application.")],
    version: Annotated[str, typer.Option("--version", help="Product version, e.g. 1.0.")],
    seats: Annotated[int, typer.Option("--seats", help="Hard limit: concurrent seats.")],
    expires: Annotated[str, typer.Option("--expires", help="Last valid day, YYYY-MM-DD.")],
    vendor: Annotated[
        str | None, typer.Option("--vendor", help="Vendor name (default: the key file's name).")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="'base', or 'add' for an add-on raising the seats.")
    ] = "base",
    serial: Annotated[
        str | None, typer.Option("--serial", help="Serial (default: random).")
    ] = None,
    issued: Annotated[
        str | None, typer.Option("--issued", help="Issue date YYYY-MM-DD (default: today).")
    ] = None,
    bind: Annotated[
        Path | None,
        typer.Option(
            "--bind",
            help="Bind the code to the pool whose server identities this file holds "
            "(`lm pki export-identities`); default: unbound.",
            readable=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue a license code signed with the vendor's key.

    Prints only the code, so CODE=$(lm code issue ...) works; --json prints its fields.

    Example: lm code issue --key acme.key --vendor acme --product Application
    --version 1.0 --seats 100 --expires 2027-12-31 --bind customer-pool.ids

    With --bind the code serves only in the pool whose servers the file names (a
    majority of them present and in contact); without it, anywhere ("unbound").
    """
    if kind not in KINDS:
        raise InputError(f"must be one of {', '.join(KINDS)}, got {kind!r}", field="--kind")
    private = load_private_file(key)
    binding = read_identities(bind).identities if bind is not None else ()
    code = issue_code(
        private,
        vendor=vendor if vendor is not None else key.stem,
        product=product,
        version=version,
        seats=seats,
        expires=parse_date(expires, option="--expires"),
        issued=parse_date(issued, option="--issued") if issued else today_utc(),
        serial=serial if serial is not None else secrets.token_hex(4).upper(),
        kind=kind,
        binding=binding,
    )
    if json_out:
        print_json(code.as_json())
    else:
        sys.stdout.write(code.text() + "\n")


@code_app.command("show")
@handle_errors
def show(code: CodeArg, json_out: JsonOpt = False) -> None:
    """Show what a license code says (no signature check: see lm code verify).

    Example: lm code show LM1-GF6GE-... --json
    """
    parsed = read_code(code)
    if json_out:
        print_json(parsed.as_json())
    else:
        console().print(code_table(parsed))


@code_app.command("verify")
@handle_errors
def verify(
    code: CodeArg,
    vendor_key: Annotated[
        Path,
        typer.Option("--vendor-key", help="The vendor's public key file (.pub).", readable=False),
    ],
    today: TodayOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a code's vendor signature and expiry (exit 0 good, 2 not).

    Example: lm code verify LM1-GF6GE-... --vendor-key acme.pub
    """
    parsed = read_code(code)
    verify_code(parsed, load_public_file(vendor_key))
    day = parse_date(today, option="--today") if today else today_utc()
    if parsed.expired(day):
        raise ExpiredError(
            f"code {parsed.license} serial {parsed.serial} expired on {parsed.expires}",
            field="expires",
        )
    if json_out:
        print_json({"ok": True, **parsed.as_json()})
    else:
        console().print(f"ok: vendor {parsed.vendor!r} signature verifies; {parsed.describe()}")


# `lm code add` (a live pool operation) lives beside the other live commands.
register_code_add(code_app)


def register(app: typer.Typer) -> None:
    """Add `lm code ...`."""
    app.add_typer(code_app, name="code")
