"""The Node.js client in contrib/node-client (written from docs/PROTOCOL.md alone) against
a real TLS daemon pool: it holds a seat, heartbeats, fails over to the next server in
priority order when its server is killed, and releases; the pool's status shows each
step.

Every other server is full (held by `lm client hold`), so the only seat the next server
can give the Node client is the one its dead server granted: the fail-over heartbeat's
ticket must move it (a missing or wrong ticket leaves it refused until its lease runs out,
long before the dead server could be fenced)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lm_core.runtime.localpool import APP, console_command

from .conftest import ProtocolPool, clients_of

pytestmark = pytest.mark.integration

NODE = shutil.which("node")
DIST = {"A": 40, "B": 30, "C": 30}  # the distribution of the protocol_pool fixture
LM = console_command("lm", "lm_cli.main:main")
CLIENT_JS = Path(__file__).resolve().parents[2] / "contrib" / "node-client" / "lm-client.js"


def _events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "text", "text": line})
    return out


def _wait_events(path: Path, cond: Any, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not cond(_events(path)):
        if time.monotonic() > deadline or proc.poll() is not None:
            pytest.fail(f"{what}: node client said\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


@pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed on this machine")
def test_node_client_holds_fails_over_and_releases(protocol_pool: ProtocolPool) -> None:
    pp = protocol_pool
    assert NODE is not None
    assert pp.tls_dir is not None
    st = pp.wait(lambda s: s.get("leader") is not None, "a leader")
    order = pp.pool.ids  # leader-priority order (the RLF's)
    # the client's server: the last follower in priority order; the next one is the first
    home = next(sid for sid in reversed(order) if sid != st["leader"])
    expected_next = next(sid for sid in order if sid != home)
    client_id = "node-client-1"
    # fill every other server, the leader first (a follower that fills up borrows from
    # the leader): its whole distribution held by one `lm client hold`
    env = dict(os.environ, LM_POOL=str(pp.pool.rlf_path), LM_TLS_DIR=str(pp.tls_dir))
    fillers: list[subprocess.Popen[bytes]] = []
    try:
        for sid in sorted((s for s in order if s != home), key=lambda s: s != st["leader"]):
            fillers.append(_fill(sid, env))
            pp.wait(
                lambda s, sid=sid: _rows(s, f"filler-{sid}") == [(sid, DIST[sid])],
                f"{sid} full",
            )
        _run_node(pp, home, expected_next, client_id)
    finally:
        for f in fillers:
            f.kill()
            f.wait(timeout=10)


def _rows(st: dict[str, Any], client_id: str) -> list[tuple[str, int]]:
    return [(c["server"], c["count"]) for c in clients_of(st, client_id)]


def _fill(sid: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    args = ["client", "hold", "--license", APP, "--server", sid, "--count", str(DIST[sid]),
            "--client-id", f"filler-{sid}", "--seconds", "600"]  # fmt: skip
    return subprocess.Popen(
        [*LM, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _run_node(pp: ProtocolPool, home: str, expected_next: str, client_id: str) -> None:
    assert NODE is not None
    assert pp.tls_dir is not None
    ca = str(pp.tls_dir / "ca.pem")
    args = [NODE, str(CLIENT_JS), "--pool", pp.name, "--license", APP,
            "--client-id", client_id, "--prefer", home, "--ca", ca]  # fmt: skip
    for s in pp.pool.rlf.servers:
        args += ["--server", f"{s.id}={s.address}"]
    out = pp.root / "node-client.log"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)
    try:
        # held on its chosen server, and renewed by heartbeats
        _wait_events(
            out,
            lambda ev: sum(e["event"] == "renewed" for e in ev) >= 3,
            "three heartbeats answered",
            proc,
        )
        st = pp.wait(lambda s: bool(clients_of(s, client_id)), "the node client listed")
        assert [(c["server"], c["count"]) for c in clients_of(st, client_id)] == [(home, 1)]
        first = next(e for e in _events(out) if e["event"] == "authorized")
        assert first["server"] == home

        pp.pool.kill(home)  # SIGKILL: its server is gone
        _wait_events(
            out,
            lambda ev: any(e["event"] == "authorized" and e["server"] != home for e in ev),
            "a grant from another server",
            proc,
        )
        moved = [e for e in _events(out) if e["event"] == "authorized" and e["server"] != home]
        # the first server of the walk may still refuse (the dead server's lease has not
        # run out yet: its seat cannot move yet), so the adopter is any of the walk's
        # live servers; the order of the asks is checked below
        adopter = moved[0]["server"]
        events = _events(out)
        turn = next(i for i, e in enumerate(events) if e["event"] == "failover")
        assert events[turn]["from"] == home
        asks = [e for e in events[turn:] if e["event"] == "ask"]
        # the walk: priority order, the dead server last, each a fail-over heartbeat with
        # the ticket
        walk = [sid for sid in pp.pool.ids if sid != home] + [home]
        assert [e["server"] for e in asks[: len(walk)]] == walk[: len(asks)]
        assert asks[0]["server"] == expected_next
        assert adopter in walk[:-1], (adopter, walk)
        assert all(e["failover"] and e["ticket"] for e in asks), asks
        pp.wait(
            lambda s: (
                [(c["server"], c["count"]) for c in clients_of(s, client_id)]
                == [(adopter, 1)]
            ),
            f"the node client held by {adopter}",
        )
        _wait_events(
            out,
            lambda ev: any(e["event"] == "renewed" and e["server"] == adopter for e in ev),
            f"a heartbeat answered by {adopter}",
            proc,
        )
        assert not any(e["event"] == "lost" for e in _events(out)), _events(out)
        for kinds in (("ask",), ("authorized", "renewed")):
            ids = [e["request_id"] for e in _events(out) if e["event"] in kinds]
            assert ids == sorted(set(ids)), f"request ids not increasing: {kinds} {ids}"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        released = [e for e in _events(out) if e["event"] == "released"]
        assert released == [{**released[0], "server": adopter, "answered": True}], _events(
            out
        )
        pp.wait(lambda s: not clients_of(s, client_id), "the node client's seat released")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed on this machine")
def test_node_client_follows_the_client_rules_vector() -> None:
    """The Node client's decisions on a virtual clock, against the same client-rules
    vector as the Python client machine (tests/protocol/test_vectors.py)."""
    assert NODE is not None
    here = Path(__file__).resolve().parent
    out = subprocess.run(
        [NODE, str(here / "node_client_rules.js"), str(here / "vectors" / "client_rules.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == "ok\n"
