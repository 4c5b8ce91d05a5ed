"""`lm-daemon` start-up: arguments, logging, every check before the daemon serves.
(`lm-daemon backup|restore` are handed to `store_cmd`; `lm-daemon --version` prints the
installed version.)

Start-up refuses (one line, exit 2) a bad or unsigned RLF, a server id missing from it,
a foreign or damaged data directory, missing TLS files, and plaintext to a non-loopback
address; a listen failure or a store failure exits 1. SIGTERM/SIGINT stop the daemon
(`Daemon.stop`), exit 0.

The log goes to stderr, one line per record, through `logsafe.SafeFormatter`: whatever
a peer put into a message is escaped, so no input can start a line of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.sslproto
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lm_core.engine.rlf import Rlf, parse_rlf, render_rlf, verify_rlf
from lm_core.errors import InputError, LmError
from lm_core.runtime import store_cmd, tlsconfig
from lm_core.runtime.connection import Budgets, is_loopback
from lm_core.runtime.daemon import Daemon, StoreFailed
from lm_core.runtime.logsafe import SafeFormatter
from lm_core.runtime.metrics import MetricsBindError
from lm_core.runtime.store import Loaded, Store, StoreError
from lm_core.runtime.userfile import read_user_file
from lm_core.version import version_line

log = logging.getLogger("lm.daemon")

TLS_READ_BUFFER = 32 * 1024


class StartupError(InputError):
    """The daemon cannot start with these arguments (one line, exit 2)."""


def load_rlf(path: Path) -> tuple[Rlf, str]:
    """Read, parse and verify the RLF at `path` (InputError naming the file)."""
    text = read_user_file(path, what="RLF")  # bounded, regular files only
    rlf = parse_rlf(text, file=str(path))
    verify_rlf(rlf, file=str(path), text=text)
    return rlf, text


def choose_rlf(given: Rlf, stored: tuple[int, str] | None, where: str) -> Rlf:
    """The RLF to run with: the given one, unless the data dir holds a newer one that the
    same admin key signed (a server that comes back with a newer RLF pushes it: S5)."""
    if stored is None:
        return given
    try:
        old = parse_rlf(stored[1], file=f"{where} (stored RLF)")
        verify_rlf(old)
    except InputError as exc:
        raise StoreError(f"stored RLF does not verify: {exc}", file=where) from None
    if old.pool != given.pool:
        raise StoreError(f"stored RLF is for pool {old.pool!r}, not {given.pool!r}", file=where)
    if old.admin_key != given.admin_key:
        raise StartupError(
            f"signed by admin key {given.admin_key}, but this server's stored RLF "
            f"(seq {old.sequence}) trusts {old.admin_key}",
            field="admin_key",
        )
    if old.sequence > given.sequence:
        log.info(
            "using the stored RLF seq %d (newer than the given seq %d)",
            old.sequence,
            given.sequence,
        )
        return old
    if old.sequence == given.sequence and render_rlf(old) != render_rlf(given):
        raise StartupError(
            f"RLF seq {given.sequence} differs from the stored RLF with the same sequence "
            "(bump the sequence and sign again)",
            field="sequence",
        )
    return given


def check_addresses(rlf: Rlf, server_id: str, *, plaintext: bool) -> None:
    """Plaintext only if every server of the pool is on loopback."""
    rlf.server(server_id)
    if plaintext:
        for s in rlf.servers:
            if not is_loopback(s.host):
                raise StartupError(
                    f"--insecure-loopback: server {s.id} listens on {s.address}, which is not "
                    "loopback; use --tls-dir",
                    field="servers",
                )


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    d = Budgets()
    p = argparse.ArgumentParser(
        prog="lm-daemon",
        description="Run one license server of a pool (the engine on TCP/TLS and SQLite).",
        epilog=(
            "example: lm-daemon --rlf pool.rlf --server-id A --data-dir /var/lib/lm/A "
            "--tls-dir /etc/lm/tls\n\n" + store_cmd.COMMANDS_HELP
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=version_line("lm-daemon"))
    p.add_argument("--rlf", required=True, type=Path, help="the pool's signed RLF")
    p.add_argument("--server-id", required=True, help="this server's id in the RLF (e.g. A)")
    p.add_argument(
        "--data-dir", required=True, type=Path, help="where this server keeps its SQLite store"
    )
    tls = p.add_mutually_exclusive_group(required=True)
    tls.add_argument("--tls-dir", type=Path, help="directory written by `lm pki init`")
    tls.add_argument(
        "--insecure-loopback",
        action="store_true",
        help="no TLS; allowed only when every server of the RLF is on 127.0.0.1",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="stderr log level (default: info)",
    )
    p.add_argument(
        "--max-clients",
        type=_positive,
        default=d.clients,
        help=f"license-client connections at once (default {d.clients})",
    )
    p.add_argument(
        "--max-clients-per-source",
        type=_positive,
        default=d.clients_per_source,
        help=(
            f"... from one source address (default {d.clients_per_source}; raise it for "
            "terminal servers or NAT)"
        ),
    )
    p.add_argument(
        "--max-handshakes-per-source",
        type=_positive,
        default=d.handshakes_per_source,
        help=f"TLS handshakes in progress from one source address (default "
        f"{d.handshakes_per_source}; {d.handshakes} in all)",
    )
    p.add_argument(
        "--max-handshake-rate",
        type=_positive,
        default=d.handshake_rate,
        help=f"TLS handshakes started per second from one source address (default "
        f"{d.handshake_rate})",
    )
    p.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        type=_metrics_address,
        default=None,
        help="serve Prometheus metrics on http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464)",
    )
    return p


def _metrics_address(text: str) -> tuple[str, int]:
    from lm_core.runtime.connection import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gmtime(secs: float | None) -> time.struct_time:
    return time.gmtime(secs)


def setup_logging(level: str, server_id: str) -> None:
    """One escaped line per record on stderr, UTC timestamps, the server id on each."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = SafeFormatter(
        f"%(asctime)s.%(msecs)03dZ {server_id} %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = _gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(max(logging.INFO, root.level))


def prepare(args: argparse.Namespace) -> tuple[Rlf, Store, Loaded, tlsconfig.TlsPaths | None]:
    """Every start-up check; raises `InputError` (exit 2) with one clear line."""
    given, _ = load_rlf(args.rlf)
    try:
        given.server(args.server_id)
    except InputError:
        raise StartupError(
            f"server id {args.server_id!r} is not in the RLF (servers: "
            f"{', '.join(given.server_ids)})",
            file=str(args.rlf),
        ) from None
    tls = (
        None
        if args.insecure_loopback
        else tlsconfig.load_tls_dir(args.tls_dir, f"server-{args.server_id}")
    )
    if tls is not None:  # load them now so a bad key fails here, not at the first peer
        tlsconfig.server_context(tls)
        tlsconfig.peer_context(tls)
    store = Store.open(args.data_dir, pool=given.pool, server_id=args.server_id)
    try:
        loaded = store.load()
        rlf = choose_rlf(given, loaded.rlf, str(store.path))
        check_addresses(rlf, args.server_id, plaintext=tls is None)
    except BaseException:
        store.close()
        raise
    return rlf, store, loaded, tls


def budgets(args: argparse.Namespace) -> Budgets:
    """The listener's budgets from the command line (the rest at their defaults)."""
    return Budgets(
        clients=args.max_clients,
        clients_per_source=args.max_clients_per_source,
        handshakes_per_source=args.max_handshakes_per_source,
        handshake_rate=args.max_handshake_rate,
    )


def small_tls_buffers() -> None:
    """Give each TLS connection a 32 KiB read buffer instead of asyncio's 256 KiB.

    asyncio's `SSLProtocol` allocates (and zero-fills, so every page is resident) a
    `max_size` buffer per connection, which made an idle TLS connection cost ~290 KiB.
    A TLS record is at most 16 KiB, so 32 KiB loses nothing but the size of one read
    call; the class attribute is the knob asyncio itself reads for it."""
    with contextlib.suppress(AttributeError):
        asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


async def _amain(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop)
    await daemon.run()


def main(argv: Sequence[str] | None = None) -> None:
    """The `lm-daemon` entry point: `backup` and `restore` go to `store_cmd`; anything
    else starts a daemon."""
    given = list(sys.argv[1:] if argv is None else argv)
    if store_cmd.main(given):
        return
    args = _parser().parse_args(given)
    small_tls_buffers()
    setup_logging(args.log_level, args.server_id)
    try:
        rlf, store, loaded, tls = prepare(args)
    except InputError as exc:
        print(f"lm-daemon: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        claim_key = tlsconfig.load_claim_key(None if tls is None else args.tls_dir, rlf.pool)
    except InputError as exc:
        store.close()
        print(f"lm-daemon: {exc}", file=sys.stderr)
        sys.exit(2)
    if tls is None:
        log.warning("--insecure-loopback: PLAINTEXT, no TLS; accepted on 127.0.0.1 only")
    if not claim_key:
        log.warning(
            "no claim.key in %s (run `lm pki init` again to add it): seats do not move "
            "with fail-over clients; they wait until their server is fenced",
            args.tls_dir,
        )
    try:
        daemon = Daemon(
            args.server_id,
            rlf,
            store,
            loaded,
            tls=tls,
            budgets=budgets(args),
            claim_key=claim_key,
            metrics=args.metrics,
        )
    except LmError as exc:
        store.close()
        print(f"lm-daemon: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(_amain(daemon))
    except OSError as exc:  # listen failed (address in use, ...)
        store.close()
        own = rlf.server(args.server_id)
        print(f"lm-daemon: cannot listen on {own.address}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except (StoreFailed, MetricsBindError) as exc:
        print(f"lm-daemon: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
