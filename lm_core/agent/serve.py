"""Running the agent: listeners, start-up checks, shutdown.

`run_agent` serves the API (`api.make_app`) on loopback TCP and/or a Unix socket until
`stop` is set, then stops listening and releases every lease it holds.

What protects it: the TCP listener is bound to loopback (a non-loopback `host` is
refused unless a token is required), so only programs on this host can call it -- but
*every* user of the host can. A Unix socket is created mode 0600 (only its owner and
root connect). A token (`token`, from the CLI's ``--token-file``) makes every /v1 call
present ``Authorization: Bearer TOKEN``; whoever can read the token file can call.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from lm_core.agent.api import make_app
from lm_core.agent.holdings import Holdings
from lm_core.engine.rlf import Rlf
from lm_core.errors import InputError
from lm_core.runtime.client import LicenseClient
from lm_core.runtime.connection import is_loopback
from lm_core.runtime.tlsconfig import TlsPaths

log = logging.getLogger("lm.agent")

DEFAULT_PORT = 7390


@dataclass(frozen=True)
class AgentConfig:
    """What `lm agent` was asked for. `port` None: no TCP listener (socket only)."""

    rlf: Rlf
    trust: TlsPaths | None
    host: str = "127.0.0.1"
    port: int | None = DEFAULT_PORT
    socket_path: Path | None = None
    token: str = ""
    pid_check: float = 1.0

    def check(self) -> None:
        """Raise `InputError` for a configuration the agent refuses."""
        if self.port is None and self.socket_path is None:
            raise InputError("nothing to listen on: give a port or --socket", field="--port")
        if self.port is not None and not is_loopback(self.host) and not self.token:
            raise InputError(
                f"{self.host} is not loopback: anyone who reaches it could take seats; "
                "listen on 127.0.0.1 (the default) or require a token (--token-file)",
                field="--host",
            )
        # LicenseClient checks the server list and TLS (plaintext only on loopback)
        LicenseClient(self.rlf, self.trust)


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file left by an agent that died; refuse a live one or a
    path that is something else."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InputError(f"{path} exists and is not a socket", field="--socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise InputError(f"{path}: {exc.strerror}", field="--socket") from None
        path.unlink(missing_ok=True)  # nobody listens: stale
    else:
        raise InputError(f"{path}: another agent is listening there", field="--socket")
    finally:
        probe.close()


async def run_agent(
    cfg: AgentConfig, stop: asyncio.Event, ready: Callable[[list[str]], None]
) -> None:
    """Serve until `stop` is set; `ready` gets the listening URLs once listening."""
    cfg.check()

    def client_for(client_id: str) -> LicenseClient:
        return LicenseClient(cfg.rlf, cfg.trust, client_id=client_id)

    holdings = Holdings(client_for, pid_check=cfg.pid_check)
    app = make_app(holdings, pool=cfg.rlf.pool, token=cfg.token)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    urls: list[str] = []
    try:
        if cfg.port is not None:
            tcp = web.TCPSite(runner, cfg.host, cfg.port, shutdown_timeout=1.0)
            try:
                await tcp.start()
            except OSError as exc:
                raise InputError(
                    f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}",
                    field="--port",
                ) from None
            for addr in runner.addresses:
                if isinstance(addr, tuple):
                    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
                    urls.append(f"http://{host}:{addr[1]}")
        if cfg.socket_path is not None:
            _claim_socket_path(cfg.socket_path)
            old = os.umask(0o177)  # the socket is born 0600: no window for others
            try:
                await web.UnixSite(runner, str(cfg.socket_path), shutdown_timeout=1.0).start()
            finally:
                os.umask(old)
            urls.append(f"unix:{cfg.socket_path}")
        holdings.start()
        ready(urls)
        await stop.wait()
    finally:
        await runner.cleanup()
        await holdings.close()
        if cfg.socket_path is not None:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(cfg.socket_path.lstat().st_mode):
                    cfg.socket_path.unlink()
