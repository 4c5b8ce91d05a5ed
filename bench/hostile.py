"""A good client's latency and the daemon's memory while attackers flood it.

One TLS pool of three real `lm-daemon`s on loopback (default timings, default budgets);
the good client talks to the leader A from 127.0.0.1 on one connection, in a loop:
Request -> Authorize, Release -> Released, and the latency of each round trip is
recorded. First a quiet phase (the baseline, measured in the same run), then each flood
for `--seconds`, from the four source addresses 127.0.0.2-5 (no certificate):

* connection fill -- as many TLS connections as the daemon lets in, held open idle;
* big frames -- connections sending the largest frames an anonymous client may send
  (8 KiB client frames of garbage) and headers announcing 4 MiB RLF pushes, in a loop;
* slow senders -- connections that start a frame and send one byte every 0.5 s;
* non-reading client -- connections pipelining thousands of requests, never reading.

Columns: the good client's p50 / p99 latency and their ratio to the quiet phase (goal:
p99 <= 10x), the daemon's peak RSS during the phase (goal: below the bound stated in
docs/SECURITY.md), the good client's denials, and whether the leader or term changed (a
lease lost).

    .venv/bin/python bench/hostile.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _livepool import APP, LivePool, exit_on_sigterm, leader_of, make_pool, table

from lm_core.engine import messages as m
from lm_core.runtime.codec import encode
from lm_core.runtime.connection import Connection
from lm_core.runtime.kinds import Kind, kind_of
from lm_core.runtime.tlsconfig import TlsPaths, connect_context

SOURCES = [f"127.0.0.{i}" for i in range(2, 6)]


def _frame(msg: m.Message) -> bytes:
    payload = encode(msg)
    return bytes([kind_of(type(msg))]) + len(payload).to_bytes(4, "big") + payload


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self, pool: LivePool) -> None:
        self.pool = pool
        assert pool.tls_dir is not None
        self.anon = connect_context(TlsPaths(ca=pool.tls_dir / "ca.pem"))
        host, port = pool.rlf.server("A").host, pool.rlf.server("A").port
        self.host, self.port = host, port

    async def raw(self, src: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            self.host, self.port, ssl=self.anon, server_hostname=self.host, local_addr=(src, 0)
        )

    async def good_client(self, stop: asyncio.Event) -> tuple[list[float], int]:
        lat: list[float] = []
        denials = 0
        conn = await Connection.open(
            self.pool.rlf.server("A").address, ssl=self.anon, connect_timeout=30
        )
        rid = 0
        try:
            while not stop.is_set():
                rid += 2
                t0 = time.perf_counter()
                reply = await conn.request(
                    m.Request(pool=self.pool.rlf.pool, sender="good", request_id=rid,
                              license=APP), reply_timeout=30)  # fmt: skip
                lat.append(time.perf_counter() - t0)
                if not isinstance(reply, m.Authorize):
                    denials += 1
                await conn.request(
                    m.Release(pool=self.pool.rlf.pool, sender="good", request_id=rid + 1,
                              license=APP), reply_timeout=30)  # fmt: skip
                await asyncio.sleep(0.005)  # a client, not a load generator
        finally:
            await conn.aclose()
        return lat, denials

    async def phase(
        self, name: str, seconds: float, flood: Callable[[asyncio.Event], Awaitable[None]] | None
    ) -> dict[str, float | str | int]:
        pid = self.pool.procs["A"].pid
        async with self.pool.admin() as admin:
            before = await admin.status()
        stop = asyncio.Event()
        peak = rss_mib(pid)
        attacker = asyncio.create_task(flood(stop)) if flood else None
        if attacker is not None:
            await asyncio.sleep(min(2.0, seconds / 2))  # let the flood build up
        good = asyncio.create_task(self.good_client(stop))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.1)
        stop.set()
        lat, denials = await good
        if attacker is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await attacker
        async with self.pool.admin() as admin:
            after = await admin.status()
        lost = (leader_of(before), before.get("term")) != (leader_of(after), after.get("term"))
        q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
        return {"name": name, "n": len(lat), "p50": statistics.median(lat), "p99": q[98],
                "rss": peak, "denials": denials, "lost": "yes" if lost else "no"}  # fmt: skip

    # -- floods

    async def connection_fill(self, stop: asyncio.Event) -> None:
        held: list[asyncio.StreamWriter] = []

        async def fill(src: str) -> None:
            while not stop.is_set():
                try:
                    _, w = await self.raw(src)
                except (OSError, ssl.SSLError):
                    await asyncio.sleep(0.05)
                    continue
                held.append(w)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(fill(s)) for s in SOURCES for _ in range(4)]
        await stop.wait()
        for t in tasks:
            t.cancel()
        self.note = f"{len(held)} connections opened"
        for w in held:
            w.transport.abort()

    async def big_frames(self, stop: asyncio.Event) -> None:
        async def one(src: str, i: int) -> None:
            while not stop.is_set():
                try:
                    r, w = await self.raw(src)
                    if i % 2:
                        w.write(bytes([Kind.CLIENT]) + (8192).to_bytes(4, "big") + b"[" * 8192)
                    else:
                        w.write(
                            bytes([Kind.ADMIN_RLF]) + (4 << 20).to_bytes(4, "big") + b"x" * 65536
                        )
                    await w.drain()
                    await r.read()
                    w.transport.abort()
                except (OSError, ssl.SSLError):
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(one(s, i) for s in SOURCES for i in range(10)))

    async def slow_senders(self, stop: asyncio.Event) -> None:
        held: list[asyncio.StreamWriter] = []

        async def one(src: str) -> None:
            try:
                _, w = await self.raw(src)
            except (OSError, ssl.SSLError):
                return
            held.append(w)
            w.write(bytes([Kind.CLIENT]) + (8000).to_bytes(4, "big"))
            with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
                while not stop.is_set() and not w.transport.is_closing():
                    w.write(b"{")
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(one(s) for s in SOURCES for _ in range(100)))
        for w in held:
            w.transport.abort()

    async def non_reading(self, stop: asyncio.Event) -> None:
        async def one(src: str, k: int) -> None:
            try:
                _, w = await self.raw(src)
            except (OSError, ssl.SSLError):
                return
            i = 0
            with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
                while not stop.is_set() and not w.transport.is_closing():
                    batch = b"".join(
                        _frame(
                            m.Request(
                                pool=self.pool.rlf.pool,
                                sender=f"nr{k}-{i + j}",
                                request_id=i + j,
                                license=APP,
                            )
                        )
                        for j in range(200)
                    )
                    i += 200
                    w.write(batch)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            await w.drain()
            w.transport.abort()

        await asyncio.gather(*(one(s, k) for k, s in enumerate(SOURCES)))


async def run(pool: LivePool, seconds: float) -> list[dict[str, float | str | int]]:
    await pool.wait_status(lambda s: leader_of(s) == "A", "A leads", limit=60)
    b = Bench(pool)
    deadline = time.monotonic() + 60
    while True:  # restart grace: wait for the first grant
        async with await Connection.open(pool.rlf.server("A").address, ssl=b.anon) as c:
            r = await c.request(m.Request(pool=pool.rlf.pool, sender="probe", request_id=1,
                                          license=APP))  # fmt: skip
            await c.request(m.Release(pool=pool.rlf.pool, sender="probe", request_id=2,
                                      license=APP))  # fmt: skip
        if isinstance(r, m.Authorize):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"never granted: {r}")
        await asyncio.sleep(0.2)
    rows = [await b.phase("quiet", seconds, None)]
    rows.append(await b.phase("connection fill", seconds, b.connection_fill))
    rows.append(await b.phase("big frames", seconds, b.big_frames))
    rows.append(await b.phase("slow senders", seconds, b.slow_senders))
    rows.append(await b.phase("non-reading client", seconds, b.non_reading))
    rows.append(await b.phase("quiet again", seconds, None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per phase")
    args = ap.parse_args()
    exit_on_sigterm()
    pool = make_pool(n=3, seats=100_000, tls=True)
    try:
        pool.start_all()
        for sid in pool.ids:
            pool.wait_listening(sid)
        rows = asyncio.run(run(pool, args.seconds))
    finally:
        pool.close()
    quiet = rows[0]
    out = []
    for r in rows:
        out.append([
            str(r["name"]), str(r["n"]),
            f"{float(r['p50']) * 1e3:.2f}", f"{float(r['p99']) * 1e3:.2f}",
            f"{float(r['p50']) / float(quiet['p50']):.1f}x",
            f"{float(r['p99']) / float(quiet['p99']):.1f}x",
            f"{float(r['rss']):.0f}", f"{float(r['rss']) / float(quiet['rss']):.2f}x",
            str(r["denials"]), str(r["lost"]),
        ])  # fmt: skip
    print()
    print(table(
        f"good client on the leader during floods from {len(SOURCES)} sources "
        f"({args.seconds:g} s per phase, {os.cpu_count()} CPUs, TLS 1.3)",
        ["phase", "rounds", "p50 ms", "p99 ms", "p50/quiet", "p99/quiet", "RSS MiB",
         "RSS/quiet", "denied", "lease lost"],
        out,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
