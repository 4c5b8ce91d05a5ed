"""Issue 9, item 8: bad files and bad ports get one line and exit 2 from every command
that reads them -- never a traceback, a hang, a MemoryError or Typer's usage box."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lm_core.engine import limits

from .conftest import Lm

LM = [sys.executable, "-c", "from lm_cli.main import main; main()"]

# Every command that reads a user file, with {} where the file goes.
READERS = [
    ("rlf", "verify", "{}"),
    ("rlf", "show", "{}"),
    ("rlf", "sign", "{}", "--key", "admin.key"),
    ("rlf", "sign", "pool.rlf", "--key", "{}"),
    ("rlf", "verify", "pool.rlf", "--admin-key", "{}"),
    ("code", "verify", "CODE", "--vendor-key", "{}"),
]


def _bad_files(tmp: Path) -> dict[str, str]:
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    big = tmp / "big.rlf"
    big.write_bytes(b"#" * (limits.FILE_BYTES_MAX + 1))
    (tmp / "folder").mkdir()
    (tmp / "latin1.rlf").write_bytes(b'pool = "caf\xe9"\n')
    return {
        str(fifo): "FIFO (named pipe), not a regular file",
        "/dev/zero": "character device, not a regular file",
        str(tmp / "folder"): "directory, not a regular file",
        str(big): "larger than",
        str(tmp / "latin1.rlf"): "not UTF-8 text",
        str(tmp / "missing.rlf"): "not found",
    }


@pytest.mark.parametrize("argv", READERS, ids=lambda a: " ".join(a))
def test_every_reader_refuses_non_regular_huge_and_missing_files(
    pool: tuple[Lm, str], tmp_path: Path, argv: tuple[str, ...]
) -> None:
    lm, code = pool
    for path, message in _bad_files(tmp_path).items():
        args = [path if a == "{}" else code if a == "CODE" else a for a in argv]
        key_slot = argv[argv.index("{}") - 1] in ("--key", "--admin-key", "--vendor-key")
        if "larger" in message and key_slot:
            message = f"larger than {limits.KEY_FILE_BYTES_MAX:,} bytes"
        result = lm(*args, code=2)
        assert result.stderr.startswith(f"error: {path}: "), result.stderr
        assert message in result.stderr, (args, result.stderr)


def test_stdin_is_bounded(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    result = lm("code", "show", "-", code=2, stdin="A" * (limits.CODE_TEXT_MAX * 2 + 1))
    assert "license code is larger than" in result.stderr


@pytest.mark.parametrize(
    "port", ["\u00b2", "\uff12\uff17\uff10\uff10\uff11", "\u0662\u0667\u0660\u0660\u0661", "27 01"]
)
def test_ports_are_ascii_digits_only(pool: tuple[Lm, str], port: str) -> None:
    """A superscript, fullwidth or Arabic-Indic digit passes str.isdigit(); not here."""
    lm, _ = pool
    text = Path("pool.rlf").read_text()
    line = text.splitlines().index('address = "127.0.0.1:27002"') + 1
    Path("bad.rlf").write_text(text.replace("127.0.0.1:27002", f"127.0.0.1:{port}"))
    for args in (("rlf", "verify", "bad.rlf"), ("rlf", "show", "bad.rlf")):
        result = lm(*args, code=2)
        assert result.stderr.startswith(f"error: bad.rlf:{line}: servers[1].address: ")
        assert "ASCII port" in result.stderr
    result = lm("rlf", "new", "new.rlf", "--name", "eng", "--server", f"A=127.0.0.1:{port}",
                "--server", "B=127.0.0.1:2", "--server", "C=127.0.0.1:3", code=2)  # fmt: skip
    assert "--server A" in result.stderr


def test_distribution_counts_are_bounded(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    result = lm("rlf", "set-dist", "pool.rlf", "Application 1.0", "A:" + "9" * 30, code=2)
    assert f"seats must be 0..{limits.HARD_LIMIT_MAX}" in result.stderr


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv"
)
def test_unreadable_file_is_one_line_not_a_usage_box(pool: tuple[Lm, str], tmp_path: Path) -> None:
    """Typer checks `readable` itself and prints a five-line box; we read and say why."""
    secret = tmp_path / "secret.rlf"
    shutil.copy("pool.rlf", secret)
    secret.chmod(0)
    tmp_path.chmod(0o755)
    cmd = LM
    if os.geteuid() == 0:  # root reads anything: run as nobody
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *LM]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for args in (["rlf", "verify", str(secret)], ["status", "--pool", str(secret)]):
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"error: {secret}: cannot read RLF: permission denied\n"
