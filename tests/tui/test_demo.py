"""`lm demo --no-tui`: one command brings up three real daemons and simulated clients on
loopback, prints where to point lm-tui and lm status, and stops everything on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_demo_no_tui_runs_pool_and_clients_then_stops() -> None:
    with subprocess.Popen(
        [str(BIN / "lm"), "demo", "--no-tui", "--clients", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        _drive(proc)


def _drive(proc: subprocess.Popen[str]) -> None:
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while not any(ln.startswith("lm demo: running") for ln in lines):
            line = proc.stdout.readline()
            assert line, "lm demo exited early:\n" + "".join(lines)
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        text = "".join(lines)
        pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
        assert len(pids) == 3
        status_cmd = re.search(r"status:\s+lm (status .*)", text)
        assert status_cmd is not None
        args = [*status_cmd.group(1).split(), "--json"]
        held: dict[str, object] = {}
        for _ in range(300):  # the simulated clients take seats within seconds
            out = subprocess.run(
                [str(BIN / "lm"), *args], capture_output=True, text=True, timeout=60
            )
            # exit 1 (and the status on stdout) until a leader serves
            assert out.returncode in (0, 1), out.stderr
            status = json.loads(out.stdout)
            if out.returncode == 0 and status["leader"] == "A" and status["clients"]:
                held = status
                break
            time.sleep(0.1)
        assert held, "no simulated client ever held a seat"
        assert {c["client_id"] for c in held["clients"]} <= {"ws-01", "ws-02", "ws-03", "ws-04"}
        root = Path(re.search(r"in (/\S+)", text).group(1))  # type: ignore[union-attr]
        assert (root / "next.rlf").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for _ in range(100):
            if not any(_alive(pid) for pid in pids):
                break
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in pids), "a daemon outlived lm demo"
        assert not root.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_without_a_terminal_says_use_no_tui() -> None:
    out = subprocess.run(
        [str(BIN / "lm"), "demo"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().endswith(
        "the console needs an interactive terminal; use `lm demo --no-tui` in scripts"
    )
    assert "Traceback" not in out.stderr
