"""`lm rlf bump|add-server|remove-server|move-server|set|pull`: grow and change a pool's
RLF after `lm rlf new`, and write down what a live pool runs.

Each edit bumps the sequence by one and drops the admin signature (re-sign with
`lm rlf sign`, then `lm rlf push` it). `pull` writes the live configuration -- the RLF the
pool runs plus the codes and allocations added live and the leader's current
distribution -- as an unsigned RLF one above the pool's sequence: sign it and keep it, so
a pool rebuilt from its RLF loses nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from lm_cli.live import TimeoutOpt, TlsDirOpt, admin_client
from lm_cli.output import (
    JsonOpt,
    PoolOpt,
    console,
    handle_errors,
    load_pool,
    print_json,
    read_rlf,
    write_atomic,
)
from lm_core.engine.rlf import Rlf, ServerEntry, check_rlf, render_rlf, split_address
from lm_core.engine.status_types import ServerStatus
from lm_core.errors import InputError, RefusedError
from lm_core.runtime.admin import AdminClient

FileArg = Annotated[Path, typer.Argument(help="The RLF file.", readable=False)]


def _note(path: Path, rlf: Rlf) -> str:
    return f"{path}: sequence {rlf.sequence}, unsigned (run: lm rlf sign {path} --key admin.key)"


def _edit(path: Path, rlf: Rlf, **changes: Any) -> Rlf:
    """`rlf` with `changes`, the sequence bumped, unsigned, checked; raises naming `path`."""
    new = dataclasses.replace(rlf, **changes, sequence=rlf.sequence + 1, signature=None)
    try:
        check_rlf(new)
    except InputError as err:
        raise err.located(file=str(path)) from None
    return new


def _save(path: Path, rlf: Rlf, what: str, *, json_out: bool) -> None:
    write_atomic(path, render_rlf(rlf))
    if json_out:
        print_json({"ok": True, "file": str(path), "sequence": rlf.sequence, "change": what})
    else:
        console().print(what, markup=False)
        console().print(_note(path, rlf), markup=False)


def _position(value: int | None, count: int) -> int | None:
    if value is None:
        return None
    if not 1 <= value <= count:
        raise InputError(f"must be 1 to {count}, got {value}", field="--position")
    return value - 1


PositionOpt = Annotated[
    int | None,
    typer.Option("--position", help="Leader priority, 1 = preferred leader (default: last)."),
]


def bump(file: FileArg, json_out: JsonOpt = False) -> None:
    """Raise the sequence by one (nothing else changes) so a re-signed file can be pushed.

    Example: lm rlf bump pool.rlf && lm rlf sign pool.rlf --key admin.key
    """
    rlf, _ = read_rlf(file)
    new = _edit(file, rlf)
    _save(file, new, f"sequence {rlf.sequence} -> {new.sequence}", json_out=json_out)


def add_server(
    file: FileArg,
    server: Annotated[str, typer.Argument(help="ID=HOST:PORT of the new server.")],
    position: PositionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a server (it gets no seats until a distribution gives it some).

    Push the signed file to the running pool before starting the new server.

    Example: lm rlf add-server pool.rlf D=10.0.0.4:27000 --position 4
    """
    rlf, _ = read_rlf(file)
    sid, eq, address = server.partition("=")
    if not eq or not sid:
        raise InputError(f"expected ID=HOST:PORT, got {server!r}", field="server")
    if sid in rlf.server_ids:
        raise InputError(f"server {sid!r} is already in the RLF", file=str(file), field="servers")
    try:
        host, port = split_address(address)
    except InputError as err:
        raise InputError(err.message, field=f"server {sid}") from None
    servers = list(rlf.servers)
    at = _position(position, len(servers) + 1)
    servers.insert(len(servers) if at is None else at, ServerEntry(sid, host, port))
    new = _edit(file, rlf, servers=tuple(servers))
    order = ", ".join(new.server_ids)
    _save(file, new, f"added server {sid} at {host}:{port}; priority {order}", json_out=json_out)


def remove_server(
    file: FileArg,
    server_id: Annotated[str, typer.Argument(help="The id of the server to remove.")],
    json_out: JsonOpt = False,
) -> None:
    """Remove a server; its seats in explicit distributions go to the free pool.

    Example: lm rlf remove-server pool.rlf D
    """
    rlf, _ = read_rlf(file)
    if server_id not in rlf.server_ids:
        raise InputError(
            f"no server {server_id!r} (servers: {', '.join(rlf.server_ids)})",
            file=str(file),
            field="servers",
        )
    servers = tuple(s for s in rlf.servers if s.id != server_id)
    freed = sum(per.get(server_id, 0) for per in rlf.distribution.values())
    distribution = {
        lic: {sid: n for sid, n in per.items() if sid != server_id}
        for lic, per in rlf.distribution.items()
    }
    new = _edit(file, rlf, servers=servers, distribution=distribution)
    what = f"removed server {server_id}; {freed} seat(s) of its distribution go to the free pool"
    _save(file, new, what, json_out=json_out)


def move_server(
    file: FileArg,
    server_id: Annotated[str, typer.Argument(help="The server to move.")],
    position: Annotated[
        int, typer.Option("--position", help="Its new leader priority (1 = preferred leader).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Change a server's leader priority.

    Example: lm rlf move-server pool.rlf C --position 1
    """
    rlf, _ = read_rlf(file)
    entry = next((s for s in rlf.servers if s.id == server_id), None)
    if entry is None:
        raise InputError(
            f"no server {server_id!r} (servers: {', '.join(rlf.server_ids)})",
            file=str(file),
            field="servers",
        )
    at = _position(position, len(rlf.servers))
    assert at is not None
    servers = [s for s in rlf.servers if s.id != server_id]
    servers.insert(at, entry)
    new = _edit(file, rlf, servers=tuple(servers))
    _save(file, new, f"leader priority: {', '.join(new.server_ids)}", json_out=json_out)


def _opt(flag: str, help: str) -> Any:
    return typer.Option(flag, help=help, show_default=False)


def set_settings(
    file: FileArg,
    borrowing_threshold: Annotated[
        float | None, _opt("--borrowing-threshold", "In-use / distribution that borrows.")
    ] = None,
    majority_rule: Annotated[
        bool | None,
        typer.Option(
            "--majority-rule/--no-majority-rule",
            help="Majority rule on (advised) or off.",
            show_default=False,
        ),
    ] = None,
    heartbeat_interval: Annotated[
        float | None, _opt("--heartbeat-interval", "Leader heartbeat, seconds.")
    ] = None,
    leader_timeout: Annotated[
        float | None, _opt("--leader-timeout", "Followers elect after this, seconds.")
    ] = None,
    server_lease: Annotated[float | None, _opt("--server-lease", "Server lease, seconds.")] = None,
    client_heartbeat: Annotated[
        float | None, _opt("--client-heartbeat", "Client heartbeat, seconds.")
    ] = None,
    client_lease: Annotated[float | None, _opt("--client-lease", "Client lease, seconds.")] = None,
    drift: Annotated[float | None, _opt("--drift", "Max relative clock-rate error.")] = None,
    retention_days: Annotated[
        int | None, _opt("--retention-days", "Days the servers keep usage rows (default 400).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set the borrowing threshold, majority rule, timings and usage-log retention.

    Example: lm rlf set pool.rlf --borrowing-threshold 0.9 --client-lease 10
    """
    rlf, _ = read_rlf(file)
    timing_changes = {
        k: v
        for k, v in {
            "heartbeat_interval": heartbeat_interval,
            "leader_timeout": leader_timeout,
            "server_lease": server_lease,
            "client_heartbeat": client_heartbeat,
            "client_lease": client_lease,
            "drift": drift,
        }.items()
        if v is not None
    }
    changes: dict[str, Any] = {}
    if borrowing_threshold is not None:
        changes["borrowing_threshold"] = borrowing_threshold
    if majority_rule is not None:
        changes["majority_rule"] = majority_rule
    if retention_days is not None:
        changes["retention_days"] = retention_days
    if timing_changes:
        changes["timing"] = dataclasses.replace(rlf.timing, **timing_changes)
    if not changes:
        raise InputError("nothing to set (see lm rlf set --help)")
    new = _edit(file, rlf, **changes)
    shown = ", ".join(
        f"{k} {v}" for k, v in {**timing_changes, **{
            k: v for k, v in changes.items() if k != "timing"}}.items()
    )  # fmt: skip
    _save(file, new, f"set {shown}", json_out=json_out)


def pull(
    out: Annotated[Path, typer.Option("--out", help="Where to write the live RLF.")],
    pool: PoolOpt = None,
    tls_dir: TlsDirOpt = None,
    timeout: TimeoutOpt = 3.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write the live configuration as an unsigned RLF: the RLF the pool runs, plus the
    codes and allocations added live and the leader's current distribution.

    Example: lm rlf pull --pool pool.rlf --tls-dir tls/ --out live.rlf
    && lm rlf sign live.rlf --key admin.key
    """  # fmt: skip
    if out.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", file=str(out))
    rlf = load_pool(pool)
    client = admin_client(rlf, tls_dir, timeout=timeout)
    lead = asyncio.run(_leader_status(client))
    where = str(pool) if pool is not None else "$LM_POOL"
    if int(lead.get("rlf_seq", -1)) != rlf.sequence:
        raise InputError(
            f"the pool runs RLF sequence {lead.get('rlf_seq')}, this file is sequence "
            f"{rlf.sequence}: pull with the RLF the pool runs",
            file=where,
            field="sequence",
        )
    if "codes" not in lead:
        raise RefusedError(f"leader {lead.get('id')} does not report live codes (older lm-daemon)")
    live_codes = [c for c in lead["codes"] if c not in rlf.codes]
    distribution: dict[str, dict[str, int]] = {}
    for lic in lead.get("licenses", []):
        rows = {sid: int(r["distribution"]) for sid, r in lic["servers"].items() if r is not None}
        distribution[str(lic["license"])] = {sid: rows.get(sid, 0) for sid in rlf.server_ids}
    new = _edit(out, rlf, codes=(*rlf.codes, *live_codes), distribution=distribution)
    write_atomic(out, render_rlf(new))
    if json_out:
        print_json(
            {
                "ok": True,
                "file": str(out),
                "sequence": new.sequence,
                "leader": lead.get("id"),
                "codes_added_live": len(live_codes),
                "distribution": distribution,
            }
        )
        return
    console().print(
        f"wrote {out}: pool {new.pool!r} as leader {lead.get('id')} runs it: "
        f"{len(live_codes)} code(s) added live, distribution of {len(distribution)} "
        f"license(s)",
        markup=False,
    )
    console().print(_note(out, new), markup=False)


async def _leader_status(client: AdminClient) -> ServerStatus:
    try:
        merged = await client.status()
        leader = merged.get("leader")
        if not leader:
            raise RefusedError("no leader known: the live configuration is the leader's")
        own = await client.server_status(leader)
        if own is None or own.get("role") != "leader":
            why = client.errors.get(leader, "it is not leading")
            raise RefusedError(f"cannot read the leader {leader}'s status: {why}")
        return own
    finally:
        await client.aclose()


def register_edits(rlf_app: typer.Typer) -> None:
    """Add the edit commands and `pull` to the `rlf` sub-app."""
    rlf_app.command("bump")(handle_errors(bump))
    rlf_app.command("add-server")(handle_errors(add_server))
    rlf_app.command("remove-server")(handle_errors(remove_server))
    rlf_app.command("move-server")(handle_errors(move_server))
    rlf_app.command("set")(handle_errors(set_settings))
    rlf_app.command("pull")(handle_errors(pull))
