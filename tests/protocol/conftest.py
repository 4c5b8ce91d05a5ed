"""The protocol test vectors (`vectors/*.json`, format in docs/PROTOCOL.md section 6) and
what the tests that replay them share: placeholder filling, frames, answer matching, and
a real TLS daemon pool (`protocol_pool`).

The vectors are data written from docs/PROTOCOL.md; nothing here builds them from the
project's message classes, so a change to the wire that the document does not follow
fails these tests.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lm_core.errors import LmError
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.localpool import (
    APP,
    FAST_TIMING,
    LocalPool,
    PoolKeys,
    server_ids,
    write_pool,
)
from lm_core.runtime.tlsconfig import load_tls_dir

VECTORS = Path(__file__).parent / "vectors"
HEADER = struct.Struct("!BI")
TICKET_MAX = 256


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def wire_vectors() -> list[dict[str, Any]]:
    """Every request/answer transcript (not the client-rules vector)."""
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("vector", "wire") == "wire":
            out.append(data)
    return out


@dataclass(frozen=True)
class Values:
    """What the placeholders of a vector stand for."""

    pool: str
    client: str
    license: str
    server: str
    lease: float
    heartbeat: float
    servers: list[dict[str, Any]]

    def table(self) -> dict[str, Any]:
        return {
            "$POOL": self.pool,
            "$CLIENT": self.client,
            "$LICENSE": self.license,
            "$SERVER": self.server,
            "$LEASE": self.lease,
            "$HEARTBEAT": self.heartbeat,
        }


def fill(value: Any, values: Values) -> Any:
    """`value` with every placeholder string replaced."""
    table = values.table()
    if isinstance(value, str):
        return table.get(value, value)
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value


def step_frame(step: dict[str, Any], values: Values) -> bytes:
    """The bytes a step sends: header + body, from `send` (a message) or `send_raw`."""
    if "send" in step:
        send = step["send"]
        body = json.dumps(fill(send["message"], values), separators=(",", ":")).encode()
        return HEADER.pack(send["kind"], len(body)) + body
    raw = step["send_raw"]
    if "body_hex" in raw:
        body = bytes.fromhex(raw["body_hex"])
    else:
        body = raw.get("body_text", "").encode()
    length = raw.get("length", len(body))
    return HEADER.pack(raw["kind"], length) + body


def type_ok(kind: str, value: Any, values: Values) -> bool:
    if kind == "integer":
        return type(value) is int
    if kind == "number":
        return type(value) in (int, float)
    if kind == "string":
        return type(value) is str
    if kind == "ticket":
        return (
            type(value) is str
            and len(value) <= TICKET_MAX
            and all(" " <= ch <= "~" for ch in value)
        )
    if kind == "servers":
        return bool(value == values.servers)
    raise AssertionError(f"unknown variable type {kind!r} in a vector")


def sample(kind: str, values: Values) -> Any:
    """A value of a variable's type, for checking an expected answer offline."""
    return {
        "integer": 3,
        "number": 1.5,
        "string": "some text",
        "ticket": "t1.A.1.1.1.1.abcdef",
        "servers": values.servers,
    }[kind]


def mismatches(expect: dict[str, Any], got: dict[str, Any], values: Values) -> list[str]:
    """What differs between an expected answer (with its `variable` types) and `got`."""
    want = fill(expect["message"], values)
    variable: dict[str, str] = expect.get("variable", {})
    problems = []
    if set(want) != set(got):
        problems.append(f"fields {sorted(got)} != {sorted(want)}")
    for key, value in want.items():
        if key not in got:
            continue
        if key in variable:
            if not type_ok(variable[key], got[key], values):
                problems.append(f"{key}: {got[key]!r} is not a {variable[key]}")
        elif isinstance(value, bool) or isinstance(got[key], bool):
            if value is not got[key]:
                problems.append(f"{key}: {got[key]!r} != {value!r}")
        elif isinstance(value, float) or isinstance(got[key], float):
            if type(got[key]) not in (int, float) or float(got[key]) != float(value):
                problems.append(f"{key}: {got[key]!r} != {value!r}")
        elif got[key] != value or type(got[key]) is not type(value):
            problems.append(f"{key}: {got[key]!r} != {value!r}")
    return problems


def filled_answer(expect: dict[str, Any], values: Values) -> dict[str, Any]:
    """The expected answer with every variable field given a sample of its type."""
    msg: dict[str, Any] = fill(expect["message"], values)
    for key, kind in expect.get("variable", {}).items():
        msg[key] = sample(kind, values)
    return msg


# ---------------------------------------------------------------- a real pool


@dataclass
class ProtocolPool:
    pool: LocalPool
    root: Path

    @property
    def tls_dir(self) -> Path | None:
        return self.pool.tls_dir

    @property
    def name(self) -> str:
        return self.pool.rlf.pool

    def address(self, sid: str) -> tuple[str, int]:
        for s in self.pool.rlf.servers:
            if s.id == sid:
                host, _, port = s.address.rpartition(":")
                return host, int(port)
        raise KeyError(sid)

    def servers(self) -> list[dict[str, Any]]:
        return [
            {"type": "ServerAddress", "id": s.id, "address": s.address}
            for s in self.pool.rlf.servers
        ]

    def values(self, sid: str, client: str) -> Values:
        timing = self.pool.rlf.timing
        return Values(
            pool=self.name,
            client=client,
            license=APP,
            server=sid,
            lease=timing.client_lease,
            heartbeat=timing.client_heartbeat,
            servers=self.servers(),
        )

    async def status(self) -> dict[str, Any]:
        tls = load_tls_dir(self.tls_dir, "admin") if self.tls_dir else None
        async with AdminClient(self.pool.rlf, tls=tls, timeout=1.0) as c:
            return dict(await c.status())

    def wait(
        self, cond: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll the pool's merged status until `cond(status)`; fail with the last one."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while True:
            try:
                last = asyncio.run(self.status())
            except LmError:
                last = {}
            if last and cond(last):
                return last
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout:g} s waiting for: {what}\n"
                    f"last status: {json.dumps(last)[:3000]}\n{self.pool.log_tail(40)}"
                )
            time.sleep(0.1)


def serving_all(status: dict[str, Any]) -> bool:
    """A leader with a majority, every server up, answering and serving."""
    return (
        status.get("leader") is not None
        and bool(status.get("majority", {}).get("ok"))
        and all(
            s.get("up") and s.get("reachable") and s.get("serving")
            for s in status.get("servers", [])
        )
    )


def clients_of(status: dict[str, Any], client_id: str) -> list[dict[str, Any]]:
    """The key-table rows (with their server) that name `client_id`."""
    return [c for c in status.get("clients", []) if c.get("client_id") == client_id]


def make_pool(root: Path, *, tls: bool = True) -> ProtocolPool:
    keys = PoolKeys.generate()
    files = write_pool(
        root,
        server_ids(3),
        name="ptest",
        keys=keys,
        seats=100,
        serial=f"S{time.monotonic_ns()}",
        dist={"A": 40, "B": 30, "C": 30},
        timing=FAST_TIMING,
        tls=tls,
    )
    local = LocalPool(root, files.rlf, files.rlf_path, files.tls_dir, log_level="debug",
                      stop_grace=0.0)  # fmt: skip
    return ProtocolPool(local, root)


@pytest.fixture
def protocol_pool(tmp_path: Path) -> Iterator[ProtocolPool]:
    """A 3-server TLS pool (FAST timings), every server started and serving."""
    pp = make_pool(tmp_path)
    try:
        pp.pool.start("A")
        pp.pool.wait_listening("A")
        for sid in ("B", "C"):
            pp.pool.start(sid)
        for sid in pp.pool.ids:
            pp.pool.wait_listening(sid)
        pp.wait(serving_all, "a leader and every server up")
        yield pp
    finally:
        pp.pool.stop_all()
