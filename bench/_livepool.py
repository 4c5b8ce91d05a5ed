"""Shared by every runtime benchmark (throughput, failover, push, memory): a freshly
generated, signed pool on loopback and its `lm-daemon` processes (free ports, temp dirs,
always killed at exit; the temp dir is removed unless LM_BENCH_KEEP is set, e.g. to read
the daemons' logs), plus the small helpers the scripts share (`leader_of`, `all_up`,
`table`).

Not a test helper: benchmarks are plain scripts (`python bench/push.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lm_core.engine.keys import load_private
from lm_core.engine.rlf import Rlf, Timing, render_rlf, sign_rlf
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.localpool import (
    APP,
    LocalPool,
    PoolKeys,
    free_ports,
    parent_death_signal,
    server_ids,
    write_pool,
)
from lm_core.runtime.tlsconfig import TlsPaths, load_tls_dir

__all__ = ["APP", "free_ports"]

#: In the child before exec: SIGKILL it when the benchmark dies (Linux), so a killed
#: benchmark leaves no daemons behind.
die_with_parent = parent_death_signal(signal.SIGKILL)


def exit_on_sigterm() -> None:
    """Turn SIGTERM (e.g. from `timeout`) into SystemExit so `finally` blocks clean up."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


class LivePool(LocalPool):
    """The benchmark's pool: daemons at log level "warning" that die with the benchmark,
    killed (not terminated) at `close`, which also removes `root`."""

    def __init__(
        self,
        root: Path,
        rlf: Rlf,
        rlf_path: Path,
        tls_dir: Path | None,
        admin_private: str,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            root,
            rlf,
            rlf_path,
            tls_dir,
            log_level=os.environ.get("LM_BENCH_LOG", "warning"),
            parent_death=signal.SIGKILL,
            stop_grace=0.0,
            extra_args=extra_args,
        )
        self.admin_private = admin_private  # signs the next RLF (`next_rlf`)

    def close(self) -> None:
        self.stop_all()
        if not os.environ.get("LM_BENCH_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def trust(self, role: str) -> TlsPaths | None:
        return load_tls_dir(self.tls_dir, role) if self.tls_dir else None

    def admin(self, timeout: float = 1.0) -> AdminClient:
        return AdminClient(self.rlf, tls=self.trust("admin"), timeout=timeout)

    async def wait_status(
        self, cond: Callable[[dict[str, Any]], bool], what: str, limit: float = 30.0
    ) -> dict[str, Any]:
        """Poll the merged pool status until `cond` holds (exits after `limit` seconds)."""
        deadline = time.monotonic() + limit
        last: dict[str, Any] = {}
        async with self.admin() as admin:
            while True:
                with contextlib.suppress(Exception):
                    last = await admin.status()
                    if cond(last):
                        return last
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out waiting for {what}; last status: {last}")
                await asyncio.sleep(0.02)

    async def start_led_by(self, leader: str, limit: float = 60.0) -> dict[str, Any]:
        """Start every server, `leader` first; return the status once `leader` leads all
        the others. Should another server win the first election (start-up is slow on a
        loaded machine), that winner is killed until `leader` leads, then restarted."""
        self.start(leader)
        await self.wait_listening_async(leader)
        for sid in self.ids:
            if sid != leader:
                self.start(sid)
        deadline = time.monotonic() + limit
        while True:
            st = await self.wait_status(led_by_one, "one leader, every other server following")
            if st["leader"] == leader or time.monotonic() > deadline:
                if st["leader"] != leader:
                    raise SystemExit(f"{leader} never led within {limit:g} s")
                return st
            winner = st["leader"]
            self.kill(winner)
            await self.wait_status(
                lambda s, w=winner: leader_of(s) not in (None, w), f"a leader other than {winner}"
            )
            self.start(winner)

    def next_rlf(self) -> tuple[Rlf, str]:
        """The current RLF with the next sequence, signed: (rlf, text) to push."""
        new = dataclasses.replace(self.rlf, sequence=self.rlf.sequence + 1, signature=None)
        signed = sign_rlf(new, load_private(self.admin_private))
        return signed, render_rlf(signed)


def make_pool(
    *,
    n: int = 3,
    seats: int = 100_000,
    tls: bool = True,
    timing: Timing | None = None,
    dist: dict[str, int] | None = None,
    extra_args: Sequence[str] = (),
) -> LivePool:
    """A signed pool of `n` servers on free loopback ports: one "Application 1.0" code of
    `seats` seats, distributed by `dist` (None: the even split); `extra_args` added to
    each daemon's command line."""
    root = Path(tempfile.mkdtemp(prefix="lm-bench-"))
    keys = PoolKeys.generate()
    files = write_pool(
        root,
        server_ids(n),
        name="bench",
        keys=keys,
        seats=seats,
        serial=f"B{os.getpid()}",
        dist=dist,
        timing=timing,
        tls=tls,
    )
    return LivePool(
        root, files.rlf, files.rlf_path, files.tls_dir, keys.admin_private, extra_args
    )


def leader_of(status: dict[str, Any]) -> str | None:
    """The leader if a majority is up and it leads, else None."""
    if not status.get("majority", {}).get("ok"):
        return None
    leader = status.get("leader")
    return leader if isinstance(leader, str) else None


def led_by_one(status: dict[str, Any]) -> bool:
    """A leader with a majority, every server up and answering, each the leader or its
    follower."""
    leader = leader_of(status)
    return leader is not None and all(
        s["up"]
        and s["reachable"]
        and s.get("role") == ("leader" if s["id"] == leader else "follower")
        for s in status["servers"]
    )


def all_up(status: dict[str, Any]) -> bool:
    """Every server reachable as leader or follower, and a leader."""
    return status.get("leader") is not None and all(
        s["reachable"] and s["role"] in ("leader", "follower") for s in status["servers"]
    )


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [title, line, "-" * len(line)]
    out += [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(out)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: first column left-aligned, the others right-aligned."""
    widths = [max(3, *(len(str(x)) for x in col)) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
