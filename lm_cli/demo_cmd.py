"""`lm demo`: the patent's three-server pool on loopback, simulated clients, and `lm-tui`.

Nothing to configure: everything lives in a fresh temporary directory --
* the sample pool `sample_rlfs/patent.rlf` (Application 1.0, 100 seats, A:40 B:30 C:30)
  moved to free loopback ports and re-signed with the DEMO admin key;
* the pool's TLS directory from the runtime's PKI (`--insecure-loopback` skips it);
* ready-made material for the console's actions: `next.rlf` (sequence + 1, a new
  distribution) for "push RLF", and an add-on code and a new product's code (DEMO vendor
  key) for "add allocations" / "add license code";
* three `lm-daemon` processes (A first), each in its own session so a `kill -9` from
  another shell hits only that server;
* a handful of simulated clients (the runtime's `LicenseClient`, one thread, one event
  loop) that acquire and release seats over time and fail over when their server dies.

Then `lm-tui` runs in the foreground (a subprocess: `lm_cli` never imports `lm_tui`);
quitting it stops everything this command started and removes the directory
(`--keep` keeps it). `--no-tui` prints where to point `lm-tui` and `lm status` and runs
until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from lm_cli.output import handle_errors
from lm_core.errors import InputError, LmError

LICENSE = "Application 1.0"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_rlfs"
START_TIMEOUT = 20.0


def register(app: typer.Typer) -> None:
    """Add `lm demo` to the `lm` app."""
    app.command("demo")(demo)


# ---------------------------------------------------------------- the pool on disk


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _demo_key(name: str) -> Any:
    from lm_core.engine.keys import load_private

    path = SAMPLES / "keys" / f"DEMO_ONLY_{name}.key"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"demo key missing: {exc.strerror or exc}", file=str(path)) from None
    return load_private(next(ln for ln in lines if ln.strip() and not ln.startswith("#")))


@dataclasses.dataclass
class DemoPool:
    """The files of the demo pool (see the module docstring)."""

    root: Path
    rlf: Any
    rlf_path: Path
    tls_dir: Path | None
    next_rlf: Path
    codes: dict[str, Path]

    @classmethod
    def create(cls, root: Path, *, tls: bool) -> DemoPool:
        from lm_core.engine.codes import issue_code
        from lm_core.engine.rlf import (
            ServerEntry,
            parse_rlf,
            render_rlf,
            sign_rlf,
            with_distribution,
        )

        sample = SAMPLES / "patent.rlf"
        try:
            text = sample.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"sample pool missing: {exc.strerror or exc}", file=str(sample)
            ) from None
        base = parse_rlf(text, file=str(sample))
        ports = free_ports(len(base.servers))
        servers = tuple(
            ServerEntry(s.id, "127.0.0.1", port)
            for s, port in zip(base.servers, ports, strict=True)
        )
        admin = _demo_key("admin")
        rlf = sign_rlf(dataclasses.replace(base, servers=servers, signature=None), admin)
        rlf_path = root / "pool.rlf"
        rlf_path.write_text(render_rlf(rlf), encoding="utf-8")
        ids = [s.id for s in servers]
        shifted = {ids[0]: 50, ids[1]: 25, ids[2]: 20} if len(ids) == 3 else None
        nxt = sign_rlf(with_distribution(rlf, LICENSE, shifted), admin)
        next_rlf = root / "next.rlf"
        next_rlf.write_text(render_rlf(nxt), encoding="utf-8")
        acme = _demo_key("acme")
        today = datetime.date.today()
        common: dict[str, Any] = {
            "vendor": "acme",
            "expires": today + datetime.timedelta(days=365),
            "issued": today,
        }
        codes_dir = root / "codes"
        codes_dir.mkdir()
        stamp = time.strftime("%H%M%S")
        codes = {
            "add-on (Application 1.0, +20 seats)": issue_code(
                acme,
                product="Application",
                version="1.0",
                seats=20,
                kind="add",
                serial=f"DEMO-ADD-{stamp}",
                **common,
            ),
            "new product (Viewer 3.0, 50 seats)": issue_code(
                acme,
                product="Viewer",
                version="3.0",
                seats=50,
                serial=f"DEMO-NEW-{stamp}",
                **common,
            ),
        }
        code_paths = {}
        for label, code in codes.items():
            path = codes_dir / ("addon.code" if "add-on" in label else "viewer.code")
            path.write_text(code.text() + "\n", encoding="utf-8")
            code_paths[label] = path
        tls_dir = None
        if tls:
            from lm_core.runtime.pki import PkiServer, init_pki

            tls_dir = root / "tls"
            init_pki(tls_dir, pool=rlf.pool, servers=[PkiServer(s.id, s.host) for s in servers])
        return cls(root, rlf, rlf_path, tls_dir, next_rlf, code_paths)


def _exe(name: str, module_main: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    mod, _, fn = module_main.partition(":")
    return [sys.executable, "-c", f"from {mod} import {fn}; {fn}()"]


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when `lm demo` dies, even by SIGKILL, so
    a demo never leaves servers behind. Elsewhere a no-op (the `finally` still stops them)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Daemons:
    """The three `lm-daemon` subprocesses of the demo."""

    def __init__(self, pool: DemoPool) -> None:
        self.pool = pool
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        (pool.root / "logs").mkdir(exist_ok=True)
        (pool.root / "data").mkdir(exist_ok=True)

    def log(self, sid: str) -> Path:
        return self.pool.root / "logs" / f"{sid}.log"

    def args(self, sid: str) -> list[str]:
        """The command line of server `sid` (also printed, to restart one by hand)."""
        args = [
            *_exe("lm-daemon", "lm_core.runtime.daemon:main"),
            "--rlf",
            str(self.pool.rlf_path),
            "--server-id",
            sid,
            "--data-dir",
            str(self.pool.root / "data" / sid),
        ]
        if self.pool.tls_dir is not None:
            args += ["--tls-dir", str(self.pool.tls_dir)]
        else:
            args += ["--insecure-loopback"]
        return args

    def start(self, sid: str) -> None:
        args = self.args(sid)
        with open(self.log(sid), "ab") as fh:
            self.procs[sid] = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def wait_listening(self, sid: str, timeout: float = START_TIMEOUT) -> None:
        entry = self.pool.rlf.server(sid)
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs[sid]
            if proc.poll() is not None:
                tail = self.log(sid).read_text(errors="replace").strip().splitlines()[-5:]
                raise LmError(f"lm-daemon {sid} exited ({proc.returncode}): " + " | ".join(tail))
            with (
                contextlib.suppress(OSError),
                socket.create_connection((entry.host, entry.port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise LmError(f"lm-daemon {sid} does not listen on {entry.address}")
            time.sleep(0.05)

    def start_all(self) -> None:
        for sid in self.pool.rlf.server_ids:  # A first: it is the preferred leader
            self.start(sid)
            self.wait_listening(sid)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- simulated clients


class Clients:
    """Simulated protected programs: each prefers one server, holds a few seats for a
    while, releases them, pauses, and again. One thread, one event loop."""

    def __init__(self, pool: DemoPool, n: int, seed: int) -> None:
        self.pool = pool
        self.n = n
        self.seed = seed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="demo-clients", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _main(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks = [asyncio.create_task(self._life(i)) for i in range(self.n)]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _life(self, i: int) -> None:
        from lm_core.runtime.client import LicenseClient
        from lm_core.runtime.tlsconfig import load_tls_dir

        assert self._stop is not None
        rnd = random.Random(self.seed * 1000 + i)
        ids = list(self.pool.rlf.server_ids)
        prefer = ids[i % len(ids)]
        trust = load_tls_dir(self.pool.tls_dir, "client") if self.pool.tls_dir else None
        client = LicenseClient(self.pool.rlf, trust, client_id=f"ws-{i + 1:02d}", prefer=prefer)
        await self._pause(rnd.uniform(0.5, 3.0))
        while not self._stop.is_set():
            count = rnd.choice((1, 1, 2, 3, 5, 8))
            try:
                async with client.acquire(LICENSE, count, wait=False):
                    await self._pause(rnd.uniform(4.0, 16.0))
            except LmError as exc:
                self.errors.append(f"ws-{i + 1:02d}: {exc}")
            except Exception as exc:  # keep simulating whatever one client hits
                self.errors.append(f"ws-{i + 1:02d}: {type(exc).__name__}: {exc}")
            await self._pause(rnd.uniform(1.0, 5.0))


# ---------------------------------------------------------------- the command


def _info(pool: DemoPool, daemons: Daemons) -> str:
    tls = f" --tls-dir {pool.tls_dir}" if pool.tls_dir else ""
    lines = [
        f"lm demo: pool {pool.rlf.pool!r} in {pool.root}",
        *(
            f"  server {s.id}  {s.address}  pid {daemons.procs[s.id].pid}  log {daemons.log(s.id)}"
            for s in pool.rlf.servers
        ),
        f"  watch:   lm-tui --pool {pool.rlf_path}{tls}",
        f"  status:  lm status --pool {pool.rlf_path}{tls}",
        f"  fail-over: kill -9 {daemons.procs[pool.rlf.server_ids[0]].pid}   (server "
        f"{pool.rlf.server_ids[0]}, the leader)",
        f"  restart:   {' '.join(daemons.args(pool.rlf.server_ids[0]))}",
        f"  push RLF:  {pool.next_rlf}  (sequence {pool.rlf.sequence + 1})",
        *(f"  code:    {path}  {label}" for label, path in pool.codes.items()),
    ]
    return "\n".join(lines)


@handle_errors
def demo(
    no_tui: Annotated[
        bool, typer.Option("--no-tui", help="Run the pool and clients only, until Ctrl-C.")
    ] = False,
    clients: Annotated[
        int, typer.Option("--clients", min=0, max=50, help="Simulated clients.")
    ] = 6,
    insecure_loopback: Annotated[
        bool, typer.Option("--insecure-loopback", help="No TLS (loopback only).")
    ] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary directory afterwards.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated clients.")] = 1,
) -> None:
    """Run the patent's three-server pool on loopback with simulated clients and open
    lm-tui on it; quitting the console stops everything.

    Example: lm demo        (or: lm demo --no-tui, then lm-tui --pool ... in another shell)
    """
    if not no_tui and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InputError(
            "the console needs an interactive terminal; use `lm demo --no-tui` in scripts"
        )
    root = Path(tempfile.mkdtemp(prefix="lm-demo-"))
    daemons: Daemons | None = None
    sim: Clients | None = None
    tui: subprocess.Popen[bytes] | None = None
    for signum in (signal.SIGTERM, signal.SIGHUP):  # stop everything, as Ctrl-C does
        signal.signal(signum, _interrupt)
    try:
        pool = DemoPool.create(root, tls=not insecure_loopback)
        daemons = Daemons(pool)
        print(f"lm demo: starting servers {', '.join(pool.rlf.server_ids)} ...", flush=True)
        daemons.start_all()
        sim = Clients(pool, clients, seed)
        sim.start()
        print(_info(pool, daemons), flush=True)
        if no_tui:
            print("lm demo: running; Ctrl-C stops the pool and the clients.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        else:
            args = [*_exe("lm-tui", "lm_tui.main:main"), "--pool", str(pool.rlf_path)]
            if pool.tls_dir is not None:
                args += ["--tls-dir", str(pool.tls_dir)]
            args += ["--push-file", str(pool.next_rlf)]
            codes = ", ".join(str(p) for p in pool.codes.values())
            args += [
                "--notice",
                f"Demo pool. Try: d (distribution), u (push {pool.next_rlf.name}, pre-filled), "
                f"l / a with a code file ({codes}), 2 then r (reclaim); kill -9 "
                f"{daemons.procs[pool.rlf.server_ids[0]].pid} (leader A) from another shell.",
            ]
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                tui = subprocess.Popen(args, env=dict(os.environ))
                code = tui.wait()
            finally:
                signal.signal(signal.SIGINT, previous)
            if code not in (0, 130):
                print(f"lm demo: lm-tui exited with {code}", file=sys.stderr)
    finally:
        print("lm demo: stopping ...", flush=True)
        if tui is not None and tui.poll() is None:
            tui.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                tui.wait(timeout=5)
        if sim is not None:
            sim.stop()
        if daemons is not None:
            daemons.stop()
        if keep:
            print(f"lm demo: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
