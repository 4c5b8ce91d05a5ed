"""Capacity of one pool: how many clients, each holding a seat and heartbeating, a
three-server TLS pool carries on this machine.

    .venv/bin/python bench/capacity.py [--max 20000] [--steps 1000,5000,10000,20000]
        [--heartbeats 2,10] [--generators 2] [--conns 4] [--window 3] [--quick]
        [--profile N] [--seat-rate 2000] [--plaintext]

For each client heartbeat (the RLF's ``client_heartbeat``; its ``client_lease`` is three
times that, as in the default timing 2 s / 6 s) a fresh pool of three `lm-daemon`s (TLS,
one "Application 1.0" code with seats for every client, distributed evenly, led by A) is
loaded by simulated clients: distinct client ids, each homed on one server, asking for
one seat with a Request and then heartbeating every interval the grant names, exactly as
the client library would (next heartbeat = send time of the last + interval; the lease
runs from the send time). A client's first heartbeat comes at a random phase of its
interval (as if the clients had started at random times), not all in one burst. They are
multiplexed over `--conns` TLS connections per server in each of `--generators` load-
generator processes, so the generators stay cheap: a heartbeat frame is a pre-encoded
template with the request id spliced in, an answer is one `json.loads`.

The count ramps through `--steps` (capped by `--max`), scaled for a slower heartbeat by
heartbeat / 2 s (the same heartbeats per second at each step; `--no-scale` keeps them).
At each step the new clients arrive at `--seat-rate` a second and are seated (asking
again after a refusal, as the library's wait=True does), the pool settles for one
interval, then a window of `--window` intervals is measured: heartbeat round trips (send
to answer), answers later than the client's answer timeout (1 s: the library would fail
over), refusals, leases that lapsed (a client whose last authorized send time + lease
passed before its renewal arrived), each daemon's CPU (utime + stime from /proc over the
window, % of one core; the kernel's share of it), the daemons' CPU per answered
heartbeat (µs, all three together: a figure that does not depend on what else runs on
the machine), RSS, the machine's load average, and each generator's CPU (% of one core).
The ramp stops at the first step with a lapse, a client left without a seat, or a
heartbeat p99 above 250 ms; the knee is the last step before it.

Is the generator the bottleneck? Its CPU is printed per step (the busiest generator):
far below 100 % of a core means it keeps up; `--generators 1` against the default 2
should give the same knee.

Ratios are against the first step of the first heartbeat row (measured in the same run):
p99 / base and CPU per held seat / base. RSS per held seat is the growth of the three
daemons' RSS since before the first client, over the seats held.

`--profile N` runs py-spy (if installed) on the leader during the window of the step with
N clients (first heartbeat row) and prints the functions it spent most time in. Every
process is killed at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import heapq
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _livepool import APP, LivePool, exit_on_sigterm, make_pool, table

from lm_core.engine import messages as m
from lm_core.engine.rlf import Timing
from lm_core.runtime.codec import default_codec
from lm_core.runtime.kinds import Kind
from lm_core.runtime.tlsconfig import client_context, load_tls_dir

P99_LIMIT = 0.250  # seconds: the knee's round-trip bound
ANSWER_TIMEOUT = 1.0  # the client library's default: later than this, it fails over
HEADER = struct.Struct("!BI")
SENTINEL = 987654321987  # request id spliced out of the encoded template
SEAT_WINDOW = 256  # Requests in flight per generator while seating
SEAT_TRIES = 20  # Requests per client before it counts as not seated
SEAT_ANSWER = 5.0  # seconds to wait for the answer to one Request
SEAT_GRACE = 30.0  # seconds a step's seating may run past its arrivals
TICK = 0.005  # the generator's scheduling granularity (s)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the generator process


def template(pool: str, sender: str, kind: type[m.Message]) -> tuple[bytes, bytes]:
    """(prefix, suffix) of the encoded message around its request id."""
    codec = default_codec()
    msg = kind(pool=pool, sender=sender, request_id=SENTINEL, license=APP)  # type: ignore[call-arg]
    body = codec.encode(msg)
    prefix, _, suffix = body.partition(str(SENTINEL).encode())
    return prefix, suffix


class Generator:
    """Simulated clients over a few connections per server (one process)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.servers: list[tuple[str, str]] = [tuple(s) for s in cfg["servers"]]  # type: ignore[misc]
        self.conns: list[list[asyncio.StreamWriter]] = []  # per server, per connection
        self.home: list[int] = []
        self.expires: list[float] = []
        self.interval: list[float] = []
        self.hb: list[tuple[bytes, bytes]] = []
        self.pending: dict[int, tuple[int, float, bool]] = {}  # rid -> (client, sent, is_hb)
        self.heap: list[tuple[float, int]] = []
        self.next_rid = 1
        self.lease = 0.0
        self.seat_waiters: dict[int, asyncio.Future[bool]] = {}
        self.out: dict[tuple[int, int], list[bytes]] = collections.defaultdict(list)
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.rng = random.Random(cfg["index"])
        self.reset()

    def reset(self) -> None:
        self.rtts: list[float] = []
        self.sent = 0
        self.late = 0
        self.lapsed: set[int] = set()
        self.denied: collections.Counter[str] = collections.Counter()
        self.t0 = time.monotonic()
        self.cpu0 = time.process_time()

    async def connect(self) -> None:
        tls = load_tls_dir(Path(self.cfg["tls_dir"]), "client") if self.cfg["tls_dir"] else None
        ctx = client_context(tls) if tls else None
        for si, (_, address) in enumerate(self.servers):
            host, _, port = address.rpartition(":")
            row = []
            for ci in range(self.cfg["conns"]):
                reader, writer = await asyncio.open_connection(
                    host, int(port), ssl=ctx, server_hostname=host if ctx else None
                )
                row.append(writer)
                self.tasks.append(asyncio.create_task(self.read(si, ci, reader)))
            self.conns.append(row)
        self.tasks.append(asyncio.create_task(self.schedule()))

    def conn_of(self, i: int) -> tuple[int, int]:
        si = self.home[i]
        return si, (i // len(self.servers)) % self.cfg["conns"]

    def send(self, i: int, prefix: bytes, suffix: bytes, is_hb: bool, now: float) -> None:
        rid = self.next_rid
        self.next_rid += 1
        body = prefix + str(rid).encode() + suffix
        self.pending[rid] = (i, now, is_hb)
        self.out[self.conn_of(i)].append(HEADER.pack(Kind.CLIENT, len(body)) + body)

    def flush(self) -> None:
        for (si, ci), frames in self.out.items():
            if frames:
                self.conns[si][ci].write(b"".join(frames))
        self.out.clear()

    async def read(self, si: int, ci: int, reader: asyncio.StreamReader) -> None:
        loads = json.loads
        while True:
            try:
                head = await reader.readexactly(5)
                _, n = HEADER.unpack(head)
                body = await reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                print(f"generator {self.cfg['index']}: server {si} closed a connection",
                      file=sys.stderr)  # fmt: skip
                return
            now = time.monotonic()
            msg = loads(body)
            p = self.pending.pop(msg.get("request_id", -1), None)
            if p is None:
                continue
            i, sent, is_hb = p
            if msg["type"] == "Authorize":
                if is_hb:
                    rtt = now - sent
                    self.rtts.append(rtt)
                    if rtt > ANSWER_TIMEOUT:
                        self.late += 1
                    if now > self.expires[i]:
                        self.lapsed.add(i)
                else:
                    self.lease = msg["lease"]
                    self.interval[i] = msg["heartbeat_interval"]
                    # clients that started at random times: the first heartbeat at a
                    # random phase of the interval (never later than the library's)
                    phase = self.interval[i] * self.rng.uniform(0.05, 1.0)
                    heapq.heappush(self.heap, (sent + phase, i))
                    self.wake.set()
                self.expires[i] = max(self.expires[i], sent + msg["lease"])
                ok = True
            else:
                self.denied[f"{msg.get('reason', '?')} from {msg.get('sender')}"] += 1
                ok = False
            fut = self.seat_waiters.pop(i, None)
            if fut is not None and not fut.done():
                fut.set_result(ok)

    async def schedule(self) -> None:
        """Send every heartbeat that is due; sleep until the next (at least TICK)."""
        heap = self.heap
        while True:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                due, i = heapq.heappop(heap)
                prefix, suffix = self.hb[i]
                self.send(i, prefix, suffix, True, now)
                self.sent += 1
                heapq.heappush(heap, (due + self.interval[i], i))
            self.flush()
            self.wake.clear()
            delay = max(TICK, heap[0][0] - time.monotonic()) if heap else 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wake.wait()

    async def seat(self, n: int) -> dict[str, Any]:
        """Grow to `n` clients (each asks its home server for one seat)."""
        pool, gi = self.cfg["pool"], self.cfg["index"]
        start = len(self.home)
        granted = denied = 0
        before = collections.Counter(self.denied)
        sem = asyncio.Semaphore(SEAT_WINDOW)
        rate = self.cfg["seat_rate"] / self.cfg["generators"]
        t0 = time.monotonic()
        deadline = t0 + (n - start) / rate + SEAT_GRACE

        async def one(i: int) -> None:
            """Ask until granted (a pool just elected may refuse for a moment), as the
            library's wait=True does; give up after SEAT_TRIES refusals."""
            nonlocal granted, denied
            prefix, suffix = template(pool, f"g{gi}-c{i}", m.Request)
            # clients arrive at `seat_rate` a second (over all generators), not at once
            await asyncio.sleep(max(0.0, t0 + (i - start) / rate - time.monotonic()))
            async with sem:
                for _ in range(SEAT_TRIES):
                    if time.monotonic() > deadline:
                        break
                    fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
                    self.seat_waiters[i] = fut
                    self.send(i, prefix, suffix, False, time.monotonic())
                    self.flush()
                    try:
                        async with asyncio.timeout(SEAT_ANSWER):
                            ok = await fut
                    except TimeoutError:
                        ok = False
                    if ok:
                        granted += 1
                        return
                    await asyncio.sleep(0.25)
                denied += 1

        for i in range(start, n):
            self.home.append((gi + i) % len(self.servers))
            self.expires.append(0.0)
            self.interval.append(1.0)
            self.hb.append(template(pool, f"g{gi}-c{i}", m.ClientHeartbeat))
        await asyncio.gather(*(one(i) for i in range(start, n)))
        reasons = {f"{k} (seating)": v for k, v in (self.denied - before).items()}
        return {"granted": granted, "denied": denied, "reasons": reasons}

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        lapsed = set(self.lapsed)
        lapsed.update(i for i, e in enumerate(self.expires) if 0 < e < now)
        return {
            "rtts": [round(r, 5) for r in self.rtts],
            "sent": self.sent,
            "late": self.late,
            "lapsed": len(lapsed),
            "denied": dict(self.denied),
            "cpu": time.process_time() - self.cpu0,
            "wall": now - self.t0,
        }


async def generator_main(cfg: dict[str, Any]) -> None:
    gen = Generator(cfg)
    await gen.connect()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "seat":
            out = await gen.seat(cmd["n"])
            # the clients' state is long-lived: keep the collector from rescanning it,
            # so the generator's own pauses do not show up as round trips
            gc.collect()
            gc.freeze()
        elif cmd["cmd"] == "reset":
            gen.reset()
            out = {}
        elif cmd["cmd"] == "stats":
            out = gen.stats()
        else:
            return
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- the driver


class GenProc:
    """One generator process, driven over its stdin/stdout."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--generator", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    async def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise SystemExit(f"a load generator exited ({self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


async def ask_all(gens: list[GenProc], cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for g, c in zip(gens, cmds, strict=True):
        g.send(c)
    return list(await asyncio.gather(*(g.answer() for g in gens)))


def proc_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of `pid`, seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu(pid: int) -> float:
    """utime + stime of `pid`, seconds."""
    return sum(proc_times(pid))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pctl(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


@dataclass
class Step:
    heartbeat: float
    clients: int
    held: int
    hb_per_s: float
    p50: float
    p99: float
    max: float
    late: int
    lapsed: int
    denied: int  # heartbeats refused in the window
    unseated: int  # clients that got no seat (SEAT_TRIES refusals)
    cpu: dict[str, float]  # server -> % of one core
    gen_cpu: float  # the busiest generator, % of one core
    rss_per_seat: float  # bytes
    reasons: dict[str, int]  # denial reason -> count (seating and the window)
    us_per_hb: float  # the three daemons' CPU per answered heartbeat, microseconds
    load: float  # the machine's 1-minute load average at the end of the window
    kernel: float  # % of the daemons' CPU spent in the kernel (TLS records, syscalls)

    @property
    def ok(self) -> bool:
        return self.lapsed == 0 and self.unseated == 0 and self.p99 <= P99_LIMIT


async def held_in_pool(pool: LivePool) -> int:
    async with pool.admin(timeout=10.0) as admin:
        st = await admin.status()
    for lic in st.get("licenses", []):
        if lic["license"] == APP:
            return sum(int(r["in_use"]) for r in lic["servers"].values() if r)
    return 0


def _ours(frame: str) -> bool:
    files = ("codec.py", "framing.py", "connection.py", "daemon.py", "server.py", "claims.py")
    return frame.endswith(files) or frame.endswith(("tables.py", "ssl.py", "leases.py"))


async def profile(pid: int, seconds: float) -> str:
    """py-spy on `pid` for `seconds`: the top functions by own and total samples."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        return "(py-spy not installed: .venv/bin/pip install -e '.[bench]')"
    out = Path(tempfile.mkdtemp(prefix="lm-spy-")) / "raw.txt"
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw",
        "--output", str(out), "--nonblocking", "--gil", "--rate", "200",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()
    if not out.exists():
        return "(py-spy could not attach)"
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        # "func (path/file.py:line)" -> "func file.py": one entry per function
        frames = [
            f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
            for f in stack.split(";")
        ]
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    shutil.rmtree(out.parent, ignore_errors=True)
    if not samples:
        return "(py-spy took no samples)"
    lines = [
        f"py-spy on the leader (pid {pid}): {samples} samples of the thread holding the GIL "
        f"over {seconds:g} s (% of those: time the loop was busy)",
        "  own %   function",
    ]
    lines += [f"  {100 * n / samples:5.1f}   {f}" for f, n in own.most_common(12)]
    lines.append("  total % function (lm_core and ssl only)")
    ours = [(f, n) for f, n in total.most_common() if ".py" in f and _ours(f)]
    lines += [f"  {100 * n / samples:5.1f}   {f}" for f, n in ours[:18]]
    return "\n".join(lines)


async def run_row(args: argparse.Namespace, heartbeat: float, steps: list[int]) -> list[Step]:
    """One heartbeat setting: a fresh pool, ramped through `steps`."""
    seats = max(steps) + 1000
    timing = Timing(client_heartbeat=heartbeat, client_lease=3 * heartbeat)
    pool = make_pool(seats=seats, tls=not args.plaintext, timing=timing)
    gens: list[GenProc] = []
    rows: list[Step] = []
    try:
        await pool.start_led_by("A")
        pids = {sid: pool.procs[sid].pid for sid in pool.ids}
        rss0 = {sid: rss_kib(pid) for sid, pid in pids.items()}
        servers = [(s.id, s.address) for s in pool.rlf.servers]
        for gi in range(args.generators):
            cfg = {
                "index": gi,
                "pool": pool.rlf.pool,
                "servers": servers,
                "tls_dir": str(pool.tls_dir) if pool.tls_dir else "",
                "conns": args.conns,
                "seat_rate": args.seat_rate,
                "generators": args.generators,
            }
            gens.append(GenProc(cfg))
        for n in steps:
            share = [n // len(gens) + (1 if gi < n % len(gens) else 0) for gi in range(len(gens))]
            t_seat = time.monotonic()
            seated = await ask_all(gens, [{"cmd": "seat", "n": k} for k in share])
            t_seat = time.monotonic() - t_seat
            refused = sum(s["denied"] for s in seated)
            seat_reasons = sum((collections.Counter(s["reasons"]) for s in seated), Counter())
            await asyncio.sleep(heartbeat)  # every new client heartbeats once
            await ask_all(gens, [{"cmd": "reset"}] * len(gens))
            cpu0 = {sid: proc_cpu(pid) for sid, pid in pids.items()}
            sys0 = sum(proc_times(pid)[1] for pid in pids.values())
            t0 = time.monotonic()
            spy = ""
            if args.profile is not None and n == args.profile and heartbeat == args.first_hb:
                spy = await profile(pids["A"], min(args.window * heartbeat, 10.0))
                await asyncio.sleep(max(0.0, args.window * heartbeat - (time.monotonic() - t0)))
            else:
                await asyncio.sleep(args.window * heartbeat)
            stats = await ask_all(gens, [{"cmd": "stats"}] * len(gens))
            wall = time.monotonic() - t0
            cpu = {sid: 100 * (proc_cpu(pid) - cpu0[sid]) / wall for sid, pid in pids.items()}
            kernel = sum(proc_times(pid)[1] for pid in pids.values()) - sys0
            rss = sum(rss_kib(pid) - rss0[sid] for sid, pid in pids.items())
            held = await held_in_pool(pool)
            rtts = [r for s in stats for r in s["rtts"]]
            step = Step(
                heartbeat=heartbeat,
                clients=n,
                held=held,
                hb_per_s=sum(s["sent"] for s in stats) / wall,
                p50=pctl(rtts, 0.50),
                p99=pctl(rtts, 0.99),
                max=max(rtts, default=float("nan")),
                late=sum(s["late"] for s in stats),
                lapsed=sum(s["lapsed"] for s in stats),
                denied=sum(sum(s["denied"].values()) for s in stats),
                unseated=refused,
                reasons=dict(sum((Counter(s["denied"]) for s in stats), seat_reasons)),
                us_per_hb=1e6
                * sum(proc_cpu(p) - cpu0[sid] for sid, p in pids.items())
                / max(1, sum(len(s["rtts"]) for s in stats)),
                load=os.getloadavg()[0],
                kernel=100 * kernel / max(1e-9, sum(cpu.values()) * wall / 100),
                cpu=cpu,
                gen_cpu=max(100 * s["cpu"] / s["wall"] for s in stats),
                rss_per_seat=1024 * rss / max(1, held),
            )
            rows.append(step)
            print(
                f"  hb {heartbeat:g} s, {n} clients (seated in {t_seat:.1f} s): held {held}, "
                f"{step.hb_per_s:.0f} hb/s, p50 {1000 * step.p50:.1f} ms, p99 "
                f"{1000 * step.p99:.1f} ms, lapsed {step.lapsed}, denied {step.denied} "
                f"{step.reasons or ''}, {step.us_per_hb:.0f} us CPU/hb "
                f"({step.kernel:.0f}% kernel), load {step.load:.1f}, CPU "
                + " ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
                + f", generator {step.gen_cpu:.0f}%",
                flush=True,
            )
            if spy:
                print(spy, flush=True)
            if not step.ok:
                break
    finally:
        for g in gens:
            g.close()
        pool.close()
    return rows


def render(rows: list[Step]) -> str:
    base = rows[0]
    base_cpu_seat = sum(base.cpu.values()) / max(1, base.held)
    header = [
        "client heartbeat", "clients", "held", "hb/s", "p50 ms", "p99 ms", "max ms",
        "late", "lapsed", "denied", "CPU A/B/C %", "us CPU/hb", "gen CPU %", "load",
        "RSS/seat B", "p99/base", "CPU per seat/base",
    ]  # fmt: skip
    out = []
    for r in rows:
        cpu_seat = sum(r.cpu.values()) / max(1, r.held)
        out.append(
            [
                f"{r.heartbeat:g} s" + ("" if r.ok else " (over)"),
                str(r.clients),
                str(r.held),
                f"{r.hb_per_s:.0f}",
                f"{1000 * r.p50:.1f}",
                f"{1000 * r.p99:.1f}",
                f"{1000 * r.max:.0f}",
                str(r.late),
                str(r.lapsed),
                str(r.denied),
                "/".join(f"{v:.0f}" for v in r.cpu.values()),
                f"{r.us_per_hb:.0f}",
                f"{r.gen_cpu:.0f}",
                f"{r.load:.1f}",
                f"{r.rss_per_seat:.0f}",
                f"{r.p99 / base.p99:.2f}",
                f"{cpu_seat / base_cpu_seat:.2f}",
            ]
        )
    return table("capacity (3 servers, TLS, one seat per client)", header, out)


def knees(rows: list[Step]) -> str:
    lines = []
    for hb in sorted({r.heartbeat for r in rows}):
        mine = [r for r in rows if r.heartbeat == hb]
        good = [r for r in mine if r.ok]
        over = next((r for r in mine if not r.ok), None)
        knee = good[-1].clients if good else 0
        tail = (
            f"; over at {over.clients} (p99 {1000 * over.p99:.0f} ms, lapsed {over.lapsed}, "
            f"not seated {over.unseated})"
            if over
            else " (not reached: raise --max)"
        )
        lines.append(f"knee at client heartbeat {hb:g} s: {knee} held seats{tail}")
        top = good[-1] if good else mine[-1]
        cost = top.us_per_hb
        cores = os.cpu_count() or 1
        lines.append(
            f"  the daemons used {cost:.0f} us of CPU per heartbeat at {top.clients} clients: "
            f"{cores} idle cores would carry about {cores * 1e6 / cost * hb:,.0f} seats at "
            f"{hb:g} s (an estimate; the generators' CPU not counted)"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--generator":
        asyncio.run(generator_main(json.loads(sys.argv[2])))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max", type=int, default=25_000, help="most clients at the default heartbeat")
    ap.add_argument("--steps", default="1000,5000,10000,15000,20000,25000")
    ap.add_argument("--heartbeats", default="2,10", help="client heartbeats (s), one row each")
    ap.add_argument("--generators", type=int, default=2)
    ap.add_argument("--conns", type=int, default=4, help="connections per server per generator")
    ap.add_argument("--window", type=float, default=3.0, help="measured, in heartbeat intervals")
    ap.add_argument(
        "--seat-rate", type=float, default=2000.0, help="new clients a second while seating"
    )
    ap.add_argument(
        "--quick", action="store_true", help="short windows, three steps up to 20,000, unscaled"
    )
    ap.add_argument(
        "--profile",
        type=int,
        metavar="N",
        help="py-spy on the leader at the step of N clients (first heartbeat row)",
    )
    ap.add_argument("--plaintext", action="store_true", help="no TLS (loopback)")
    ap.add_argument(
        "--no-scale",
        dest="scale",
        action="store_false",
        help="the same steps for every heartbeat (default: steps x heartbeat / 2 s, so each "
        "row ramps through the same heartbeat rates)",
    )
    args = ap.parse_args()
    if args.quick:  # three steps up to 20,000 clients, the same steps for every row
        args.window = min(args.window, 1.5)
        args.max = min(args.max, 20_000)
        args.scale = False
    steps = sorted({min(int(s), args.max) for s in args.steps.split(",")})
    if args.quick:
        steps = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
    args.first_hb = float(args.heartbeats.split(",")[0])
    exit_on_sigterm()
    rows: list[Step] = []
    default = Timing().client_heartbeat
    for hb in (float(h) for h in args.heartbeats.split(",")):
        # the same heartbeat rate per step: a slower heartbeat carries more clients
        scaled = [round(n * hb / default) for n in steps] if args.scale else steps
        rows += asyncio.run(run_row(args, hb, scaled))
    print()
    print(render(rows))
    print()
    print(knees(rows))
    cpu_n = os.cpu_count()
    print(
        f"machine: {cpu_n} cores (shared: other work may run); generators: {args.generators} "
        f"x {args.conns} connections per server; goal: >= 20,000 held seats at the default "
        f"heartbeat, no lapse, p99 <= {1000 * P99_LIMIT:.0f} ms"
    )


if __name__ == "__main__":
    main()
