"""Seat holders for the partition tests: run inside a namespace, print what they hold.

    python holder.py --rlf pool.rlf --tls-dir tls --prefer A --clients 3 --name cut

Starts `--clients` `LicenseClient`s (the real library, TLS), each wanting one seat of
"Application 1.0" from `--prefer` first, with ``wait=True`` (they keep trying). Prints one
JSON line whenever what they hold changes, and at least every second:
``{"t": <CLOCK_MONOTONIC>, "held": {"cut-0": "A", "cut-1": null, ...}}`` (the server each
holds an unexpired seat from, null if none). CLOCK_MONOTONIC is the same in every
process of the machine, so the parent compares ``t`` with its own clock. Runs until
killed (SIGTERM/SIGINT: releases and exits 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

from lm_core.engine.rlf import Rlf, parse_rlf
from lm_core.runtime.client import Lease, LicenseClient
from lm_core.runtime.localpool import APP
from lm_core.runtime.tlsconfig import TlsPaths, load_tls_dir

TICK = 0.02


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rlf", required=True)
    ap.add_argument("--tls-dir", required=True)
    ap.add_argument("--prefer", required=True)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--name", default="holder")
    args = ap.parse_args()
    rlf = parse_rlf(Path(args.rlf).read_text(encoding="utf-8"), file=args.rlf)
    asyncio.run(hold(rlf, load_tls_dir(args.tls_dir, "client"), args))


async def hold(rlf: Rlf, trust: TlsPaths | None, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    leases: dict[str, Lease] = {}
    for i in range(args.clients):
        cid = f"{args.name}-{i}"
        client = LicenseClient(rlf, trust, client_id=cid, prefer=args.prefer)
        leases[cid] = client.acquire(APP, wait=True)
    starts = [asyncio.create_task(lease.start()) for lease in leases.values()]

    last: dict[str, str | None] = {}
    printed = 0.0
    while not stop.is_set():
        now = time.monotonic()
        held = {
            cid: (lease.server if lease.machine.holds(now) else None)
            for cid, lease in leases.items()
        }
        if held != last or now - printed >= 1.0:
            print(json.dumps({"t": now, "held": held}), flush=True)
            last, printed = held, now
        for task in starts:
            if task.done() and not task.cancelled() and task.exception() is not None:
                print(json.dumps({"t": now, "error": str(task.exception())}), flush=True)
                sys.exit(1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK)
    for task in starts:
        task.cancel()
    await asyncio.gather(*starts, return_exceptions=True)
    await asyncio.gather(*(lease.stop() for lease in leases.values()), return_exceptions=True)


if __name__ == "__main__":
    main()
