"""`lm-daemon` start-up refusals: one clear line on stderr, exit 2, nothing reset."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lm_core.engine.keys import load_private
from lm_core.engine.rlf import ServerEntry, render_rlf, sign_rlf
from lm_core.runtime.store import Store

from .conftest import DAEMON, Pool

pytestmark = pytest.mark.integration


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def _refused(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("lm-daemon: ")
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0]


def test_help() -> None:
    out = _run([*DAEMON, "--help"])
    assert out.returncode == 0
    assert "--server-id" in out.stdout
    assert "example:" in out.stdout


def test_garbage_rlf(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    pool.rlf_path.write_text("this is [not an rlf\n")
    _refused(_run(pool.daemon_args("A")), str(pool.rlf_path))


def test_tampered_rlf(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    text = pool.rlf_path.read_text()
    tampered = text.replace("borrowing_threshold = 0.8", "borrowing_threshold = 0.9")
    assert tampered != text
    pool.rlf_path.write_text(tampered)
    _refused(_run(pool.daemon_args("A")), "signature")


def test_unsigned_rlf(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    pool.rlf_path.write_text(render_rlf(dataclasses.replace(pool.rlf, signature=None)))
    _refused(_run(pool.daemon_args("A")), "signature")


def test_server_id_not_in_rlf(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    _refused(_run(pool.daemon_args("Z")), "'Z'", "A, B, C")


def test_plaintext_refuses_non_loopback(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    far = dataclasses.replace(
        pool.rlf,
        servers=(*pool.rlf.servers[:2], ServerEntry(id="C", host="10.1.2.3", port=27003)),
        signature=None,
    )
    path = pool.root / "far.rlf"
    path.write_text(render_rlf(sign_rlf(far, load_private(pool.admin_private))))
    _refused(_run(pool.daemon_args("A", rlf_path=path)), "10.1.2.3", "--tls-dir")


def test_missing_tls_files(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=True)
    assert pool.tls_dir is not None
    (pool.tls_dir / "server-B.key").unlink()
    _refused(_run(pool.daemon_args("B")), "server-B.key")


def test_foreign_data_dir(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    Store.open(pool.data_dir("A"), pool="otherpool", server_id="A").close()
    _refused(_run(pool.daemon_args("A")), "belongs to pool 'otherpool'")
    # and it was not reset
    store = Store.open(pool.data_dir("A"), pool="otherpool", server_id="A")
    store.close()


def test_data_dir_of_another_server(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    Store.open(pool.data_dir("A"), pool=pool.rlf.pool, server_id="B").close()
    _refused(_run(pool.daemon_args("A")), "belongs to server 'B'")


def test_corrupted_data_dir(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    data = pool.data_dir("A")
    data.mkdir(parents=True)
    (data / "lm.sqlite3").write_bytes(b"\x00garbage" * 100)
    _refused(_run(pool.daemon_args("A")), "not an lm-daemon store")
    assert (data / "lm.sqlite3").read_bytes() == b"\x00garbage" * 100


def test_neither_tls_nor_plaintext(pool_factory: Callable[..., Pool], tmp_path: Path) -> None:
    pool = pool_factory(tls=False)
    args = [a for a in pool.daemon_args("A") if a != "--insecure-loopback"]
    out = _run(args)
    assert out.returncode == 2
    assert "--tls-dir" in out.stderr
    assert "Traceback" not in out.stderr
