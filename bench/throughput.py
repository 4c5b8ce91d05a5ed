"""Authorization throughput: request+release pairs per second against one real `lm-daemon`
over loopback, with 1, 16 and 128 concurrent clients, beside a bare asyncio echo server
with the same framing measured in the same run (ratio lm / echo; target >= 0.5).

Each client is one connection doing, in a loop: Request -> Authorize, Release -> Released
(through `Connection.request`, i.e. the real codec and framing on both sides). The echo
server is a separate process that reads each frame and writes the same bytes back
without decoding them, so the ratio is "what the daemon costs over the wire itself".
The daemon is server A, the leader of a three-server pool (a pool has 3 to 11 servers;
B and C run beside it as followers) with plenty of seats; every client talks to A.

    .venv/bin/python bench/throughput.py [--seconds 3] [--rounds 2] [--clients 128,16,1] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _livepool import APP, die_with_parent, exit_on_sigterm, free_ports, leader_of, make_pool

from lm_core.engine.messages import Authorize, Release, Released, Request
from lm_core.runtime.connection import Connection, close_server, serve
from lm_core.runtime.framing import read_frame, write_frame
from lm_core.runtime.tlsconfig import client_context, load_tls_dir, server_context


async def one_client(
    address: str, pool: str, cid: str, ssl_ctx: object, stop_at: float, counts: list[int]
) -> None:
    conn = await Connection.open(address, ssl=ssl_ctx, connect_timeout=10.0)  # type: ignore[arg-type]
    rid = 0
    n = 0
    try:
        while time.monotonic() < stop_at:
            rid += 1
            reply = await conn.request(
                Request(pool=pool, sender=cid, request_id=rid, license=APP), reply_timeout=30.0
            )
            if not isinstance(reply, (Authorize, Request)):
                raise SystemExit(f"{cid}: expected a grant, got {reply}")
            rid += 1
            reply = await conn.request(
                Release(pool=pool, sender=cid, request_id=rid, license=APP), reply_timeout=30.0
            )
            if not isinstance(reply, (Released, Release)):
                raise SystemExit(f"{cid}: expected Released, got {reply}")
            n += 1
    finally:
        counts.append(n)
        await conn.aclose()


async def measure(address: str, pool: str, clients: int, seconds: float, ssl_ctx: object) -> float:
    counts: list[int] = []
    # A short warm-up so connection set-up is not counted.
    warm = time.monotonic() + 0.3
    await asyncio.gather(
        *(one_client(address, pool, f"w{i}", ssl_ctx, warm, []) for i in range(min(clients, 4)))
    )
    start = time.monotonic()
    stop_at = start + seconds
    await asyncio.gather(
        *(one_client(address, pool, f"bench-{i}", ssl_ctx, stop_at, counts) for i in range(clients))
    )
    return sum(counts) / (time.monotonic() - start)


def echo_server_main(port: int, tls_dir: str | None) -> None:
    """The baseline: frames in, the same frames out (run in its own process)."""

    async def handler(conn: Connection) -> None:
        while (got := await read_frame(conn.reader)) is not None:
            kind, payload = got
            await write_frame(conn.writer, payload, kind)

    async def main() -> None:
        paths = load_tls_dir(Path(tls_dir), "server-A") if tls_dir else None
        ctx = server_context(paths) if paths else None
        server = await serve(handler, "127.0.0.1", port, ssl=ctx)
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await close_server(server)

    asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per row")
    ap.add_argument("--clients", default="128,16,1", help="clients per row (busy first)")
    ap.add_argument("--tls", action="store_true", help="TLS 1.3 on both servers")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per row (best)")
    ap.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--echo-tls-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    exit_on_sigterm()
    if args.echo_server is not None:
        echo_server_main(args.echo_server, args.echo_tls_dir)
        return
    rows = [int(x) for x in args.clients.split(",")]

    # every client connects from 127.0.0.1 at once (with the peers, in plaintext): lift the
    # daemon's per-address budgets (128 connections, 16 handshakes, 20 handshakes/s)
    lift = ["--max-clients-per-source", "1024", "--max-handshakes-per-source", "256",
            "--max-handshake-rate", "1000"]  # fmt: skip
    pool = make_pool(n=3, seats=100_000, tls=args.tls, extra_args=lift)
    (echo_port,) = free_ports(1)
    echo_cmd = [sys.executable, __file__, "--echo-server", str(echo_port)]
    if args.tls and pool.tls_dir is not None:
        echo_cmd += ["--echo-tls-dir", str(pool.tls_dir)]
    echo = subprocess.Popen(
        echo_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent
    )
    try:
        for sid in pool.rlf.server_ids:
            pool.start(sid)
        assert echo.stdout is not None
        if echo.stdout.readline().strip() != b"ready":
            raise SystemExit("echo server did not start: " + echo.stderr.read().decode())  # type: ignore[union-attr]

        async def run() -> list[tuple[int, float, float]]:
            await pool.wait_status(lambda s: leader_of(s) == "A", "A leads")
            # The daemon refuses grants for one client lease after start (restart grace, S4).
            ctx = client_context(load_tls_dir(pool.tls_dir, "client")) if pool.tls_dir else None  # type: ignore[arg-type]
            lm_addr = pool.rlf.servers[0].address
            deadline = time.monotonic() + 30
            while True:
                conn = await Connection.open(lm_addr, ssl=ctx)
                pool_name = pool.rlf.pool
                r = await conn.request(
                    Request(pool=pool_name, sender="probe", request_id=1, license=APP)
                )
                await conn.request(
                    Release(pool=pool_name, sender="probe", request_id=2, license=APP)
                )
                await conn.aclose()
                if isinstance(r, Authorize):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"daemon never granted: {r}")
                await asyncio.sleep(0.2)
            out = []
            echo_addr = f"127.0.0.1:{echo_port}"
            for n in rows:
                # Interleaved rounds, best of each: the machine may be shared.
                lm = base = 0.0
                for _ in range(args.rounds):
                    lm = max(lm, await measure(lm_addr, pool.rlf.pool, n, args.seconds, ctx))
                    base = max(base, await measure(echo_addr, pool.rlf.pool, n, args.seconds, ctx))
                out.append((n, lm, base))
            return out

        results = asyncio.run(run())
    finally:
        echo.kill()
        echo.wait()
        pool.close()

    mode = "TLS 1.3" if args.tls else "plaintext"
    print(f"\nrequest+release pairs per second, one lm-daemon on loopback ({mode}), "
          f"best of {args.rounds} x {args.seconds:g} s per row, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'clients':>8} {'lm-daemon':>12} {'echo':>12} {'lm/echo':>8}")
    for n, lm, base in results:
        print(f"{n:>8} {lm:>12,.0f} {base:>12,.0f} {lm / base:>8.2f}")


if __name__ == "__main__":
    main()
