"""`lm run` on real daemons: it holds exactly one seat while its command runs, releases it
after, exits with the command's status, passes signals through, and stops the command
when the seat is reclaimed (--on-loss term)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import APP, LM, Pool, all_up, held_total

pytestmark = pytest.mark.integration


def _rows(st: dict[str, Any], client_id: str) -> list[tuple[str, int]]:
    return [(c["server"], c["count"]) for c in st["clients"] if c["client_id"] == client_id]


def _start(pool: Pool, *args: str) -> tuple[subprocess.Popen[str], Path]:
    """`lm run ARGS` in the background (no terminal: signals are passed on), its stderr
    in a file (reaped in teardown)."""
    env = dict(os.environ, LM_POOL=str(pool.rlf_path))
    if pool.tls_dir is not None:
        env["LM_TLS_DIR"] = str(pool.tls_dir)
    err = pool.root / f"run-{len(pool.holders)}.err"
    with open(err, "w") as fh:
        proc = subprocess.Popen(
            [*LM, "run", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=fh,
            text=True,
            env=env,
        )
    _RUNS.append(proc)
    return proc, err


_RUNS: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap_runs() -> Iterator[None]:
    """Every `lm run` a test started is gone (killed if need be) and its pipe closed."""
    yield
    while _RUNS:
        proc = _RUNS.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_line(proc: subprocess.Popen[str], want: str) -> None:
    """Read the command's stdout until it prints `want` (it started, holding the seat)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == want, f"expected {want!r} from the command, got {line!r}"


@pytest.fixture
def pool(pool_factory: Callable[..., Pool]) -> Pool:
    p = pool_factory()
    for sid in p.ids:
        p.start(sid)
    p.wait(all_up, "three servers up with a leader")
    return p


def test_run_holds_one_seat_while_the_command_runs(pool: Pool, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    script = 'echo started; while [ ! -e "$1" ]; do sleep 0.05; done'
    proc, err = _start(
        pool, "--license", APP, "--client-id", "run-1", "--", "sh", "-c", script, "sh", str(stop)
    )
    _wait_line(proc, "started")
    began = time.monotonic()
    lease = pool.rlf.timing.client_lease
    # held -- and still held after more than a client lease: the heartbeats renew it
    pool.wait(
        lambda st: (
            time.monotonic() - began > 1.5 * lease
            and _rows(st, "run-1") != []
            and held_total(st) == 1
        ),
        "one seat held by run-1 for longer than a client lease",
    )
    st = pool.status()
    assert len(_rows(st, "run-1")) == 1
    assert _rows(st, "run-1")[0][1] == 1
    stop.touch()
    assert proc.wait(timeout=30) == 0, err.read_text()
    assert err.read_text() == ""  # nothing said when all goes well
    pool.wait(lambda st: _rows(st, "run-1") == [], "run-1's seat released")


def test_run_sleep_exits_zero_and_releases(pool: Pool) -> None:
    proc, err = _start(pool, "--license", APP, "--client-id", "run-sleep", "--", "sleep", "1")
    assert proc.wait(timeout=30) == 0, err.read_text()
    st = pool.wait(lambda st: _rows(st, "run-sleep") == [], "run-sleep's seat released")
    assert held_total(st) == 0


@pytest.mark.parametrize(
    ("script", "status"),
    [("exit 7", 7), ("exit 0", 0), ("kill -KILL $$", 128 + 9), ("kill -TERM $$", 128 + 15)],
)
def test_run_exit_status_passthrough(pool: Pool, script: str, status: int) -> None:
    cid = f"run-exit-{status}"
    proc, err = _start(pool, "--license", APP, "--client-id", cid, "--", "sh", "-c", script)
    assert proc.wait(timeout=30) == status, err.read_text()
    pool.wait(lambda st: _rows(st, cid) == [], f"{cid}'s seat released")


def test_run_command_not_found_releases(pool: Pool) -> None:
    proc, err = _start(
        pool, "--license", APP, "--client-id", "run-nf", "--", "/nonexistent/tool", "-x"
    )
    assert proc.wait(timeout=30) == 127
    assert err.read_text().strip().splitlines() == ["lm run: /nonexistent/tool: command not found"]
    pool.wait(lambda st: _rows(st, "run-nf") == [], "run-nf's seat released")


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 42), (signal.SIGINT, 43), (signal.SIGHUP, 44)]
)
def test_run_passes_signals_to_the_command(pool: Pool, sig: int, code: int) -> None:
    cid = f"run-sig-{int(sig)}"
    name = signal.Signals(sig).name[3:]
    script = f'trap "exit {code}" {name}; echo ready; while :; do sleep 0.05; done'
    proc, err = _start(pool, "--license", APP, "--client-id", cid, "--", "sh", "-c", script)
    _wait_line(proc, "ready")
    pool.wait(lambda st: _rows(st, cid) != [], f"{cid} holds")
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == code, err.read_text()
    pool.wait(lambda st: _rows(st, cid) == [], f"{cid}'s seat released")


def test_run_denied_at_start_is_one_line(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    out = pool.lm("run", "--license", "Nothing 9.9", "--", "sh", "-c", "echo ran")
    assert out.returncode == 1
    assert out.stdout == ""  # the command never ran
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "unknown_license" in lines[0]


@pytest.mark.parametrize(("on_loss", "sig"), [("term", signal.SIGTERM), ("kill", signal.SIGKILL)])
def test_run_reclaimed_on_loss_stops_the_command(pool: Pool, on_loss: str, sig: int) -> None:
    cid = f"run-r-{on_loss}"
    proc, err = _start(
        pool, "--license", APP, "--client-id", cid, "--on-loss", on_loss, "--", "sleep", "600"
    )
    pool.wait(lambda st: _rows(st, cid) != [], f"{cid} holds")
    out = pool.lm("key", "release", "--client-id", cid, "--license", APP, "--reason", "test")
    assert out.returncode == 0, out.stderr
    assert proc.wait(timeout=30) == 128 + sig, err.read_text()
    text = err.read_text()
    assert "lost for good (reclaimed" in text, text
    assert f"--on-loss {on_loss}" in text, text
    pool.wait(lambda st: _rows(st, cid) == [], f"{cid} holds nothing")


def test_run_signal_while_waiting_for_a_seat(pool: Pool) -> None:
    """--wait with more seats than the pool has: a SIGTERM ends the wait, the command
    never runs, nothing is held."""
    proc, err = _start(
        pool, "--license", APP, "--client-id", "run-wait", "--count", "101", "--wait",
        "--", "sh", "-c", "echo ran",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "waiting for one" not in err.read_text():
        assert proc.poll() is None, err.read_text()
        assert time.monotonic() < deadline, "lm run never said it waits"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM, err.read_text()
    assert proc.stdout is not None
    assert proc.stdout.read() == ""
    assert held_total(pool.status()) == 0


def test_run_reclaimed_on_loss_warn_lets_the_command_finish(pool: Pool, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    script = 'echo started; while [ ! -e "$1" ]; do sleep 0.05; done; exit 3'
    proc, err = _start(
        pool, "--license", APP, "--client-id", "run-w", "--", "sh", "-c", script, "sh", str(stop)
    )
    _wait_line(proc, "started")
    pool.wait(lambda st: _rows(st, "run-w") != [], "run-w holds")
    out = pool.lm("key", "release", "--client-id", "run-w", "--license", APP, "--reason", "test")
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 30
    while "lost for good" not in err.read_text():
        assert proc.poll() is None, "the command was stopped under --on-loss warn"
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    assert proc.poll() is None
    stop.touch()
    assert proc.wait(timeout=30) == 3, err.read_text()
