"""The `lm` command: one Typer app joined from one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from lm_cli import (
    admin_cmd,
    alloc_cmd,
    client_cmd,
    code_cmd,
    demo_cmd,
    dist_cmd,
    key_cmd,
    pki_cmd,
    rlf_cmd,
    sim_cmd,
    status_cmd,
    vendor_cmd,
)
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
    client_cmd,
    alloc_cmd,
    dist_cmd,
    key_cmd,
    sim_cmd,
    demo_cmd,
):
    _module.register(app)


def main() -> None:
    app()
