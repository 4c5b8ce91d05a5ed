"""What a site relies on, on real daemons: `lm status` exit codes and named TLS failures,
`lm rlf pull`, and `lm client hold --wait` ending cleanly on a signal."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lm_core.engine.rlf import parse_rlf
from lm_core.runtime import pki
from lm_core.runtime.localpool import write_tls
from lm_core.runtime.store import DB_NAME

from .conftest import APP, LM, Pool, all_up, held_total

pytestmark = pytest.mark.integration


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(0.05)


def _denials(pool: Pool, client_id: str) -> int:
    """Denials of `client_id` in the servers' usage logs (read from their SQLite files)."""
    total = 0
    for sid in pool.ids:
        path = pool.data_dir(sid) / DB_NAME
        if not path.exists():
            continue
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            total += conn.execute(
                "SELECT COALESCE(SUM(attempts), 0) FROM usage WHERE kind = 'deny' "
                "AND client_id = ?",  # one row per wait, its refusals counted in `attempts`
                (client_id,),
            ).fetchone()[0]
        finally:
            conn.close()
    return total


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_hold_wait_ends_on_a_signal_and_shows_denials_once(
    pool_factory: Callable[..., Pool], sig: int, code: int
) -> None:
    pool = pool_factory(seats=1, dist={"A": 1, "B": 0, "C": 0})
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    pool.hold("--license", APP, "--client-id", "first", "--seconds", "600")
    pool.wait(lambda st: held_total(st) == 1, "the one seat is held")
    waiter = pool.hold("--license", APP, "--client-id", "waiter", "--wait")
    out = pool.root / f"hold-{len(pool.holders) - 1}.log"
    # a walk over the servers logs up to one denial per server: 8 rows is several walks
    _wait_for(lambda: _denials(pool, "waiter") >= 8, "the waiter was denied again and again", 40)
    waiter.send_signal(sig)
    assert waiter.wait(timeout=20) == code
    text = out.read_text()
    lines = [line for line in text.splitlines() if line.startswith("denied by the pool")]
    assert len(lines) == 1, text
    assert "... denied" in text, text
    assert f"stopped by signal {sig}" in text
    assert "Traceback" not in text
    # the first holder still holds; nothing was granted to the waiter
    st = pool.wait(lambda st: held_total(st) == 1, "still one seat held")
    assert [c["client_id"] for c in st["clients"]] == ["first"]


def test_hold_releases_its_seat_on_sigterm(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    holder = pool.hold("--license", APP, "--client-id", "h1", "--count", "2")
    pool.wait(lambda st: held_total(st) == 2, "two seats held")
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=20) == 143
    pool.wait(lambda st: held_total(st) == 0, "the seats were released")


def _lm_with(pool: Pool, *args: str, tls_dir: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LM_TLS_DIR"}
    env["LM_POOL"] = str(pool.rlf_path)
    cmd = [*LM, *args] + (["--tls-dir", str(tls_dir)] if tls_dir is not None else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def _expired_copy(tls_dir: Path, out: Path) -> Path:
    """A copy of the TLS directory whose admin certificate expired last week."""
    shutil.copytree(tls_dir, out)
    ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    key, cert = pki.make_leaf(ca_key, ca_cert, role="admin", name="admin", pool="itest",
                              now=past, days=3)  # fmt: skip
    (out / "admin.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "admin.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out


def test_status_exit_codes_and_named_tls_failures(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    assert pool.tls_dir is not None
    ok = _lm_with(pool, "status", "--json", tls_dir=pool.tls_dir)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tls_error"] is None

    # No --tls-dir against a TLS pool: not "every server down", but "needs TLS".
    plain = _lm_with(pool, "status", tls_dir=None)
    assert plain.returncode == 1
    assert "no TLS: the server requires TLS" in plain.stdout + plain.stderr
    # Another pool's CA.
    other = write_tls(pool.root / "other-tls", pool.rlf)
    wrong = _lm_with(pool, "status", "--json", tls_dir=other)
    assert wrong.returncode == 1
    data = json.loads(wrong.stdout)
    assert data["tls_error"].startswith("wrong CA: the server's certificate is not signed by")
    assert all(s["tls_error"] == data["tls_error"] for s in data["servers"])
    # An expired admin certificate.
    expired = _lm_with(
        pool, "status", tls_dir=_expired_copy(pool.tls_dir, pool.root / "expired-tls")
    )
    assert expired.returncode == 1
    assert "expired certificate:" in expired.stdout, _lm_with(
        pool, "status", "--json", tls_dir=pool.root / "expired-tls"
    ).stdout
    assert "admin.pem (admin) expired on" in expired.stdout
    # A missing certificate is bad input, named: exit 2, JSON with --json.
    missing = shutil.copytree(pool.tls_dir, pool.root / "missing-tls")
    (missing / "admin.pem").unlink()
    gone = _lm_with(pool, "status", "--json", tls_dir=missing)
    assert gone.returncode == 2
    err = json.loads(gone.stdout)
    assert err["file"] == str(missing / "admin.pem")
    assert "certificate file missing" in err["error"]

    # Majority lost: exit 1 even though a server answers.
    pool.kill("B")
    pool.kill("C")
    _wait_for(
        lambda: _lm_with(pool, "status", "--json", tls_dir=pool.tls_dir).returncode == 1,
        "status says the pool is not serving",
    )
    lost = _lm_with(pool, "status", tls_dir=pool.tls_dir)
    assert lost.returncode == 1
    assert "NOT SERVING" in lost.stderr
    # ... and serving again once a majority is back (--wait waits for it).
    pool.start("B")
    back = _lm_with(pool, "status", "--wait", "30", tls_dir=pool.tls_dir)
    assert back.returncode == 0, back.stdout + back.stderr


def test_pull_refuses_a_stale_file_and_writes_the_live_config(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    assert pool.lm("dist", "set", APP, "A:20,B:40,C:40").returncode == 0
    out = pool.root / "live.rlf"
    done = pool.lm("rlf", "pull", "--out", str(out), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["sequence"] == pool.rlf.sequence + 1
    live = parse_rlf(out.read_text())
    assert live.signature is None
    assert live.distribution[APP] == {"A": 20, "B": 40, "C": 40}
    again = pool.lm("rlf", "pull", "--out", str(out))
    assert again.returncode == 2
    assert "already exists" in again.stderr
    # A file that is not the RLF the pool runs is refused, naming its sequence.
    stale = pool.signed(
        dataclasses.replace(pool.rlf, sequence=pool.rlf.sequence + 1, signature=None),
        pool.root / "stale.rlf",
    )
    wrong = pool.lm("rlf", "pull", "--pool", str(stale), "--out", str(pool.root / "x.rlf"))
    assert wrong.returncode == 2
    assert "sequence: the pool runs RLF sequence 3, this file is sequence 4" in wrong.stderr
