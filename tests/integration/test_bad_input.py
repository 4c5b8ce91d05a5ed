"""Bad input to a live daemon: each case closes that one connection with one log line;
the daemon keeps answering status and its state is unchanged (B1)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import random
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine import messages as m
from lm_core.engine.keys import load_private
from lm_core.engine.rlf import SIGNATURE_DOMAIN, Rlf, canonical_bytes, render_rlf
from lm_core.runtime.codec import default_codec
from lm_core.runtime.connection import Connection

from .conftest import APP, DAEMON, Pool, all_up, held_total

pytestmark = pytest.mark.integration


def _frame(payload: bytes) -> bytes:
    return struct.pack("!BI", 1, len(payload)) + payload


def _stable(st: dict[str, Any] | None) -> Any:
    """A server's status without what moves by itself (ages, lease times, events)."""
    assert st is not None

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {
                k: strip(x)
                for k, x in v.items()
                if not (k.endswith("_age")
                        or k in ("lease_expires_in", "held_for", "events", "age"))
            }
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(st)


def _closed_by_peer(port: int, data: bytes, *, half_close: bool = False) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True  # recv returned b"": the daemon closed it (a timeout would raise)


rng = random.Random(4)
CASES: dict[str, tuple[bytes, bool]] = {
    "random bytes": (bytes(rng.randrange(256) for _ in range(4096)), False),
    "oversized frame": (struct.pack("!BI", 1, 64 * 1024 * 1024) + b"x" * 1024, False),
    "truncated frame": (struct.pack("!BI", 1, 1000) + b'{"type": "Request", ', True),
    "not JSON": (_frame(b"\xff\xfe not json"), False),
    "invalid message": (_frame(json.dumps({"type": "Request", "pool": "itest"}).encode()), False),
    "unknown type": (_frame(json.dumps({"type": "Explode", "pool": "itest"}).encode()), False),
    "server message from nobody": (
        _frame(
            default_codec().encode(m.Released(pool="itest", sender="Z", request_id=1, license=APP))
        ),
        False,
    ),
}


def test_bad_input_closes_one_connection_and_changes_nothing(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(tls=False)
    for sid in pool.ids:
        pool.start(sid)
    st = pool.wait(all_up, "three servers up with a leader")
    pool.hold("--license", APP, "--client-id", "steady", "--server", "A", "--seconds", "600")
    pool.wait(lambda st: held_total(st) == 1, "one seat held on A")
    port = pool.rlf.server("A").port

    before = _stable(pool.run(lambda c: c.server_status("A")))
    log_before = pool.logs["A"].read_text(errors="replace").count("wire: closed")
    for case, (data, half_close) in CASES.items():
        assert _closed_by_peer(port, data, half_close=half_close), case
        after = _stable(pool.run(lambda c: c.server_status("A")))
        assert after == before, case
    assert pool.alive("A")
    # one log line per closed connection
    deadline = time.monotonic() + 10
    while pool.logs["A"].read_text(errors="replace").count("wire: closed") < log_before + len(
        CASES
    ):
        assert time.monotonic() < deadline, pool.log_tail()
        time.sleep(0.05)
    st = pool.status()
    assert st["leader"] is not None
    assert held_total(st) == 1


# ---------------------------------------------------------------- issue 9, item 1


def _forged_sequence(pool: Pool, sequence: int) -> str:
    """The pool's RLF with `sequence`, validly signed by the pool's admin key (signed by
    hand: `sign_rlf` itself refuses such a sequence)."""
    rlf: Rlf = dataclasses.replace(pool.rlf, sequence=sequence, signature=None)
    key = load_private(pool.admin_private)
    sig = key.sign(SIGNATURE_DOMAIN + canonical_bytes(rlf))
    return render_rlf(dataclasses.replace(rlf, signature=base64.b64encode(sig).decode()))


async def _push_raw(address: str, text: str, request_id: int) -> m.Message:
    conn = await Connection.open(address, ssl=None)
    try:
        msg = m.UpdateRlf(pool="itest", sender="attacker", request_id=request_id, rlf_text=text)
        return await conn.request(msg, reply_timeout=10.0)
    finally:
        await conn.aclose()


def test_rlf_with_sequence_2_pow_63_is_refused_and_no_leader_dies(
    pool_factory: Callable[..., Pool],
) -> None:
    """Issue 9, item 1: this RLF, pushed twice, used to stop 2 of 3 daemons ("store write
    failed, stopping"). Now every server refuses it at parse time and keeps leading."""
    pool = pool_factory(tls=False)
    pool.start_all()
    st = pool.wait(all_up, "three servers up with a leader")
    seq = st["rlf_seq"]
    evil = _forged_sequence(pool, 2**63)
    for i, sid in enumerate(["A", "B", "A", pool.ids[-1]]):
        reply = asyncio.run(_push_raw(pool.rlf.server(sid).address, evil, 100 + i))
        assert isinstance(reply, m.AdminReply), reply
        assert not reply.ok
        assert "sequence" in reply.message
        assert "0..9007199254740991" in reply.message
    for sid in pool.ids:
        assert pool.alive(sid), pool.log_tail()
    st = pool.wait(lambda st: all_up(st) and st["rlf_seq"] == seq, "pool unchanged, all up")
    assert all(s["rlf_seq"] == seq for s in st["servers"])
    for sid in pool.ids:
        assert "store write failed" not in pool.logs[sid].read_text(errors="replace")
    # ... and the pool still grants.
    pool.hold("--license", APP, "--client-id", "after", "--seconds", "600")
    pool.wait(lambda st: held_total(st) == 1, "a seat granted after the attack")


def _one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_and_daemon_refuse_the_forged_sequence_with_one_line(
    pool_factory: Callable[..., Pool], tmp_path: Path
) -> None:
    pool = pool_factory(tls=False)
    evil = tmp_path / "evil.rlf"
    evil.write_text(_forged_sequence(pool, 2**63))
    key = tmp_path / "admin.key"
    key.write_text(pool.admin_private + "\n")
    where = f"{evil}:6: sequence: must be an integer 0..9007199254740991"
    _one_error_line(pool.lm("rlf", "verify", str(evil)), where)
    _one_error_line(pool.lm("rlf", "sign", str(evil), "--key", str(key)), where)
    _one_error_line(pool.lm("rlf", "show", str(evil)), where)
    args = [*DAEMON, "--rlf", str(evil), "--server-id", "A", "--data-dir", str(tmp_path / "A"),
            "--insecure-loopback"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    _one_error_line(proc, str(evil), "sequence")
    # The largest allowed sequence is fine end to end.
    top = tmp_path / "top.rlf"
    top.write_text(_forged_sequence(pool, 2**53 - 1))
    ok = pool.lm("rlf", "verify", str(top))
    assert ok.returncode == 0, ok.stderr


# ---------------------------------------------------------------- issue 9, item 2


def _request(pool: str, sender: str, request_id: int) -> bytes:
    obj = {"type": "Request", "pool": pool, "sender": sender, "term": 0,
           "request_id": request_id, "license": APP, "count": 1}  # fmt: skip
    return _frame(json.dumps(obj).encode())


def test_huge_names_cannot_push_a_server_off_lm_status(pool_factory: Callable[..., Pool]) -> None:
    """Four client messages with a 1 MiB pool name used to make every StatusReply exceed
    the frame cap: `lm status` showed the server unreachable. Names are bounded at decode
    now (the connection is closed), and what the engine keeps is clipped."""
    pool = pool_factory(tls=False)
    pool.start_all()
    pool.wait(all_up, "three servers up with a leader")
    port = pool.rlf.server("A").port
    for i in range(4):
        assert _closed_by_peer(port, _request("p" * (1 << 20), "c1", i + 1))
        assert _closed_by_peer(port, _request("itest", "c" * (1 << 20), i + 1))
    # The longest names the codec allows, many times: refused/denied, and clipped.
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        for i in range(100):
            s.sendall(_request("x" * 32, "c" * 300, i + 1))
            s.sendall(_request("itest", '"' * 300, i + 1))
    proc = pool.lm("status", "--json")
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert [s["reachable"] for s in st["servers"]] == [True, True, True]
    assert st["servers"][0]["error"] is None
    assert "clients_total" in st
    assert max(len(e["text"]) for e in st["events"]) <= 240
    assert pool.alive("A")
