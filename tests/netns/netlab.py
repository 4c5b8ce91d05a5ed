"""Real partitions for real daemons: one network namespace per server on a bridge.

Shared by `tests/netns` and `bench/_netns.py` (which imports it by path). Linux, root.

Theory of operation
-------------------
`NetLab(ids)` makes, for each server id X, a namespace ``lm<tag>X`` whose ``eth0`` (one
end of a veth pair) has address ``10.<a>.<b>.<i>/24``; the other ends hang on a bridge
``lm<tag>br`` in the root namespace, which holds ``.254`` so this process (admin status,
`wait_listening`) reaches every server. Nothing else on the host changes: no routes
beyond the bridge's own subnet, no forwarding, no firewall.

`cut(X)` sets X's bridge port to the *disabled* state: the bridge silently drops every
frame to and from X, both ends keep their carrier, no ICMP comes back, and since every
namespace has permanent ARP entries no neighbour ever fails -- what a firewall DROP rule
looks like to TCP: pure silence. (iptables is not installed on
this machine and `tc` has neither netem nor matchall here, so the cut is made at the
bridge.) Processes inside X's namespace still reach each other over X's own address.
`heal(X)` puts the port back to forwarding.

`destroy()` deletes every namespace (which deletes its veth end and so the pair) and the
bridge; it is idempotent and also removes leftovers of this lab's tag from a killed run.

`NetPool` runs each `lm-daemon` inside its server's namespace (``ip netns exec``, which
execs, so the pid and signals are the daemon's own); `write_net_pool` writes the pool's
RLF with the namespaces' addresses and its TLS directory (plaintext is loopback-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_core.engine.rlf import Rlf, ServerEntry, Timing, new_rlf, with_code, with_vendor
from lm_core.errors import LmError
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.localpool import (
    VENDOR,
    LocalPool,
    PoolKeys,
    write_signed,
    write_tls,
    year_code,
)
from lm_core.runtime.tlsconfig import load_tls_dir

PORT = 7000  # every server listens on its own namespace's address, so one port for all


def unavailable() -> str | None:
    """Why network namespaces cannot be used here (None: they can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = f"lmprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


class NetLab:
    """Namespaces and a bridge for servers `ids` (see the module docstring)."""

    def __init__(self, ids: Sequence[str], *, tag: str | None = None) -> None:
        n = os.getpid() % 10000
        self.tag = tag or f"{n}"
        self.ids = list(ids)
        self.bridge = f"lm{self.tag}br"
        self.subnet = f"10.{200 + n // 250 % 50}.{n % 250}"
        self.created = False

    def ns(self, sid: str) -> str:
        return f"lm{self.tag}{sid}"

    def host_end(self, sid: str) -> str:
        return f"lm{self.tag}{sid}h"

    def ip(self, sid: str) -> str:
        return f"{self.subnet}.{self.ids.index(sid) + 1}"

    def exec_prefix(self, sid: str) -> list[str]:
        """The command prefix that runs a program inside `sid`'s namespace."""
        return ["ip", "netns", "exec", self.ns(sid)]

    def create(self) -> NetLab:
        self.destroy()  # leftovers of a killed run with the same tag
        self.created = True
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for sid in self.ids:
                ns, host = self.ns(sid), self.host_end(sid)
                _ip("netns", "add", ns)
                _ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", host, "master", self.bridge)
                _ip("link", "set", host, "up")
                _ip("-n", ns, "addr", "add", f"{self.ip(sid)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
            self._static_neighbours()
        except BaseException:
            self.destroy()
            raise
        return self

    def _mac(self, *where: str) -> str:
        out = _ip(*where[:-1], "-j", "link", "show", "dev", where[-1]).stdout
        return str(json.loads(out)[0]["address"])

    def _static_neighbours(self) -> None:
        """Permanent ARP entries everywhere, so a cut drops IP packets and nothing else
        changes: no neighbour ever fails, no "host unreachable" reaches a socket (as with
        a firewall DROP rule); TCP sees pure silence."""
        macs = {sid: self._mac("-n", self.ns(sid), "eth0") for sid in self.ids}
        hub = (f"{self.subnet}.254", self._mac(self.bridge))
        for sid in self.ids:
            others = [(self.ip(o), macs[o]) for o in self.ids if o != sid] + [hub]
            for ip, mac in others:
                _ip("-n", self.ns(sid), "neigh", "replace", ip, "lladdr", mac,
                    "dev", "eth0", "nud", "permanent")  # fmt: skip
            _ip("neigh", "replace", self.ip(sid), "lladdr", macs[sid],
                "dev", self.bridge, "nud", "permanent")  # fmt: skip

    def destroy(self) -> None:
        for sid in self.ids:
            _ip("netns", "del", self.ns(sid), check=False)
            _ip("link", "del", self.host_end(sid), check=False)
        _ip("link", "del", self.bridge, check=False)
        self.created = False

    def _port_state(self, sid: str, state: str) -> None:
        res = subprocess.run(
            ["bridge", "link", "set", "dev", self.host_end(sid), "state", state],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"bridge link set {self.host_end(sid)}: {res.stderr.strip()}")

    def cut(self, sid: str) -> None:
        """Silently drop everything to and from `sid`'s namespace."""
        self._port_state(sid, "0")  # disabled

    def heal(self, sid: str) -> None:
        self._port_state(sid, "3")  # forwarding

    def __enter__(self) -> NetLab:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


class NetPool(LocalPool):
    """`lm-daemon`s inside their servers' namespaces (killed, not terminated, at close)."""

    def __init__(self, lab: NetLab, root: Path, rlf: Rlf, rlf_path: Path, tls_dir: Path) -> None:
        super().__init__(root, rlf, rlf_path, tls_dir, log_level="info", stop_grace=0.0)
        self.lab = lab

    def args(self, sid: str, *, rlf_path: Path | None = None) -> list[str]:
        return [*self.lab.exec_prefix(sid), *super().args(sid, rlf_path=rlf_path)]


def write_net_pool(
    lab: NetLab,
    root: Path,
    *,
    seats: int = 100,
    dist: dict[str, int] | None = None,
    timing: Timing | None = None,
    servers: Sequence[str] | None = None,
) -> NetPool:
    """A pool of servers `servers` (default: one per namespace of `lab`) at their
    namespaces' addresses (TLS), one license code of `seats` seats; the RLF and TLS
    directory under `root`."""
    keys = PoolKeys.generate()
    ids = lab.ids if servers is None else list(servers)
    entries = [ServerEntry(sid, lab.ip(sid), PORT) for sid in ids]
    rlf = new_rlf("netlab", entries, admin_key=keys.admin_public, timing=timing or Timing())
    rlf = with_vendor(rlf, VENDOR, keys.vendor_public)
    code = year_code(keys.vendor_private, seats=seats, serial=f"S{time.monotonic_ns()}")
    rlf = with_code(rlf, code, dist)
    rlf_path = root / "pool.rlf"
    signed = write_signed(rlf, keys.admin_private, rlf_path)
    tls_dir = write_tls(root / "tls", signed)
    return NetPool(lab, root, signed, rlf_path, tls_dir)


# ---------------------------------------------------------------- what "whole" means


def whole(status: dict[str, Any]) -> str | None:
    """None when the pool is whole: every server reachable, exactly one says it leads,
    every other follows it in the same term, and every one serves. Otherwise what is
    missing (for a timeout's message)."""
    rows = status.get("servers") or []
    if not rows:
        return "no status"
    down = [r["id"] for r in rows if not r["reachable"]]
    if down:
        return f"unreachable: {down}"
    leaders = [r["id"] for r in rows if r["role"] == "leader"]
    if len(leaders) != 1:
        return f"leaders: {leaders}"
    leader = leaders[0]
    term = next(r["term"] for r in rows if r["id"] == leader)
    for r in rows:
        if r["id"] != leader and (
            r["role"] != "follower" or r["leader"] != leader or r["term"] != term
        ):
            return f"{r['id']}: {r['role']} of {r['leader']!r} in term {r['term']} (not {term})"
    not_serving = [r["id"] for r in rows if not r["serving"]]
    if not_serving:
        return f"not serving: {not_serving}"
    return None


# ---------------------------------------------------------------- seat holders


HOLDER = Path(__file__).with_name("holder.py")


class Holders:
    """`holder.py` running inside one namespace: `clients` seat holders preferring
    `prefer`. `held` is their latest report; `history` every report as (t, held)."""

    def __init__(self, pool: NetPool, sid: str, *, prefer: str, clients: int, name: str) -> None:
        assert pool.tls_dir is not None
        self.log = pool.root / f"holder-{name}.log"
        cmd = [
            *pool.lab.exec_prefix(sid),
            sys.executable,
            str(HOLDER),
            "--rlf", str(pool.rlf_path),
            "--tls-dir", str(pool.tls_dir),
            "--prefer", prefer,
            "--clients", str(clients),
            "--name", name,
        ]  # fmt: skip
        self._err = open(self.log, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL, text=True
        )
        self.held: dict[str, str | None] = {}
        self.history: list[tuple[float, dict[str, str | None]]] = []
        self.error: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "error" in rec:
                self.error = str(rec["error"])
                continue
            self.held = dict(rec["held"])
            self.history.append((float(rec["t"]), self.held))

    def all_held(self) -> bool:
        return bool(self.held) and all(v is not None for v in self.held.values())

    def seated_since(self, t0: float) -> float | None:
        """The first report time >= t0 from which every client held a seat (through the
        latest report), or None."""
        since: float | None = None
        for t, held in self.history:
            ok = all(v is not None for v in held.values())
            if not ok:
                since = None
            elif since is None:
                since = max(t, t0)
        return since

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


# ---------------------------------------------------------------- watching the pool


class Watcher:
    """Polls the merged pool status from the root namespace (a fresh admin connection
    after any server failed to answer, so a stalled socket of the watcher's own never
    makes the pool look broken)."""

    def __init__(self, pool: NetPool, timeout: float = 0.5) -> None:
        self.pool = pool
        self.timeout = timeout
        self._admin: AdminClient | None = None

    async def status(self) -> dict[str, Any]:
        if self._admin is None:
            self._admin = AdminClient(
                self.pool.rlf, tls=load_tls_dir(self.pool.tls_dir, "admin"), timeout=self.timeout
            )
        try:
            st = await self._admin.status()
        except LmError:
            st = {}
        if not st or any(not r["reachable"] for r in st["servers"]):
            await self.aclose()
        return st

    async def aclose(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.aclose()

    async def wait(
        self, cond: Callable[[dict[str, Any]], bool], what: str, limit: float
    ) -> tuple[float, dict[str, Any]]:
        """(time.monotonic() when `cond(status)` first held, that status). `TimeoutError`
        naming `what` and the last status if it does not within `limit` seconds."""
        deadline = time.monotonic() + limit
        last: dict[str, Any] = {}
        while True:
            t = time.monotonic()
            last = await self.status()
            if last and cond(last):
                return t, last
            if time.monotonic() > deadline:
                brief = [
                    {k: r[k] for k in ("id", "reachable", "role", "term", "leader", "serving")}
                    for r in last.get("servers", [])
                ]
                raise TimeoutError(f"no {what} within {limit:g} s; servers: {brief}")
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------- one partition episode


@dataclass
class Episode:
    """One cut and heal. Times are seconds after the heal (None: not within the wait)."""

    role: str  # "leader" or "follower": which server was cut off
    victim: str
    cut: float
    whole: float | None = None  # one leader, every server following and serving
    seated: float | None = None  # every holder in the cut namespace holds a seat
    first_seat: float | None = None  # baseline: the holders' first seats on a whole pool
    leaders_after: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def healed(self) -> float | None:
        if self.whole is None or self.seated is None:
            return None
        return max(self.whole, self.seated)


def leader_id(status: dict[str, Any]) -> str | None:
    leaders = [r["id"] for r in status.get("servers", []) if r["role"] == "leader"]
    return leaders[0] if len(leaders) == 1 else None


async def episode(
    pool: NetPool,
    watcher: Watcher,
    role: str,
    cut: float,
    *,
    clients: int = 2,
    heal_wait: float = 10.0,
    settle_wait: float = 60.0,
) -> Episode:
    """Wait for a whole pool; in the namespace of its leader (or of a follower) start
    `clients` seat holders preferring that server and `clients` preferring a server
    across the cut, and wait until all hold seats; cut that namespace off for `cut`
    seconds; heal; wait up to `heal_wait` seconds for the pool to be whole with every
    holder seated. Raises `TimeoutError` only for the set-up.

    `role` "client" cuts off a namespace without a server (the lab's first namespace
    that is not one of the pool's servers), whose holders prefer the leader and a
    follower: nothing but the clients' own connections is cut there."""
    lab = pool.lab
    _, st = await watcher.wait(lambda s: whole(s) is None, "whole pool", settle_wait)
    leader = leader_id(st)
    assert leader is not None
    follower = next(s for s in reversed(pool.ids) if s != leader)
    if role == "client":
        victim = next(ns for ns in lab.ids if ns not in pool.ids)
        prefer = [leader, follower]
    else:
        victim = leader if role == "leader" else follower
        prefer = [victim, next(s for s in pool.ids if s != victim)]
    ep = Episode(role, victim, cut)
    name = f"{role}{int(cut)}"
    groups = [
        Holders(pool, victim, prefer=prefer[0], clients=clients, name=f"{name}-a"),
        Holders(pool, victim, prefer=prefer[1], clients=clients, name=f"{name}-b"),
    ]
    try:
        t_start = time.monotonic()
        await _until(groups, "holders seated", settle_wait)
        ep.first_seat = _seated(groups, t_start)
        lab.cut(victim)
        t_cut = time.monotonic()
        if role == "leader":  # the majority elects a new leader during the cut
            await watcher.wait(
                lambda s: leader_id(s) not in (None, victim), "new leader", max(cut, 5.0)
            )
        await asyncio.sleep(max(0.0, t_cut + cut - time.monotonic()))
        lab.heal(victim)
        t_heal = time.monotonic()
        try:
            t_whole, _ = await watcher.wait(lambda s: whole(s) is None, "whole pool", heal_wait)
            ep.whole = t_whole - t_heal
        except TimeoutError as exc:
            ep.note = str(exc)
        remaining = max(0.5, t_heal + heal_wait - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await _until(groups, "holders seated", remaining)
        ep.seated = _seated(groups, t_heal)
        final = await watcher.status()
        ep.leaders_after = [r["id"] for r in final.get("servers", []) if r["role"] == "leader"]
    finally:
        for h in groups:
            h.stop()
    return ep


def _seated(groups: list[Holders], t0: float) -> float | None:
    """Seconds after `t0` from which every holder of `groups` held a seat, or None."""
    since = [h.seated_since(t0) for h in groups]
    if any(t is None for t in since):
        return None
    return max(t for t in since if t is not None) - t0


async def _until(groups: list[Holders], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not all(h.all_held() for h in groups):
        for h in groups:
            if h.error is not None:
                raise RuntimeError(f"holder failed: {h.error}")
            if h.proc.poll() is not None:
                raise RuntimeError(f"holder exited ({h.proc.returncode}); see {h.log}")
        if time.monotonic() > deadline:
            held = {k: v for h in groups for k, v in h.held.items()}
            raise TimeoutError(f"no {what} within {limit:g} s (held: {held})")
        await asyncio.sleep(0.02)
