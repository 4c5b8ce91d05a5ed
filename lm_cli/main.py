"""The `lm` command: one Typer app joined from one module per command group."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lm_cli import (
    admin_cmd,
    agent_cmd,
    alloc_cmd,
    audit_cmd,
    client_cmd,
    code_cmd,
    demo_cmd,
    dist_cmd,
    key_cmd,
    pki_cmd,
    report_cmd,
    rlf_cmd,
    run_cmd,
    server_cmd,
    sim_cmd,
    status_cmd,
    vendor_cmd,
)
from lm_cli.output import json_error
from lm_core.version import version_line

app = typer.Typer(
    name="lm",
    help="lm: a floating-license server pool (vendor keys, license codes, RLFs, live pool).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        print(version_line("lm"))
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """lm: a floating-license server pool (vendor keys, license codes, RLFs, live pool)."""


# Each module exposes `register(app)`, which adds its commands or sub-app.
for _module in (
    vendor_cmd,
    code_cmd,
    admin_cmd,
    rlf_cmd,
    pki_cmd,
    status_cmd,
    report_cmd,
    client_cmd,
    run_cmd,
    alloc_cmd,
    dist_cmd,
    key_cmd,
    audit_cmd,
    server_cmd,
    sim_cmd,
    demo_cmd,
    agent_cmd,
):
    _module.register(app)


def _usage_field(exc: Exception) -> str | None:
    param = getattr(exc, "param", None)
    opts = getattr(param, "opts", None)
    if opts:
        return str(opts[0])
    name = getattr(param, "name", None)
    return str(name) if name else None


def main() -> None:
    """The `lm` entry point. With `--json` anywhere on the line, a usage error (unknown
    option, missing or bad value) is also one JSON object on stdout, exit 2."""
    if "--json" not in sys.argv[1:]:
        app()
        return
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        fmt = getattr(exc, "format_message", None)
        message = fmt() if callable(fmt) else str(exc)
        json_error(str(message), field=_usage_field(exc))
        sys.exit(int(getattr(exc, "exit_code", 2) or 2))
    sys.exit(code if isinstance(code, int) else 0)
