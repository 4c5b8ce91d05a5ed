"""`lm report`: who used which license when -- every reachable server's usage log read
through the admin API (an admin or a monitor certificate) and merged
(`lm_core.runtime.report`): per license and per day (or hour) the peak concurrent
seats, the average, seat-hours, denials by reason with the users denied, and the top
users by seat-hours. `--json` prints the whole report, `--csv` one row per license and
period."""

from __future__ import annotations

import csv
import datetime
import re
import sys
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from lm_cli.live import TimeoutOpt, TlsDirOpt, with_client
from lm_cli.output import JsonOpt, PoolOpt, console, handle_errors, print_json, warn
from lm_core.errors import InputError, RefusedError
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.report import Filters, Period, build_report
from lm_core.runtime.usage import fetch_usage

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
DEFAULT_DAYS = 7


def parse_when(text: str, *, option: str, now: float) -> float:
    """``now``, a duration ago (``90m``, ``12h``, ``7d``, ``2w``), ``@<epoch seconds>``,
    or an ISO date or date and time (UTC unless it names its offset) -> epoch seconds."""
    t = text.strip()
    if t == "now":
        return now
    if t.startswith("@"):  # epoch seconds, as `date +%s` prints them
        try:
            return float(t[1:])
        except ValueError:
            pass
    rel = _RELATIVE.fullmatch(t)
    if rel:
        return now - float(rel.group(1)) * _UNIT[rel.group(2)]
    try:
        when = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{text!r} is not a time: give now, a duration ago (12h, 7d), @epoch-seconds "
            "or an ISO date or date and time (2026-11-29, 2026-11-29T08:00Z)",
            field=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _reasons(denials: dict[str, dict[str, int]]) -> str:
    return ", ".join(
        f"{r} {d['waits']} ({d['attempts']} tries, {d['users']} users)"
        for r, d in denials.items()
    )


def _fmt_hours(h: float) -> str:
    return f"{h:.2f}" if h >= 0.01 or h == 0 else f"{h:.4f}"


def render(report: dict[str, Any]) -> None:
    """The report as rich tables, one per license."""
    out = console()
    out.print(
        f"usage {report['since']} .. {report['until']} by {report['by']}  "
        f"servers read: {', '.join(report['servers_read']) or 'none'}",
        markup=False,
    )
    for sid, why in report["servers_unreachable"].items():
        out.print(f"  {sid}: not read ({why})", markup=False)
    if not report["licenses"]:
        out.print("no usage in this window", markup=False)
    for lic in report["licenses"]:
        limit = lic["hard_limit"]
        table = Table(
            title=f"{lic['license']}  peak {lic['peak']}"
            + (f" of {limit}" if limit is not None else "")
            + f"  seat-hours {_fmt_hours(lic['seat_hours'])}  average {lic['average']:.2f}",
            title_justify="left",
        )
        for col, just in (
            ("period", "left"), ("peak", "right"), ("average", "right"),
            ("seat-hours", "right"), ("denials", "left"), ("denied users", "right"),
            ("top user (seat-hours)", "left"),
        ):  # fmt: skip
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for p in lic["periods"]:
            top = p["top_users"][0] if p["top_users"] else None
            table.add_row(
                p["start"].replace("T", " ").removesuffix(":00Z").removesuffix(" 00:00"),
                str(p["peak"]),
                f"{p['average']:.2f}",
                _fmt_hours(p["seat_hours"]),
                _reasons(p["denials"]) or "-",
                str(p["denied_users"]),
                f"{top['user']} ({_fmt_hours(top['seat_hours'])})" if top else "-",
            )
        out.print(table)
        if lic["top_users"]:
            tops = ", ".join(
                f"{u['user']} {_fmt_hours(u['seat_hours'])}" for u in lic["top_users"]
            )
            out.print(f"  top users by seat-hours: {tops}", markup=False)
        if lic["denials"]:
            out.print(f"  denials: {_reasons(lic['denials'])}", markup=False)


CSV_COLUMNS = (
    "license", "period_start", "period_end", "peak", "hard_limit", "average", "seat_hours",
    "seat_seconds", "denials", "denial_attempts", "denied_users", "denials_by_reason",
    "top_users",
)  # fmt: skip


def write_csv(report: dict[str, Any]) -> None:
    """One row per license and period."""
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for lic in report["licenses"]:
        for p in lic["periods"]:
            d = p["denials"]
            w.writerow(
                [
                    lic["license"], p["start"], p["end"], p["peak"],
                    "" if lic["hard_limit"] is None else lic["hard_limit"],
                    f"{p['average']:.4f}", f"{p['seat_hours']:.4f}", f"{p['seat_seconds']:.3f}",
                    sum(x["waits"] for x in d.values()),
                    sum(x["attempts"] for x in d.values()),
                    p["denied_users"],
                    ";".join(f"{r}={x['waits']}" for r, x in d.items()),
                    ";".join(f"{u['user']}={u['seat_hours']:.4f}" for u in p["top_users"]),
                ]
            )  # fmt: skip


async def collect(
    client: AdminClient, since: float, until: float, by: Period, filters: Filters
) -> dict[str, Any]:
    """Read every server's log of the window (and the hard limits) and merge it."""
    fetched = await fetch_usage(client, since, until, license=filters.license)
    if not fetched.rows:
        refused = sorted(e for e in fetched.errors.values() if e.startswith("refused:"))
        why = refused[0] if refused else "no server of the pool answered"
        raise RefusedError(f"no usage log could be read: {why}")
    hard: dict[str, int | None] = {}
    try:
        status = await client.status()
        hard = {lic["license"]: lic["hard_limit"] for lic in status["licenses"]}
    except RefusedError:
        pass
    return build_report(
        fetched.rows, fetched.now, since=since, until=until, by=by, filters=filters,
        hard_limits={k: v for k, v in hard.items() if not filters.license
                     or k == filters.license},
        unreachable=fetched.errors,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `lm report`."""

    @app.command(
        "report", short_help="Usage per license and day or hour: peaks, seat-hours, denials."
    )
    @handle_errors
    def report(
        pool: PoolOpt = None,
        tls_dir: TlsDirOpt = None,
        timeout: TimeoutOpt = 5.0,
        since: Annotated[
            str,
            typer.Option("--since", help="Start: now, a duration ago (12h, 7d) or an ISO "
                         "date/time (UTC unless it says). Default: 7 days ago."),
        ] = f"{DEFAULT_DAYS}d",
        until: Annotated[
            str, typer.Option("--until", help="End (same forms). Default: now.")
        ] = "now",
        by: Annotated[
            str, typer.Option("--by", help="Period of each row: day or hour (UTC).")
        ] = "day",
        license: Annotated[
            str, typer.Option("--license", help="Only this license ('Application 1.0').")
        ] = "",
        user: Annotated[str, typer.Option("--user", help="Only this user.")] = "",
        json_out: JsonOpt = False,
        csv_out: Annotated[
            bool, typer.Option("--csv", help="One CSV row per license and period.")
        ] = False,
    ) -> None:
        """Usage per license and day (or hour): peak seats, average, seat-hours,
        denials by reason and users denied, top users. Works with a monitor certificate.

        Example: lm report --pool pool.rlf --since 30d --by day --csv > usage.csv
        """
        if by not in ("day", "hour"):
            raise InputError(f"must be day or hour, not {by!r}", field="--by")
        if json_out and csv_out:
            raise InputError("give --json or --csv, not both", field="--csv")
        now = time.time()
        t0 = parse_when(since, option="--since", now=now)
        t1 = parse_when(until, option="--until", now=now)
        if t1 <= t0:
            raise InputError("--until must be after --since", field="--until")
        filters = Filters(license=license, user=user)
        period: Period = "day" if by == "day" else "hour"
        data = with_client(
            pool, tls_dir, lambda c: collect(c, t0, t1, period, filters), timeout=timeout
        )
        for sid, why in data["servers_unreachable"].items():
            warn(f"server {sid} not read: {why} (its seats are missing from the report)")
        if json_out:
            print_json(data)
        elif csv_out:
            write_csv(data)
        else:
            render(data)
