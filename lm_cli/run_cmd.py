"""`lm run`: hold a seat for the life of a command -- the way to protect a program that
cannot be changed.

Theory of operation
-------------------
``lm run --license "Application 1.0" -- COMMAND ARGS`` takes the seat through the client
library (`LicenseClient`: heartbeats and fail-over in the background), then starts
COMMAND with lm run's own stdin, stdout and stderr, waits for it, releases the seat and
exits with COMMAND's status (128 + N if a signal N killed it). lm run itself prints
nothing on stdout, and on stderr only what goes wrong.

* Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to lm run are passed
  to COMMAND (lm run then waits for it to exit, and releases). SIGINT and SIGQUIT typed
  at a terminal already reach COMMAND (same process group), so they are passed on only
  when lm run's process group is not the terminal's foreground group.
* Losing the seat for a while (no server renewed it before its lease ran out, e.g. the
  pool lost its majority) prints one warning; the client keeps trying, and a new grant
  prints one line. Losing it **for good** -- a final refusal: reclaimed by an operator,
  license expired or unknown -- prints one warning and applies ``--on-loss``: ``warn``
  (the default: COMMAND runs on), ``term`` (SIGTERM, then SIGKILL after `KILL_AFTER`
  seconds), ``kill`` (SIGKILL).
* ``--wait``: a refusal while no seat is free prints one line and lm run keeps asking.
* Before COMMAND starts: a refusal from the pool is one line on stderr, exit 1 (as every
  lm command the pool refuses); bad input (no such RLF, a bad option) exit 2; COMMAND
  not found 127, not executable 126 (as a shell). A signal while waiting for a seat
  (``--wait``) exits 128 + the signal, without starting COMMAND.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import sys
from typing import Annotated, Any

import typer

from lm_cli.client_cmd import ClientTlsOpt, LicenseOpt
from lm_cli.output import PoolOpt, handle_errors, load_pool
from lm_core.engine.client import FINAL_REASONS
from lm_core.runtime.client import Lease, LicenseClient
from lm_core.runtime.tlsconfig import load_tls_dir

KILL_AFTER = 10.0  # --on-loss term: SIGKILL if the command still runs this long after SIGTERM
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
PASSED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)


class OnLoss(enum.StrEnum):
    WARN = "warn"
    TERM = "term"
    KILL = "kill"


def _say(text: str) -> None:
    print(f"lm run: {text}", file=sys.stderr, flush=True)


def exit_status(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when signal N killed it."""
    return 128 - returncode if returncode < 0 else returncode


def _terminal_sent_it() -> bool:
    """Is this process group the foreground group of its terminal (so a SIGINT typed
    there reached the command too)?"""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


class _Run:
    """One `lm run`: the lease, the child, and what happens when either ends."""

    def __init__(self, license: str, on_loss: OnLoss) -> None:
        self.license = license
        self.on_loss = on_loss
        self.child: asyncio.subprocess.Process | None = None
        self.signals: list[int] = []
        self.signalled = asyncio.Event()
        self.started = False  # the first grant arrived
        self.lapsed = False  # the lease ran out; the client is trying again
        self.gone = False  # lost for good
        self.waiting_said = False
        self._killer: asyncio.TimerHandle | None = None

    # -- the lease's events (called on the loop)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        reason = str(event.get("reason", ""))
        if not self.started:
            if kind == "denied" and not event.get("final") and not self.waiting_said:
                self.waiting_said = True  # only with --wait: else the start fails
                _say(f"no seat of {self.license} yet ({reason}); waiting for one")
            return
        if self.gone:
            return
        if (kind == "lost" and reason in FINAL_REASONS) or (
            kind == "denied" and event.get("final")
        ):
            self.lost_for_good(reason, str(event.get("detail", "")))
        elif kind == "lost":
            self.lapsed = True
            _say(f"the seat of {self.license} lapsed ({reason}); still trying to get it back")
        elif kind == "authorized" and self.lapsed:
            self.lapsed = False
            _say(f"holding {self.license} again (server {event.get('server')})")

    def lost_for_good(self, reason: str, detail: str) -> None:
        self.gone = True
        why = f"{reason}: {detail}" if detail else reason
        action = {
            OnLoss.WARN: "the command goes on without it (--on-loss warn)",
            OnLoss.TERM: "stopping the command (--on-loss term)",
            OnLoss.KILL: "killing the command (--on-loss kill)",
        }[self.on_loss]
        _say(f"the seat of {self.license} is lost for good ({why}); {action}")
        if self.on_loss is OnLoss.TERM:
            self._signal_child(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            self._killer = loop.call_later(KILL_AFTER, self._signal_child, signal.SIGKILL)
        elif self.on_loss is OnLoss.KILL:
            self._signal_child(signal.SIGKILL)

    # -- signals

    def on_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self.signalled.set()
        if self.child is None:
            return
        if signum in TERMINAL_SIGNALS and _terminal_sent_it():
            return
        self._signal_child(signum)

    def _signal_child(self, signum: int) -> None:
        child = self.child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    # -- the whole run

    async def main(self, lease: Lease, command: list[str]) -> int:
        loop = asyncio.get_running_loop()
        for sig in PASSED:
            loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            return await self._main(lease, command)
        finally:
            for sig in PASSED:
                loop.remove_signal_handler(sig)
            if self._killer is not None:
                self._killer.cancel()

    async def _main(self, lease: Lease, command: list[str]) -> int:
        starting = asyncio.create_task(lease.start())
        stopped = asyncio.create_task(self.signalled.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():  # a signal while waiting for the seat
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 128 + self.signals[0]
        starting.result()  # LicenseDenied: one line, exit 1 (handle_errors)
        self.started = True
        try:
            try:
                self.child = await asyncio.create_subprocess_exec(*command)
            except FileNotFoundError:
                _say(f"{command[0]}: command not found")
                return EXIT_NOT_FOUND
            except PermissionError:
                _say(f"{command[0]}: permission denied")
                return EXIT_NOT_EXECUTABLE
            except OSError as exc:
                _say(f"{command[0]}: cannot run: {exc.strerror or exc}")
                return EXIT_NOT_EXECUTABLE
            return exit_status(await self.child.wait())
        finally:
            await lease.stop()


@handle_errors
def run(
    command: Annotated[
        list[str],
        typer.Argument(help="The command to run and its arguments (after --).", show_default=False),
    ],
    license: LicenseOpt,
    pool: PoolOpt = None,
    count: Annotated[int, typer.Option("--count", help="Seats to hold.", min=1)] = 1,
    on_loss: Annotated[
        OnLoss,
        typer.Option(
            "--on-loss",
            help="When the seat is lost for good (reclaimed, license expired): warn and let "
            "the command run on, or stop it with SIGTERM (then SIGKILL after 10 s), or SIGKILL.",
            case_sensitive=False,
        ),
    ] = OnLoss.WARN,
    wait: Annotated[
        bool, typer.Option("--wait", help="If no seat is free, wait until one is.")
    ] = False,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="This client's id (default: host:pid:rand).")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Ask this server first (its id).")
    ] = None,
    tls_dir: ClientTlsOpt = None,
) -> None:
    """Hold a seat while COMMAND runs, then release it; exit with COMMAND's status.

    Signals sent to lm run are passed to COMMAND.

    Before COMMAND starts: exit 1 if denied, 2 on bad input, 126/127 if it cannot run.

    Example: lm run --pool pool.rlf --license "Application 1.0" -- cad-tool model.dwg
    """  # fmt: skip
    rlf = load_pool(pool)
    trust = load_tls_dir(tls_dir, "client")
    client = LicenseClient(rlf, trust, client_id=client_id, prefer=server)
    state = _Run(license, on_loss)
    lease = client.acquire(license, count, wait=wait, on_event=state.on_event)
    code = asyncio.run(state.main(lease, list(command)))
    if code:
        raise typer.Exit(code=code)


def register(app: typer.Typer) -> None:
    """Add `lm run`."""
    app.command(
        "run",
        context_settings={"allow_interspersed_args": False},
        no_args_is_help=True,
    )(run)
