"""`lm-tui --pool pool.rlf [--tls-dir tls/] [--read-only]`: check the input, then run the app.

Every argument, the pool file and the TLS directory are checked before `App.run()`, so a
script or a typo gets one line on stderr and exit code 2, never a traceback from the
terminal driver.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"lm-tui: {message} (see lm-tui --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lm-tui",
        description="Live operator console for an lm license pool: servers, distribution "
        "tables, key table, events; add codes, add allocations, change the distribution, "
        "push an RLF.",
        epilog="example: lm-tui --pool pool.rlf --tls-dir tls/   (keys: ? for help, q to quit)",
    )
    parser.add_argument(
        "--pool",
        default=os.environ.get("LM_POOL"),
        help="the pool's RLF file (env LM_POOL)",
    )
    parser.add_argument(
        "--tls-dir",
        default=os.environ.get("LM_TLS_DIR"),
        help="directory with the pool CA and the admin certificate (env LM_TLS_DIR); "
        "without it, plaintext (loopback pools only)",
    )
    parser.add_argument("--read-only", action="store_true", help="watch only: no actions")
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between status polls (default 0.5)"
    )
    parser.add_argument("--push-file", default="", help="path pre-filled in the push-RLF dialog")
    parser.add_argument(
        "--notice", default="", help="a line shown as a notice at start-up (used by lm demo)"
    )
    parser.add_argument("--replay", default=None, help=argparse.SUPPRESS)
    from lm_core.version import version_line

    parser.add_argument("--version", action="version", version=version_line("lm-tui"))
    return parser


def _fail(message: str) -> NoReturn:
    print(f"lm-tui: {message}", file=sys.stderr)
    raise SystemExit(2)


def prepare(argv: list[str] | None = None) -> Any:
    """Parse and check everything; return the app, ready to run. Exits 2 on bad input."""
    from lm_core.errors import LmError

    args = build_parser().parse_args(argv)
    if args.interval <= 0:
        _fail(f"--interval: must be positive, got {args.interval}")
    if args.replay is not None:
        from lm_tui.source import RecordedSource

        try:
            source: Any = RecordedSource.from_file(Path(args.replay))
        except (OSError, ValueError) as exc:
            _fail(f"{args.replay}: {exc}")
        return _make_app(source, args, pool_name="replay", rlf_text=None)
    if not args.pool:
        _fail("no pool: give --pool FILE or set LM_POOL")
    from lm_core.engine.rlf import parse_rlf

    path = Path(args.pool)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        _fail(f"{path}: not a text file")
    try:
        rlf = parse_rlf(text, file=str(path))
    except LmError as exc:
        _fail(str(exc))
    tls = None
    if args.tls_dir:
        from lm_core.runtime.tlsconfig import load_tls_dir

        tls_dir = Path(args.tls_dir)
        if not tls_dir.is_dir():
            _fail(f"{tls_dir}: --tls-dir is not a directory")
        try:
            tls = load_tls_dir(tls_dir, "admin")
        except LmError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{tls_dir}: {exc.strerror or exc}")
    from lm_tui.source import AdminSource

    try:
        source = AdminSource(rlf, tls=tls)
    except LmError as exc:
        _fail(str(exc))
    return _make_app(source, args, pool_name=rlf.pool, rlf_text=text)


def _make_app(
    source: Any, args: argparse.Namespace, *, pool_name: str, rlf_text: str | None
) -> Any:
    from lm_tui.app import LmTuiApp

    return LmTuiApp(
        source,
        pool_name=pool_name,
        rlf_text=rlf_text,
        read_only=args.read_only,
        interval=args.interval,
        push_path=args.push_file,
        notice=args.notice,
    )


def main(argv: list[str] | None = None) -> None:
    app = prepare(argv)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        _fail(
            "needs an interactive terminal (stdin/stdout is not a TTY); use `lm status` in scripts"
        )
    try:
        code = app.run()
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code or 0)


if __name__ == "__main__":
    main()
