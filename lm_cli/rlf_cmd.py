"""`lm rlf ...`: write, edit, sign, verify and show the pool's RLF.

Every edit command bumps the sequence number and drops the admin signature (re-sign with
`lm rlf sign`); every write is atomic. `rlf_app` is exported so other modules can add
commands: ``rlf_app.command("push")(push_command)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lm_cli.binding_cmd import binding_report, read_identities
from lm_cli.live import TlsDirOpt
from lm_cli.output import (
    JsonOpt,
    console,
    handle_errors,
    load_private_file,
    load_public_file,
    parse_date,
    parse_dist,
    print_json,
    read_rlf,
    today_utc,
    warn,
    write_atomic,
)
from lm_cli.push import register_push
from lm_cli.rlf_edit import register_edits
from lm_core.engine.codes import parse_code, verify_code
from lm_core.engine.keys import load_public, public_text
from lm_core.engine.rlf import (
    Rlf,
    ServerEntry,
    Timing,
    Vendor,
    check_expiry,
    expired_codes,
    new_rlf,
    render_rlf,
    sign_rlf,
    split_address,
    verify_rlf,
    with_code,
    with_distribution,
    with_vendor,
)
from lm_core.errors import InputError, LmError, SignatureError
from lm_core.runtime.identity import pool_identities

rlf_app = typer.Typer(
    no_args_is_help=True,
    help="The pool's redundant license file (RLF): new, add-code, set-dist, add-server, "
    "remove-server, move-server, set, bump, sign, verify, show, push, pull.",
)

FileArg = Annotated[Path, typer.Argument(help="The RLF file.", readable=False)]
TodayOpt = Annotated[
    str | None,
    typer.Option("--today", help="Judge expiry on this date (YYYY-MM-DD; default: today)."),
]


@contextlib.contextmanager
def _in_file(path: Path) -> Iterator[None]:
    """Name `path` in edit errors that do not name a file yet."""
    try:
        yield
    except InputError as err:
        if err.file is not None:
            raise
        raise err.located(file=str(path)) from None


def _today(today: str | None) -> datetime.date:
    return parse_date(today, option="--today") if today else today_utc()


def _save(path: Path, rlf: Rlf) -> None:
    write_atomic(path, render_rlf(rlf))


def _edited_note(path: Path, rlf: Rlf) -> str:
    return f"{path}: sequence {rlf.sequence}, unsigned (run: lm rlf sign {path} --key admin.key)"


def _vendor_arg(text: str) -> Vendor:
    name, eq, key_path = text.partition("=")
    if not eq or not name or not key_path:
        raise InputError(f"expected NAME=KEYFILE.pub, got {text!r}", field="--vendor")
    return Vendor(name, public_text(load_public_file(key_path)))


def _server_arg(text: str) -> ServerEntry:
    sid, eq, address = text.partition("=")
    if not eq or not sid:
        raise InputError(f"expected ID=HOST:PORT, got {text!r}", field="--server")
    try:
        host, port = split_address(address)
    except InputError as err:
        raise InputError(err.message, field=f"--server {sid}") from None
    return ServerEntry(sid, host, port)


@rlf_app.command("new")
@handle_errors
def new(
    file: FileArg,
    name: Annotated[str, typer.Option("--name", help="The pool's name (e.g. eng).")],
    server: Annotated[
        list[str],
        typer.Option("--server", help="ID=HOST:PORT, repeated, in leader-priority order."),
    ],
    admin_key: Annotated[
        Path | None,
        typer.Option("--admin-key", help="The admin's public key (.pub).", readable=False),
    ] = None,
    vendor: Annotated[
        list[str] | None,
        typer.Option("--vendor", help="NAME=KEYFILE.pub: a vendor to trust (repeatable)."),
    ] = None,
    no_majority_rule: Annotated[
        bool, typer.Option("--no-majority-rule", help="Turn majority rule off (not advised).")
    ] = False,
    borrowing_threshold: Annotated[
        float, typer.Option("--borrowing-threshold", help="In-use / distribution that borrows.")
    ] = 0.8,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a new, unsigned RLF (sequence 1).

    Servers (3 to 11) are given in leader-priority order: the first is the preferred
    leader. Optionally names the admin key and the vendors to trust.

    Example: lm rlf new pool.rlf --name eng --server A=127.0.0.1:27001
    --server B=127.0.0.1:27002 --server C=127.0.0.1:27003 --admin-key admin.pub
    --vendor acme=acme.pub
    """
    if file.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", file=str(file))
    rlf = new_rlf(
        name,
        [_server_arg(s) for s in server],
        admin_key=public_text(load_public_file(admin_key)) if admin_key else "",
        vendors=[_vendor_arg(v) for v in vendor or []],
        timing=Timing(),
        majority_rule=not no_majority_rule,
        borrowing_threshold=borrowing_threshold,
    )
    _save(file, rlf)
    console().print(f"wrote {file}: pool {name!r}, servers {', '.join(rlf.server_ids)}")
    console().print(_edited_note(file, rlf))


@rlf_app.command("add-code")
@handle_errors
def add_code(
    file: FileArg,
    code: Annotated[str, typer.Argument(help="The license code as issued.")],
    dist: Annotated[
        str | None,
        typer.Option("--dist", help="Distribution SERVER:SEATS,... (default: even split)."),
    ] = None,
    vendor_key: Annotated[
        Path | None,
        typer.Option(
            "--vendor-key", help="The code vendor's public key; adds the vendor.", readable=False
        ),
    ] = None,
    today: TodayOpt = None,
) -> None:
    """Add a license code (base or add-on), optionally with its distribution.

    The code's vendor signature is checked against --vendor-key (which also adds the
    vendor to the RLF) or against the vendor already in the RLF.

    Example: lm rlf add-code pool.rlf LM1-GF6GE-... --dist A:40,B:30,C:30
    --vendor-key acme.pub
    """
    rlf, _ = read_rlf(file)
    parsed = parse_code(code)
    known = rlf.vendor_key(parsed.vendor)
    if vendor_key is not None:
        given = public_text(load_public_file(vendor_key))
        if known is not None and known != given:
            raise SignatureError(
                f"vendor {parsed.vendor!r} in the RLF has key {known}, not this key {given}",
                file=str(vendor_key),
            )
        known = given
    if known is None:
        raise InputError(
            f"vendor {parsed.vendor!r} is not in this RLF: pass --vendor-key {parsed.vendor}.pub",
            file=str(file),
            field="vendors",
        )
    verify_code(parsed, load_public(known))
    if parsed.expired(_today(today)):
        warn(f"code {parsed.license} serial {parsed.serial} expired on {parsed.expires}")
    with _in_file(file):
        updated = rlf if rlf.vendor_key(parsed.vendor) else with_vendor(rlf, parsed.vendor, known)
        per = parse_dist(dist, option="--dist") if dist else None
        updated = with_code(updated, parsed.text(), per)
        updated = dataclasses.replace(updated, sequence=rlf.sequence + 1)
    _save(file, updated)
    console().print(f"added {parsed.describe()}")
    console().print(_edited_note(file, updated))


@rlf_app.command("set-dist")
@handle_errors
def set_dist(
    file: FileArg,
    license: Annotated[str, typer.Argument(help='The license, e.g. "Application 1.0".')],
    dist: Annotated[str, typer.Argument(help="SERVER:SEATS,... or 'even' for an even split.")],
) -> None:
    """Set a license's initial distribution (the rest goes to the free pool).

    Example: lm rlf set-dist pool.rlf "Application 1.0" A:50,B:25,C:25
    """
    rlf, _ = read_rlf(file)
    parsed = None if dist.strip().lower() == "even" else parse_dist(dist, option="distribution")
    with _in_file(file):
        updated = with_distribution(rlf, license, parsed)
    _save(file, updated)
    per, free = _distribution_of(updated, license)
    shown = ", ".join(f"{sid}:{n}" for sid, n in per.items())
    console().print(f"{license}: {shown}, free pool {free}")
    console().print(_edited_note(file, updated))


def _distribution_of(rlf: Rlf, license: str) -> tuple[dict[str, int], int]:
    table = rlf.initial_distribution(datetime.date.min)
    return table.get(license, ({}, 0))


@rlf_app.command("sign")
@handle_errors
def sign(
    file: FileArg,
    key: Annotated[
        Path, typer.Option("--key", help="The admin's private key file.", readable=False)
    ],
) -> None:
    """Sign the RLF with the admin key.

    Every code's vendor signature is checked first; an RLF without an admin key takes
    this key's public half.

    Example: lm rlf sign pool.rlf --key admin.key
    """
    rlf, text = read_rlf(file)
    private = load_private_file(key)
    try:
        signed = sign_rlf(rlf, private)
    except SignatureError as err:
        raise err.located(file=str(key)) from None
    except InputError as err:
        raise err.located(file=str(file)) from None
    # Check the vendor signatures before putting the admin's name under them.
    verify_rlf(signed, file=str(file), text=text)
    _save(file, signed)
    console().print(
        f"signed {file}: pool {signed.pool!r}, sequence {signed.sequence}, "
        f"admin key {signed.admin_key}"
    )


@rlf_app.command("verify")
@handle_errors
def verify(
    file: FileArg,
    admin_key: Annotated[
        Path | None,
        typer.Option("--admin-key", help="Pin the admin's public key (.pub).", readable=False),
    ] = None,
    vendor_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--vendor-key", help="Pin a vendor's public key (.pub); repeatable.", readable=False
        ),
    ] = None,
    today: TodayOpt = None,
    identities: Annotated[
        Path | None,
        typer.Option(
            "--identities",
            help="Check bound codes against this pool's server identities "
            "(`lm pki export-identities`).",
            readable=False,
        ),
    ] = None,
    tls_dir: TlsDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify the admin signature and every code's vendor signature.

    Exit 2 naming the failure. An expired code also fails here (it would serve nothing).
    A code bound to another pool's servers (checked against --identities, or the server
    certificates of --tls-dir) serves nothing here: exit 1, saying which and why.

    Example: lm rlf verify pool.rlf --admin-key admin.pub --vendor-key acme.pub
    """
    rlf, text = read_rlf(file)
    pinned = load_public_file(admin_key) if admin_key else None
    for path in vendor_key or []:
        given = public_text(load_public_file(path))
        if given not in {v.key for v in rlf.vendors}:
            raise SignatureError(
                "this vendor key is not the key of any vendor in the RLF "
                f"({', '.join(v.name for v in rlf.vendors) or 'none'})",
                file=str(path),
            )
    verify_rlf(rlf, admin_key=pinned, file=str(file), text=text)
    check_expiry(rlf, _today(today), file=str(file), text=text)
    ids: tuple[str, ...] | None = None
    if identities is not None:
        ids = read_identities(identities).identities
    elif tls_dir is not None and tls_dir.is_dir():
        # an operator's TLS dir may hold no server certificates: then not checked
        with contextlib.suppress(InputError):
            ids = pool_identities(rlf, tls_dir).identities
    bindings = binding_report(rlf.license_codes(), ids)
    foreign = [b for b in bindings if b["why"]]
    if json_out:
        print_json(
            {
                "ok": True,
                "file": str(file),
                "pool": rlf.pool,
                "sequence": rlf.sequence,
                "admin_key": rlf.admin_key,
                "codes": len(rlf.codes),
                "vendors": [v.name for v in rlf.vendors],
                "bindings": bindings,
                "serves": not foreign,
            }
        )
    else:
        console().print(
            f"ok: {file}: pool {rlf.pool!r} sequence {rlf.sequence}: admin signature and "
            f"{len(rlf.codes)} vendor signature(s) verify"
        )
        for b in bindings:
            console().print(
                f"code {b['code']} ({b['license']}, serial {b['serial']}): {b['binding']}"
                + (f": {b['why']}" if b["why"] else ""),
                highlight=False,
                markup=False,
            )
    if foreign:
        raise typer.Exit(code=1)


def rlf_summary(rlf: Rlf, today: datetime.date, *, file: str | None = None) -> dict[str, Any]:
    """The JSON shape of `lm rlf show --json` (also handy for other front ends)."""
    signature: dict[str, Any] = {"signed": rlf.signature is not None, "ok": None, "error": None}
    if rlf.signature is not None:
        try:
            verify_rlf(rlf)
            signature["ok"] = True
        except LmError as err:
            signature["ok"] = False
            signature["error"] = str(err)
    expired = {i for i, _ in expired_codes(rlf, today)}
    totals = rlf.licenses(today)
    licenses = []
    for lic, (per, free) in rlf.initial_distribution(today).items():
        licenses.append(
            {
                "license": lic,
                "vendor": totals[lic].vendor,
                "hard_limit": totals[lic].hard_limit,
                "expires": totals[lic].expires.isoformat(),
                "explicit": lic in rlf.distribution,
                "distribution": per,
                "free_pool": free,
            }
        )
    return {
        "file": file,
        "pool": rlf.pool,
        "sequence": rlf.sequence,
        "admin_key": rlf.admin_key,
        "signature": signature,
        "servers": [
            {"id": s.id, "address": s.address, "priority": i + 1} for i, s in enumerate(rlf.servers)
        ],
        "vendors": [{"name": v.name, "key": v.key} for v in rlf.vendors],
        "codes": [
            {**code.as_json(), "expired": i in expired}
            for i, code in enumerate(rlf.license_codes())
        ],
        "licenses": licenses,
        "timing": dataclasses.asdict(rlf.timing),
        "majority_rule": rlf.majority_rule,
        "borrowing_threshold": rlf.borrowing_threshold,
    }


def _print_summary(data: dict[str, Any]) -> None:
    out = console()
    sig = data["signature"]
    state = (
        "unsigned" if not sig["signed"] else "signed, verifies" if sig["ok"] else "SIGNATURE BAD"
    )
    expired = sum(1 for c in data["codes"] if c["expired"])
    if expired:
        state += f"; {expired} code(s) EXPIRED, serving nothing"
    out.print(f"[bold]pool {data['pool']}[/bold]  sequence {data['sequence']}  ({state})")
    if sig["error"]:
        out.print(f"  {sig['error']}", markup=False)
    servers = Table(title="servers (leader priority)", title_justify="left")
    for col in ("priority", "id", "address"):
        servers.add_column(col)
    for s in data["servers"]:
        servers.add_row(str(s["priority"]), s["id"], s["address"])
    out.print(servers)
    codes = Table(title="license codes", title_justify="left")
    for col in ("#", "vendor", "license", "kind", "seats", "expires", "serial", "binding"):
        codes.add_column(col)
    for i, c in enumerate(data["codes"]):
        expires = c["expires"] + (" EXPIRED" if c["expired"] else "")
        bound = c.get("binding", "unbound")
        binding = bound if isinstance(bound, str) else f"bound ({len(bound)} servers)"
        codes.add_row(
            str(i), c["vendor"], c["license"], c["kind"], str(c["seats"]), expires, c["serial"],
            binding,
        )  # fmt: skip
    out.print(codes)
    ids = [s["id"] for s in data["servers"]]
    dist = Table(title="initial distribution", title_justify="left")
    dist.add_column("license", no_wrap=True)
    for col in ("hard limit", *ids, "free pool"):
        dist.add_column(col, justify="right")
    dist.add_column("note", no_wrap=True)
    for lic in data["licenses"]:
        how = "" if lic["explicit"] else "even split"
        dist.add_row(
            lic["license"],
            str(lic["hard_limit"]),
            *(str(lic["distribution"][i]) for i in ids),
            str(lic["free_pool"]),
            how,
        )
    out.print(dist)
    t = data["timing"]
    out.print(
        f"timing: heartbeat {t['heartbeat_interval']}s, leader timeout {t['leader_timeout']}s, "
        f"server lease {t['server_lease']}s, client heartbeat {t['client_heartbeat']}s, "
        f"client lease {t['client_lease']}s, drift {t['drift']}; "
        f"majority rule {'on' if data['majority_rule'] else 'OFF'}; "
        f"borrowing threshold {data['borrowing_threshold']}"
    )


@rlf_app.command("show")
@handle_errors
def show(file: FileArg, today: TodayOpt = None, json_out: JsonOpt = False) -> None:
    """Show servers (leader priority), codes, and the distribution with the free pool.

    Example: lm rlf show pool.rlf --json
    """
    rlf, _ = read_rlf(file)
    data = rlf_summary(rlf, _today(today), file=str(file))
    if json_out:
        print_json(data)
    else:
        _print_summary(data)


# `lm rlf push` (a live pool operation) lives beside the other live commands.
register_push(rlf_app)


# The server/settings edits and `lm rlf pull` live in lm_cli/rlf_edit.py.
register_edits(rlf_app)


def register(app: typer.Typer) -> None:
    """Add `lm rlf ...`."""
    app.add_typer(rlf_app, name="rlf")
