"""`lm-daemon backup` and `lm-daemon restore`: look after a server's data directory while
its daemon runs or is stopped (`lm_core.runtime.startup.main` hands these sub-commands
here; everything else starts a daemon).

    lm-daemon backup  --data-dir /var/lib/lm/A --out A-2026-11-02.sqlite3
    lm-daemon restore --data-dir /var/lib/lm/A --from A-2026-11-02.sqlite3

`backup` uses SQLite's online backup API, so it is safe while the daemon runs; `restore`
needs the daemon stopped (it takes the data directory's lock) and keeps the store it
replaces beside it. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lm_core.runtime import store

# What `lm-daemon --help` adds after the daemon's own options.
COMMANDS_HELP = """other commands:
  lm-daemon backup  --data-dir DIR --out FILE [--force]   copy the store (daemon may run)
  lm-daemon restore --data-dir DIR --from FILE [--force]  put a backup back (daemon stopped)
  lm-daemon --version                                     print the version
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _backup_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="lm-daemon backup",
        description="Copy a server's store into one file (SQLite online backup; the daemon "
        "may keep running).",
        epilog="example: lm-daemon backup --data-dir /var/lib/lm/A --out /srv/backup/A.sqlite3",
    )
    p.add_argument("--data-dir", required=True, type=Path, help="the server's data directory")
    p.add_argument("--out", required=True, type=Path, help="the backup file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    return p


def _restore_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="lm-daemon restore",
        description="Put a backup back as a server's store. Stop the daemon first; the store "
        "it replaces is kept as lm.sqlite3.before-restore-<time> in the data directory. An "
        "older schema is migrated when the daemon next starts.",
        epilog="example: lm-daemon restore --data-dir /var/lib/lm/A --from /srv/backup/A.sqlite3",
    )
    p.add_argument("--data-dir", required=True, type=Path, help="the server's data directory")
    p.add_argument(
        "--from", dest="src", required=True, type=Path, help="a file from lm-daemon backup"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="restore even if the backup or the data dir belongs to another pool/server",
    )
    return p


def _fail(message: str) -> NoReturn:
    print(f"lm-daemon: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str]) -> bool:
    """Run `argv` if it is a data-directory command (`backup ...`, `restore ...`); False
    when it is not (the caller starts a daemon)."""
    if argv[:1] == ["backup"]:
        backup_main(argv[1:])
        return True
    if argv[:1] == ["restore"]:
        restore_main(argv[1:])
        return True
    return False


def backup_main(argv: Sequence[str]) -> None:
    args = _backup_parser().parse_args(argv)
    try:
        info = store.backup(args.data_dir, args.out, force=args.force)
    except store.StoreError as exc:
        _fail(str(exc))
    print(
        f"backed up {args.data_dir} (pool {info.pool!r}, server {info.server_id!r}, schema "
        f"{info.schema_version}, {info.keys} authorizations) to {info.path}"
    )


def restore_main(argv: Sequence[str]) -> None:
    args = _restore_parser().parse_args(argv)
    try:
        info, kept = store.restore(args.data_dir, args.src, force=args.force)
    except store.StoreError as exc:
        _fail(str(exc))
    print(
        f"restored {args.src} (pool {info.pool!r}, server {info.server_id!r}, schema "
        f"{info.schema_version}, {info.keys} authorizations) into {args.data_dir}"
        + (f"; the store it replaced is kept as {kept}" if kept else "")
    )
