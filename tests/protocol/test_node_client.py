"""The Node.js client in contrib/node-client (written from docs/PROTOCOL.md alone) against
a real TLS daemon pool: it holds a seat, heartbeats, fails over to the next server in
priority order when its server is killed, and releases; the pool's status shows each
step."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lm_core.runtime.localpool import APP

from .conftest import ProtocolPool, clients_of

pytestmark = pytest.mark.integration

NODE = shutil.which("node")
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
        assert moved[0]["server"] == expected_next, "not the next server in priority order"
        assert any(e["event"] == "failover" and e["from"] == home for e in _events(out))
        pp.wait(
            lambda s: (
                [(c["server"], c["count"]) for c in clients_of(s, client_id)]
                == [(expected_next, 1)]
            ),
            f"the node client held by {expected_next}",
        )
        _wait_events(
            out,
            lambda ev: any(e["event"] == "renewed" and e["server"] == expected_next for e in ev),
            f"a heartbeat answered by {expected_next}",
            proc,
        )
        assert not any(e["event"] == "lost" for e in _events(out)), _events(out)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        released = [e for e in _events(out) if e["event"] == "released"]
        assert released == [{**released[0], "server": expected_next, "answered": True}], _events(
            out
        )
        pp.wait(lambda s: not clients_of(s, client_id), "the node client's seat released")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
