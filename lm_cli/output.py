"""Shared helpers for every `lm` command module.

Use them like this::

    from lm_cli.output import JsonOpt, PoolOpt, handle_errors, load_pool, print_json

    @app.command("status")
    @handle_errors
    def status(pool: PoolOpt = None, json_out: JsonOpt = False) -> None:
        \"\"\"Show the pool. Example: lm status --pool pool.rlf --json\"\"\"
        rlf = load_pool(pool)          # --pool FILE or $LM_POOL, parsed and verified
        ...
        print_json(data) if json_out else console().print(table)

`handle_errors` turns the project's errors into exit codes with one line on stderr and no
traceback: `InputError` -> 2, any other `LmError` (e.g. `RefusedError`) -> 1. When the
command was given `--json` (its parameter is named `json_out`), the error goes to stdout
as one JSON object instead: ``{"error": ..., "file": ..., "line": ..., "field": ...}``.
Files are read with `read_text` (bounded, regular files only; any problem -> exit 2) and
written with `write_atomic` (temp file, fsync, rename; `private=True` gives mode 0600).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from rich.console import Console

from lm_core.engine import limits
from lm_core.engine.keys import load_private, load_public
from lm_core.engine.rlf import Rlf, parse_rlf, verify_rlf
from lm_core.errors import InputError, LmError
from lm_core.runtime.userfile import read_user_file

P = ParamSpec("P")
R = TypeVar("R")

POOL_ENV = "LM_POOL"

PoolOpt = Annotated[
    Path | None,
    typer.Option(
        "--pool",
        envvar=POOL_ENV,
        help="The pool's RLF file (or set LM_POOL).",
        show_default=False,
        readable=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for a command: `InputError` -> one line on stderr, exit 2; other `LmError`
    (e.g. `RefusedError`) -> exit 1; Ctrl-C -> exit 130. Never a traceback.

    Put it *under* ``@app.command(...)`` so Typer sees the wrapped signature."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        as_json = kwargs.get("json_out") is True
        try:
            return fn(*args, **kwargs)
        except InputError as err:
            if as_json:
                json_error(err.message, file=err.file, line=err.line, field=err.field)
            else:
                error_line(str(err))
            raise typer.Exit(code=2) from None
        except LmError as err:
            if as_json:
                json_error(str(err), refused=True)
            else:
                error_line(str(err))
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            if as_json:
                json_error("interrupted")
            else:
                error_line("interrupted")
            raise typer.Exit(code=130) from None

    return wrapper


def json_error(
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    field: str | None = None,
    refused: bool = False,
) -> None:
    """Print an error as one JSON object on stdout (what `--json` callers parse)."""
    data: dict[str, Any] = {"error": message, "file": file, "line": line, "field": field}
    if refused:
        data["refused"] = True
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def error_line(message: str) -> None:
    """Print ``error: message`` as one line on stderr."""
    flat = " ".join(message.split("\n"))
    print(f"error: {flat}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print ``warning: message`` as one line on stderr."""
    flat = " ".join(message.split("\n"))
    print(f"warning: {flat}", file=sys.stderr, flush=True)


def console() -> Console:
    """A rich console on the current stdout (no colour when it is not a terminal)."""
    return Console(highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout (dates become ISO strings)."""

    def default(obj: object) -> str:
        if isinstance(obj, (datetime.date, Path)):
            return str(obj)
        raise TypeError(f"not JSON: {type(obj).__name__}")

    sys.stdout.write(json.dumps(data, indent=2, default=default) + "\n")
    sys.stdout.flush()


def read_text(
    path: str | os.PathLike[str], *, what: str = "file", limit: int = limits.FILE_BYTES_MAX
) -> str:
    """Read a user's UTF-8 text file (`lm_core.runtime.userfile`): a missing, unreadable,
    non-regular (directory, FIFO, device) or oversized file is an `InputError` (exit 2)."""
    return read_user_file(path, what=what, limit=limit)


def write_atomic(path: str | os.PathLike[str], text: str, *, private: bool = False) -> None:
    """Write `text` to `path` atomically: temp file in the same folder, fsync, rename,
    fsync the folder. `private=True` creates the file with mode 0600."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", file=str(path)) from None
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write: {err.strerror}", file=str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_rlf(path: str | os.PathLike[str]) -> tuple[Rlf, str]:
    """Read and parse (not verify) an RLF file; returns (rlf, text)."""
    text = read_text(path, what="RLF")
    return parse_rlf(text, file=str(path)), text


def load_pool(path: str | os.PathLike[str] | None, *, verify: bool = True) -> Rlf:
    """The pool's RLF from `path` (a `--pool` value) or $LM_POOL: parsed and, unless
    `verify=False`, its admin and vendor signatures verified. Raises `InputError`."""
    if path is None:
        env = os.environ.get(POOL_ENV)
        if not env:
            raise InputError(f"no pool given: pass --pool FILE or set {POOL_ENV}")
        path = env
    rlf, text = read_rlf(path)
    if verify:
        verify_rlf(rlf, file=str(path), text=text)
    return rlf


def load_private_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key file (`lm vendor keygen` / `lm admin keygen`)."""
    text = read_text(path, what="key file", limit=limits.KEY_FILE_BYTES_MAX)
    return load_private(text, file=str(path))


def load_public_file(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """An Ed25519 public key from a .pub file."""
    text = read_text(path, what="public key file", limit=limits.KEY_FILE_BYTES_MAX)
    return load_public(text, file=str(path))


_DIST_ITEM = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*[:=]\s*(-?\d+)\s*")


def parse_dist(text: str, *, option: str = "distribution") -> dict[str, int]:
    """``"A:40,B:30,C:30"`` -> {"A": 40, "B": 30, "C": 30}; raises `InputError`."""
    out: dict[str, int] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        match = _DIST_ITEM.fullmatch(item)
        if not match:
            raise InputError(f"expected SERVER:SEATS[,SERVER:SEATS...], got {item.strip()!r}",
                             field=option)  # fmt: skip
        sid, digits = match.group(1), match.group(2)
        if len(digits.lstrip("-")) > 10 or abs(int(digits)) > limits.HARD_LIMIT_MAX:
            raise InputError(f"{sid}: seats must be 0..{limits.HARD_LIMIT_MAX}", field=option)
        count = int(digits)
        if sid in out:
            raise InputError(f"server {sid!r} given twice", field=option)
        out[sid] = count
    if not out:
        raise InputError("empty distribution (use e.g. A:40,B:30,C:30)", field=option)
    return out


def parse_date(text: str, *, option: str) -> datetime.date:
    """``YYYY-MM-DD`` -> date; raises `InputError` naming the option."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            return datetime.date.fromisoformat(text.strip())
    except ValueError:
        pass
    raise InputError(f"expected a date YYYY-MM-DD, got {text!r}", field=option)


def today_utc() -> datetime.date:
    """Today's date in UTC (codes expire at the end of their date)."""
    return datetime.datetime.now(datetime.UTC).date()
