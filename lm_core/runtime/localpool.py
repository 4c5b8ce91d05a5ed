"""Local pools: a freshly generated, signed pool on free loopback ports and the real
`lm-daemon` processes that run it, on this machine.

One piece of mechanics shared by the integration tests, the console's live tests, the
runtime benchmarks and `lm demo`. Headless (no CLI or console imports).

Theory of operation
-------------------
*On disk* (`write_pool`, or the pieces it is made of): `free_ports` asks the kernel for
`n` distinct free TCP ports on 127.0.0.1 (bound together, then released, so they differ;
another process could take one before a daemon binds it -- acceptable on a test box);
`loopback_servers` puts server ids on them; the RLF gets a trusted vendor, one license
code (`year_code`: valid from today for a year) and its distribution, is signed with
the admin key and written (`write_signed`); `write_tls` makes the pool's TLS directory
with the runtime's PKI (what `lm pki init` writes).

*Processes* (`LocalPool`): `start(sid)` runs one `lm-daemon` with its own data directory
(`root/data/<sid>`) and log file (`<log_dir>/<sid>.log`, appended to, each start marked
by a ``---- start HH:MM:SS`` line); `wait_listening` / `wait_listening_async` wait until
the server accepts TCP on its RLF address (failing early, with the log's tail, if the
process exits); `kill(sid, sig)` signals one and reaps it; `stop_all()` sends SIGTERM,
waits up to `stop_grace` seconds, then SIGKILLs what is left, and always reaps every
process (no zombies). A `LocalPool` is a context manager that stops everything on exit.
Optionally a daemon dies with its parent (`parent_death`, Linux `PR_SET_PDEATHSIG`), so
a killed benchmark or demo leaves no servers behind; `extra_args` are added to every
daemon's command line (e.g. `FLEET_BUDGETS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lm_core.engine.codes import issue_code
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.rlf import (
    Rlf,
    ServerEntry,
    Timing,
    new_rlf,
    render_rlf,
    sign_rlf,
    with_code,
    with_vendor,
)
from lm_core.errors import LmError
from lm_core.runtime.pki import PkiServer, init_pki

LOOPBACK = "127.0.0.1"
VENDOR = "acme"
APP = "Application 1.0"

#: Short timings for tests: a dead leader is noticed within about a second.
FAST_TIMING = Timing(
    heartbeat_interval=0.2,
    leader_timeout=0.8,
    server_lease=0.6,
    client_heartbeat=0.4,
    client_lease=2.0,
    drift=0.05,
)

#: For a pool loaded by a fleet of clients in one process: on loopback every client comes
#: from 127.0.0.1, which the daemon's per-source TLS handshake budgets (16 at once, 20 a
#: second) would treat as one host flooding it. The fleet stands for many hosts, each
#: well inside those budgets, so they are lifted to the listener's overall cap.
FLEET_BUDGETS = ("--max-handshakes-per-source", "128", "--max-handshake-rate", "1000")


# ---------------------------------------------------------------- the pool on disk


def free_ports(n: int, host: str = LOOPBACK) -> list[int]:
    """`n` distinct TCP ports that are free on `host` right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def loopback_servers(ids: Iterable[str]) -> tuple[ServerEntry, ...]:
    """One server entry per id, on 127.0.0.1 and a free port each (in the given order)."""
    ids = list(ids)
    return tuple(
        ServerEntry(sid, LOOPBACK, port)
        for sid, port in zip(ids, free_ports(len(ids)), strict=True)
    )


@dataclass(frozen=True, slots=True)
class PoolKeys:
    """A fresh admin key (signs the RLF) and vendor key (signs codes), as key texts."""

    admin_private: str
    admin_public: str
    vendor_private: str
    vendor_public: str

    @classmethod
    def generate(cls) -> PoolKeys:
        admin_private, admin_public = generate_keypair()
        vendor_private, vendor_public = generate_keypair()
        return cls(admin_private, admin_public, vendor_private, vendor_public)


def year_code(
    vendor_key: str | Ed25519PrivateKey,
    *,
    seats: int,
    serial: str,
    product: str = "Application",
    version: str = "1.0",
    kind: str = "base",
    vendor: str = VENDOR,
) -> str:
    """The text of a license code signed with `vendor_key`, valid from today for 365 days."""
    key = load_private(vendor_key) if isinstance(vendor_key, str) else vendor_key
    today = datetime.date.today()
    code = issue_code(
        key,
        vendor=vendor,
        product=product,
        version=version,
        seats=seats,
        expires=today + datetime.timedelta(days=365),
        issued=today,
        serial=serial,
        kind=kind,
    )
    return code.text()


def write_signed(rlf: Rlf, admin_key: str | Ed25519PrivateKey, path: Path) -> Rlf:
    """Sign `rlf` with the admin key, write it to `path`; return the signed RLF."""
    key = load_private(admin_key) if isinstance(admin_key, str) else admin_key
    signed = sign_rlf(rlf, key)
    path.write_text(render_rlf(signed), encoding="utf-8")
    return signed


def write_tls(tls_dir: Path, rlf: Rlf) -> Path:
    """The pool's TLS directory (CA, server, admin and client certificates), as `lm pki
    init` makes it; returns `tls_dir`."""
    init_pki(tls_dir, pool=rlf.pool, servers=[PkiServer(s.id, s.host) for s in rlf.servers])
    return tls_dir


@dataclass(frozen=True, slots=True)
class PoolFiles:
    """What `write_pool` wrote: the signed RLF, its path, the TLS directory (or None)."""

    rlf: Rlf
    rlf_path: Path
    tls_dir: Path | None


def server_ids(n: int) -> list[str]:
    """The ids "A", "B", ... of an `n`-server pool."""
    return [chr(ord("A") + i) for i in range(n)]


def write_pool(
    root: Path,
    ids: Sequence[str],
    *,
    name: str,
    keys: PoolKeys,
    seats: int,
    serial: str,
    dist: Mapping[str, int] | None = None,
    timing: Timing | None = None,
    majority_rule: bool = True,
    tls: bool = True,
) -> PoolFiles:
    """A pool `name` of servers `ids` on free loopback ports, trusting vendor "acme" (the
    vendor key of `keys`), with one "Application 1.0" code of `seats` seats distributed
    by `dist` (None: the even split), signed with the admin key of `keys`:
    `root/pool.rlf`, and `root/tls` when `tls`."""
    rlf = new_rlf(
        name,
        loopback_servers(ids),
        admin_key=keys.admin_public,
        timing=timing or Timing(),
        majority_rule=majority_rule,
    )
    rlf = with_vendor(rlf, VENDOR, keys.vendor_public)
    rlf = with_code(rlf, year_code(keys.vendor_private, seats=seats, serial=serial), dist)
    rlf_path = root / "pool.rlf"
    signed = write_signed(rlf, keys.admin_private, rlf_path)
    tls_dir = write_tls(root / "tls", signed) if tls else None
    return PoolFiles(signed, rlf_path, tls_dir)


# ---------------------------------------------------------------- the processes


def console_command(name: str, module_main: str) -> list[str]:
    """The command line of console script `name` installed next to this interpreter, or
    (not installed) `python -c` calling `module_main` ("package.module:function")."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    mod, _, fn = module_main.partition(":")
    return [sys.executable, "-c", f"from {mod} import {fn}; {fn}()"]


def daemon_command() -> list[str]:
    """The command line that runs `lm-daemon`."""
    return console_command("lm-daemon", "lm_core.runtime.startup:main")


def parent_death_signal(sig: int) -> Callable[[], None]:
    """A `preexec_fn` that has the kernel send `sig` to the child when its parent dies,
    even by SIGKILL (Linux `PR_SET_PDEATHSIG`; elsewhere a no-op)."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG

    return preexec


class LocalPool:
    """The `lm-daemon` processes of one pool on this machine (see the module docstring).

    `root` holds `data/<sid>`; logs go to `log_dir` (default `root`). `tls_dir` None runs
    the daemons with `--insecure-loopback`. `own_session` starts each daemon in its own
    session (a Ctrl-C or `kill` aimed at the parent's group does not reach it);
    `parent_death` is the signal a daemon gets when its parent dies (None: nothing)."""

    def __init__(
        self,
        root: Path,
        rlf: Rlf,
        rlf_path: Path,
        tls_dir: Path | None,
        *,
        log_level: str | None = None,
        log_dir: Path | None = None,
        own_session: bool = False,
        parent_death: int | None = None,
        stop_grace: float = 5.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.rlf = rlf
        self.rlf_path = rlf_path
        self.tls_dir = tls_dir
        self.log_level = log_level
        self.log_dir = log_dir or root
        self.own_session = own_session
        self.parent_death = parent_death
        self.stop_grace = stop_grace
        self.extra_args = list(extra_args)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log_paths: dict[str, Path] = {}

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    @property
    def ids(self) -> list[str]:
        return list(self.rlf.server_ids)

    def data_dir(self, sid: str) -> Path:
        return self.root / "data" / sid

    def log_path(self, sid: str) -> Path:
        return self.log_dir / f"{sid}.log"

    def args(self, sid: str, *, rlf_path: Path | None = None) -> list[str]:
        """The command line of server `sid` (with another RLF file if given)."""
        args = [
            *daemon_command(),
            "--rlf", str(rlf_path or self.rlf_path),
            "--server-id", sid,
            "--data-dir", str(self.data_dir(sid)),
        ]  # fmt: skip
        if self.log_level is not None:
            args += ["--log-level", self.log_level]
        args += ["--tls-dir", str(self.tls_dir)] if self.tls_dir else ["--insecure-loopback"]
        return args + self.extra_args

    def start(self, sid: str) -> subprocess.Popen[bytes]:
        """Start server `sid` (it must not be running)."""
        if self.alive(sid):
            raise LmError(f"lm-daemon {sid} already runs (pid {self.procs[sid].pid})")
        log = self.log_path(sid)
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log_paths[sid] = log
        with open(log, "ab") as fh:
            fh.write(f"---- start {time.strftime('%H:%M:%S')}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                self.args(sid),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                start_new_session=self.own_session,
                preexec_fn=(parent_death_signal(self.parent_death) if self.parent_death else None),
            )
        self.procs[sid] = proc
        return proc

    def start_all(self) -> None:
        """Start every server, in RLF order, without waiting."""
        for sid in self.rlf.server_ids:
            self.start(sid)

    def alive(self, sid: str) -> bool:
        return sid in self.procs and self.procs[sid].poll() is None

    def kill(self, sid: str, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int:
        """Send `sig` to server `sid` and reap it; its exit status."""
        proc = self.procs[sid]
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        return proc.wait(timeout=timeout)

    def _check_running(self, sid: str) -> None:
        proc = self.procs[sid]
        if proc.poll() is not None:
            raise LmError(
                f"lm-daemon {sid} exited ({proc.returncode}): " + " | ".join(self.tail(sid, 5))
            )

    def wait_listening(self, sid: str, timeout: float = 20.0) -> None:
        """Block until server `sid` accepts TCP on its address; `LmError` if it exits or
        does not listen within `timeout` seconds."""
        entry = self.rlf.server(sid)
        deadline = time.monotonic() + timeout
        while True:
            self._check_running(sid)
            with (
                contextlib.suppress(OSError),
                socket.create_connection((entry.host, entry.port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise LmError(f"lm-daemon {sid} does not listen on {entry.address}")
            time.sleep(0.05)

    async def wait_listening_async(self, sid: str, limit: float = 20.0) -> None:
        """`wait_listening` for an event loop (`limit`: the timeout in seconds)."""
        entry = self.rlf.server(sid)
        deadline = time.monotonic() + limit
        while True:
            self._check_running(sid)
            try:
                _, writer = await asyncio.open_connection(entry.host, entry.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise LmError(f"lm-daemon {sid} does not listen on {entry.address}") from None
                await asyncio.sleep(0.05)
            else:
                writer.close()
                await writer.wait_closed()
                return

    def stop_all(self, grace: float | None = None) -> None:
        """SIGTERM every running server, wait up to `grace` seconds (default
        `stop_grace`; 0: SIGKILL at once), SIGKILL the rest; every process is reaped."""
        grace = self.stop_grace if grace is None else grace
        procs = list(self.procs.values())
        first = signal.SIGTERM if grace > 0 else signal.SIGKILL
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(first)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()

    def tail(self, sid: str, n: int) -> list[str]:
        """The last `n` lines of server `sid`'s log."""
        path = self.log_paths.get(sid, self.log_path(sid))
        text = path.read_text(errors="replace") if path.exists() else ""
        return text.strip().splitlines()[-n:]

    def log_tail(self, n: int = 30) -> str:
        """The last `n` lines of every started server's log, each under a header."""
        out = []
        for sid, path in self.log_paths.items():
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"==== {sid} ({len(lines)} lines)\n" + "\n".join(lines[-n:]))
        return "\n".join(out)
