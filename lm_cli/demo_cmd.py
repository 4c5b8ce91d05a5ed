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
from lm_core.runtime.localpool import (
    LocalPool,
    console_command,
    loopback_servers,
    write_signed,
    write_tls,
)

LICENSE = "Application 1.0"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_rlfs"
START_TIMEOUT = 20.0


def register(app: typer.Typer) -> None:
    """Add `lm demo` to the `lm` app."""
    app.command(
        "demo", short_help="The patent's three-server pool on loopback, clients and lm-tui."
    )(demo)


# ---------------------------------------------------------------- the pool on disk


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
        from lm_core.engine.rlf import parse_rlf, with_distribution

        sample = SAMPLES / "patent.rlf"
        try:
            text = sample.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"sample pool missing: {exc.strerror or exc}", file=str(sample)
            ) from None
        base = parse_rlf(text, file=str(sample))
        servers = loopback_servers(s.id for s in base.servers)
        admin = _demo_key("admin")
        rlf_path = root / "pool.rlf"
        rlf = write_signed(
            dataclasses.replace(base, servers=servers, signature=None), admin, rlf_path
        )
        ids = [s.id for s in servers]
        shifted = {ids[0]: 50, ids[1]: 25, ids[2]: 20} if len(ids) == 3 else None
        next_rlf = root / "next.rlf"
        write_signed(with_distribution(rlf, LICENSE, shifted), admin, next_rlf)
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
        tls_dir = write_tls(root / "tls", rlf) if tls else None
        return cls(root, rlf, rlf_path, tls_dir, next_rlf, code_paths)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _daemons(pool: DemoPool) -> LocalPool:
    """The demo's `lm-daemon` processes: logs in `logs/`, each in its own session (a
    `kill -9` from another shell hits only that server), SIGTERM when `lm demo` dies
    (even by SIGKILL, Linux), stopped with SIGTERM then SIGKILL after 5 s."""
    return LocalPool(
        pool.root,
        pool.rlf,
        pool.rlf_path,
        pool.tls_dir,
        log_dir=pool.root / "logs",
        own_session=True,
        parent_death=signal.SIGTERM,
        stop_grace=5.0,
    )


def _start_all(daemons: LocalPool) -> None:
    for sid in daemons.rlf.server_ids:  # A first: it is the preferred leader
        daemons.start(sid)
        daemons.wait_listening(sid, START_TIMEOUT)


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


def _info(pool: DemoPool, daemons: LocalPool) -> str:
    tls = f" --tls-dir {pool.tls_dir}" if pool.tls_dir else ""
    lines = [
        f"lm demo: pool {pool.rlf.pool!r} in {pool.root}",
        *(
            f"  server {s.id}  {s.address}  pid {daemons.procs[s.id].pid}"
            f"  log {daemons.log_path(s.id)}"
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
    daemons: LocalPool | None = None
    sim: Clients | None = None
    tui: subprocess.Popen[bytes] | None = None
    for signum in (signal.SIGTERM, signal.SIGHUP):  # stop everything, as Ctrl-C does
        signal.signal(signum, _interrupt)
    try:
        pool = DemoPool.create(root, tls=not insecure_loopback)
        daemons = _daemons(pool)
        print(f"lm demo: starting servers {', '.join(pool.rlf.server_ids)} ...", flush=True)
        _start_all(daemons)
        sim = Clients(pool, clients, seed)
        sim.start()
        print(_info(pool, daemons), flush=True)
        if no_tui:
            print("lm demo: running; Ctrl-C stops the pool and the clients.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        else:
            args = [*console_command("lm-tui", "lm_tui.main:main"), "--pool", str(pool.rlf_path)]
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
            daemons.stop_all()
        if keep:
            print(f"lm demo: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
