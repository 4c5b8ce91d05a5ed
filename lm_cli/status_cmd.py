"""`lm status`: every server's role, term, RLF seq, up/down; every license's distribution
table in the patent's layout; the key tables. `--json` prints the pool-status contract
(docs/CONTRACTS.md "Pool status")."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from lm_cli.live import TimeoutOpt, TlsDirOpt, with_client
from lm_cli.output import JsonOpt, PoolOpt, console, handle_errors, print_json
from lm_core.engine.status_types import PoolStatus
from lm_core.errors import RefusedError


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def render(pool: PoolStatus) -> None:
    """Print the merged pool status as tables."""
    out = console()
    maj = pool.get("majority") or {}
    out.print(
        f"pool {pool['pool']}  RLF seq {pool['rlf_seq']}  leader {pool['leader'] or 'none'}  "
        f"term {pool['term']}  majority {maj.get('up')}/{maj.get('size')} "
        f"{'ok' if maj.get('ok') else 'LOST'}"
    )
    servers = Table(title="servers")
    for col in ("id", "address", "up", "role", "term", "RLF seq", "heartbeat age", "note"):
        servers.add_column(col)
    for s in pool["servers"]:
        note = s.get("error") or s.get("not_serving_reason") or ""
        servers.add_row(
            s["id"],
            s["address"],
            "up" if s["up"] else "DOWN",
            _fmt(s.get("role")),
            _fmt(s.get("term")),
            _fmt(s.get("rlf_seq")),
            _fmt(s.get("last_heartbeat_age")),
            str(note),
        )
    out.print(servers)
    for lic in pool["licenses"]:
        table = Table(
            title=f"{lic['license']}  hard limit {_fmt(lic['hard_limit'])}  "
            f"pool available {_fmt(lic['pool_available'])}  free pool {_fmt(lic['free_pool'])}"
        )
        for col in ("server", "distribution", "in use", "available"):
            table.add_column(col, justify="right")
        for sid, row in lic["servers"].items():
            row = row or lic.get("own", {}).get(sid) or {}
            table.add_row(
                sid,
                _fmt(row.get("distribution")),
                _fmt(row.get("in_use")),
                _fmt(row.get("available")),
            )
        out.print(table)
    listed = len(pool["clients"])
    total = max(int(pool.get("clients_total") or 0), listed)
    more = f", {listed} listed" if total > listed else ""
    clients = Table(title=f"key tables ({total} authorizations{more})")
    for col in ("client", "server", "license", "count", "lease left"):
        clients.add_column(col)
    for c in pool["clients"]:
        clients.add_row(
            str(c["client_id"]),
            str(c["server"]),
            str(c["license"]),
            _fmt(c["count"]),
            _fmt(c.get("lease_expires_in")),
        )
    out.print(clients)


def register(app: typer.Typer) -> None:
    """Add `lm status`."""

    @app.command("status")
    @handle_errors
    def status(
        pool: PoolOpt = None,
        json_out: JsonOpt = False,
        tls_dir: TlsDirOpt = None,
        timeout: TimeoutOpt = 2.0,
    ) -> None:
        """Show the live pool: servers, distribution tables, key tables.

        Example: lm status --pool pool.rlf --json

        Exit 0 if at least one server answered, 1 if none did.
        """
        data = with_client(pool, tls_dir, lambda c: c.status(), timeout=timeout)
        if json_out:
            print_json(data)
        else:
            render(data)
        if not any(s["reachable"] for s in data["servers"]):
            raise RefusedError("no server of the pool answered")
