"""Where the console gets the pool's status and sends the operator's actions.

`PoolSource` is the seam: the app sees nothing else. `AdminSource` wraps the runtime's
`AdminClient` (real daemons); `RecordedSource` replays status snapshots recorded as JSON
(snapshot tests, demos without daemons) and records the actions it is asked to do.

Every action returns an `Outcome` (never raises for a refusal); transport failures raise
and the app turns them into a toast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lm_core.engine.status_types import PoolStatus
from lm_core.engine.vocab import AdminOp

if TYPE_CHECKING:
    from lm_core.engine.rlf import Rlf
    from lm_core.runtime.tlsconfig import TlsPaths

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action came to: ok or refused, one line, and for pushes the per-server word."""

    ok: bool
    message: str
    per_server: dict[str, str] = field(default_factory=dict)


class PoolSource(Protocol):
    async def status(self) -> PoolStatus: ...
    async def add_code(self, code: str) -> Outcome: ...
    async def add_allocations(self, code: str) -> Outcome: ...
    async def set_distribution(self, license: str, distribution: dict[str, int]) -> Outcome: ...
    async def push_rlf(self, rlf_text: str) -> Outcome: ...
    async def reclaim(self, client_id: str, license: str, reason: str) -> Outcome: ...
    async def usage(self, since: float, until: float) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


class AdminSource:
    """The real thing: every call goes through `lm_core.runtime.admin.AdminClient`.

    Two clients: one for the status polls, one for the actions (one at a time), so a
    push that waits for every server never holds up the polls that show its progress, and
    no two calls ever race to open the same connection.

    Closing is final: later calls raise, and a call still in flight when the console
    closes (a poll being cancelled) closes its client again when it ends, so no connection
    outlives the console."""

    def __init__(self, rlf: Rlf, *, tls: TlsPaths | None, timeout: float = 3.0) -> None:
        from lm_core.runtime.admin import AdminClient

        self._tls = tls
        self._poller = AdminClient(rlf, tls=tls, timeout=timeout, name="lm-tui")
        self._actor = AdminClient(rlf, tls=tls, timeout=timeout, name="lm-tui")
        self._reader = AdminClient(rlf, tls=tls, timeout=timeout, name="lm-tui")  # usage log
        self._poller_last: PoolStatus | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    async def _call(self, client: Any, call: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise ConnectionError("the console is closing")
        try:
            return await call()
        finally:
            if self._closed:
                await client.aclose()

    async def _act(self, call: Callable[[Any], Awaitable[T]]) -> T:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._call(self._actor, lambda: call(self._actor))

    async def status(self) -> PoolStatus:
        from lm_core.runtime.tlsdiag import diagnose_status

        async def poll() -> PoolStatus:
            status = await diagnose_status(await self._poller.status(), self._tls)
            self._poller_last = status
            return status

        return await self._call(self._poller, poll)

    @staticmethod
    def _outcome(result: Any) -> Outcome:
        message = result.message or ("done" if result.ok else "refused")
        if getattr(result, "server", ""):
            message = f"{message} (via {result.server})"
        return Outcome(bool(result.ok), message)

    async def add_code(self, code: str) -> Outcome:
        return self._outcome(await self._act(lambda c: c.add_code(code)))

    async def add_allocations(self, code: str) -> Outcome:
        return self._outcome(await self._act(lambda c: c.add_allocations(code)))

    async def set_distribution(self, license: str, distribution: dict[str, int]) -> Outcome:
        return self._outcome(await self._act(lambda c: c.set_distribution(license, distribution)))

    async def push_rlf(self, rlf_text: str) -> Outcome:
        result = await self._act(lambda c: c.push_rlf(rlf_text))
        return Outcome(bool(result.ok), result.message, dict(result.per_server))

    async def reclaim(self, client_id: str, license: str, reason: str) -> Outcome:
        return self._outcome(await self._act(lambda c: c.reclaim(client_id, license, reason)))

    async def usage(self, since: float, until: float) -> dict[str, Any]:
        """The merged usage report of the window, by hour (what `lm report` prints)."""
        from lm_core.runtime.report import build_report
        from lm_core.runtime.usage import fetch_usage

        async def read() -> dict[str, Any]:
            fetched = await fetch_usage(self._reader, since, until)
            if not fetched.rows:
                raise ConnectionError(
                    "; ".join(f"{s}: {e}" for s, e in sorted(fetched.errors.items()))
                    or "no server answered"
                )
            status = self._poller_last
            hard = {lic["license"]: lic["hard_limit"] for lic in status["licenses"]} if (
                status is not None) else {}  # fmt: skip
            return build_report(fetched.rows, fetched.now, since=since, until=until, by="hour",
                                hard_limits=hard, unreachable=fetched.errors)  # fmt: skip

        return await self._call(self._reader, read)

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.gather(self._poller.aclose(), self._actor.aclose(), self._reader.aclose())


class RecordedSource:
    """Replays recorded snapshots: each `status()` returns the next one, then the last
    forever. Actions are recorded in `calls` and answered with `answer`."""

    def __init__(
        self,
        snapshots: Sequence[PoolStatus],
        *,
        answer: Outcome | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        if not snapshots:
            raise ValueError("a recorded source needs at least one snapshot")
        self._snapshots = list(snapshots)
        self._usage = usage  # the recorded usage report (None: no usage log)
        self.usage_asked: list[tuple[float, float]] = []
        self._next = 0
        self.answer = answer or Outcome(True, "done")
        self.calls: list[tuple[AdminOp, tuple[Any, ...]]] = []

    @classmethod
    def from_file(cls, path: Path) -> RecordedSource:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data if isinstance(data, list) else [data])

    async def status(self) -> PoolStatus:
        snap = self._snapshots[min(self._next, len(self._snapshots) - 1)]
        self._next += 1
        copy: PoolStatus = json.loads(json.dumps(snap))
        return copy

    async def _act(self, name: AdminOp, *args: Any) -> Outcome:
        self.calls.append((name, args))
        return self.answer

    async def add_code(self, code: str) -> Outcome:
        return await self._act(AdminOp.ADD_LICENSE_CODE, code)

    async def add_allocations(self, code: str) -> Outcome:
        return await self._act(AdminOp.ADD_ALLOCATIONS, code)

    async def set_distribution(self, license: str, distribution: dict[str, int]) -> Outcome:
        return await self._act(AdminOp.CHANGE_DISTRIBUTION, license, dict(distribution))

    async def push_rlf(self, rlf_text: str) -> Outcome:
        self.calls.append((AdminOp.UPDATE_RLF, (rlf_text,)))
        ids = [s["id"] for s in self._snapshots[-1].get("servers", [])]
        return Outcome(self.answer.ok, self.answer.message, dict.fromkeys(ids, "done"))

    async def reclaim(self, client_id: str, license: str, reason: str) -> Outcome:
        return await self._act(AdminOp.RECLAIM, client_id, license, reason)

    async def usage(self, since: float, until: float) -> dict[str, Any]:
        self.usage_asked.append((since, until))
        if self._usage is None:
            raise ConnectionError("no usage log recorded")
        copy: dict[str, Any] = json.loads(json.dumps(self._usage))
        return copy

    async def aclose(self) -> None:
        return None
