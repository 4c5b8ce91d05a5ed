"""`lm status`: every server's role, term, RLF seq, up/down; every license's distribution
table in the patent's layout; the key tables. `--json` prints the pool-status contract
(docs/CONTRACTS.md "Pool status")."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from lm_cli.live import TimeoutOpt, TlsDirOpt, with_client
from lm_cli.output import JsonOpt, PoolOpt, console, error_line, handle_errors, print_json
from lm_core.engine.binding import binding_note
from lm_core.engine.status_types import PoolStatus
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.tlsconfig import load_tls_dir
from lm_core.runtime.tlsdiag import diagnose_status


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def _who(identity: Any) -> str:
    """``alice@ws-17 cad 2.1, :0`` from a client identity ("-" when none was stated)."""
    if not isinstance(identity, dict):
        return "-"
    who = f"{identity.get('user') or '?'}@{identity.get('host') or '?'}"
    program = " ".join(str(identity[k]) for k in ("program", "version") if identity.get(k))
    extra = ", ".join(p for p in (program, str(identity.get("display") or "")) if p)
    return f"{who} {extra}" if extra else who


def _since(since: Any, day: str) -> str:
    """The checkout start (UTC): the time alone when it is the collection day's."""
    if not isinstance(since, str):
        return "-"
    return since[11:19] if since[:10] == day else since[:16].replace("T", " ")


def render(pool: PoolStatus) -> None:
    """Print the merged pool status as tables."""
    out = console()
    maj = pool.get("majority") or {}
    out.print(
        f"pool {pool['pool']}  RLF seq {pool['rlf_seq']}  leader {pool['leader'] or 'none'}  "
        f"term {pool['term']}  majority {maj.get('up')}/{maj.get('size')} "
        f"{'ok' if maj.get('ok') else 'LOST'}",
        markup=False,
    )
    if pool.get("tls_error"):
        out.print(f"TLS: {pool['tls_error']}", markup=False)
    servers = Table(title="servers")
    for col in ("id", "address", "up", "role", "term", "RLF seq", "heartbeat age", "note"):
        servers.add_column(col)
    for s in pool["servers"]:
        note = s.get("tls_error") or s.get("error") or s.get("not_serving_reason") or ""
        servers.add_row(
            s["id"],
            s["address"],
            "up" if s["up"] else "DOWN",
            _fmt(s.get("role")) + (" (drained)" if s.get("drained") else ""),
            _fmt(s.get("term")),
            _fmt(s.get("rlf_seq")),
            _fmt(s.get("last_heartbeat_age")),
            str(note),
        )
    out.print(servers)
    for lic in pool["licenses"]:
        bind = binding_note(lic.get("binding") or {}) or "unbound"
        table = Table(
            title=f"{lic['license']}  hard limit {_fmt(lic['hard_limit'])}  "
            f"pool available {_fmt(lic['pool_available'])}  free pool {_fmt(lic['free_pool'])}"
            + (f"  {bind}" if bind else "")
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
        for sid, state in sorted((lic.get("binding") or {}).items()):
            if state.startswith("refused"):
                out.print(f"[red]{sid}: binding {state}[/]", highlight=False)
    listed = len(pool["clients"])
    total = max(int(pool.get("clients_total") or 0), listed)
    more = f", {listed} listed" if total > listed else ""
    clients = Table(title=f"key tables ({total} authorizations{more})")
    clients.add_column("client", no_wrap=True)  # what `lm key release` takes: never cut
    for col in ("server", "license", "n", "who", "since",
                "lease"):  # fmt: skip
        clients.add_column(col, overflow="fold")
    day = str(pool.get("collected_at") or "")[:10]
    for c in pool["clients"]:
        clients.add_row(
            str(c["client_id"]),
            str(c["server"]),
            str(c["license"]),
            _fmt(c["count"]),
            _who(c.get("identity")),
            _since(c.get("since"), day),
            _fmt(c.get("lease_expires_in")),
        )
    out.print(clients)


def not_all_up(pool: PoolStatus) -> str | None:
    """Which servers are not back in the pool (None when every one is up, answering, a
    leader or a follower, and past its restart grace): what a rolling restart waits for
    before the next server. (A server in restart grace grants nothing new, so the clients
    of the next server stopped could not fail over to it.)"""
    behind = [
        f"{s['id']} ({'down' if not s['reachable'] else s.get('role')})"
        for s in pool["servers"]
        if not (s["up"] and s["reachable"] and s.get("role") in ("leader", "follower"))
    ]
    behind += [
        f"{s['id']} (restart grace, {grace:.1f} s left)"
        for s in pool["servers"]
        if s["reachable"] and (grace := s.get("restart_grace") or 0.0) > 0
    ]
    return f"not every server is back: {', '.join(behind)}" if behind else None


def not_serving(pool: PoolStatus) -> str | None:
    """Why the pool is not serving (None when it is): the exit status of `lm status`."""
    if not any(s["reachable"] for s in pool["servers"]):
        why = pool.get("tls_error") or "no server of the pool answered"
        return f"NOT SERVING: {why}"
    maj = pool.get("majority") or {}
    if not pool.get("leader"):
        return "NOT SERVING: no leader known"
    if not maj.get("ok"):
        return f"NOT SERVING: majority lost ({maj.get('up')}/{maj.get('size')} servers up)"
    return None


def register(app: typer.Typer) -> None:
    """Add `lm status`."""

    @app.command("status")
    @handle_errors
    def status(
        pool: PoolOpt = None,
        json_out: JsonOpt = False,
        tls_dir: TlsDirOpt = None,
        timeout: TimeoutOpt = 2.0,
        wait: Annotated[
            float,
            typer.Option(
                "--wait",
                help="Wait up to this many seconds for the pool to serve (e.g. after a start "
                "or a restart) before reporting.",
                min=0.0,
            ),
        ] = 0.0,
        all_up: Annotated[
            bool,
            typer.Option(
                "--all-up",
                help="Exit 0 only if, besides serving, every server is up as leader or "
                "follower and past its restart grace (a rolling restart waits for this "
                "before the next server).",
            ),
        ] = False,
    ) -> None:
        """Show the live pool: servers, distribution tables, key tables.

        Example: lm status --pool pool.rlf --json   (scripts: lm status --wait 30)

        Exit 0 only when the pool is serving (a leader and a majority); 1 when the
        majority is lost, no leader is known or no server answered (a TLS failure is named:
        wrong CA, expired or refused certificate, TLS needed); 2 on bad input.
        """

        paths = load_tls_dir(tls_dir, "admin")

        def why_not(data: PoolStatus) -> str | None:
            return not_serving(data) or (not_all_up(data) if all_up else None)

        async def fetch(client: AdminClient) -> PoolStatus:
            deadline = time.monotonic() + wait
            while True:
                data = await diagnose_status(await client.status(), paths)
                if why_not(data) is None or time.monotonic() >= deadline:
                    return data
                await asyncio.sleep(0.2)

        data = with_client(pool, tls_dir, fetch, timeout=timeout)
        why = why_not(data)
        if json_out:
            print_json(data)  # stdout stays one JSON document; the reason goes to stderr
        else:
            render(data)
        if why:
            error_line(why)
            raise typer.Exit(code=1)

