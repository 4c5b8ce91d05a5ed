"""The `lm` command: one Typer app joined from one module per command group."""

from __future__ import annotations

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

app = typer.Typer(
    name="lm",
    help="lm: a floating-license server pool (vendor keys, license codes, RLFs, live pool).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

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
