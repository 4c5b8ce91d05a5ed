"""`lm sim`: run the deterministic pool simulator (one seed with a trace, or many seeds).

    lm sim --seed 42                 # replay seed 42: configuration, notable events, verdict
    lm sim --seed 42 --steps         # ... and every delivery / tick as it happens
    lm sim --seeds 10000 --workers 2 # many seeds, a summary table; exit 1 if any failed
    lm sim --seeds 200 --l2 measure  # count L2 (fail-over users notice) without failing on it
    lm sim --script fig.lms          # a scripted scenario (see lm_core.engine.sim.scenario)

The engine never imports `random`; this command seeds a `random.Random(seed)` per run,
so the seed alone replays a run exactly.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lm_cli.output import JsonOpt, console, handle_errors, print_json, read_text
from lm_core.engine.sim.runner import SeedResult, run_seed
from lm_core.engine.sim.scenario import ScenarioError, run_script
from lm_core.engine.sim.trace import Trace
from lm_core.engine.vocab import EventKind
from lm_core.errors import InputError, RefusedError


def parse_range(text: str, *, option: str, lo: int, hi: int) -> tuple[int, int]:
    """ "3-11" -> (3, 11); "5" -> (5, 5); bounds checked against [lo, hi]."""
    a, sep, b = text.partition("-")
    try:
        first = int(a)
        last = int(b) if sep else first
    except ValueError:
        raise InputError(f"{option}: expected N or N-M, got {text!r}") from None
    if not (lo <= first <= last <= hi):
        raise InputError(f"{option}: {text!r} must lie within {lo}-{hi}, low end first")
    return first, last


L2_MODES = ("check", "measure", "off")


def run_one(
    seed: int,
    servers: tuple[int, int],
    clients: tuple[int, int],
    duration: float,
    l2: str = "check",
) -> dict[str, Any]:
    """One seed in a worker process; a plain dict comes back (cheap to pickle)."""
    t0 = time.perf_counter()
    r = run_seed(
        seed,
        random.Random(seed),
        servers=servers,
        clients=clients,
        duration=duration,
        raise_on_failure=False,
        l2=l2,
    )
    out = _summary(r)
    out["wall"] = time.perf_counter() - t0
    return out


def _summary(r: SeedResult) -> dict[str, Any]:
    return {
        "seed": r.seed,
        "ok": r.ok,
        "invariant": r.invariant,
        "message": r.message,
        "servers": r.config.n_servers,
        "clients": r.config.n_clients,
        "sim_seconds": r.sim_seconds,
        "server_steps": r.server_steps,
        "client_steps": r.client_steps,
        "elections": r.elections,
        "crashes": r.crashes,
        "admin_ok": r.admin_ok,
        "admin_refused": r.admin_refused,
        "stale_deadlines": r.stale_deadlines,
        "loaded": r.loaded,
        "l2": r.l2,
        "l2_bound": r.l2_bound,
        "l2_windows": r.l2_windows,
        "l2_skipped": r.l2_skipped,
        "l2_voided": r.l2_voided,
        "l2_affected": r.l2_affected,
        "l2_reseat": r.l2_reseat,
        "l2_late": r.l2_late,
        "l2_unseated": r.l2_unseated,
        "l2_lapsed_affected": r.l2_lapsed_affected,
        "l2_dropped": r.l2_dropped,
        "l2_live": r.l2_live,
        "l2_moved": r.l2_moved,
        "l2_lapsed": r.l2_lapsed,
    }


def run_many(
    seeds: list[int],
    *,
    servers: tuple[int, int] = (3, 11),
    clients: tuple[int, int] = (10, 200),
    duration: float = 1200.0,
    workers: int = 2,
    l2: str = "check",
) -> list[dict[str, Any]]:
    """Run seeds over ``workers`` processes; results in seed order."""
    if workers <= 1:
        return [run_one(s, servers, clients, duration, l2) for s in seeds]
    n = len(seeds)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as ex:
        return list(
            ex.map(
                run_one,
                seeds,
                [servers] * n,
                [clients] * n,
                [duration] * n,
                [l2] * n,
                chunksize=max(1, min(4, n // (workers * 8))),
            )
        )


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def l2_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """L2 over many seeds: where it was judged, re-seat times (seconds and in bounds),
    clients of live servers moved or lapsed."""
    judged = [r for r in results if not r["l2"]]
    reseat = sorted(x for r in judged for x in r["l2_reseat"])
    ratio = sorted(x / r["l2_bound"] for r in judged for x in r["l2_reseat"] if r["l2_bound"])
    total = sum
    return {
        "loaded_seeds": sum(1 for r in results if r.get("loaded")),
        "judged_seeds": len(judged),
        "seeds_failing_l2": sum(1 for r in results if r["invariant"] == "L2"),
        "windows": total(r["l2_windows"] for r in judged),
        "skipped": total(r["l2_skipped"] for r in judged),
        "voided": total(r["l2_voided"] for r in judged),
        "affected": total(r["l2_affected"] for r in judged),
        "reseated": len(reseat),
        "reseat_median": _pct(reseat, 0.5),
        "reseat_p99": _pct(reseat, 0.99),
        "reseat_max": reseat[-1] if reseat else 0.0,
        "reseat_bounds_median": _pct(ratio, 0.5),
        "reseat_bounds_p99": _pct(ratio, 0.99),
        "late": total(r["l2_late"] for r in judged),
        "unseated": total(r["l2_unseated"] for r in judged),
        "lapsed_affected": total(r["l2_lapsed_affected"] for r in judged),
        "dropped": total(r["l2_dropped"] for r in judged),
        "live": total(r["l2_live"] for r in judged),
        "moved": total(r["l2_moved"] for r in judged),
        "lapsed": total(r["l2_lapsed"] for r in judged),
    }


def summarize(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    failed = [r for r in results if not r["ok"]]
    sim = sum(r["sim_seconds"] for r in results)
    return {
        "seeds": len(results),
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "by_invariant": dict(Counter(r["invariant"] for r in failed)),
        "failed_seeds": [
            {"seed": r["seed"], "invariant": r["invariant"], "message": r["message"]}
            for r in failed
        ],
        "servers": [
            min((r["servers"] for r in results), default=0),
            max((r["servers"] for r in results), default=0),
        ],
        "clients": [
            min((r["clients"] for r in results), default=0),
            max((r["clients"] for r in results), default=0),
        ],
        "sim_seconds": sim,
        "engine_steps": sum(r["server_steps"] + r["client_steps"] for r in results),
        "elections": sum(r["elections"] for r in results),
        "crashes": sum(r["crashes"] for r in results),
        "admin_ok": sum(r["admin_ok"] for r in results),
        "admin_refused": sum(r["admin_refused"] for r in results),
        "stale_deadlines": sum(r["stale_deadlines"] for r in results),
        "l2": l2_figures(results),
        "wall_seconds": wall,
    }


def _print_summary(s: dict[str, Any]) -> None:
    out = console()
    t = Table(title="lm sim: randomized seeds", show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [
        ("seeds", s["seeds"]),
        ("passed", s["passed"]),
        ("failed", s["failed"]),
        ("servers (min-max)", "{}-{}".format(*s["servers"])),
        ("clients (min-max)", "{}-{}".format(*s["clients"])),
        ("simulated time", f"{s['sim_seconds'] / 3600:.1f} h"),
        ("engine steps", f"{s['engine_steps']:,}"),
        ("elections", s["elections"]),
        ("crashes", s["crashes"]),
        ("admin ops ok / refused", f"{s['admin_ok']} / {s['admin_refused']}"),
        ("stale next_deadline ticks", s["stale_deadlines"]),
        *_l2_rows(s["l2"]),
        ("wall time", f"{s['wall_seconds']:.1f} s"),
        ("simulated s / wall s", f"{s['sim_seconds'] / max(s['wall_seconds'], 1e-9):,.0f}"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    for inv, n in sorted(s["by_invariant"].items()):
        t.add_row(f"failed on {inv}", str(n))
    out.print(t)
    for f in s["failed_seeds"][:20]:
        out.print(f"seed {f['seed']}: {f['invariant']}: {f['message']}", markup=False)
    if s["failed"]:
        out.print("replay one with: lm sim --seed N", markup=False)


def _l2_rows(x: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("L2: loaded seeds / seeds judged", f"{x['loaded_seeds']} / {x['judged_seeds']}"),
        ("L2: seeds failing on it", x["seeds_failing_l2"]),
        (
            "L2: faults judged / skipped / cut short",
            f"{x['windows']} / {x['skipped']} / {x['voided']}",
        ),
        ("L2: faulted servers' clients", x["affected"]),
        (
            "L2: re-seated, median / p99 / max",
            f"{x['reseated']}, {x['reseat_median']:.1f} / {x['reseat_p99']:.1f} / "
            f"{x['reseat_max']:.1f} s",
        ),
        (
            "L2: re-seat in bounds, median / p99",
            f"{x['reseat_bounds_median']:.2f} / {x['reseat_bounds_p99']:.2f}",
        ),
        (
            "L2: late (never re-seated) / lapsed (after a renewal)",
            f"{x['late']} ({x['unseated']}) / {x['lapsed_affected']} ({x['dropped']})",
        ),
        (
            "L2: live servers' clients / moved / lapsed",
            f"{x['live']} / {x['moved']} / {x['lapsed']}",
        ),
    ]


def _one_seed(
    seed: int,
    servers: tuple[int, int],
    clients: tuple[int, int],
    duration: float,
    *,
    steps: bool,
    json_out: bool,
    l2: str = "check",
) -> bool:
    trace = Trace(steps=60, notes=1_000_000, echo=steps)
    r = run_seed(
        seed,
        random.Random(seed),
        servers=servers,
        clients=clients,
        duration=duration,
        trace=trace,
        raise_on_failure=False,
        l2=l2,
    )
    if json_out:
        data = _summary(r)
        data["config"] = r.config.describe()
        data["trace"] = r.trace
        print_json(data)
        return r.ok
    out = console()
    out.print(f"seed {seed}: {r.config.describe()}", markup=False)
    if steps:
        for line in trace.lines:
            out.print(line, markup=False)
    else:
        for t, kind, text in trace.notes:
            if kind != EventKind.SYNC:
                out.print(f"{t:10.3f}  {kind:<10} {text}", markup=False)
    if r.l2:
        out.print(f"L2 not judged: {r.l2}", markup=False)
    else:
        rs = sorted(r.l2_reseat)
        out.print(
            f"L2 (bound {r.l2_bound:.1f} s): {r.l2_windows} faults judged, {r.l2_skipped} "
            f"skipped, {r.l2_voided} cut short; {r.l2_affected} clients of faulted servers, "
            f"{len(rs)} re-seated (median {_pct(rs, 0.5):.1f} s, max "
            f"{rs[-1] if rs else 0.0:.1f} s), {r.l2_late} late, {r.l2_lapsed_affected} "
            f"lapsed; {r.l2_live} clients of live servers, {r.l2_moved} moved, "
            f"{r.l2_lapsed} lapsed",
            markup=False,
        )
    verdict = "ok" if r.ok else f"FAILED {r.invariant}: {r.message}"
    out.print(
        f"seed {seed}: {verdict} ({r.sim_seconds:.0f} simulated s, {r.server_steps:,} server "
        f"steps, {r.client_steps:,} client steps, {r.elections} elections, {r.crashes} crashes)",
        markup=False,
    )
    if not r.ok and not steps:
        out.print(r.trace, markup=False)
    return r.ok


def register(app: typer.Typer) -> None:
    """Add `lm sim` to the `lm` app."""

    @app.command("sim")
    @handle_errors
    def sim(
        seed: Annotated[int | None, typer.Option("--seed", help="Replay this one seed.")] = None,
        seeds: Annotated[
            int | None, typer.Option("--seeds", help="Run this many seeds (from --start).")
        ] = None,
        start: Annotated[int, typer.Option("--start", help="First seed for --seeds.")] = 0,
        servers: Annotated[str, typer.Option("--servers", help="Servers: N or N-M.")] = "3-11",
        clients: Annotated[str, typer.Option("--clients", help="Clients: N or N-M.")] = "10-200",
        minutes: Annotated[
            float, typer.Option("--minutes", help="Simulated minutes per seed.")
        ] = 20.0,
        workers: Annotated[int, typer.Option("--workers", help="Processes for --seeds.")] = 2,
        script: Annotated[
            Path | None,
            typer.Option("--script", help="Run a scripted scenario file.", readable=False),
        ] = None,
        steps: Annotated[
            bool, typer.Option("--steps", help="With --seed: print every step.")
        ] = False,
        l2: Annotated[
            str,
            typer.Option(
                "--l2",
                help="L2 (users don't notice fail-over): check (a breach fails the seed), "
                "measure (count only) or off.",
            ),
        ] = "check",
        json_out: JsonOpt = False,
    ) -> None:
        """Run the deterministic simulator; exit 1 if an invariant breaks.

        Example: lm sim --seed 42   |   lm sim --seeds 10000 --workers 2
        """
        chosen = [x for x in (seed is not None, seeds is not None, script is not None) if x]
        if len(chosen) != 1:
            raise InputError("give exactly one of --seed N, --seeds COUNT, --script FILE")
        srv = parse_range(servers, option="--servers", lo=1, hi=26)
        cli = parse_range(clients, option="--clients", lo=1, hi=1_000_000)
        if not 0 < minutes <= 24 * 60:
            raise InputError(f"--minutes: must be > 0 and <= 1440, got {minutes}")
        duration = minutes * 60.0
        if l2 not in L2_MODES:
            raise InputError(f"--l2: expected one of {', '.join(L2_MODES)}, got {l2!r}")
        if script is not None:
            text = read_text(script, what="scenario")
            try:
                sc = run_script(text, random.Random(0))
            except ScenarioError as e:
                raise RefusedError(f"{script}: {e}") from None
            console().print(f"{script}: {len(sc.checked)} expectations hold", markup=False)
            return
        if seed is not None:
            if not _one_seed(seed, srv, cli, duration, steps=steps, json_out=json_out, l2=l2):
                raise typer.Exit(code=1)
            return
        assert seeds is not None
        if seeds < 1 or workers < 1:
            raise InputError("--seeds and --workers must be >= 1")
        t0 = time.perf_counter()
        results = run_many(
            list(range(start, start + seeds)),
            servers=srv,
            clients=cli,
            duration=duration,
            workers=workers,
            l2=l2,
        )
        summary = summarize(results, time.perf_counter() - t0)
        if json_out:
            print_json(summary)
        else:
            _print_summary(summary)
        if summary["failed"]:
            raise typer.Exit(code=1)
