"""`lm audit` and `lm audit verify`: the pool's admin changes, who made them, and whether
each server's hash chain is intact (`lm_core.runtime.audit`)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from lm_cli.live import TimeoutOpt, TlsDirOpt, with_client
from lm_cli.output import JsonOpt, PoolOpt, console, handle_errors, load_pool, print_json
from lm_core.errors import InputError, RefusedError
from lm_core.runtime.audit import CONFIG_OPS, Break, diff_views, verify_chain, verify_pool

audit_app = typer.Typer(
    no_args_is_help=False,
    invoke_without_command=True,
    help="The admin audit log of a live pool (show, verify).",
)

SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only changes at or after this UTC time: 2026-11-29, 2026-11-29T14:00, or an "
        "age: 30m, 12h, 7d.",
    ),
]
_AGE = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime.datetime) -> str:
    """The ISO UTC stamp (as the rows spell `at`) that `--since TEXT` means."""
    t = text.strip()
    age = _AGE.fullmatch(t)
    if age:
        when = now - datetime.timedelta(seconds=int(age.group(1)) * _UNITS[age.group(2)])
    else:
        try:
            when = datetime.datetime.fromisoformat(t.removesuffix("Z"))
        except ValueError:
            raise InputError(
                f"not a time: {text!r} (e.g. 2026-11-29, 2026-11-29T14:00, 30m, 12h, 7d)",
                field="--since",
            ) from None
        if when.tzinfo is not None:
            when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _fetch(pool: Path | None, tls_dir: Path | None, timeout: float) -> dict[str, dict[str, Any]]:
    per = with_client(pool, tls_dir, lambda c: c.audit(), timeout=timeout)
    errors = [a["error"] for a in per.values() if "error" in a]
    if errors and len(errors) == len(per):
        refused = [e for e in errors if e.startswith("refused:")]
        raise RefusedError((refused or errors)[0])
    return per


def changes(per: dict[str, dict[str, Any]], since: str | None) -> list[dict[str, Any]]:
    """The pool's changes, oldest first: one entry per change, with the servers that
    recorded it (a config change is the same op, RLF sequence and config version)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for sid, ans in per.items():
        for r in ans.get("rows", []):
            if since is not None and str(r.get("at", "")) < since:
                continue
            if r.get("op") in CONFIG_OPS:
                key: tuple[Any, ...] = (
                    "cfg",
                    r["op"],
                    r["rlf_seq"],
                    r["cfg_term"],
                    r["cfg_version"],
                )
            else:
                key = ("one", sid, r["seq"])
            entry = merged.get(key)
            if entry is None:
                merged[key] = entry = {
                    "at": r["at"], "op": r["op"], "actor": r["actor"], "reason": r["reason"],
                    "what": r["what"], "rlf_seq": r["rlf_seq"],
                    "config_version": r["cfg_version"], "before": r["before"],
                    "after": r["after"], "servers": {},
                }  # fmt: skip
            entry["servers"][sid] = r["seq"]
            entry["at"] = min(entry["at"], r["at"])
    return sorted(merged.values(), key=lambda e: e["at"])


@audit_app.callback()
@handle_errors
def show(
    ctx: typer.Context,
    since: SinceOpt = None,
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    timeout: TimeoutOpt = 3.0,
) -> None:
    """Show every admin change of the pool: when, what, who (the admin certificate),
    why, before -> after, and on which servers it was recorded.

    Example: lm audit --since 7d --json

    Reads every server's audit log (an admin or a monitor certificate will do); a change
    applied pool-wide shows once, with each server that recorded it.
    """
    if ctx.invoked_subcommand is not None:
        return
    cut = parse_since(since, datetime.datetime.now(datetime.UTC)) if since else None
    per = _fetch(pool, tls_dir, timeout)
    found = changes(per, cut)
    unreachable = {sid: a["error"] for sid, a in per.items() if "error" in a}
    if json_out:
        print_json({"changes": found, "unreachable": unreachable})
        return
    out = console()
    out.print(f"{len(found)} admin change(s)", highlight=False)
    for c in found:
        change = diff_views(c["before"], c["after"]) or c["what"]
        out.print(
            f"{c['at'][:19].replace('T', ' ')}  {c['op']}  by {c['actor']}  "
            f"on {','.join(sorted(c['servers']))}",
            highlight=False,
            markup=False,
        )
        out.print(f"    reason: {c['reason'] or '-'}", highlight=False, markup=False)
        out.print(f"    change: {change}", highlight=False, markup=False)
    for sid, why in unreachable.items():
        console().print(f"[yellow]{sid}: not read ({why})[/]")


@audit_app.command("verify")
@handle_errors
def verify(
    pool: PoolOpt = None,
    json_out: JsonOpt = False,
    tls_dir: TlsDirOpt = None,
    timeout: TimeoutOpt = 3.0,
) -> None:
    """Check each server's audit hash chain and that servers agree on who made each
    pool-wide change. Exit 0 if every server checks, 1 if a row is broken (the server
    and row are named) or a server could not be read.

    Example: lm audit verify
    """
    pool_name = load_pool(pool).pool
    per = _fetch(pool, tls_dir, timeout)
    with_rows = {sid: a["rows"] for sid, a in per.items() if "rows" in a}
    result: dict[str, dict[str, Any]] = {}
    breaks: list[Break] = []
    for sid, ans in per.items():
        if "error" in ans:
            result[sid] = {"ok": False, "rows": None, "error": ans["error"]}
            continue
        brk = verify_chain(pool_name, sid, ans["rows"], ans.get("head"), ans.get("anchor"))
        result[sid] = {"ok": brk is None, "rows": len(ans["rows"]), "error": None}
        if brk is not None:
            breaks.append(brk)
            result[sid].update(error=brk.why, row=brk.seq)
    for brk in verify_pool(with_rows):
        breaks.append(brk)
        result[brk.server].update(ok=False, error=brk.why, row=brk.seq)
    ok = all(r["ok"] for r in result.values())
    if json_out:
        print_json({"ok": ok, "servers": result})
    else:
        for sid, r in result.items():
            if r["ok"]:
                console().print(f"{sid}: ok, {r['rows']} row(s), chain intact")
            elif r["rows"] is None:
                console().print(f"[red]{sid}: not checked: {r['error']}[/]")
        for brk in breaks:
            console().print(f"[red]BROKEN {brk.line()}[/]")
    if not ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add `lm audit`."""
    app.add_typer(audit_app, name="audit")
